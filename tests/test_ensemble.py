"""The ensemble: fitted on validation only, refuses mismatched members by name, writes a normal run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, cli, ensemble, files, record, summary, train
from mathreport.labels import NUM_CLASSES

N = 160


def _labels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.arange(NUM_CLASSES), rng.integers(0, NUM_CLASSES, N - NUM_CLASSES)])


Y_VAL, Y_TEST = _labels(1), _labels(2)


def _probs(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """Probabilities that put `signal` extra logit on the true class, plus noise."""
    logits = np.random.default_rng(seed).normal(size=(len(y), NUM_CLASSES)) * 1.5
    logits[np.arange(len(y)), y] += signal
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _data(val: str = "v" * 64, test: str = "t" * 64) -> dict:
    return {
        "train": {"path": "train.csv", "sha256": "0" * 64, "rows": 1000},
        "val": {"path": "val.csv", "sha256": val, "rows": N},
        "test": {"path": "test.csv", "sha256": test, "rows": N},
    }


def make_member(results, name, signal, seed, *, y_val=Y_VAL, y_test=Y_TEST, data=None, p50=1.0):
    """A run directory with every file a trained run has, from synthetic probabilities."""
    run = results / name
    texts_val = [f"val question {i}" for i in range(len(y_val))]
    texts_test = [f"test question {i}" for i in range(len(y_test))]
    artifacts.write_val_predictions(run, y_val, _probs(y_val, signal, seed), texts_val)
    artifacts.write_predictions(run, y_test, _probs(y_test, signal, seed + 100), texts_test)
    train.evaluate_run(run, n_bootstrap=20)
    files.write_csv(
        run / artifacts.HISTORY,
        pd.DataFrame(
            [
                {
                    "epoch": 1,
                    "train_loss": 0.5,
                    "val_loss": 0.6,
                    "train_accuracy": 0.9,
                    "val_accuracy": 0.8,
                }
            ]
        ),
    )
    files.write_json(
        run / artifacts.MANIFEST,
        {
            "model": name,
            "kind": "tfidf",
            "data": data or _data(),
            "command": f"mathreport train --model {name}",
            "training": {"train_seconds": 2.0},
        },
    )
    files.write_json(
        run / artifacts.LATENCY,
        {
            "device": "cpu",
            "results": [
                {"batch_size": 1, "p50_ms": p50, "p95_ms": 2 * p50, "items_per_s": 1000 / p50},
                {"batch_size": 32, "p50_ms": p50 / 4, "p95_ms": p50 / 2, "items_per_s": 4000 / p50},
            ],
        },
    )
    return run


@pytest.fixture()
def members(tmp_path):
    results = tmp_path / "results"
    return results, [
        make_member(results, "strong", 3.0, 1, p50=1.5),
        make_member(results, "weak", 1.5, 2, p50=4.0),
    ]


def _replace_probs(run, filename, probs):
    frame = pd.read_csv(run / filename)
    frame[artifacts.PROB_COLUMNS] = probs
    frame["y_pred"] = probs.argmax(axis=1)
    files.write_csv(run / filename, frame)
    if (
        filename == artifacts.PREDICTIONS
    ):  # as a retrained member would: its metrics are of its new predictions
        train.evaluate_run(run, n_bootstrap=20)


def test_weights_depend_on_validation_only(members, tmp_path):
    results, runs = members
    first = ensemble.build_ensemble(runs, tmp_path / "e1")
    weights = artifacts.read_manifest(first).member_weights
    assert weights["strong"] > weights["weak"]

    # New test probabilities for one member: the ensemble's test predictions change, its weights do not.
    _replace_probs(runs[1], artifacts.PREDICTIONS, _probs(Y_TEST, 6.0, 77))
    second = ensemble.build_ensemble(runs, tmp_path / "e2")
    assert artifacts.read_manifest(second).member_weights == weights
    assert not pd.read_csv(second / artifacts.PREDICTIONS).equals(
        pd.read_csv(first / artifacts.PREDICTIONS)
    )

    # Make the weak member the better one on validation: the weights follow.
    _replace_probs(runs[1], artifacts.PREDS_VAL, _probs(Y_VAL, 8.0, 78))
    third = artifacts.read_manifest(ensemble.build_ensemble(runs, tmp_path / "e3")).member_weights
    assert third["weak"] > third["strong"]


@pytest.mark.parametrize("method", ["loglinear", "linear"])
def test_fitted_weights_minimise_validation_log_loss(method):
    p = [_probs(Y_VAL, 2.0, 3), _probs(Y_VAL, 2.0, 4), _probs(Y_VAL, 0.5, 5)]
    w = ensemble.fit_weights(p, Y_VAL, method)
    best = ensemble.log_loss(Y_VAL, ensemble.combine(p, w, method))
    # No point of a grid over the feasible weights does better than the optimum found.
    if method == "linear":
        assert w.sum() == pytest.approx(1)
        grid = [
            np.array([a, b, 1 - a - b])
            for a in np.linspace(0, 1, 21)
            for b in np.linspace(0, 1 - a, 21)
        ]
    else:
        axis = np.linspace(0, 2, 6)
        grid = [np.array([a, b, c]) for a in axis for b in axis for c in axis]
    assert (
        best <= min(ensemble.log_loss(Y_VAL, ensemble.combine(p, g, method)) for g in grid) + 1e-6
    )
    assert (w >= 0).all() and w[2] < min(w[0], w[1])  # the weakest member counts least


def test_loglinear_pool_is_a_weighted_geometric_mean():
    a, b = _probs(Y_VAL, 2.0, 3), _probs(Y_VAL, 1.0, 4)
    pooled = ensemble.combine([a, b], np.array([0.5, 0.5]))
    geometric = np.sqrt(a * b)
    np.testing.assert_allclose(pooled, geometric / geometric.sum(axis=1, keepdims=True), rtol=1e-10)
    np.testing.assert_allclose(ensemble.combine([a, b], np.array([1.0, 0.0])), a, rtol=1e-10)


def test_ensemble_is_a_run_the_readers_and_compare_accept(members, tmp_path, capsys):
    results, runs = members
    out = ensemble.build_ensemble(runs, results / "ensemble")
    assert artifacts.is_complete(out)
    artifacts.read_val_predictions(out)
    manifest = artifacts.read_manifest(out)
    assert manifest.kind == "ensemble"
    assert [m["name"] for m in manifest.members] == ["strong", "weak"]
    assert manifest.members[0]["data"]["val"]["sha256"] == "v" * 64
    assert manifest.members[0]["preds_val_sha256"] == files.file_sha256(
        runs[0] / artifacts.PREDS_VAL
    )
    # Accuracy and macro F1 are recomputed from the averaged probabilities it wrote.
    preds = artifacts.read_predictions(out)
    assert artifacts.read_metrics(out)["Accuracy"] == pytest.approx(
        (preds["y_pred"] == Y_TEST).mean()
    )
    mixed = ensemble.combine(
        [artifacts.read_predictions(r)[artifacts.PROB_COLUMNS].to_numpy() for r in runs],
        np.array(list(manifest.member_weights.values())),
        manifest.method,
    )
    np.testing.assert_allclose(preds[artifacts.PROB_COLUMNS].to_numpy(), mixed, atol=1e-12)
    # Latency is the members' summed, per batch size.
    latency = artifacts.read_latency(out)
    assert [r["p50_ms"] for r in latency["results"]] == pytest.approx([1.5 + 4.0, (1.5 + 4.0) / 4])
    runs_loaded = summary.load_runs(results, "ensemble", ["strong", "weak"])
    assert set(runs_loaded) == {"ensemble", "strong", "weak"}
    assert (
        cli.main(["compare", "--results_dir", str(results), "--runs", "ensemble", "strong", "weak"])
        == 0
    )
    assert "ensemble" in capsys.readouterr().out
    vs = manifest.vs_best_member
    assert vs["member"] == "strong" and 0 <= vs["p_value"] <= 1


@pytest.mark.parametrize(
    "split,filename,what",
    [("val", artifacts.PREDS_VAL, "validation"), ("test", artifacts.PREDICTIONS, "test")],
)
def test_members_with_different_rows_are_refused_by_name(tmp_path, split, filename, what):
    results = tmp_path / "results"
    a = make_member(results, "alpha", 3.0, 1)
    other = {"y_val": Y_VAL[::-1].copy()} if split == "val" else {"y_test": Y_TEST[::-1].copy()}
    b = make_member(results, "beta", 2.0, 2, **other)
    with pytest.raises(
        ensemble.EnsembleError, match=rf"'alpha'.*'beta'.*different {what} rows in {filename}"
    ):
        ensemble.build_ensemble([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_members_trained_on_different_split_files_are_refused(tmp_path):
    results = tmp_path / "results"
    a = make_member(results, "alpha", 3.0, 1)
    b = make_member(results, "beta", 2.0, 2, data=_data(test="x" * 64))
    with pytest.raises(
        ensemble.EnsembleError, match=r"'alpha'.*'beta'.*test rows.*data.test.sha256"
    ):
        ensemble.build_ensemble([a, b], tmp_path / "out")


def test_run_without_val_predictions_names_the_backfill_command(members, tmp_path, capsys):
    results, runs = members
    (runs[1] / artifacts.PREDS_VAL).unlink()
    status = cli.main(
        [
            "ensemble",
            "--runs",
            "strong",
            "weak",
            "--results_dir",
            str(results),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert f"{runs[1] / artifacts.PREDS_VAL} is missing" in err
    assert f"mathreport evaluate --run_dir {runs[1]} --write_val_preds" in err


def test_existing_output_and_nested_ensembles_are_refused(members, tmp_path):
    results, runs = members
    out = ensemble.build_ensemble(runs, results / "ensemble")
    before = (out / artifacts.METRICS).read_bytes()
    with pytest.raises(train.RunExistsError, match="--force"):
        ensemble.build_ensemble(runs, out)
    assert (out / artifacts.METRICS).read_bytes() == before
    with pytest.raises(ensemble.EnsembleError, match="itself an ensemble"):
        ensemble.build_ensemble([runs[0], out], tmp_path / "nested")


def test_bare_names_resolve_under_results(tmp_path):
    assert ensemble.resolve_run("minilm", tmp_path) == tmp_path / "minilm"
    assert ensemble.resolve_run("runs/minilm", tmp_path) == ensemble.Path("runs/minilm")


def test_pipeline_builds_the_ensemble_after_its_members(members, tmp_path, monkeypatch):
    from mathreport import pipeline

    results, runs = members
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in pipeline.DATA_FILES:
        (data_dir / name).write_text("Question,label\n")
    trained = []
    monkeypatch.setattr(pipeline, "execute", lambda *a, **k: trained.append(a))
    monkeypatch.setattr(pipeline, "run_report", lambda **k: {})
    pipeline.run_pipeline(["ensemble", "strong", "weak"], data_dir=data_dir, results_dir=results)
    assert (
        trained == []
    )  # the members were complete; "ensemble" is never sent to the training notebook
    assert ensemble.is_current(results / "ensemble")
    fitted = (results / "ensemble" / artifacts.MANIFEST).read_bytes()
    pipeline.run_pipeline(["strong", "weak", "ensemble"], data_dir=data_dir, results_dir=results)
    assert (
        results / "ensemble" / artifacts.MANIFEST
    ).read_bytes() == fitted  # current: not refitted
    _replace_probs(runs[1], artifacts.PREDS_VAL, _probs(Y_VAL, 8.0, 78))  # a member changed: refit
    assert not ensemble.is_current(results / "ensemble")
    pipeline.run_pipeline(["strong", "weak", "ensemble"], data_dir=data_dir, results_dir=results)
    assert ensemble.is_current(results / "ensemble")


@pytest.mark.slow  # trains its members
def test_saved_ensemble_predicts_the_weighted_average_of_its_members(small_data, tmp_path, capsys):
    """`mathreport predict` on an ensemble reloads each member's model and applies the fitted weights."""
    import json

    from mathreport import predict

    common = dict(
        train_path=small_data / "augmented_train.csv",
        val_path=small_data / "val_split.csv",
        test_path=small_data / "test_split.csv",
        bench=False,
        max_train_samples=200,
    )
    runs = [
        train.train(
            train.TrainConfig(model="tfidf", output_dir=tmp_path / name, imbalance=imb, **common)
        )
        for name, imb in (("a", "none"), ("b", "oversample"))
    ]
    out = ensemble.build_ensemble(runs, tmp_path / "ens")
    weights = np.array(list(artifacts.read_manifest(out).member_weights.values()))
    text = "Find the eigenvalues of the matrix [[2, 1], [1, 2]]."
    expected = ensemble.combine(
        [predict.load_classifier(r).predict_proba([text]) for r in runs], weights, "loglinear"
    )
    assert cli.main(["predict", "--run_dir", str(out), "--json", "--lang", "en", text]) == 0
    probs = json.loads(capsys.readouterr().out)["probabilities"]
    np.testing.assert_allclose(list(probs.values()), expected[0], atol=1e-12)
    assert cli.main(["bench", "--run_dir", str(out)]) == 2
    assert "sum of its members'" in capsys.readouterr().err


