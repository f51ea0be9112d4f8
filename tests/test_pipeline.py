"""pipeline: which data it uses, which models it trains (and how), before the report."""

from __future__ import annotations

import shutil

import pytest

from mathreport import artifacts, cli, demo, pipeline
from mathreport.errors import ConfigError, DataError


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
    monkeypatch.setattr(
        pipeline, "execute", lambda nb, out, params, **k: calls.setdefault(params["model"], params)
    )
    reported = []
    monkeypatch.setattr(pipeline, "run_report", lambda **k: reported.append(k["model"]) or {})
    monkeypatch.setattr(
        pipeline, "write_comparisons", lambda results_dir, names: results_dir / "comparisons.json"
    )
    pipeline.run_pipeline(
        ["done", "stopped", "broken", "new"], data_dir=data_dir, results_dir=results
    )
    assert sorted(calls) == ["broken", "new", "stopped"]
    assert (calls["stopped"]["resume"], calls["stopped"]["force"]) == (True, False)
    assert (calls["broken"]["resume"], calls["broken"]["force"]) == (False, True)
    assert (calls["new"]["resume"], calls["new"]["force"]) == (False, False)
    assert calls["new"]["train_path"] == str(data_dir / "augmented_train.csv")
    assert reported == ["new"]  # the report is about the last model named unless told


def _split_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in pipeline.DATA_FILES:
        (folder / name).write_text("Question,label\n")
    return folder


@pytest.fixture
def captured(monkeypatch):
    """What the pipeline would run, without running it: {"train": {model: (parameters, kernel)}, "report": {...}}."""
    calls: dict = {"train": {}, "report": None}
    monkeypatch.setattr(
        pipeline,
        "execute",
        lambda nb, out, params, kernel=None, **k: calls["train"].setdefault(
            params["model"], (params, kernel)
        ),
    )
    monkeypatch.setattr(pipeline, "run_report", lambda **k: calls.update(report=k) or {})
    monkeypatch.setattr(
        pipeline, "write_comparisons", lambda results_dir, names: results_dir / "comparisons.json"
    )
    return calls


def test_pipeline_passes_weights_batch_device_and_trainer_flags_to_the_notebook(tmp_path, captured):
    weights = tmp_path / "weights"
    weights.mkdir()
    data_dir = _split_files(tmp_path / "data")
    code = cli.main(
        [
            "pipeline",
            "--models",
            "tiny-qwen2",
            "--model_path",
            str(weights),
            "--batch_size",
            "4",
            "--device",
            "cpu",
            "--no-load_in_4bit",
            "--gradient_accumulation_steps",
            "2",
            "--data_dir",
            str(data_dir),
            "--results_dir",
            str(tmp_path / "results"),
            "--kernel",
            "gpu-env",
            "--no-pdf",
        ]
    )
    assert code == 0
    params, kernel = captured["train"]["tiny-qwen2"]
    assert (
        params["model_path"],
        params["batch_size"],
        params["device"],
        params["load_in_4bit"],
    ) == (str(weights.resolve()), 4, "cpu", False)
    assert params["training_args"] == ["--gradient_accumulation_steps", "2"]
    assert kernel == "gpu-env" and captured["report"]["kernel"] == "gpu-env"


def test_the_training_notebook_declares_every_parameter_the_pipeline_passes(tmp_path, captured):
    import papermill

    from mathreport import export

    weights = tmp_path / "weights"
    weights.mkdir()
    pipeline.run_pipeline(
        ["tfidf", "tiny-qwen2"],
        data_dir=_split_files(tmp_path / "data"),
        results_dir=tmp_path / "results",
        model_path=[str(weights)],
        batch_size=4,
        training_args=["--warmup_steps", "1"],
    )
    declared = set(papermill.inspect_notebook(str(export.TRAIN_NOTEBOOK)))
    for params, _ in captured["train"].values():  # else papermill warns "Passed unknown parameter"
        assert set(params) <= declared, set(params) - declared
    # TF-IDF loads no weights and refuses Trainer's flags: it gets none of them.
    tfidf, _ = captured["train"]["tfidf"]
    assert (
        tfidf["model_path"] is None and "training_args" not in tfidf and "batch_size" not in tfidf
    )
    assert captured["train"]["tiny-qwen2"][0]["model_path"] == str(weights.resolve())


