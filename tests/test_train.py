"""Training end to end on a small real-shaped split: every file of a run, its metrics against their definitions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import reference_metrics as ref
from cli_args import split_flags

from mathreport import artifacts, data, files, fitting, options, train
from mathreport.labels import NUM_CLASSES

MODELS = ("tfidf", "minilm")


@pytest.mark.parametrize("model", MODELS)
def test_run_directory_has_every_file(trained_results, model):
    run = trained_results / model
    for name in (*artifacts.REQUIRED, artifacts.LATENCY, artifacts.MANIFEST):
        assert (run / name).is_file(), name
    assert not (
        run / "checkpoints"
    ).exists()  # a finished run keeps its adapter, not its checkpoints
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("model", MODELS)
def test_metrics_match_the_definitions_on_written_predictions(trained_results, model):
    """metrics.json and class_report.json against the numpy definitions (reference_metrics) on preds_test.csv."""
    run = trained_results / model
    preds = pd.read_csv(run / "preds_test.csv")
    probs = preds[artifacts.PROB_COLUMNS].to_numpy()
    y, p = preds["y_true"].to_numpy(), preds["y_pred"].to_numpy()
    assert (p == probs.argmax(1)).all()
    m = json.loads((run / "metrics.json").read_text())
    expected = ref.label_metrics(y, p)
    for key in (
        "Accuracy",
        "F1_macro",
        "F1_micro",
        "F1_weighted",
        "Precision_macro",
        "Recall_macro",
    ):
        assert m[key] == pytest.approx(expected[key], rel=1e-9), key
    aucs = ref.auc_per_class(y, probs)
    report = json.loads((run / "class_report.json").read_text())["per_class"]
    # A class with no test item has no AUC: None with the reason, left out of AUC_macro (never skipped here).
    absent = [k for k in range(NUM_CLASSES) if aucs[k] is None]
    assert sorted(m["AUC_macro_excluded"]) == sorted(f"class_{k}" for k in absent)
    for k in range(NUM_CLASSES):
        assert report[f"class_{k}"]["support"] == int((y == k).sum())
        if k in absent:
            assert (
                report[f"class_{k}"]["auc"] is None
                and "no samples" in report[f"class_{k}"]["auc_undefined_reason"]
            )
        else:
            assert report[f"class_{k}"]["auc"] == pytest.approx(aucs[k], rel=1e-9)
    assert m["AUC_macro"] == pytest.approx(np.mean([a for a in aucs if a is not None]), rel=1e-9)
    assert m["AUC_micro"] == pytest.approx(ref.auc_micro(y, probs), rel=1e-9)


@pytest.mark.parametrize("model", MODELS)
def test_history_and_manifest(trained_results, small_data, model):
    run = trained_results / model
    history = artifacts.read_history(run)
    manifest = artifacts.read_manifest(run)
    assert list(history["epoch"]) == list(range(1, manifest.hyperparameters["num_epochs"] + 1))
    assert history["val_loss"].notna().all() and history["val_accuracy"].between(0, 1).all()
    assert manifest.status == "complete"
    assert manifest.split("train").sha256 == files.file_sha256(small_data / "augmented_train.csv")
    assert manifest.split("test").rows == len(pd.read_csv(run / "preds_test.csv"))


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
        model=kw.pop("model", "tfidf"),
        train_path=small_data / "augmented_train.csv",
        val_path=small_data / "val_split.csv",
        test_path=small_data / "test_split.csv",
        output_dir=out,
        bench=False,
        **kw,
    )


@pytest.mark.slow  # trains a model twice
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


@pytest.mark.slow  # two real minilm trainings (about 2 minutes on 2 cores)
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
    assert manifest.training["resumed"] is True
    history = artifacts.read_history(out)
    assert list(history["epoch"]) == [1, 2]  # the first epoch's log came back with the checkpoint
    assert np.isfinite(history["train_loss"]).all()


def test_trainer_flags_reach_training_arguments_and_run_json(small_data, tmp_path):
    """Trainer's own flags (training_args) replace train's defaults; run.json's config and command carry them."""
    from transformers import TrainerCallback

    seen = {}

    class Stop(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["args"] = args
            raise KeyboardInterrupt("stop once Trainer has its arguments")

    out = tmp_path / "minilm"
    tokens = [
        "--gradient_accumulation_steps",
        "2",
        "--weight_decay",
        "0",
        "--lr_scheduler_type",
        "cosine",
    ]
    with pytest.raises(KeyboardInterrupt):
        train.train(
            _config(
                small_data,
                out,
                model="minilm",
                num_epochs=1,
                max_length=32,
                max_train_samples=32,
                top_k_layers=0,
                training_args=tokens,
                callbacks=[Stop()],
            )
        )
    args = seen["args"]
    assert (args.gradient_accumulation_steps, args.weight_decay, args.lr_scheduler_type) == (
        2,
        0.0,
        "cosine",
    )
    assert (args.eval_strategy, args.metric_for_best_model, args.num_train_epochs) == (
        "epoch",
        "val_accuracy",
        1,
    )
    manifest = artifacts.read_manifest(out)
    assert manifest.status == "interrupted" and manifest.command.endswith(" " + " ".join(tokens))
    assert manifest.config["training_args"] == tokens


# --- options, resume, failures, class coverage and one writer per run (issue 12) ----------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("num_epochs", 0),
        ("batch_size", 0),
        ("learning_rate", -1.0),
        ("learning_rate", float("nan")),
        ("max_length", 1),
        ("lora_dropout", 1.0),
        ("seed", -1),
        ("max_train_samples", 0),
        ("device", "gpu"),
    ],
)
def test_out_of_range_option_is_refused_before_anything_is_written(
    small_data, tmp_path, option, value
):
    out = tmp_path / "run"
    with pytest.raises(
        train.ConfigError
    ) as err:  # the rules hold for every model; tfidf keeps the test fast
        train.train(_config(small_data, out, **{option: value}))
    message = str(err.value)
    assert message.startswith(f"--{option} {value!r}: must be") and "\n" not in message
    assert not out.exists()


