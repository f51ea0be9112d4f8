"""Training end to end on a small real-shaped split: every file of a run, checked against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from mathreport import artifacts, train
from mathreport.labels import NUM_CLASSES

MODELS = ("tfidf", "minilm")


@pytest.mark.parametrize("model", MODELS)
def test_run_directory_has_every_file(trained_results, model):
    run = trained_results / model
    for name in (*artifacts.REQUIRED, artifacts.LATENCY, artifacts.MANIFEST):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints").exists()  # a finished run keeps its adapter, not its checkpoints
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("model", MODELS)
def test_metrics_equal_sklearn_on_written_predictions(trained_results, model):
    run = trained_results / model
    preds = pd.read_csv(run / "preds_test.csv")
    probs = preds[artifacts.PROB_COLUMNS].to_numpy()
    y, p = preds["y_true"].to_numpy(), preds["y_pred"].to_numpy()
    assert (p == probs.argmax(1)).all()
    m = json.loads((run / "metrics.json").read_text())
    labels = list(range(NUM_CLASSES))
    assert m["Accuracy"] == pytest.approx(accuracy_score(y, p))
    assert m["F1_macro"] == pytest.approx(f1_score(y, p, average="macro", labels=labels, zero_division=0))
    assert m["F1_micro"] == pytest.approx(f1_score(y, p, average="micro", labels=labels, zero_division=0))
    assert m["F1_weighted"] == pytest.approx(f1_score(y, p, average="weighted", labels=labels, zero_division=0))
    assert m["Precision_macro"] == pytest.approx(precision_score(y, p, average="macro", labels=labels,
                                                                 zero_division=0))
    assert m["Recall_macro"] == pytest.approx(recall_score(y, p, average="macro", labels=labels, zero_division=0))
    present = sorted(set(y))
    if len(present) == NUM_CLASSES:
        assert m["AUC_macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", labels=labels))
    report = json.loads((run / "class_report.json").read_text())["per_class"]
    assert sum(report[f"class_{i}"]["support"] for i in labels) == len(y)


@pytest.mark.parametrize("model", MODELS)
def test_history_and_manifest(trained_results, small_data, model):
    run = trained_results / model
    history = artifacts.read_history(run)
    manifest = artifacts.read_manifest(run)
    assert list(history["epoch"]) == list(range(1, manifest["hyperparameters"]["num_epochs"] + 1))
    assert history["val_loss"].notna().all() and history["val_accuracy"].between(0, 1).all()
    assert manifest["status"] == "complete"
    assert manifest["data"]["train"]["sha256"] == artifacts.file_sha256(small_data / "augmented_train.csv")
    assert manifest["data"]["test"]["rows"] == len(pd.read_csv(run / "preds_test.csv"))


def test_minilm_learns(trained_results, small_data):
    """Two epochs of LoRA on 380 questions must beat always answering the majority class."""
    preds = pd.read_csv(trained_results / "minilm" / "preds_test.csv")
    majority = preds["y_true"].value_counts().iloc[0] / len(preds)
    assert (preds["y_true"] == preds["y_pred"]).mean() > majority
    history = artifacts.read_history(trained_results / "minilm")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


@pytest.mark.parametrize("model", MODELS)
def test_latency_measured_for_batch_one_and_larger(trained_results, model):
    latency = artifacts.read_latency(trained_results / model)
    sizes = [r["batch_size"] for r in latency["results"]]
    assert 1 in sizes and max(sizes) > 1
    for r in latency["results"]:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["items_per_s"] > 0
    assert latency["device"] and latency["threads"]


def _config(small_data, out, **kw):
    return train.TrainConfig(
        model=kw.pop("model", "tfidf"), train_path=small_data / "augmented_train.csv",
        val_path=small_data / "val_split.csv", test_path=small_data / "test_split.csv", output_dir=out,
        bench=False, **kw,
    )


def test_existing_results_are_not_overwritten(small_data, tmp_path):
    out = tmp_path / "tfidf"
    train.train(_config(small_data, out))
    before = (out / "metrics.json").read_bytes()
    with pytest.raises(train.RunExistsError, match="--force"):
        train.train(_config(small_data, out))
    assert (out / "metrics.json").read_bytes() == before
    train.train(_config(small_data, out, force=True))


def test_leaking_splits_are_refused(small_data, tmp_path):
    from mathreport.data import LeakageError

    cfg = _config(small_data, tmp_path / "leak")
    cfg.test_path = small_data / "augmented_train.csv"
    with pytest.raises(LeakageError, match="allow_leakage"):
        train.train(cfg)
    assert not (tmp_path / "leak" / "metrics.json").exists()


def test_interrupted_run_resumes_from_checkpoint(small_data, tmp_path):
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise KeyboardInterrupt("simulated interruption after the first checkpoint")

    out = tmp_path / "minilm"
    common = dict(model="minilm", num_epochs=2, max_length=48, max_train_samples=96)
    with pytest.raises(KeyboardInterrupt):
        train.train(_config(small_data, out, callbacks=[Interrupt()], **common))
    assert list((out / "checkpoints").glob("checkpoint-*")) and not (out / "metrics.json").exists()
    with pytest.raises(train.RunExistsError, match="--resume"):
        train.train(_config(small_data, out, **common))
    train.train(_config(small_data, out, resume=True, **common))
    manifest = artifacts.read_manifest(out)
    assert manifest["training"]["resumed"] is True
    history = artifacts.read_history(out)
    assert list(history["epoch"]) == [1, 2]  # the first epoch's log came back with the checkpoint
    assert np.isfinite(history["train_loss"]).all()


# --- class imbalance and validation predictions ---------------------------------------------------------------


def test_class_weighted_loss_weights_each_class_by_its_rarity():
    import torch

    labels = np.array([0] * 12 + [1] * 3 + [2] * 1 + list(range(3, NUM_CLASSES)))
    loss = train.class_weighted_loss(labels)
    weights = np.array(loss.class_weights)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    np.testing.assert_allclose(weights, len(labels) / (NUM_CLASSES * counts), rtol=1e-6)
    logits = torch.randn(6, NUM_CLASSES)
    batch = torch.tensor([0, 0, 1, 2, 3, 7])
    ce = torch.nn.functional.cross_entropy(logits, batch, reduction="none").numpy()
    expected = (weights[batch.numpy()] * ce).sum()
    assert float(loss({"logits": logits}, batch)) == pytest.approx(expected / 6, rel=1e-5)
    # Trainer passes the number of items in the accumulated batch: the sum is divided by it.
    assert float(loss({"logits": logits}, batch, num_items_in_batch=12)) == pytest.approx(expected / 12, rel=1e-5)


@pytest.mark.parametrize("imbalance", ["none", "class_weights", "oversample"])
def test_tfidf_imbalance_option_and_val_predictions(small_data, tmp_path, imbalance):
    import joblib

    out = tmp_path / imbalance
    train.train(_config(small_data, out, imbalance=imbalance))
    manifest = artifacts.read_manifest(out)
    assert manifest["hyperparameters"]["imbalance"] == imbalance
    assert f"--imbalance {imbalance}" in manifest["command"]
    lr = joblib.load(out / "model" / "pipeline.joblib").steps[-1][1]
    assert lr.class_weight == ("balanced" if imbalance == "class_weights" else None)
    if imbalance == "oversample":
        report = manifest["oversampling"]
        assert report["rows_added"] > 0
        assert manifest["data"]["train"]["rows"] == report["train_rows_before"] + report["rows_added"]
    else:
        assert manifest["oversampling"] is None
    val = pd.read_csv(small_data / "val_split.csv")
    preds = artifacts.read_val_predictions(out)
    assert preds["y_true"].tolist() == val["label"].tolist() and preds["text"].tolist() == val["Question"].tolist()


def test_backfilled_val_predictions_match_the_ones_training_wrote(small_data, tmp_path):
    out = tmp_path / "tfidf"
    train.train(_config(small_data, out))
    written = artifacts.read_val_predictions(out)
    (out / artifacts.PREDS_VAL).unlink()
    with pytest.raises(artifacts.ArtifactError, match="--write_val_preds"):
        artifacts.read_val_predictions(out)
    train.backfill_val_predictions(out)
    pd.testing.assert_frame_equal(artifacts.read_val_predictions(out), written)
    # Another validation file than the one the run recorded is refused, and nothing is written.
    other = tmp_path / "val_other.csv"
    pd.read_csv(small_data / "val_split.csv").iloc[:-1].to_csv(other, index=False)
    (out / artifacts.PREDS_VAL).unlink()
    with pytest.raises(artifacts.ArtifactError, match="SHA-256"):
        train.backfill_val_predictions(out, val_path=other)
    assert not (out / artifacts.PREDS_VAL).exists()


def test_default_imbalance_per_model_family():
    from mathreport import models

    cfg = train.TrainConfig(model="tfidf", train_path=None, val_path=None, test_path=None, output_dir=None)
    for key in ("tfidf", "minilm"):
        preset = models.get_preset(key)
        assert train.imbalance_for(cfg, preset) == train.DEFAULT_IMBALANCE[preset.kind]
    cfg.imbalance = "sometimes"
    with pytest.raises(ValueError, match="imbalance must be one of"):
        train.imbalance_for(cfg, models.get_preset("tfidf"))
