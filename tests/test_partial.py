"""Partial fine-tuning (mathreport.partial): the top-k model over cached states, its gradients, the cache, a run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, files, models, partial, predict
from mathreport.train import ConfigError, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [
    "x",
    "Solve 3x + 5 = 20 for x.",
    "Find the area of the triangle with sides 3, 4 and 5 in the plane.",
    "prime?",
    "How many ways can 5 books be arranged on a shelf if two must stay together?",
]
# minilm: the BERT path (pass-through embeddings, the pooler); tiny-*: the Qwen2 / Mistral decoder path (rotary
# inside attention, last-token pooling).
MODELS = ["minilm", "tiny-qwen2", "tiny-mistral"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """tiny-* models and cached states in a temporary cache, never ~/.cache."""
    monkeypatch.setenv("MATHREPORT_CACHE", str(tmp_path_factory.getbasetemp() / "partial-cache"))


def _lora_model(key: str, k: int, seed: int = 0):
    """The preset's model with LoRA on the top k layers, its LoRA B matrices random (so the adapter does something)."""
    import torch

    preset = models.PRESETS[key]
    weights = models.resolve_weights(preset)
    tokenizer = models.load_tokenizer(weights)
    model, _ = partial.add_top_lora(
        models.load_base_model(weights, tokenizer, device="cpu"), preset, k
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval(), tokenizer, weights


@pytest.mark.parametrize("key", ["minilm", "tiny-qwen2"])
def test_model_dropout_zero_makes_training_mode_deterministic(key):
    """--model_dropout 0 switches off every dropout of the model's own layers and head (BERT's modules, the decoders'
    attention rate): two forwards in training mode give the same logits; with the model's own rate they differ."""
    import torch

    weights = models.resolve_weights(models.PRESETS[key])
    tokenizer = models.load_tokenizer(weights)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    model = models.load_base_model(weights, tokenizer, device="cpu").train()
    if key == "minilm":  # BERT's own rate is 0.1: training mode is random
        assert not torch.equal(model(**batch).logits, model(**batch).logits)
    else:  # tiny decoders have no dropout of their own (attention 0.0): set one first, so there is one to turn off
        models.set_dropout(model, 0.5)
        assert not torch.equal(model(**batch).logits, model(**batch).logits)
    assert models.set_dropout(model, 0.0) > 0
    assert torch.equal(model(**batch).logits, model(**batch).logits)
    assert all(
        getattr(model.config, a, 0.0) in (0.0, None)
        for a in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout")
    )


@pytest.mark.parametrize("key", MODELS)
def test_top_model_on_cached_states_gives_the_whole_models_logits(key):
    import torch

    model, tokenizer, _ = _lora_model(key, k=1)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "padding in the batch, or pooling is not tested"
    with torch.inference_mode():
        whole = model(**batch).logits
        hidden = partial.bottom_model(model, 1)(**batch).last_hidden_state
        top = partial.top_model(model, 1).eval()
        exact = top(
            input_ids=batch["input_ids"],
            inputs_embeds=hidden,
            attention_mask=batch["attention_mask"],
        ).logits
    np.testing.assert_allclose(exact.numpy(), whole.numpy(), atol=1e-5)
    # Through the cache: bfloat16 states, computed one length-sorted batch at a time, padded again by the collator.
    sequences = [tuple(ids) for ids in tokenizer(TEXTS)["input_ids"]]
    states = partial.frozen_states(
        partial.bottom_model(model, 1), sequences, pad_token_id=tokenizer.pad_token_id, batch_size=2
    )
    rows = [{"input_ids": list(s), "attention_mask": [1] * len(s), "labels": 0} for s in sequences]
    dataset = partial.CachedDataset(rows, dict(zip(sequences, states, strict=True)))
    cached = partial.collator(tokenizer)([dataset[i] for i in range(len(dataset))])
    with torch.inference_mode():
        logits = top(
            input_ids=cached["input_ids"],
            inputs_embeds=cached["inputs_embeds"],
            attention_mask=cached["attention_mask"],
        ).logits
    scale = whole.abs().max().item()
    # bfloat16 keeps 8 bits of mantissa: the states are within ~0.4 % of float32, the logits a little further.
    np.testing.assert_allclose(logits.numpy(), whole.numpy(), atol=0.03 * scale)


@pytest.mark.parametrize("key", ["minilm", "tiny-qwen2"])
def test_only_the_top_k_layers_and_the_head_get_gradients(key):
    import torch

    model, tokenizer, _ = _lora_model(key, k=1)
    layers = partial.num_layers(model)
    top_layer = f".{layers - 1}."
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(top_layer in n or "modules_to_save" in n for n in trainable), trainable
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    states = partial.bottom_model(model, 1)(**batch).last_hidden_state.detach()
    top = partial.top_model(model, 1).train()
    loss = top(
        input_ids=batch["input_ids"],
        inputs_embeds=states,
        attention_mask=batch["attention_mask"],
        labels=torch.arange(len(TEXTS)) % 8,
    ).loss
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == set(
        trainable
    )  # every trainable parameter (LoRA of the top layer, head) and nothing else
    assert all(
        p.grad.abs().sum() > 0
        for n, p in model.named_parameters()
        if n in with_grad and "lora_A" in n
    )


def test_k_out_of_range_is_refused_before_anything_is_written(keyword_splits, tmp_path):
    cfg = TrainConfig(
        model="tiny-qwen2",
        train_path=keyword_splits / "train.csv",
        val_path=keyword_splits / "val.csv",
        test_path=keyword_splits / "test.csv",
        output_dir=tmp_path / "run",
        top_k_layers=3,
    )
    with pytest.raises(
        ConfigError, match=r"--top_k_layers 3: must be between 1 and the number of layers, 2"
    ):
        train(cfg)
    cfg.top_k_layers, cfg.load_in_4bit = 1, True
    with pytest.raises(ConfigError, match="--top_k_layers 1 with --load_in_4bit"):
        train(cfg)
    cfg.top_k_layers = -1
    with pytest.raises(ConfigError, match="--top_k_layers -1: must be an integer >= 0"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_cache_key_follows_the_split_file_and_a_stale_cache_is_never_read(tmp_path):
    model, tokenizer, weights = _lora_model("tiny-qwen2", k=1)
    bottom = partial.bottom_model(model, 1)
    split = tmp_path / "train.csv"
    split.write_text("Question,label\nSolve x,0\n")
    sequences = [tuple(ids) for ids in tokenizer(TEXTS)["input_ids"]]

    def key_for(path, k=1, max_length=64, seqs=sequences):
        return partial.cache_key(
            weights_id=partial.weights_identity(weights),
            split_sha256=files.file_sha256(path),
            k=k,
            max_length=max_length,
            sequences_sha=partial.sequences_sha256(seqs),
            autocast=None,
        )

    first = key_for(split)
    states, loaded = partial.load_or_compute(
        bottom, sequences, first, pad_token_id=tokenizer.pad_token_id
    )
    assert not loaded and (partial.states_dir() / partial.key_name(first)).is_file()
    again, loaded = partial.load_or_compute(
        bottom, sequences, first, pad_token_id=tokenizer.pad_token_id
    )
    assert loaded and all((again[s] == states[s]).all() for s in sequences)
    split.write_text("Question,label\nSolve y,0\n")
    changed = key_for(split)
    names = {
        partial.key_name(k)
        for k in (
            first,
            changed,
            key_for(split, k=2),
            key_for(split, max_length=32),
            key_for(split, seqs=sequences[:2]),
        )
    }
    assert len(names) == 5  # the split file, k, max_length and the token ids each change the key
    # A file under the right name whose recorded key differs (copied, or from an older format) is not read.
    planted = partial.states_dir() / partial.key_name(changed)
    planted.write_bytes((partial.states_dir() / partial.key_name(first)).read_bytes())
    _, loaded = partial.load_or_compute(
        bottom, sequences, changed, pad_token_id=tokenizer.pad_token_id
    )
    assert not loaded


def _config(data, out, model: str, **kw) -> TrainConfig:
    return TrainConfig(
        model=model,
        train_path=data / "train.csv",
        val_path=data / "val.csv",
        test_path=data / "test.csv",
        output_dir=out,
        device="cpu",
        bench=False,
        train_eval_samples=32,
        **kw,
    )


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize(("key", "k"), [("tiny-qwen2", 1), ("tiny-mistral", 1), ("minilm", 2)])
def test_top_k_run_trains_saves_and_predict_gives_its_predictions(keyword_splits, tmp_path, key, k):
    import torch
    from transformers import TrainerCallback

    class DropoutsSeen(TrainerCallback):
        rates: set = set()

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.rates.update(m.p for m in model.modules() if isinstance(m, torch.nn.Dropout))

    seen = DropoutsSeen()
    # minilm (BERT's own dropout 0.1) trains with --model_dropout 0: none of the model Trainer trains draws masks.
    run_dir = train(
        _config(
            keyword_splits,
            tmp_path / "run",
            key,
            num_epochs=3,
            top_k_layers=k,
            max_length=32,
            callbacks=[seen],
            **({"learning_rate": 5e-3} if key != "minilm" else {"model_dropout": 0.0}),
        )
    )
    manifest = artifacts.read_manifest(run_dir)
    if key == "minilm":
        assert seen.rates == {0.0} and "--model_dropout 0" in manifest.command
    assert (
        manifest.hyperparameters["top_k_layers"] == k and f"--top_k_layers {k}" in manifest.command
    )
    layers = manifest.partial["layers"]
    assert manifest.partial["trained_layers"] == list(range(layers - k, layers))
    caches = manifest.partial["caches"]
    assert {tuple(c["splits"]) for c in caches.values()} == {("train", "train_eval"), ("val",)}
    assert all(
        c["key"]["split_sha256"] == manifest.split(c["splits"][0].split("_")[0]).sha256
        for c in caches.values()
    )
    adapter = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert adapter["layers_to_transform"] == list(range(layers - k, layers))
    history = artifacts.read_history(run_dir)
    assert len(history) == 3 and history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    # The predictions come from the model computing as it was evaluated (torch-topk: the cached validation states,
    # the top layers): validation scores as at the best epoch (batches differ: at most one answer in 32 flips).
    assert manifest.inference["reference"]["backend"] == predict.TORCH_TOPK.name
    val = pd.read_csv(run_dir / "preds_val.csv")
    assert (
        abs((val["y_true"] == val["y_pred"]).mean() - history["val_accuracy"].max())
        <= 1 / len(val) + 1e-9
    )
    # The model is reloaded from model/ (a fresh base, the adapter on its top layers, merged) and, as torch-topk,
    # computes the frozen layers of the questions itself: for the same questions in batches of the same size (under
    # bf16 autocast the batches' padding shifts the last digits), the answers training wrote, test and validation.
    preds = artifacts.read_predictions(run_dir)
    test = pd.read_csv(keyword_splits / "test.csv")
    classifier = predict.load_classifier(run_dir, device="cpu", backend="torch", dtype="topk")
    assert isinstance(classifier, predict.TopKClassifier)
    batch = manifest.hyperparameters["batch_size"]
    np.testing.assert_allclose(
        classifier.predict_proba(test["Question"].tolist(), batch_size=batch),
        preds[artifacts.PROB_COLUMNS].to_numpy(),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        classifier.predict_proba(val["text"].tolist(), batch_size=batch),
        val[artifacts.PROB_COLUMNS].to_numpy(),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        classifier.predict_proba(test["Question"].tolist(), batch_size=batch * 2 + 1),
        preds[artifacts.PROB_COLUMNS].to_numpy(),
        atol=0.02,
    )
    # The whole model in float32 gives nearly the same answers (it reads unrounded states below the top k).
    full = predict.load_classifier(run_dir, device="cpu", backend="torch", dtype="float32")
    assert isinstance(full, predict.TransformerClassifier)
    assert (
        full.predict_proba(test["Question"].tolist()).argmax(1) == preds["y_pred"].to_numpy()
    ).mean() >= 0.9


@pytest.mark.slow  # trains a model twice
def test_top_k_run_resumes_from_its_checkpoint_and_reuses_the_cache(keyword_splits, tmp_path):
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise KeyboardInterrupt("simulated interruption after the first checkpoint")

    class CountSteps(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    out = tmp_path / "run"
    common = dict(num_epochs=2, top_k_layers=1, max_length=32, learning_rate=5e-3)
    with pytest.raises(KeyboardInterrupt):
        train(_config(keyword_splits, out, "tiny-qwen2", callbacks=[Interrupt()], **common))
    assert list((out / "checkpoints").glob("checkpoint-*")) and not (out / "metrics.json").exists()
    resumed, whole_steps = CountSteps(), CountSteps()
    train(_config(keyword_splits, out, "tiny-qwen2", resume=True, callbacks=[resumed], **common))
    assert resumed.steps > 0
    manifest = artifacts.read_manifest(out)
    assert manifest.training["resumed"] is True and manifest.status == "complete"
    assert all(
        c["loaded"] for c in manifest.partial["caches"].values()
    )  # the interrupted run's states
    history = artifacts.read_history(out)
    assert list(history["epoch"]) == [1, 2] and np.isfinite(history["train_loss"]).all()
    # The resumed run continued the first one's weights: one uninterrupted run ends with the same predictions.
    whole = train(
        _config(keyword_splits, tmp_path / "whole", "tiny-qwen2", callbacks=[whole_steps], **common)
    )
    assert 2 * resumed.steps == whole_steps.steps  # the resumed run trained the second epoch only
    np.testing.assert_allclose(
        artifacts.read_predictions(out)[artifacts.PROB_COLUMNS].to_numpy(),
        artifacts.read_predictions(whole)[artifacts.PROB_COLUMNS].to_numpy(),
        atol=1e-4,
    )