def test_max_length_must_leave_room_after_the_special_tokens(small_data, tmp_path):
    # MiniLM's tokenizer adds [CLS] and [SEP]: 2 tokens would hold no word of the question.
    with pytest.raises(train.ConfigError, match=r"--max_length 2: must be >= 3 for minilm"):
        train.train(
            _config(
                small_data,
                tmp_path / "run",
                model="minilm",
                max_length=2,
                num_epochs=1,
                max_train_samples=32,
            )
        )
    assert not (tmp_path / "run").exists()


def test_every_numeric_option_has_a_rule():
    numeric = [
        f.name
        for f in dataclasses.fields(train.TrainConfig)
        if any(t in str(f.type) for t in ("int", "float"))
    ]
    assert numeric and set(numeric) <= set(options.rules(train.TrainConfig))


@pytest.mark.slow  # trains a model
def test_resume_of_a_finished_run_changes_nothing(small_data, tmp_path, capsys):
    out = tmp_path / "tfidf"
    train.train(_config(small_data, out))
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    train.train(_config(small_data, out, resume=True, seed=1))
    assert {
        p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    } == before
    assert "nothing to continue" in capsys.readouterr().err
    train.train(_config(small_data, out, resume=True, force=True, seed=1))
    assert artifacts.read_manifest(out).config["seed"] == 1


def test_failed_run_is_started_over_by_the_same_command(small_data, tmp_path, monkeypatch):
    def fail_in_training(preset, weights, load_in_4bit, splits, hyper, run_dir, cfg, *rest):
        (
            run_dir / "checkpoints"
        ).mkdir()  # what Trainer has made when the optimiser refuses its settings
        raise RuntimeError("optimiser refused")

    out = tmp_path / "minilm"
    monkeypatch.setattr(fitting, "train_transformer", fail_in_training)
    with pytest.raises(RuntimeError, match="optimiser refused"):
        train.train(_config(small_data, out, model="minilm"))
    manifest = artifacts.read_manifest(out)
    assert manifest.status == "failed" and "optimiser refused" in manifest.error
    assert not (out / "checkpoints").exists() and not (out / artifacts.LOCK).exists()

    def reached(*args):
        raise RuntimeError("reached training")

    monkeypatch.setattr(fitting, "train_transformer", reached)
    with pytest.raises(
        RuntimeError, match="reached training"
    ):  # not RunExistsError: no --force needed
        train.train(_config(small_data, out, model="minilm"))


def _without(frame_path, label, out_path):
    frame = pd.read_csv(frame_path)
    frame[frame["label"] != label].to_csv(out_path, index=False)
    return out_path


