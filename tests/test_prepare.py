"""prepare: one raw CSV into three leakage-free split files and a report that accounts for every row."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mathreport import data, labels, prepare
from mathreport.errors import DataError

WORDS = ["equation", "triangle", "derivative", "dice", "prime", "arrangements", "matrix", "group"]


def _raw_rows() -> list[tuple[str, str]]:
    """10 questions per class (labels as ids and as names), a copy differing in case and spacing, an exact copy,
    and one question given two labels (majority 1, minority 0)."""
    rows = [
        (
            f"Problem {i} about a {word} number {i * 7}",
            str(label) if i % 2 else labels.name(label, "en"),
        )
        for label, word in enumerate(WORDS)
        for i in range(10)
    ]
    rows += [("PROBLEM 0   about a equation number 0", "0"), (rows[5][0], rows[5][1])]
    rows += [("Which triangle is right?", "1")] * 2 + [("Which triangle is right?", "0")]
    return rows


def _write_raw(path: Path, sep: str = ",", bom_crlf: bool = False) -> Path:
    with open(path, "w", encoding="utf-8-sig" if bom_crlf else "utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=sep, lineterminator="\r\n" if bom_crlf else "\n")
        writer.writerow(["Question", "label"])
        writer.writerows(_raw_rows())
    return path


def test_prepare_writes_splits_that_account_for_every_row_and_share_no_question(tmp_path):
    raw = _write_raw(tmp_path / "raw.csv")
    report = prepare.prepare(raw, tmp_path / "data", val_size=0.2, test_size=0.2, seed=3)
    splits = {
        name: data.read_split(tmp_path / "data" / file) for name, file in data.SPLIT_FILES.items()
    }
    n_in = len(_raw_rows())
    dropped = report["cleaning"]["rows_dropped"]
    assert report["rows_in"] == n_in == report["rows_kept"] + sum(dropped.values())
    assert (
        dropped["duplicate_exact"] == 2 and dropped["duplicate_normalized"] == 1
    )  # the copy; the 2nd "1" vote
    assert (
        dropped["label_conflict_minority"] == 1
        and report["label_conflicts"]["resolved_by_majority"] == 1
    )
    assert sum(len(f) for f in splits.values()) == report["rows_kept"] == 81
    assert {name: len(frame) for name, frame in splits.items()} == report["rows_per_split"]
    keys = {
        name: set(frame["Question"].map(data.normalize_question)) for name, frame in splits.items()
    }
    assert (
        not (keys["train"] & keys["val"])
        and not (keys["train"] & keys["test"])
        and not (keys["val"] & keys["test"])
    )
    for name, frame in splits.items():  # stratified: every class in every split
        assert sorted(frame["label"].unique()) == list(labels.CLASS_IDS), name
    on_disk = json.loads((tmp_path / "data" / data.REPORT_FILE).read_text(encoding="utf-8"))
    assert (
        on_disk["accounting"] == report["accounting"]
        and on_disk["input"]["sha256"] == report["input"]["sha256"]
    )


def test_the_same_seed_gives_the_same_files(tmp_path):
    raw = _write_raw(tmp_path / "raw.csv")
    for out in ("a", "b"):
        prepare.prepare(raw, tmp_path / out, seed=5)
    for file in data.SPLIT_FILES.values():
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_a_second_prepare_is_refused_without_force_and_keeps_the_first_with_it(tmp_path):
    raw = _write_raw(tmp_path / "raw.csv")
    prepare.prepare(raw, tmp_path / "data", seed=1)
    first = (tmp_path / "data" / data.TRAIN_FILE).read_bytes()
    with pytest.raises(DataError, match="--force"):
        prepare.prepare(raw, tmp_path / "data", seed=2)
    assert (tmp_path / "data" / data.TRAIN_FILE).read_bytes() == first
    report = prepare.prepare(raw, tmp_path / "data", seed=2, force=True)
    backup = Path(report["replaced"])
    assert backup.parent == tmp_path / "data" and (backup / data.TRAIN_FILE).read_bytes() == first
    assert (tmp_path / "data" / data.TRAIN_FILE).read_bytes() != first


@pytest.mark.parametrize(
    ("val", "test", "flag"),
    [(0, 0.1, "--val_size"), (0.1, 1.5, "--test_size"), (0.5, 0.5, "must be below 1")],
)
def test_split_sizes_are_checked_before_anything_is_read(tmp_path, val, test, flag):
    with pytest.raises(DataError, match=flag):
        prepare.prepare(
            tmp_path / "does-not-exist.csv", tmp_path / "data", val_size=val, test_size=test
        )
    assert not (tmp_path / "data").exists()


def test_oversampling_touches_the_train_split_only(tmp_path):
    raw = tmp_path / "raw.csv"
    rows = [
        r
        for r in _raw_rows()
        if not r[0].startswith("Problem")
        or int(r[0].split()[1]) < 6
        or r[0].split()[4] in ("equation", "triangle")
    ]  # classes 2..7 smaller than 0 and 1
    pd.DataFrame(rows, columns=["Question", "label"]).to_csv(raw, index=False)
    report = prepare.prepare(
        raw, tmp_path / "data", augment="oversample", val_size=0.2, test_size=0.2
    )
    added = report["augmentation"]["rows_added"]
    assert (
        added > 0
        and report["rows_per_file"][data.TRAIN_FILE] == report["rows_per_split"]["train"] + added
    )
    assert report["rows_per_file"][data.VAL_FILE] == report["rows_per_split"]["val"]


# --- issue 28, 6: the CSV a spreadsheet set to Turkish saves ---------------------------------------------------------


def test_a_semicolon_csv_with_bom_and_crlf_gives_the_same_splits_as_the_comma_one(tmp_path):
    comma = _write_raw(tmp_path / "comma.csv")
    excel = _write_raw(tmp_path / "excel.csv", sep=";", bom_crlf=True)
    prepare.prepare(comma, tmp_path / "a", seed=4)
    report = prepare.prepare(excel, tmp_path / "b", seed=4)
    assert report["rows_in"] == len(_raw_rows())
    for file in data.SPLIT_FILES.values():
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
        assert (
            (tmp_path / "b" / file).read_text(encoding="utf-8").startswith("Question,label\n")
        )  # written with ','


def test_the_command_says_in_one_line_on_stderr_that_it_read_semicolons(tmp_path):
    excel = _write_raw(tmp_path / "excel.csv", sep=";", bom_crlf=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mathreport.cli",
            "prepare",
            "--input",
            str(excel),
            "--out-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    told = [line for line in done.stderr.splitlines() if "';'-separated" in line]
    assert len(told) == 1 and str(excel) in told[0] and "Question;label" in told[0]