# --- issue 20: only whole, current runs; member paths; --force ------------------------------------------------------


def _finish(run):
    """Mark a synthetic member as `train` leaves a finished run: complete, with its files' SHA-256 recorded."""
    manifest = artifacts.read_manifest(run)
    manifest.status, manifest.outputs = "complete", artifacts.outputs_record(run)
    record.write(run, manifest)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("failed", "says the run is 'failed', not complete"),
        (
            "running",
            "incomplete: the process that wrote it is gone",
        ),  # e.g. killed right after metrics.json appeared
        ("preds_val changed", "preds_val.csv is not the file that the run of .* wrote"),
        ("locked", "is being written by PID"),
    ],
)
def test_a_member_that_is_not_a_whole_run_is_refused(members, tmp_path, hold_lock, fault, expected):
    """Issue 20, 1: `ensemble` exited 0 and wrote a complete ensemble of these."""
    import contextlib

    results, runs = members
    for run in runs:
        _finish(run)
    bad = runs[1]
    if fault in ("failed", "running"):
        manifest = artifacts.read_manifest(bad)
        manifest.status = fault
        record.write(bad, manifest)
    elif fault == "preds_val changed":
        _replace_probs(bad, artifacts.PREDS_VAL, _probs(Y_VAL, 8.0, 78))
    out = tmp_path / "out"
    with hold_lock(bad) if fault == "locked" else contextlib.nullcontext():
        with pytest.raises(artifacts.ArtifactError, match=expected):
            ensemble.build_ensemble(runs, out)
    assert not (out / artifacts.METRICS).exists() and not (out / artifacts.MANIFEST).exists()