@pytest.mark.parametrize("model", MODELS)
def test_train_split_lacking_a_class_is_refused_alike_for_every_model(small_data, tmp_path, model):
    cfg = _config(small_data, tmp_path / "run", model=model, num_epochs=1)
    cfg.train_path = _without(cfg.train_path, 3, tmp_path / "train.csv")
    with pytest.raises(
        data.DataError, match=r"no question of class 3 \(Olasılık\).*--allow_missing_classes"
    ):
        train.train(cfg)
    assert not (tmp_path / "run").exists()  # no stale run.json


@pytest.mark.slow  # trains a model
def test_allow_missing_classes_trains_with_a_warning(small_data, tmp_path, capsys):
    cfg = _config(small_data, tmp_path / "run", allow_missing_classes=True)
    cfg.train_path = _without(cfg.train_path, 3, tmp_path / "train.csv")
    train.train(cfg)
    assert "3 (Olasılık)" in capsys.readouterr().err
    preds = artifacts.read_predictions(tmp_path / "run")
    assert (preds["prob_class_3"] == 0).all() and (preds["y_true"] == 3).any()
    assert "--allow_missing_classes" in artifacts.read_manifest(tmp_path / "run").command


def _train_argv(small_data, out, *extra):
    return [
        "train",
        "--model",
        "tfidf",
        *split_flags(small_data),
        "--output_dir",
        str(out),
        "--no_bench",
        *extra,
    ]


