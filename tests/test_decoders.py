"""The decoder (Qwen2 / Mistral) path on tiny random-weight models: pooling, LoRA training, reload, 4-bit guards."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, fitting, models, predict, tiny
from mathreport.train import TrainConfig, train

ARCHS = ["qwen2", "mistral"]
# One word per class: a pattern a random tiny model can learn in a few epochs.


# Tiny models on a shared CPU: one torch thread (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """Build the tiny-* presets into a temporary cache instead of ~/.cache."""
    path = tmp_path_factory.mktemp("tiny-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MATHREPORT_CACHE", str(path))
        yield path


def _config(data, out, model: str, **kw) -> TrainConfig:
    kw = {"bench": False, **kw}
    return TrainConfig(
        model=model,
        train_path=data / "train.csv",
        val_path=data / "val.csv",
        test_path=data / "test.csv",
        output_dir=out,
        device="cpu",
        train_eval_samples=32,
        **kw,
    )


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
    assert (
        type(model).__name__
        == {
            "qwen2": "Qwen2ForSequenceClassification",
            "mistral": "MistralForSequenceClassification",
        }[arch]
    )
    assert model.config.pad_token_id == tokenizer.pad_token_id

    texts = [
        "x",
        "Solve 3x + 5 = 20 for x.",
        "Find the area of the triangle with sides 3, 4 and 5 in the plane.",
        "prime?",
        "How many ways can 5 books be arranged on a shelf if two must stay together?",
    ]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), (
        "the batch must contain padding for the test to mean anything"
    )
    with torch.inference_mode():
        batched = model(**batch).logits.numpy()
        single = np.concatenate(
            [model(**tokenizer([t], return_tensors="pt")).logits.numpy() for t in texts]
        )
    np.testing.assert_allclose(batched, single, atol=1e-4)
    # Pooling the last position (a pad token for the short rows) would give other logits.
    with torch.inference_mode():
        hidden = model.model(**batch).last_hidden_state
        last_position = model.score(hidden[:, -1]).numpy()
    assert not np.allclose(last_position[0], single[0], atol=1e-3)

    classifier = predict.TransformerClassifier(model, tokenizer, max_length=64)
    np.testing.assert_allclose(
        classifier.predict_proba(texts, batch_size=8), classifier.predict_proba(texts, 1), atol=1e-5
    )


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize("arch", ARCHS)
def test_lora_training_saves_head_and_reloads_qwen2_mistral(
    arch, tiny_cache, keyword_splits, tmp_path
):
    run_dir = train(
        _config(
            keyword_splits,
            tmp_path / "run",
            f"tiny-{arch}",
            num_epochs=4,
            learning_rate=5e-3,
            batch_size=16,
            max_length=32,
        )
    )

    history = artifacts.read_history(run_dir)
    assert len(history) == 4
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0] - 0.05

    manifest = artifacts.read_manifest(run_dir)
    assert manifest.load_in_4bit is False and manifest.dtype == "float32"
    assert manifest.lora["target_modules"] and set(manifest.lora["target_modules"]) == set(
        models.DECODER_TARGETS
    )
    adapter_config = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert "score" in adapter_config["modules_to_save"]
    from safetensors import safe_open

    with safe_open(str(run_dir / "model" / "adapter_model.safetensors"), "pt") as fh:
        score = [k for k in fh.keys() if ".score." in k]
        assert score, "the trained classification head must be saved with the adapter"
        assert any(
            tuple(fh.get_slice(k).get_shape()) == (8, tiny.TINY_SHAPE["hidden_size"]) for k in score
        )

    # The base is loaded afresh (a new random `score`): equal predictions mean the saved head was restored.
    preds = artifacts.read_predictions(run_dir)
    classifier = predict.load_classifier(
        run_dir, device="cpu", backend="torch"
    )  # the torch path restores the head
    test = pd.read_csv(keyword_splits / "test.csv")
    np.testing.assert_allclose(
        classifier.predict_proba(test["Question"].tolist()),
        preds[artifacts.PROB_COLUMNS].to_numpy(),
        atol=1e-5,
    )


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize("load_in_4bit", [False, True], ids=["full", "nf4"])
def test_a_stop_after_training_resumes_without_training_again(
    tiny_cache, keyword_splits, tmp_path, monkeypatch, load_in_4bit
):
    """Issue 20, 10: checkpoints were deleted as soon as training returned, so a stop while predicting the test
    split lost the training: `--resume` trained from scratch. Now run.json records the finished training, the
    checkpoints stay until the run is complete, and `--resume` redoes only what is missing."""
    from transformers import Trainer

    from mathreport import train as train_module

    out = tmp_path / "run"
    common = dict(
        num_epochs=2, learning_rate=5e-3, batch_size=16, max_length=32, load_in_4bit=load_in_4bit
    )
    write = artifacts.write_predictions

    def stopped(
        *args, **kwargs
    ):  # a stop (Ctrl-C, a time limit) once training is over, while predicting
        raise KeyboardInterrupt("simulated stop after training")

    monkeypatch.setattr(artifacts, "write_predictions", stopped)
    with pytest.raises(KeyboardInterrupt):
        train(_config(keyword_splits, out, "tiny-qwen2", **common))
    manifest = artifacts.read_manifest(out)
    assert manifest.status == "interrupted" and manifest.trained
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
    assert manifest.status == "complete" and manifest.resumed_after_training
    assert (out / artifacts.HISTORY).read_bytes() == history  # the training's own history, kept
    assert not (out / artifacts.CHECKPOINTS).exists()  # removed once the run is complete
    artifacts.check_consistency(out)
    # The predictions are the saved adapter's.
    classifier = predict.load_classifier(out, device="cpu", backend="torch")
    four_bit = any(type(m).__name__ == "Linear4bit" for m in classifier.model.modules())
    assert manifest.load_in_4bit is load_in_4bit and four_bit is load_in_4bit
    test = pd.read_csv(keyword_splits / "test.csv")
    np.testing.assert_allclose(
        classifier.predict_proba(test["Question"].tolist(), batch_size=16),
        artifacts.read_predictions(out)[artifacts.PROB_COLUMNS].to_numpy(),
        atol=1e-5,
    )


@pytest.fixture
def fresh_4bit_probe():
    """The one-time 4-bit probe forgotten before and after the test, which changes what bitsandbytes reports."""
    models._4bit_problem.cache_clear()
    yield
    models._4bit_problem.cache_clear()


def test_4bit_runs_where_bitsandbytes_says_it_does_not_by_device_name(
    monkeypatch, fresh_4bit_probe
):
    import sys

    import bitsandbytes as bnb

    # The installed bitsandbytes (make env) runs NF4 on a CPU: no CUDA needed.
    models.check_4bit_possible("cpu")
    assert models.quantization_config(True, "cpu").bnb_4bit_quant_type == "nf4"
    assert models.quantization_config(False, "cpu") is None

    # A bitsandbytes that does not list the device is refused, naming its version and what to install.
    monkeypatch.setattr(bnb, "supported_torch_devices", {"cuda"})
    models._4bit_problem.cache_clear()
    with pytest.raises(models.FourBitUnavailableError) as err:
        models.check_4bit_possible("cpu")
    message = str(err.value)
    assert (
        f"bitsandbytes {bnb.__version__}" in message
        and "not cpu" in message
        and "\n" not in message
    )
    assert (
        f"pip install 'bitsandbytes>={models.BITSANDBYTES_TESTED}'" in message
        and "--no-load_in_4bit" in message
    )

    # No bitsandbytes at all: said so, with the same fix.
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setattr(models, "_bitsandbytes_version", lambda: None)
    models._4bit_problem.cache_clear()
    with pytest.raises(models.FourBitUnavailableError, match="bitsandbytes is not installed"):
        models.check_4bit_possible("cpu")


def test_qlora_recipe():
    import torch

    quant = models.quantization_config(True, "cpu")
    assert (
        quant.load_in_4bit
        and quant.bnb_4bit_quant_type == "nf4"
        and quant.bnb_4bit_use_double_quant
    )
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16
    assert "score" in quant.llm_int8_skip_modules  # the head stays in full precision and trainable


def test_decoders_default_to_full_precision_on_cpu_and_4bit_on_cuda(monkeypatch):
    for key in ("qwen", "mistral", "tiny-qwen2", "tiny-mistral"):
        assert models.resolve_load_in_4bit(models.PRESETS[key], "cpu") is False
    assert models.resolve_load_in_4bit(models.PRESETS["minilm"], "cuda") is False
    assert models.resolve_load_in_4bit(models.PRESETS["qwen"], "cpu", requested=True) is True
    monkeypatch.setattr(
        models, "check_4bit_possible", lambda device: None
    )  # as if on a GPU with bitsandbytes
    assert models.resolve_load_in_4bit(models.PRESETS["qwen"], "cuda") is True
    assert (
        models.resolve_load_in_4bit(models.PRESETS["mistral"], "cuda:1", requested=False) is False
    )


def test_train_in_4bit_where_bitsandbytes_cannot_fails_before_writing(
    keyword_splits, tmp_path, monkeypatch
):
    path = tiny.build_tiny_model("qwen2", tmp_path / "weights")
    out = tmp_path / "run"
    monkeypatch.setattr(models, "_4bit_problem", lambda kind: "it supports cuda, not cpu")
    with pytest.raises(models.FourBitUnavailableError, match="not cpu"):
        train(_config(keyword_splits, out, "qwen", model_path=str(path), load_in_4bit=True))
    assert not out.exists()


def test_lora_config_mlp_flag_and_head_in_modules_to_save_qwen2(tmp_path):
    from peft import get_peft_model

    path = tiny.build_tiny_model("qwen2", tmp_path / "w")
    tokenizer = models.load_tokenizer(str(path))
    lora = models.lora_config(models.PRESETS["qwen"], mlp=True)
    assert set(lora.target_modules) == {*models.DECODER_TARGETS, *models.DECODER_MLP_TARGETS}
    assert set(models.lora_config(models.PRESETS["qwen"]).target_modules) == set(
        models.DECODER_TARGETS
    )
    model = get_peft_model(models.load_base_model(str(path), tokenizer, device="cpu"), lora)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".score." in n for n in trainable) and any(
        "gate_proj.lora_A" in n for n in trainable
    )
    assert not any("embed_tokens" in n for n in trainable)


# --- QLoRA on the CPU: the 7B models' 4-bit path (NF4, k-bit preparation, LoRA, head, reload) on tiny decoders ----


@pytest.mark.parametrize("arch", ARCHS)
def test_4bit_training_keeps_the_gradient_through_frozen_4bit_weights_after_an_evaluation_qwen2_mistral(
    arch, tmp_path
):
    """Trainer evaluates after each epoch; bitsandbytes then repacks 4-bit weights for its CPU inference kernel
    (on CPUs with AVX-512 BF16), which has no backward: the next training step fails where the layer has a bias
    (Qwen2's q/k/v) and silently loses the gradient where it has none (Mistral). Training must give the same LoRA
    gradients after an evaluation as before it. (Without AVX-512 BF16 nothing is repacked: it holds trivially.)"""
    import dataclasses

    import torch

    path = tiny.build_tiny_model(arch, tmp_path / "w")
    tokenizer = models.load_tokenizer(str(path))
    preset = dataclasses.replace(models.PRESETS[f"tiny-{arch}"], lora_dropout=0.0)
    model = models.load_base_model(str(path), tokenizer, device="cpu", load_in_4bit=True)
    model, _ = models.add_lora(model, preset, load_in_4bit=True)
    batch = tokenizer(
        ["Solve 3x + 5 = 20 for x.", "How many ways can 5 books be arranged?"],
        padding=True,
        return_tensors="pt",
    )
    labels = torch.tensor([0, 5])

    def lora_grads() -> dict:
        model.train()
        model.zero_grad()
        model(**batch, labels=labels).loss.backward()
        # lora_B of layer 0's q/k/v: its gradient reaches it only back through frozen 4-bit weights (o_proj and
        # the layers above; lora_B starts at zero, so the adapters add no path of their own).
        return {n: p.grad.clone() for n, p in model.named_parameters() if "lora_B" in n}

    before = lora_grads()
    model.eval()
    with torch.no_grad():
        model(**batch)
    after = lora_grads()
    first_layer = [n for n in before if ".layers.0.self_attn." in n and "o_proj" not in n]
    assert first_layer and all(before[n].abs().sum() > 0 for n in first_layer)
    for name in before:
        torch.testing.assert_close(
            after[name], before[name], msg=f"{name}: gradient changed after an evaluation"
        )


def _interrupt_after_first_checkpoint():
    """A TrainerCallback that stops the run right after its first checkpoint, as a killed job would."""
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise KeyboardInterrupt("simulated interruption after the first checkpoint")

    return Interrupt()


@pytest.fixture(scope="module")
def qlora_runs(tiny_cache, keyword_splits, tmp_path_factory):
    """tiny-qwen2 and tiny-mistral trained with load_in_4bit: interrupted after epoch 1, resumed to the end."""
    results = tmp_path_factory.mktemp("qlora-results")
    for arch in ARCHS:
        out = results / f"tiny-{arch}-4bit"
        common = dict(
            num_epochs=2,
            learning_rate=5e-3,
            batch_size=16,
            max_length=32,
            load_in_4bit=True,
            bench=arch == "qwen2",
            bench_max_items=8,
        )
        interrupt = _interrupt_after_first_checkpoint()
        with pytest.raises(KeyboardInterrupt):
            train(_config(keyword_splits, out, f"tiny-{arch}", callbacks=[interrupt], **common))
        assert (
            list((out / "checkpoints").glob("checkpoint-*")) and not (out / "metrics.json").exists()
        )
        train(_config(keyword_splits, out, f"tiny-{arch}", resume=True, **common))
    return results


@pytest.mark.slow  # qlora_runs trains two models
@pytest.mark.parametrize("arch", ARCHS)
def test_qlora_trains_resumes_and_records_nf4_qwen2_mistral(arch, qlora_runs):
    import bitsandbytes

    run_dir = qlora_runs / f"tiny-{arch}-4bit"
    manifest = artifacts.read_manifest(run_dir)
    assert manifest.status == "complete" and manifest.training["resumed"] is True
    assert manifest.load_in_4bit is True and manifest.dtype == "nf4+bf16"
    assert manifest.quantization == {
        "method": "bitsandbytes",
        "bits": 4,
        "quant_type": "nf4",
        "double_quant": True,
        "compute_dtype": "bfloat16",
        "skip_modules": list(models.HEAD_MODULES),
        "bitsandbytes": bitsandbytes.__version__,
    }
    history = artifacts.read_history(run_dir)
    assert list(history["epoch"]) == [1, 2] and np.isfinite(history["train_loss"]).all()
    adapter_config = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert "score" in adapter_config["modules_to_save"]
    # The run's own backend is its 4-bit model; ONNX is refused with the reason.
    assert manifest.inference["default"] == "torch-nf4"
    assert "ONNX cannot hold" in manifest.inference["skipped"]["onnx"]
    assert not list(run_dir.glob("*.onnx"))


@pytest.mark.slow  # qlora_runs trains two models
@pytest.mark.parametrize("arch", ARCHS)
def test_qlora_run_reloads_in_4bit_and_predicts_what_training_wrote_qwen2_mistral(arch, qlora_runs):
    import bitsandbytes as bnb
    from transformers import AutoTokenizer

    run_dir = qlora_runs / f"tiny-{arch}-4bit"
    classifier = predict.load_classifier(run_dir, device="cpu")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in classifier.model.modules())
    if (
        arch == "mistral"
    ):  # no pad token in the base tokenizer (like Mistral-7B-v0.3): EOS pads, in 4-bit too
        assert (
            AutoTokenizer.from_pretrained(artifacts.read_manifest(run_dir).weights).pad_token
            is None
        )
        assert classifier.model.config.pad_token_id == classifier.tokenizer.eos_token_id
    preds = artifacts.read_predictions(run_dir)
    batch_size = artifacts.read_manifest(run_dir).hyperparameters["batch_size"]
    probs = classifier.predict_proba(preds["text"].tolist(), batch_size=batch_size)
    # Reloaded in 4-bit with the same batches, the model computes what it computed at the end of training: the
    # same kernels on the same numbers, so equal up to float32 rounding (atol 1e-6), and the same answers.
    np.testing.assert_allclose(probs, preds[artifacts.PROB_COLUMNS].to_numpy(), atol=1e-6)
    assert (probs.argmax(1) == preds["y_pred"].to_numpy()).all()


@pytest.mark.slow  # qlora_runs trains two models
def test_qlora_run_predict_bench_evaluate_and_export_from_the_cli_qwen2(
    qlora_runs, tmp_path, capsys
):
    import shutil

    from mathreport import cli

    run_dir = shutil.copytree(
        qlora_runs / "tiny-qwen2-4bit", tmp_path / "run"
    )  # the test rewrites its files
    latency = artifacts.read_latency(run_dir)  # the one train measured: on the 4-bit model
    assert latency["backend"] == "torch" and latency["dtype"] == "nf4"
    assert (
        cli.main(["predict", "--run_dir", str(run_dir), "Find the derivative of x squared."]) == 0
    )
    assert (
        cli.main(
            [
                "bench",
                "--run_dir",
                str(run_dir),
                "--output",
                str(tmp_path / "latency.json"),
                "--max_items",
                "4",
                "--repeats",
                "1",
                "--batch_sizes",
                "1",
            ]
        )
        == 0
    )
    benched = json.loads((tmp_path / "latency.json").read_text())
    assert list(benched["backends"]) == ["torch-nf4"] and benched["backends"]["torch-nf4"][
        "accuracy"
    ] == pytest.approx(artifacts.read_metrics(run_dir)["Accuracy"])
    capsys.readouterr()
    assert cli.main(["export-onnx", "--run_dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained in 4-bit" in err and "ONNX cannot hold" in err and "\n" not in err
    assert cli.main(["predict", "--run_dir", str(run_dir), "--backend", "onnx", "x + 1 = 2"]) == 2
    assert "runs only as torch-nf4" in capsys.readouterr().err
    # evaluate --write_val_preds reloads in 4-bit too: the same validation predictions as training wrote.
    before = artifacts.read_val_predictions(run_dir)
    (run_dir / artifacts.PREDS_VAL).unlink()
    assert cli.main(["evaluate", "--run_dir", str(run_dir), "--write_val_preds"]) == 0
    after = artifacts.read_val_predictions(run_dir)
    assert (after["y_pred"] == before["y_pred"]).all()
    np.testing.assert_allclose(
        after[artifacts.PROB_COLUMNS].to_numpy(),
        before[artifacts.PROB_COLUMNS].to_numpy(),
        atol=1e-5,
    )  # other batches (64, not 16): bf16 matmuls of other shapes
    artifacts.check_consistency(
        run_dir
    )  # run.json records the rewritten file: the run is still whole


@pytest.mark.slow  # qlora_runs trains two models; runs the report
def test_qlora_report_renders_qwen2_mistral(qlora_runs, tmp_path):
    from mathreport import export

    paths = export.run_report(
        model="tiny-qwen2-4bit",
        results_dir=qlora_runs,
        output_dir=tmp_path,
        figures_dir=tmp_path / "figures",
        lang="en",
        pdf=False,
    )
    html = paths["html"].read_text(encoding="utf-8")
    for arch in ARCHS:
        assert f"{artifacts.read_metrics(qlora_runs / f'tiny-{arch}-4bit')['Accuracy']:.3f}" in html
    # The latency train measured on the 4-bit model (batch 1 p50, from its latency.json) is in the summary.
    latency = artifacts.read_latency(qlora_runs / "tiny-qwen2-4bit")
    assert latency["dtype"] == "nf4"
    p50 = next(r["p50_ms"] for r in latency["results"] if r["batch_size"] == 1)
    assert f"tiny-qwen2-4bit {p50:.2f} ms" in html


@pytest.mark.slow  # qlora_runs trains two models
@pytest.mark.parametrize("arch", ARCHS)
def test_qlora_adapter_card_is_the_runs_own_qwen2_mistral(arch, qlora_runs, tmp_path):
    import shutil

    from huggingface_hub import ModelCard

    from mathreport.train import evaluate_run

    run_dir = shutil.copytree(
        qlora_runs / f"tiny-{arch}-4bit", tmp_path / "run"
    )  # the test rewrites its card
    path = run_dir / "model" / "README.md"
    card = ModelCard.load(path)
    assert "[More Information Needed]" not in path.read_text(encoding="utf-8")
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-classification"
    assert (
        card.data.base_model is None
    )  # a random test model has no Hub id; its weights folder is named instead
    assert f"| weights read from | `{artifacts.read_manifest(run_dir).weights}` |" in card.text
    saved = artifacts.read_metrics(run_dir)
    by_name = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert by_name["Accuracy"] == saved["Accuracy"] and by_name["F1 (macro)"] == saved["F1_macro"]
    assert "| `bitsandbytes` | 4 | `nf4` | yes | `bfloat16` |" in card.text
    for split in ("train", "val", "test"):
        assert artifacts.read_manifest(run_dir).split(split).sha256 in card.text
    # `mathreport evaluate` recomputes metrics.json, and the card with it.
    path.unlink()
    evaluate_run(run_dir)
    assert f"{saved['Accuracy']:.4f}" in path.read_text(encoding="utf-8")


def test_an_epochs_train_loss_is_the_step_weighted_mean_of_its_logs():
    """Loss logs in the middle of an epoch and one closing it; each covers the steps since the log before."""
    log = [
        {"loss": 2.0, "epoch": 0.5, "step": 4},
        {"loss": 1.0, "epoch": 1.0, "step": 8},
        {"eval_val_loss": 0.9, "eval_val_accuracy": 0.5, "epoch": 1.0, "step": 8},
        {"loss": 0.8, "epoch": 1.5, "step": 12},
        {"loss": 0.5, "epoch": 2.0, "step": 15},  # a window of 3 steps
        {"eval_val_loss": 0.7, "eval_val_accuracy": 0.75, "epoch": 2.0, "step": 15},
        {"train_loss": 1.2, "epoch": 2.0, "step": 15},
    ]
    history = fitting.history_from_log(log)
    assert list(history["epoch"]) == [1, 2]
    assert history["train_loss"].tolist() == pytest.approx(
        [(4 * 2 + 4 * 1) / 8, (4 * 0.8 + 3 * 0.5) / 7]
    )
    assert history["val_accuracy"].tolist() == [0.5, 0.75]


@pytest.mark.slow  # three tiny trainings
def test_loss_is_logged_within_each_epoch_and_history_keeps_the_epoch_mean(
    tiny_cache, keyword_splits, tmp_path
):
    """About 20 loss logs an epoch, one at each epoch's end; history.csv's per-epoch loss does not depend on
    where the logs fall (every step, every 5 across the epoch boundary, or our default)."""
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def __init__(self):
            self.logs, self.epoch_ends = [], []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if "loss" in (logs or {}):
                self.logs.append(state.global_step)

        def on_epoch_end(self, args, state, control, **kwargs):
            self.epoch_ends.append(state.global_step)

    common = dict(num_epochs=2, batch_size=2, max_length=32, learning_rate=5e-3)
    histories, records = {}, {}
    for name, tokens in (
        ("default", []),
        ("every", ["--logging_steps", "1"]),
        ("five", ["--logging_steps", "5"]),
    ):
        records[name] = Record()
        run = train(
            _config(
                keyword_splits,
                tmp_path / name,
                "tiny-qwen2",
                training_args=tokens,
                callbacks=[records[name]],
                **common,
            )
        )
        histories[name] = artifacts.read_history(run)
    ends = records["default"].epoch_ends
    per_epoch = ends[0]
    assert per_epoch >= 40 and per_epoch % 5  # windows of 5 cross the epoch's end
    for name in histories:
        assert set(ends) <= set(records[name].logs), (
            name
        )  # each epoch's last window closed at its end
    first_epoch = [s for s in records["default"].logs if s <= per_epoch]
    assert len(first_epoch) >= fitting.LOSS_LOGS_PER_EPOCH
    assert len(records["every"].logs) == ends[-1]
    for name in ("default", "five"):
        np.testing.assert_allclose(
            histories[name]["train_loss"], histories["every"]["train_loss"], rtol=1e-5, err_msg=name
        )
    run_json = artifacts.read_manifest(tmp_path / "every").training
    assert np.mean(histories["every"]["train_loss"]) == pytest.approx(
        run_json["train_loss"], rel=1e-5
    )