def test_model_path_is_given_to_exactly_one_model_or_by_name(tmp_path, captured):
    qwen, mistral = tmp_path / "qwen", tmp_path / "mistral"
    qwen.mkdir()
    mistral.mkdir()
    data_dir = (
        tmp_path / "data"
    )  # no split files: a refusal must come before the demo corpus is written
    with pytest.raises(
        ConfigError, match=r"2 of --models load weights.*tiny-qwen2=DIR tiny-mistral=DIR"
    ):
        pipeline.run_pipeline(
            ["tiny-qwen2", "tiny-mistral"], data_dir=data_dir, model_path=[str(qwen)]
        )
    with pytest.raises(ConfigError, match="tfidf loads no weights"):
        pipeline.run_pipeline(
            ["tfidf", "tiny-qwen2"], data_dir=data_dir, model_path=[f"tfidf={qwen}"]
        )
    with pytest.raises(ConfigError, match="minilm is not one of --models"):
        pipeline.run_pipeline(["tiny-qwen2"], data_dir=data_dir, model_path=[f"minilm={qwen}"])
    with pytest.raises(ConfigError, match="does not exist"):
        pipeline.run_pipeline(
            ["tiny-qwen2"], data_dir=data_dir, model_path=[str(tmp_path / "missing")]
        )
    with pytest.raises(ConfigError, match="--no_such_flag"):
        pipeline.run_pipeline(
            ["tiny-qwen2"], data_dir=data_dir, training_args=["--no_such_flag", "1"]
        )
    with pytest.raises(ConfigError, match="--batch_size 0: must be an integer >= 1"):
        pipeline.run_pipeline(["tiny-qwen2"], data_dir=data_dir, batch_size=0)
    assert not data_dir.exists() and captured["train"] == {}
    pipeline.run_pipeline(
        ["tiny-qwen2", "tiny-mistral"],
        data_dir=_split_files(data_dir),
        results_dir=tmp_path / "results",
        model_path=[f"tiny-mistral={mistral}", f"tiny-qwen2={qwen}"],
    )
    assert {name: params["model_path"] for name, (params, _) in captured["train"].items()} == {
        "tiny-qwen2": str(qwen.resolve()),
        "tiny-mistral": str(mistral.resolve()),
    }


@pytest.mark.slow  # trains tiny-qwen2 through the notebook, in a kernel
def test_pipeline_trains_with_the_given_weights_batch_and_trainer_flags(
    small_data, tmp_path, monkeypatch
):
    from mathreport import tiny

    monkeypatch.setattr(
        pipeline, "run_report", lambda **k: {}
    )  # the report's own call is checked above
    weights = tiny.ensure_tiny_model("qwen2")
    results = tmp_path / "results"
    code = cli.main(
        [
            "pipeline",
            "--models",
            "tiny-qwen2",
            "--model_path",
            str(weights),
            "--batch_size",
            "4",
            "--device",
            "cpu",
            "--num_epochs",
            "1",
            "--warmup_steps",
            "1",
            "--data_dir",
            str(small_data),
            "--results_dir",
            str(results),
            "--no-pdf",
        ]
    )
    assert code == 0
    manifest = artifacts.read_manifest(results / "tiny-qwen2")
    assert manifest.status == "complete" and manifest.weights == str(weights.resolve())
    assert manifest.hyperparameters["batch_size"] == 4
    assert manifest.config["training_args"] == ["--warmup_steps", "1"]
    assert "--model_path" in manifest.command and "--warmup_steps 1" in manifest.command