def _start_cli(argv, go=None):
    """`mathreport ARGV` in a new process (this checkout's code); with `go`, it waits for that file first."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import mathreport

    script = (
        "import sys, time, pathlib\nfrom mathreport import cli\n"
        "go = sys.argv[1]\nwhile go and not pathlib.Path(go).exists(): time.sleep(0.01)\n"
        "sys.exit(cli.main(sys.argv[2:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(mathreport.__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, "-c", script, str(go or ""), *argv],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_train_into_a_folder_being_written_fails_at_once(small_data, tmp_path, hold_lock):
    out = tmp_path / "run"
    with hold_lock(out) as holder:
        before = sorted(p.name for p in out.iterdir())
        proc = _start_cli(_train_argv(small_data, out))
        code, _, stderr = proc.wait(timeout=120), *proc.communicate()
        assert code == 2, stderr
        assert f"is being written by PID {holder.pid}" in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert sorted(p.name for p in out.iterdir()) == before  # it wrote nothing


@pytest.mark.slow  # trains a model
def test_two_trains_into_one_folder_one_fails_at_once(small_data, tmp_path):
    out, go = tmp_path / "run", tmp_path / "go"
    procs = {
        seed: _start_cli(_train_argv(small_data, out, "--seed", str(seed)), go) for seed in (1, 2)
    }
    go.touch()
    results = {seed: (p.wait(timeout=300), *p.communicate()) for seed, p in procs.items()}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 2], results
    ((winner, (_, stdout, _)),) = [(s, r) for s, r in results.items() if r[0] == 0]
    ((_, (_, _, stderr)),) = [(s, r) for s, r in results.items() if r[0] == 2]
    # Which refusal the loser meets depends on the scheduler: the lock, while the winner writes (the test
    # above makes that case certain), or the finished run, when the winner was done before it started.
    refusals = ("is being written by PID", "already holds a finished run")
    assert any(r in stderr for r in refusals) and len(stderr.strip().splitlines()) == 1, stderr
    # The folder is the winner's alone, and what it printed is what it wrote.
    assert artifacts.read_manifest(out).config["seed"] == winner
    artifacts.check_consistency(out)
    assert f"Accuracy {artifacts.read_metrics(out)['Accuracy']:.3f}" in stdout


@pytest.mark.slow  # trains a model in a subprocess, then again
def test_kill_9_during_training_then_resume(small_data, tmp_path, capsys):
    import json
    import os
    import signal
    import time

    out = tmp_path / "run"
    proc = _start_cli(_train_argv(small_data, out))
    deadline = time.time() + 120
    while (
        time.time() < deadline and proc.poll() is None
    ):  # kill once it has started writing the run
        manifest = out / artifacts.MANIFEST
        if (
            manifest.is_file()
            and json.loads(manifest.read_text() or "{}").get("status") == "running"
        ):
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (
        artifacts.read_manifest(out).status == "running" and not (out / artifacts.METRICS).exists()
    )
    train.train(_config(small_data, out, resume=True))
    err = capsys.readouterr().err
    assert f"PID {proc.pid}" in err and "no longer running" in err  # its lock, taken over
    assert artifacts.read_manifest(out).status == "complete"
    artifacts.check_consistency(out)


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
    assert float(loss({"logits": logits}, batch, num_items_in_batch=12)) == pytest.approx(
        expected / 12, rel=1e-5
    )


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize("imbalance", ["none", "class_weights", "oversample"])
def test_tfidf_imbalance_option_and_val_predictions(small_data, tmp_path, imbalance):
    import joblib

    out = tmp_path / imbalance
    train.train(_config(small_data, out, imbalance=imbalance))
    manifest = artifacts.read_manifest(out)
    assert manifest.hyperparameters["imbalance"] == imbalance
    assert f"--imbalance {imbalance}" in manifest.command
    lr = joblib.load(out / "model" / "pipeline.joblib").steps[-1][1]
    assert lr.class_weight == ("balanced" if imbalance == "class_weights" else None)
    if imbalance == "oversample":
        report = manifest.oversampling
        assert report["rows_added"] > 0
        assert manifest.split("train").rows == report["train_rows_before"] + report["rows_added"]
    else:
        assert manifest.oversampling is None
    val = pd.read_csv(small_data / "val_split.csv")
    preds = artifacts.read_val_predictions(out)
    assert (
        preds["y_true"].tolist() == val["label"].tolist()
        and preds["text"].tolist() == val["Question"].tolist()
    )


@pytest.mark.slow  # trains a model
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

    cfg = train.TrainConfig(
        model="tfidf", train_path=None, val_path=None, test_path=None, output_dir=None
    )
    for key in ("tfidf", "minilm"):
        preset = models.get_preset(key)
        assert (
            train.hyperparameters(cfg, preset)["imbalance"] == train.DEFAULT_IMBALANCE[preset.kind]
        )
    cfg.imbalance = "sometimes"
    with pytest.raises(ValueError, match="imbalance must be one of"):
        train.hyperparameters(cfg, models.get_preset("tfidf"))


def test_evaluate_a_colab_folder_with_an_adapter_but_no_run_json(tmp_path):
    """The team's own folder as a Colab run leaves it: predictions and a saved LoRA adapter, no run.json."""
    import shutil

    from mathreport import cli

    run_dir = tmp_path / "qwen_math"
    run_dir.mkdir()
    shutil.copy(
        Path(__file__).parent / "fixtures" / "team_results" / "qwen_math" / "preds_test.csv",
        run_dir,
    )
    (run_dir / "model").mkdir()
    (run_dir / "model" / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "r": 16}', encoding="utf-8"
    )
    assert cli.main(["evaluate", "--run_dir", str(run_dir)]) == 0
    preds = artifacts.read_predictions(run_dir)
    metrics = artifacts.read_metrics(run_dir)
    assert metrics["Accuracy"] == pytest.approx(float((preds["y_true"] == preds["y_pred"]).mean()))
    assert not (run_dir / "run.json").exists() and not (run_dir / "model" / "README.md").exists()


def test_a_full_disk_while_training_is_one_line_and_the_run_says_failed(
    small_data, tmp_path, monkeypatch, capsys
):
    """Issue 28, 2: ENOSPC from joblib's write of the model was a traceback, and run.json stayed "running"."""
    import errno

    import joblib

    from mathreport import cli, record

    def full(value, filename, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    monkeypatch.setattr(joblib, "dump", full)
    out = tmp_path / "tfidf"
    status = cli.main(
        [
            "train",
            "--model",
            "tfidf",
            *split_flags(small_data),
            "--output_dir",
            str(out),
            "--no_bench",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        status == 2 and len(err) == 1 and "pipeline.joblib" in err[0] and "No space left" in err[0]
    )
    rec = record.read(out)
    assert rec.status == "failed" and "WriteError" in rec.error
    # Nothing claims to be complete; the same command starts the run over (no --force needed).
    with pytest.raises(
        artifacts.ArtifactError, match="is missing. Make it with: mathreport train --model tfidf"
    ):
        artifacts.check_consistency(out)
    assert artifacts.run_state(out) == "failed"
