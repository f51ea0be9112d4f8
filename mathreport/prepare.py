"""`mathreport prepare`: one raw CSV into the three split files and `prepare_report.json`; the Kaggle download.

The rules (reading, cleaning, splitting, leakage) are `data`'s; this module applies them in order and writes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mathreport import data, files, labels
from mathreport.errors import DataError

log = logging.getLogger(__name__)

BACKUP_PREFIX = "replaced-"


def existing_split_files(out_dir: Path) -> list[str]:
    """The files of an earlier prepare that `out_dir` holds."""
    return [
        name
        for name in (*data.SPLIT_FILES.values(), data.REPORT_FILE)
        if (Path(out_dir) / name).exists()
    ]


def back_up(out_dir: Path, names: list[str], move: bool = False) -> Path:
    """Hard-link (or copy; with `move`, move) the files `names` of `out_dir` into a new `replaced-<time>` folder."""
    out_dir = Path(out_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    backup = out_dir / f"{BACKUP_PREFIX}{stamp}"
    n = 1
    while backup.exists():
        n += 1
        backup = out_dir / f"{BACKUP_PREFIX}{stamp}-{n}"
    backup.mkdir()
    for name in names:
        if move:
            os.replace(out_dir / name, backup / name)
            continue
        try:
            os.link(out_dir / name, backup / name)
        except OSError:
            shutil.copy2(out_dir / name, backup / name)
    return backup


def _to_csv(frame: pd.DataFrame) -> str:
    return frame[[data.TEXT_COL, data.LABEL_COL]].to_csv(index=False, lineterminator="\n")


def _check_params(val_size: float, test_size: float, augment: str, conflict_policy: str) -> None:
    for flag, value in (("--val_size", val_size), ("--test_size", test_size)):
        if not (isinstance(value, (int, float)) and 0 < value < 1):
            raise DataError(f"{flag} {value!r}: must be a fraction in (0, 1), e.g. 0.1")
    if val_size + test_size >= 1:
        raise DataError(
            f"--val_size {val_size} + --test_size {test_size} = {val_size + test_size:g}: "
            "val_size + test_size must be below 1, or nothing is left to train on"
        )
    if augment not in data.AUGMENT_METHODS:
        raise ValueError(f"augment must be one of {data.AUGMENT_METHODS}, got {augment!r}")
    if conflict_policy not in data.CONFLICT_POLICIES:
        raise ValueError(
            f"conflict_policy must be one of {data.CONFLICT_POLICIES}, got {conflict_policy!r}"
        )


def prepare(
    input_path: str | Path,
    out_dir: str | Path,
    text_col: str = data.TEXT_COL,
    label_col: str = data.LABEL_COL,
    val_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    augment: str = "none",
    *,
    conflict_policy: str = "majority",
    oversample_target: str | float = "median",
    source: str = "file",
    source_info: Mapping[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Validate, clean and split a raw CSV into the three split files and `prepare_report.json`; returns the report.

    Labels may be ids 0-7 or class names. Bad input raises a DataError naming the file and line before anything is
    written. source: "file", "kaggle" or "demo", recorded with `source_info` in the report. force: replace the split
    files an `out_dir` already holds, kept in a backup folder (the report's `replaced`); refused without it.
    """
    _check_params(val_size, test_size, augment, conflict_policy)
    input_path, out_dir = Path(input_path), Path(out_dir)
    existing = existing_split_files(out_dir)
    if existing and not force:
        raise DataError(
            f"{out_dir} already holds {', '.join(existing)} from an earlier prepare; refusing to replace "
            f"them. Pass --force to replace them (the old ones are kept in "
            f"{out_dir}/{BACKUP_PREFIX}<time>/), or choose another --out_dir"
        )
    table = data.read_table(
        input_path, text_col, label_col, "give the raw CSV (e.g. Kaggle's train.csv)"
    )
    kept, cleaning = data.clean_questions(table, conflict_policy)
    if kept.empty:
        raise DataError(f"{input_path}: no rows left after cleaning ({cleaning['rows_dropped']})")
    if kept[data.LABEL_COL].nunique() < 2:
        raise DataError(
            f"{input_path}: every question is of class {data.class_list(kept[data.LABEL_COL].unique())}; a "
            "classifier needs at least two classes"
        )
    try:
        train, val, test, warnings = data.split_stratified(kept, val_size, test_size, seed)
    except DataError as err:
        raise DataError(f"{input_path}: {err}") from None
    counts = {
        "train": data.class_counts(train),
        "val": data.class_counts(val),
        "test": data.class_counts(test),
    }
    augmentation: dict[str, Any] = {"method": "none", "rows_added": 0}
    if augment == "oversample":
        train, augmentation = data.oversample_minority(train, seed, oversample_target)
        counts = {
            "train_before_augmentation": counts["train"],
            **counts,
            "train": data.class_counts(train),
        }
    # De-duplication before splitting makes leakage impossible; checked anyway, as on the files `train` reads.
    leakage = data.assert_no_leakage({"train": train, "val": val, "test": test})

    rows_split = {
        "train": len(train) - augmentation["rows_added"],
        "val": len(val),
        "test": len(test),
    }
    report = {
        "source": source,
        "source_info": dict(source_info or {}),
        "input": {
            "path": str(input_path),
            "sha256": files.file_sha256(input_path),
            "text_col": text_col,
            "label_col": label_col,
        },
        "params": {
            "val_size": val_size,
            "test_size": test_size,
            "seed": seed,
            "augment": augment,
            "conflict_policy": conflict_policy,
            "oversample_target": oversample_target if augment == "oversample" else None,
        },
        "rows_in": cleaning["rows_in"],
        "rows_kept": cleaning["rows_kept"],
        "cleaning": {
            "rows_changed": cleaning["rows_changed"],
            "rows_dropped": cleaning["rows_dropped"],
        },
        "accounting": (
            f"rows_in {cleaning['rows_in']} = rows_kept {cleaning['rows_kept']} "
            f"+ rows_dropped {sum(cleaning['rows_dropped'].values())}; "
            f"rows_kept = train {rows_split['train']} + val {rows_split['val']} + test {rows_split['test']}"
        ),
        "unique_questions_in": cleaning["unique_questions_in"],
        "label_conflicts": cleaning["label_conflicts"],
        "dropped_examples": cleaning["dropped_examples"],
        "files": dict(data.SPLIT_FILES),
        "rows_per_split": rows_split,
        "rows_per_file": {
            data.TRAIN_FILE: len(train),
            data.VAL_FILE: len(val),
            data.TEST_FILE: len(test),
        },
        "class_names": labels.names("tr"),
        "class_counts": counts,
        "augmentation": augmentation,
        "leakage": leakage,
        "warnings": warnings
        + data.coverage_warnings({name: counts[name] for name in ("train", "val", "test")}),
    }
    assert sum(rows_split.values()) == report["rows_kept"]

    out_dir.mkdir(parents=True, exist_ok=True)
    if existing:
        report["replaced"] = str(back_up(out_dir, existing))
    files.write_texts(
        {
            out_dir / data.TRAIN_FILE: _to_csv(train),
            out_dir / data.VAL_FILE: _to_csv(val),
            out_dir / data.TEST_FILE: _to_csv(test),
            out_dir / data.REPORT_FILE: json.dumps(report, ensure_ascii=False, indent=2) + "\n",
        }
    )
    log.info(
        "prepared %s: %d rows in, %d kept (train %d, val %d, test %d) -> %s",
        input_path,
        report["rows_in"],
        report["rows_kept"],
        len(train),
        len(val),
        len(test),
        out_dir,
    )
    return report


