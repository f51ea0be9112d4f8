"""The run-directory schema: atomic writes and validating reads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts


def _probs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(8), size=n)


def test_predictions_round_trip_exactly(tmp_path):
    probs = _probs(20)
    y_true = np.arange(20) % 8
    artifacts.write_predictions(tmp_path, y_true, probs, [f"q{i}" for i in range(20)])
    frame = artifacts.read_predictions(tmp_path)
    assert (frame["y_pred"].to_numpy() == probs.argmax(1)).all()
    # Metrics are computed from the file, so the CSV must carry the probabilities bit for bit.
    assert np.array_equal(frame[artifacts.PROB_COLUMNS].to_numpy(), probs)
    assert list(frame["text"]) == [f"q{i}" for i in range(20)]


def test_missing_file_names_file_and_command(tmp_path):
    run = tmp_path / "qwen"
    run.mkdir()
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.read_metrics(run)
    assert str(run / "metrics.json") in str(err.value)
    assert "mathreport train --model qwen" in str(err.value)


def test_probabilities_not_summing_to_one_are_refused(tmp_path):
    probs = _probs(5)
    probs[3] *= 0.5
    artifacts.write_csv(tmp_path / "preds_test.csv", artifacts.predictions_frame(np.zeros(5, int), probs))
    with pytest.raises(artifacts.ArtifactError, match=r"line 5: probabilities must .* sum 0\.5"):
        artifacts.read_predictions(tmp_path)


def test_y_pred_not_argmax_is_refused(tmp_path):
    probs = _probs(6)
    frame = artifacts.predictions_frame(np.zeros(6, int), probs)
    frame.loc[2, "y_pred"] = (frame.loc[2, "y_pred"] + 1) % 8
    artifacts.write_csv(tmp_path / "preds_test.csv", frame)
    with pytest.raises(artifacts.ArtifactError, match="line 4: y_pred=.* is not the argmax"):
        artifacts.read_predictions(tmp_path)


def test_label_out_of_range_is_refused(tmp_path):
    frame = artifacts.predictions_frame(np.zeros(3, int), _probs(3))
    frame.loc[1, "y_true"] = 9
    artifacts.write_csv(tmp_path / "preds_test.csv", frame)
    with pytest.raises(artifacts.ArtifactError, match="line 3, column 'y_true'.*found 9"):
        artifacts.read_predictions(tmp_path)


def test_metrics_out_of_range_is_refused(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"Accuracy": 1.5}))
    with pytest.raises(artifacts.ArtifactError, match="'Accuracy' must be a number in"):
        artifacts.read_metrics(tmp_path)


def test_write_json_refuses_nan_and_leaves_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    artifacts.write_json(path, {"Accuracy": 0.5})
    with pytest.raises(artifacts.ArtifactError, match="non-finite"):
        artifacts.write_json(path, {"Accuracy": float("nan")})
    assert json.loads(path.read_text()) == {"Accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_atomic_write_keeps_old_content_when_writer_fails(tmp_path):
    path = tmp_path / "history.csv"
    artifacts.write_csv(path, pd.DataFrame({"epoch": [1]}))

    class Boom(pd.DataFrame):
        def to_csv(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        artifacts.write_csv(path, Boom({"epoch": [2]}))
    assert path.read_text().splitlines() == ["epoch", "1"]


def test_find_runs_lists_only_complete_runs(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metrics.json").write_text("{}")
    full = tmp_path / "full"
    full.mkdir()
    for name in artifacts.REQUIRED:
        (full / name).write_text("x")
    assert artifacts.find_runs(tmp_path) == ["full"]


def test_written_files_get_the_usual_mode_not_private(tmp_path):
    import os
    import stat

    path = artifacts.write_json(tmp_path / "metrics.json", {"Accuracy": 0.5})
    assert stat.S_IMODE(os.stat(path).st_mode) == artifacts.umask_mode()
