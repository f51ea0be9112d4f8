"""tiny: random-weight Qwen2 / Mistral of the real architectures, built locally, the same for the same seed."""

from __future__ import annotations

import json

import pytest

from mathreport import presets, tiny, weights


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MATHREPORT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_a_tiny_model_has_the_architecture_shape_and_special_tokens_of_the_real_one(tmp_path, arch):
    folder = tiny.build_tiny_model(arch, tmp_path / arch)
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["model_type"] == arch and config.get("pad_token_id") is None
    )  # as the real checkpoints
    assert {k: config[k] for k in tiny.TINY_SHAPE} == tiny.TINY_SHAPE
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert model.config.vocab_size == len(tokenizer)
    # As the real tokenizers: transformers' Qwen2 tokenizer pads with <|endoftext|>, Mistral's has no pad token.
    assert tokenizer.pad_token == ("<|endoftext|>" if arch == "qwen2" else None)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000  # trains on a CPU in seconds
    ids = tokenizer("Find the derivative of sin(2x).")["input_ids"]
    assert (ids[0] == tokenizer.bos_token_id) == (
        arch == "mistral"
    )  # Mistral prepends BOS, Qwen2 does not


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(tmp_path):
    import torch
    from safetensors.torch import load_file

    a, b, c = (
        load_file(
            str(tiny.build_tiny_model("qwen2", tmp_path / name, seed=seed) / "model.safetensors")
        )
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    )
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_the_preset_folder_is_built_once(cache, monkeypatch):
    folder = tiny.ensure_tiny_model("mistral")
    assert folder == cache / "tiny-mistral" and (folder / "config.json").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["tiny-mistral"]  # no scratch folder left

    def refuse(*args, **kwargs):
        raise AssertionError("built twice")

    monkeypatch.setattr(tiny, "build_tiny_model", refuse)
    assert tiny.ensure_tiny_model("mistral") == folder
    # The presets' Tiny source is that folder (issue 30: the arch is typed on the preset).
    assert presets.PRESETS["tiny-mistral"].source.resolve("tiny-mistral") == str(folder)


def test_every_tiny_preset_names_an_architecture_tiny_builds():
    sources = [p.source for p in presets.PRESETS.values() if isinstance(p.source, weights.Tiny)]
    assert sorted(s.arch for s in sources) == sorted(tiny.ARCHS)
    # Nothing to download.
    assert all(s.hub_id is None and s.fetch_command() is None for s in sources)


def test_an_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="qwen2"):
        tiny.ensure_tiny_model("llama")