def download_kaggle(
    competition: str = data.KAGGLE_COMPETITION, dest: str | Path = "data/kaggle"
) -> Path:
    """Download a Kaggle competition's files with the official `kaggle` client; the path of its train.csv."""
    dest = Path(dest)
    setup = (
        "put your API token in ~/.kaggle/kaggle.json (chmod 600; from kaggle.com > Settings > API > "
        "Create New Token) or set KAGGLE_USERNAME and KAGGLE_KEY"
    )
    try:
        import kaggle  # authenticates on import and fails there without credentials
    except ImportError:
        raise DataError(
            f"the 'kaggle' package is not installed: pip install 'mathreport[kaggle]' (or pip install "
            f"kaggle), then {setup}"
        ) from None
    except (
        Exception,
        SystemExit,
    ) as err:  # older clients raise OSError, newer ones may call exit()
        raise DataError(f"kaggle could not authenticate ({_one_line(err)}): {setup}") from None
    dest.mkdir(parents=True, exist_ok=True)
    try:
        kaggle.api.competition_download_files(competition, path=str(dest), quiet=True)
    except Exception as err:
        raise DataError(
            f"could not download Kaggle competition {competition!r} into {dest} ({_one_line(err)}); check "
            "the internet connection and that you joined it and accepted its rules at "
            f"https://www.kaggle.com/competitions/{competition}/rules"
        ) from None
    for archive in sorted(dest.glob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    found = sorted(dest.rglob("train.csv"))
    if not found:
        names = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise DataError(f"{dest}: no train.csv after downloading {competition!r} (found: {names})")
    return found[0]


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {data.normalize_whitespace(str(err))}"
