"""The decoder (Qwen2 / Mistral) path on tiny random-weight models: pooling, LoRA training, reload, 4-bit guards."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, models, predict, tiny
from mathreport.train import TrainConfig, train

ARCHS = ["qwen2", "mistral"]
# One word per class: a pattern a random tiny model can learn in a few epochs.
KEYWORDS = ["equation", "triangle", "derivative", "dice", "prime", "arrangements", "matrix", "group"]
FILLER = "find the value of x in this short problem about numbers and their sum or product please".split()


# Tiny models on a shared CPU: one torch thread (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """Build the tiny-* presets into a temporary cache instead of ~/.cache."""
    path = tmp_path_factory.mktemp("tiny-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MATHREPORT_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def keyword_splits(tmp_path_factory):
    """train/val/test CSVs (96/32/32 rows, every class in each) whose label is told by one keyword."""
    out = tmp_path_factory.mktemp("keyword-data")
    rng = random.Random(0)
    for split, per_class in (("train", 12), ("val", 4), ("test", 4)):
        rows = []
        for label, word in enumerate(KEYWORDS):
            for i in range(per_class):
                # Varying lengths, so batches are padded; the split name and index keep every question unique.
                words = rng.sample(FILLER, rng.randint(2, 10))
                words.insert(rng.randint(0, len(words)), word)
                rows.append({"Question": f"{split} {i}: " + " ".join(words), "label": label})
        pd.DataFrame(rows).to_csv(out / f"{split}.csv", index=False)
    return out


def _config(data, out, model: str, **kw) -> TrainConfig:
    return TrainConfig(model=model, train_path=data / "train.csv", val_path=data / "val.csv",
                       test_path=data / "test.csv", output_dir=out, device="cpu", bench=False, train_eval_samples=32,
                       **kw)


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_logits_equal_one_by_one_qwen2_mistral(arch, tmp_path):
    import torch
    from transformers import AutoTokenizer

    path = tiny.build_tiny_model(arch, tmp_path / arch)
    raw = AutoTokenizer.from_pretrained(str(path))
    tokenizer = models.load_tokenizer(str(path))
    if arch == "mistral":  # like Mistral-7B-v0.3: no pad token, so load_tokenizer must set one
        assert raw.pad_token is None
    assert tokenizer.pad_token_id == tokenizer.eos_token_id and tokenizer.padding_side == "right"
    model = models.load_base_model(str(path), tokenizer, device="cpu").eval()
    assert type(model).__name__ == {"qwen2": "Qwen2ForSequenceClassification",
                                    "mistral": "MistralForSequenceClassification"}[arch]
    assert model.config.pad_token_id == tokenizer.pad_token_id

    texts = ["x", "Solve 3x + 5 = 20 for x.", "Find the area of the triangle with sides 3, 4 and 5 in the plane.",
             "prime?", "How many ways can 5 books be arranged on a shelf if two must stay together?"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding for the test to mean anything"
    with torch.inference_mode():
        batched = model(**batch).logits.numpy()
        single = np.concatenate([model(**tokenizer([t], return_tensors="pt")).logits.numpy() for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    # Pooling the last position (a pad token for the short rows) would give other logits.
    with torch.inference_mode():
        hidden = model.model(**batch).last_hidden_state
        last_position = model.score(hidden[:, -1]).numpy()
    assert not np.allclose(last_position[0], single[0], atol=1e-3)

    classifier = predict.TransformerClassifier(model, tokenizer, max_length=64)
    np.testing.assert_allclose(classifier.predict_proba(texts, batch_size=8), classifier.predict_proba(texts, 1),
                               atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_training_saves_head_and_reloads_qwen2_mistral(arch, tiny_cache, keyword_splits, tmp_path):
    run_dir = train(_config(keyword_splits, tmp_path / "run", f"tiny-{arch}", num_epochs=4, learning_rate=5e-3,
                            batch_size=16, max_length=32))

    history = artifacts.read_history(run_dir)
    assert len(history) == 4
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0] - 0.05

    manifest = artifacts.read_manifest(run_dir)
    assert manifest["load_in_4bit"] is False and manifest["dtype"] == "float32"
    assert manifest["lora"]["target_modules"] and set(manifest["lora"]["target_modules"]) == set(
        models.DECODER_TARGETS)
    adapter_config = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert "score" in adapter_config["modules_to_save"]
    from safetensors import safe_open

    with safe_open(str(run_dir / "model" / "adapter_model.safetensors"), "pt") as fh:
        score = [k for k in fh.keys() if ".score." in k]
        assert score, "the trained classification head must be saved with the adapter"
        assert any(tuple(fh.get_slice(k).get_shape()) == (8, tiny.TINY_SHAPE["hidden_size"]) for k in score)

    # The base is loaded afresh (a new random `score`): equal predictions mean the saved head was restored.
    preds = artifacts.read_predictions(run_dir)
    classifier = predict.load_classifier(run_dir, device="cpu", backend="torch")  # the torch path restores the head
    test = pd.read_csv(keyword_splits / "test.csv")
    np.testing.assert_allclose(classifier.predict_proba(test["Question"].tolist()),
                               preds[artifacts.PROB_COLUMNS].to_numpy(), atol=1e-5)


def test_a_stop_after_training_resumes_without_training_again(tiny_cache, keyword_splits, tmp_path, monkeypatch):
    """Issue 20, 10: checkpoints were deleted as soon as training returned, so a stop while predicting the test
    split lost the training: `--resume` trained from scratch. Now run.json records the finished training, the
    checkpoints stay until the run is complete, and `--resume` redoes only what is missing."""
    from transformers import Trainer

    from mathreport import train as train_module

    out = tmp_path / "run"
    common = dict(num_epochs=2, learning_rate=5e-3, batch_size=16, max_length=32)
    write = artifacts.write_predictions

    def stopped(*args, **kwargs):  # a stop (Ctrl-C, a time limit) once training is over, while predicting
        raise KeyboardInterrupt("simulated stop after training")

    monkeypatch.setattr(artifacts, "write_predictions", stopped)
    with pytest.raises(KeyboardInterrupt):
        train(_config(keyword_splits, out, "tiny-qwen2", **common))
    manifest = artifacts.read_manifest(out)
    assert manifest["status"] == "interrupted" and "training" in manifest
    assert (out / "model" / "adapter_config.json").is_file() and artifacts.has_checkpoints(out)
    assert not (out / artifacts.PREDICTIONS).exists() and not (out / artifacts.METRICS).exists()
    assert artifacts.run_state(out) == "unfinished"
    with pytest.raises(train_module.RunExistsError, match="--resume"):
        train(_config(keyword_splits, out, "tiny-qwen2", **common))
    history = (out / artifacts.HISTORY).read_bytes()

    monkeypatch.setattr(artifacts, "write_predictions", write)
    monkeypatch.setattr(Trainer, "train", lambda *a, **k: pytest.fail("--resume trained again"))
    train(_config(keyword_splits, out, "tiny-qwen2", resume=True, **common))
    manifest = artifacts.read_manifest(out)
    assert manifest["status"] == "complete" and manifest["resumed_after_training"]
    assert (out / artifacts.HISTORY).read_bytes() == history  # the training's own history, kept
    assert not (out / artifacts.CHECKPOINTS).exists()  # removed once the run is complete
    artifacts.check_consistency(out)
    # The predictions are the saved adapter's.
    classifier = predict.load_classifier(out, device="cpu", backend="torch")
    test = pd.read_csv(keyword_splits / "test.csv")
    np.testing.assert_allclose(classifier.predict_proba(test["Question"].tolist()),
                               artifacts.read_predictions(out)[artifacts.PROB_COLUMNS].to_numpy(), atol=1e-5)


def test_4bit_needs_cuda():
    with pytest.raises(models.NeedsCudaError, match="CUDA"):
        models.quantization_config(True, "cpu")
    assert models.quantization_config(False, "cpu") is None


def test_qlora_recipe(monkeypatch):
    import torch

    monkeypatch.setattr(models, "check_4bit_possible", lambda device: None)  # as if on a GPU with bitsandbytes
    quant = models.quantization_config(True, "cuda")
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16
    assert "score" in quant.llm_int8_skip_modules  # the head stays in full precision and trainable


def test_decoders_default_to_full_precision_on_cpu_and_4bit_on_cuda(monkeypatch):
    for key in ("qwen", "mistral", "tiny-qwen2", "tiny-mistral"):
        assert models.resolve_load_in_4bit(models.PRESETS[key], "cpu") is False
    assert models.resolve_load_in_4bit(models.PRESETS["minilm"], "cuda") is False
    with pytest.raises(models.NeedsCudaError):
        models.resolve_load_in_4bit(models.PRESETS["qwen"], "cpu", requested=True)
    monkeypatch.setattr(models, "check_4bit_possible", lambda device: None)  # as if on a GPU with bitsandbytes
    assert models.resolve_load_in_4bit(models.PRESETS["qwen"], "cuda") is True
    assert models.resolve_load_in_4bit(models.PRESETS["mistral"], "cuda:1", requested=False) is False


def test_train_qwen2_in_4bit_on_cpu_fails_before_writing(keyword_splits, tmp_path):
    path = tiny.build_tiny_model("qwen2", tmp_path / "weights")
    out = tmp_path / "run"
    with pytest.raises(models.NeedsCudaError, match="CUDA"):
        train(_config(keyword_splits, out, "qwen", model_path=str(path), load_in_4bit=True))
    assert not out.exists()


def test_lora_config_mlp_flag_and_head_in_modules_to_save_qwen2(tmp_path):
    from peft import get_peft_model

    path = tiny.build_tiny_model("qwen2", tmp_path / "w")
    tokenizer = models.load_tokenizer(str(path))
    lora = models.lora_config(models.PRESETS["qwen"], mlp=True)
    assert set(lora.target_modules) == {*models.DECODER_TARGETS, *models.DECODER_MLP_TARGETS}
    assert set(models.lora_config(models.PRESETS["qwen"]).target_modules) == set(models.DECODER_TARGETS)
    model = get_peft_model(models.load_base_model(str(path), tokenizer, device="cpu"), lora)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".score." in n for n in trainable) and any("gate_proj.lora_A" in n for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)
