"""pipeline: which data it uses, which models it trains (and how), before the report."""

from __future__ import annotations

import shutil

import pytest

from mathreport import artifacts, demo, pipeline
from mathreport.errors import DataError


def test_existing_split_files_are_used_as_they_are(tmp_path):
    for name in pipeline.DATA_FILES:
        (tmp_path / name).write_text("Question,label\nx,0\n")
    assert pipeline.ensure_data(tmp_path) == "existing"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(pipeline.DATA_FILES)


def test_some_split_files_are_never_mixed_with_demo_data(tmp_path):
    (tmp_path / "val_split.csv").write_text("Question,label\nx,0\n")
    with pytest.raises(DataError, match="augmented_train.csv, test_split.csv"):
        pipeline.ensure_data(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["val_split.csv"]


def test_no_split_files_means_the_demo_corpus(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(demo, "write_demo_corpus", lambda out, **k: written.append(out) or {})
    assert pipeline.ensure_data(tmp_path / "data") == "demo"
    assert written == [tmp_path / "data"]


def test_only_missing_or_unfinished_runs_are_trained(trained_results, tmp_path, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(trained_results / "tfidf", results / "done")  # complete: left alone
    (results / "stopped" / artifacts.CHECKPOINTS / "checkpoint-4").mkdir(parents=True)  # resumed
    (results / "broken").mkdir(parents=True)
    (results / "broken" / artifacts.METRICS).write_text("{}")  # incomplete, no checkpoint: redone
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in pipeline.DATA_FILES:
        (data_dir / name).write_text("Question,label\n")
    calls = {}
    monkeypatch.setattr(pipeline, "execute", lambda nb, out, params, **k: calls.setdefault(params["model"], params))
    reported = []
    monkeypatch.setattr(pipeline, "run_report", lambda **k: reported.append(k["model"]) or {})
    monkeypatch.setattr(pipeline, "write_comparisons", lambda results_dir, names: results_dir / "comparisons.json")
    pipeline.run_pipeline(["done", "stopped", "broken", "new"], data_dir=data_dir, results_dir=results)
    assert sorted(calls) == ["broken", "new", "stopped"]
    assert (calls["stopped"]["resume"], calls["stopped"]["force"]) == (True, False)
    assert (calls["broken"]["resume"], calls["broken"]["force"]) == (False, True)
    assert (calls["new"]["resume"], calls["new"]["force"]) == (False, False)
    assert calls["new"]["train_path"] == str(data_dir / "augmented_train.csv")
    assert reported == ["new"]  # the report is about the last model named unless told