def test_a_stale_ensemble_is_refused_by_every_reader(members, tmp_path, capsys):
    """Issue 20, 2: a member changed after the ensemble was fitted (retrained with --force)."""
    results, runs = members
    out = ensemble.build_ensemble(runs, results / "ensemble")
    artifacts.check_consistency(out)
    _replace_probs(runs[1], artifacts.PREDICTIONS, _probs(Y_TEST, 8.0, 79))
    with pytest.raises(
        artifacts.ArtifactError, match=r"is stale: its member .*weak has a different preds_test.csv"
    ):
        artifacts.check_consistency(out)
    with pytest.raises(artifacts.ArtifactError, match="--force"):
        ensemble.load_classifier(out)
    assert cli.main(["predict", "--run_dir", str(out), "What is 2+2?"]) == 2
    err = capsys.readouterr().err
    assert "is stale" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["compare", "--results-dir", str(results), "--runs", "ensemble", "strong"]) == 2
    assert "is stale" in capsys.readouterr().err


def test_member_paths_work_from_any_directory_and_after_a_move(members, tmp_path, monkeypatch):
    """Issue 20, 12: member paths were stored as given (relative), so an ensemble worked only where it was built."""
    import shutil

    results, runs = members
    monkeypatch.chdir(results)
    ensemble.build_ensemble(
        [ensemble.Path("strong"), ensemble.Path("weak")], ensemble.Path("ensemble")
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert ensemble.is_current(results / "ensemble")
    artifacts.check_consistency(results / "ensemble")
    moved = tmp_path / "moved"
    shutil.move(results, moved)  # the whole results folder, members and ensemble together
    artifacts.check_consistency(moved / "ensemble")
    manifest = artifacts.read_manifest(moved / "ensemble")
    assert [artifacts.member_dir(moved / "ensemble", m) for m in manifest.members] == [
        moved / "strong",
        moved / "weak",
    ]


def test_the_same_run_twice_is_refused_and_two_runs_of_one_name_are_not(members, tmp_path):
    """Issue 20, 12: a symlinked copy passed the duplicate check; two different folders named alike were refused."""
    results, runs = members
    link = tmp_path / "link"
    link.symlink_to(runs[0], target_is_directory=True)
    with pytest.raises(ensemble.EnsembleError, match="are the same run"):
        ensemble.build_ensemble([runs[0], link], tmp_path / "out")
    other = make_member(
        tmp_path / "other", "strong", 2.0, 5
    )  # a different run, also named "strong"
    out = ensemble.build_ensemble([runs[0], other], tmp_path / "out")
    names = [m["name"] for m in artifacts.read_manifest(out).members]
    assert len(set(names)) == 2


def test_force_over_a_trained_run_leaves_none_of_its_model(members, tmp_path):
    """Issue 20, 12: `ensemble --force` into a trained run's folder kept its model/, which predict would read."""
    results, runs = members
    out = make_member(tmp_path, "trained", 3.0, 9)
    artifacts.model_dir(out).mkdir()
    (out / "model" / "pipeline.joblib").write_bytes(b"x")
    (out / "model.onnx").write_bytes(b"x")
    ensemble.build_ensemble(runs, out, force=True)
    assert not (out / "model").exists() and not (out / "model.onnx").exists()
    assert ensemble.is_ensemble(out)


def test_an_ensemble_of_a_member_that_is_no_longer_whole_is_refused(members, tmp_path, hold_lock):
    """Issue 20, 1: `report` refused the member itself but accepted the ensemble built on it."""
    results, runs = members
    for run in runs:
        _finish(run)
    out = ensemble.build_ensemble(runs, results / "ensemble")
    artifacts.check_consistency(out)
    with hold_lock(runs[0]):  # the member is being retrained: its files are about to change
        with pytest.raises(
            artifacts.RunLockedError, match="not whole now: .*is being written by PID"
        ):
            artifacts.check_consistency(out)
    manifest = artifacts.read_manifest(runs[1])
    manifest.status = "failed"
    record.write(runs[1], manifest)
    with pytest.raises(artifacts.ArtifactError, match="not whole now: .*'failed', not complete"):
        artifacts.check_consistency(out)
    assert not ensemble.is_current(out)


def test_a_run_file_renamed_in_artifacts_is_renamed_for_the_ensemble(tmp_path, monkeypatch):
    """Issue 30: a run folder's names are artifacts' alone; the ensemble writes what they say."""
    renamed = {
        "PREDICTIONS": "test_probs.csv",
        "PREDS_VAL": "val_probs.csv",
        "HISTORY": "epochs.csv",
        "LATENCY": "timing.json",
        "METRICS": "scores.json",
        "CLASS_REPORT": "per_class.json",
    }
    for name, new in renamed.items():
        monkeypatch.setattr(artifacts, name, new)
    required = (artifacts.METRICS, artifacts.CLASS_REPORT, artifacts.PREDICTIONS, artifacts.HISTORY)
    monkeypatch.setattr(artifacts, "REQUIRED", required)
    runs = [make_member(tmp_path, "strong", 3.0, 1), make_member(tmp_path, "weak", 1.5, 2)]
    out = ensemble.build_ensemble(runs, tmp_path / "ensemble")
    assert sorted(p.name for p in out.iterdir()) == sorted([*renamed.values(), artifacts.MANIFEST])
    artifacts.check_consistency(out)
    recorded = set(artifacts.read_manifest(out).outputs)
    assert recorded == {artifacts.PREDICTIONS, artifacts.PREDS_VAL, artifacts.HISTORY}


def test_whether_a_run_combines_others_is_its_kinds_trait(members, tmp_path, monkeypatch):
    """Issue 30: no `kind == "ensemble"`: a kind that combines runs is an ensemble everywhere."""
    from mathreport import presets

    _, runs = members
    out = ensemble.build_ensemble(runs, tmp_path / "ens")
    manifest = artifacts.read_manifest(out)
    manifest.kind = "stack"
    record.write(out, manifest)
    assert not ensemble.is_ensemble(out)
    stack = presets.Kind("stack", neural=False, combines_runs=True)
    monkeypatch.setitem(presets.KINDS, "stack", stack)
    assert ensemble.is_ensemble(out)
    with pytest.raises(ensemble.EnsembleError, match="is itself an ensemble"):
        ensemble.load_member(out)
