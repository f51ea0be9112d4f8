"""run.json as a typed record: round trips, unknown keys kept, old files migrated, bad files named."""

from __future__ import annotations

import json

import pytest

from mathreport import record
from mathreport.errors import ArtifactError


def _trained() -> record.RunRecord:
    return record.RunRecord(
        model="minilm",
        kind="transformer",
        status="complete",
        command="mathreport train --model minilm",
        hyperparameters={"learning_rate": 1e-3, "max_length": 128},
        data={"test": record.DataFile("data/test_split.csv", "ab" * 32, 777)},
        weights="/cache/minilm",
        training={"train_seconds": 12.5},
        outputs={"preds_test.csv": {"sha256": "cd"}},
    )


def test_a_record_survives_writing_and_reading(tmp_path):
    original = _trained()
    record.write(tmp_path, original)
    again = record.read(tmp_path)
    assert again == original
    assert again.split("test").rows == 777
    assert (
        again.split("train") == record.DataFile()
    )  # a split the run did not record reads as empty
    assert again.train_seconds == 12.5 and again.trained


def test_the_file_has_a_version_and_says_null_where_null_is_an_answer(tmp_path):
    record.write(tmp_path, _trained())
    raw = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert raw["version"] == record.VERSION
    assert (
        raw["quantization"] is None and raw["load_in_4bit"] is False
    )  # "not quantised" is recorded
    assert (
        "members" not in raw and "end_time" not in raw
    )  # what a trained run does not have is left out


def test_keys_this_version_does_not_know_are_written_back(tmp_path):
    raw = {
        "version": record.VERSION,
        "model": "x",
        "kind": "transformer",
        "from_the_future": {"a": [1, 2]},
    }
    (tmp_path / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    rec = record.read(tmp_path)
    assert rec.extra == {"from_the_future": {"a": [1, 2]}}
    record.write(tmp_path, rec)
    assert json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["from_the_future"] == {
        "a": [1, 2]
    }


def test_an_old_ensemble_record_is_migrated(tmp_path):
    """Version 1 (no version key) kept an ensemble's member weights under "weights"."""
    raw = {
        "model": "ensemble",
        "kind": "ensemble",
        "weights": {"tfidf": 0.25, "minilm": 0.75},
        "members": [{"name": "tfidf", "weight": 0.25}, {"name": "minilm", "weight": 0.75}],
        "method": "linear",
    }
    (tmp_path / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    rec = record.read(tmp_path)
    assert rec.member_weights == {"tfidf": 0.25, "minilm": 0.75}
    assert rec.weights is None and rec.version == record.VERSION


def test_stamp_sets_the_end_time_only_when_the_run_stops():
    rec = record.RunRecord(model="m", kind="tfidf")
    rec.stamp("running")
    assert rec.status == "running" and rec.end_time is None
    rec.stamp("failed")
    assert rec.status == "failed" and rec.end_time is not None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "expected a JSON object at the top, found list"),
        ('{"data": [1]}', "'data' must be an object of splits"),
        (
            '{"status": "complete", "model": "m", "data": {}, "members": [], "argv": [], "kind": "x", "extra": 1}',
            "",
        ),
    ],
)
def test_a_bad_run_json_is_named(tmp_path, text, expected):
    (tmp_path / "run.json").write_text(text, encoding="utf-8")
    if not expected:  # a key named like an internal field is data, not a crash
        assert record.read(tmp_path).extra == {"extra": 1}
        return
    with pytest.raises(ArtifactError, match=expected) as info:
        record.read(tmp_path)
    assert (
        str(tmp_path / "run.json") in str(info.value) and info.value.path == tmp_path / "run.json"
    )


def test_a_missing_run_json_is_named(tmp_path):
    with pytest.raises(ArtifactError, match="run.json is missing"):
        record.read(tmp_path)
    assert record.read_if_present(tmp_path) is None


# --- issue 28, 1: a run.json from a newer mathreport -------------------------------------------------------------


def test_a_record_from_a_newer_version_is_refused_in_one_line(tmp_path):
    rec = _trained()
    rec.version = record.VERSION + 97
    record.write(tmp_path, rec)
    with pytest.raises(ArtifactError) as info:
        record.read(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "run.json") in message
    assert (
        f"version {record.VERSION + 97}" in message and f"up to version {record.VERSION}" in message
    )
    assert "pip install -U mathreport" in message


@pytest.mark.parametrize("version", [record.VERSION, 1])
def test_this_version_and_older_ones_are_read(tmp_path, version):
    raw = _trained().to_dict()
    raw["version"] = version
    (tmp_path / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    assert record.read(tmp_path).model == "minilm"


@pytest.mark.parametrize("version", ["3", 2.5, 0, True, None])
def test_a_version_that_is_not_a_whole_number_is_named(tmp_path, version):
    raw = {**_trained().to_dict(), "version": version}
    (tmp_path / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ArtifactError, match="'version' must be a whole number"):
        record.read(tmp_path)
