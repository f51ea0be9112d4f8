"""The on-disk schema of a run directory `results/<run>/`: atomic writers and validating readers.

Every file named in ARCHITECTURE.md is written here and read back here; nothing else in the package
opens them by hand. Readers raise `ArtifactError` naming the file, what was wrong and the command that
makes it, so a report never shows a number that no computation produced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mathreport.labels import NUM_CLASSES

METRICS = "metrics.json"
CLASS_REPORT = "class_report.json"
PREDICTIONS = "preds_test.csv"
PREDS_VAL = "preds_val.csv"  # the same table for the validation split; ensembles are fitted on it
HISTORY = "history.csv"
LATENCY = "latency.json"
MANIFEST = "run.json"
LR_SEARCH = "lr_search.csv"

# The files a run must have before a report can be made of it (latency and the manifest are
# optional so that the team's own result folders, which lack them, still load).
REQUIRED = (METRICS, CLASS_REPORT, PREDICTIONS, HISTORY)
PROB_COLUMNS = [f"prob_class_{i}" for i in range(NUM_CLASSES)]
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"]
REQUIRED_METRICS = ("Accuracy", "Precision_macro", "Recall_macro", "F1_micro", "F1_macro", "F1_weighted")


class ArtifactError(ValueError):
    """A run file is missing or does not match the schema."""


def make_command(run_dir: Path) -> str:
    """The command that (re)creates the files of a run directory, for error messages."""
    run_dir = Path(run_dir)
    return (
        f"mathreport train --model {run_dir.name} --output_dir {run_dir} "
        f"(or `mathreport pipeline --models {run_dir.name}`; for a 7B model train on a GPU machine "
        f"and copy its {run_dir}/ here)"
    )


# --- writing ---------------------------------------------------------------------------------------


def umask_mode() -> int:
    """The mode a plainly created file gets (0666 less the umask): mkstemp's files are private (0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed.

    The one way every run file, figure and report is written: a reader never sees a half-written file, and
    a failed write leaves the previous file as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, umask_mode())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ArtifactError(f"refusing to write a non-finite number ({value}) to JSON; report it as null")
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> Path:
    """Write a JSON file atomically (UTF-8, no NaN)."""
    text = json.dumps(_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text(path, text)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a CSV file atomically."""
    return write_text(path, frame.to_csv(index=False))


def predictions_frame(
    y_true: Iterable[int], probs: np.ndarray, texts: Iterable[str] | None = None
) -> pd.DataFrame:
    """The `preds_test.csv` table: y_true, y_pred (argmax), prob_class_0..7 and optional text."""
    probs = np.asarray(probs, dtype=float)
    frame = pd.DataFrame({"y_true": np.asarray(list(y_true), dtype=int), "y_pred": probs.argmax(axis=1)})
    for i, col in enumerate(PROB_COLUMNS):
        frame[col] = probs[:, i]
    if texts is not None:
        frame["text"] = list(texts)
    return frame


def write_predictions(run_dir: Path, y_true, probs, texts=None) -> Path:
    """Write `preds_test.csv` of a run."""
    return write_csv(Path(run_dir) / PREDICTIONS, predictions_frame(y_true, probs, texts))


def write_val_predictions(run_dir: Path, y_true, probs, texts=None) -> Path:
    """Write `preds_val.csv` of a run (the validation split's `preds_test.csv`)."""
    return write_csv(Path(run_dir) / PREDS_VAL, predictions_frame(y_true, probs, texts))


def val_predictions_command(run_dir: Path) -> str:
    """The command that writes `preds_val.csv` for a run trained before every run wrote it."""
    return f"mathreport evaluate --run_dir {Path(run_dir)} --write_val_preds"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, to record which data a run saw."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- reading ---------------------------------------------------------------------------------------


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing. Make it with: {make_command(path.parent)}")
    return path


def read_json(path: Path) -> dict:
    """Read a JSON file of a run, with a clear error when it is missing or not JSON."""
    path = _require(Path(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object at the top, found {type(data).__name__}")
    return data


def read_metrics(run_dir: Path) -> dict:
    """Read `metrics.json`, checking that the headline metrics are numbers in [0, 1]."""
    path = Path(run_dir) / METRICS
    data = read_json(path)
    for key in REQUIRED_METRICS:
        value = data.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ArtifactError(f"{path}: key {key!r} must be a number in [0, 1], found {value!r}")
    return data


def read_class_report(run_dir: Path) -> dict:
    """Read `class_report.json` ({"per_class": {"class_0": {...}, ...}})."""
    path = Path(run_dir) / CLASS_REPORT
    data = read_json(path)
    per_class = data.get("per_class")
    if not isinstance(per_class, dict):
        raise ArtifactError(f"{path}: expected a 'per_class' object, found keys {sorted(data)}")
    for i in range(NUM_CLASSES):
        entry = per_class.get(f"class_{i}")
        if not isinstance(entry, dict):
            raise ArtifactError(f"{path}: per_class has no entry 'class_{i}'")
        for key in ("precision", "recall", "f1_score", "support"):
            if not isinstance(entry.get(key), (int, float)):
                raise ArtifactError(f"{path}: per_class.class_{i}.{key} must be a number, found {entry.get(key)!r}")
    return data


def read_predictions(run_dir: Path, atol: float = 1e-3) -> pd.DataFrame:
    """Read `preds_test.csv`, checking columns, label range, probabilities and argmax consistency."""
    return _read_prediction_table(_require(Path(run_dir) / PREDICTIONS), atol)


def read_val_predictions(run_dir: Path, atol: float = 1e-3) -> pd.DataFrame:
    """Read `preds_val.csv` with the same checks as `preds_test.csv`; runs made before it existed lack it."""
    path = Path(run_dir) / PREDS_VAL
    if not path.is_file():
        raise ArtifactError(f"{path} is missing. Make it with: {val_predictions_command(run_dir)}")
    return _read_prediction_table(path, atol)


def _read_prediction_table(path: Path, atol: float) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = [c for c in ["y_true", "y_pred", *PROB_COLUMNS] if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    if frame.empty:
        raise ArtifactError(f"{path}: no rows")
    for col in ["y_true", "y_pred", *PROB_COLUMNS]:
        bad = frame[col].isna() | ~frame[col].map(lambda v: isinstance(v, (int, float, np.number)))
        if bad.any():
            row = int(bad.idxmax())
            raise ArtifactError(f"{path}: line {row + 2}, column {col!r}: expected a number, found {frame[col][row]!r}")
    for col in ("y_true", "y_pred"):
        out = ~frame[col].isin(range(NUM_CLASSES))
        if out.any():
            row = int(out.idxmax())
            raise ArtifactError(
                f"{path}: line {row + 2}, column {col!r}: expected a class id 0..{NUM_CLASSES - 1}, "
                f"found {frame[col][row]}"
            )
        frame[col] = frame[col].astype(int)
    probs = frame[PROB_COLUMNS].to_numpy(dtype=float)
    sums = probs.sum(axis=1)
    off = np.flatnonzero((np.abs(sums - 1) > atol) | (probs < 0).any(axis=1))
    if off.size:
        row = int(off[0])
        raise ArtifactError(
            f"{path}: line {row + 2}: probabilities must be >= 0 and sum to 1, found sum {sums[row]:.6f}"
        )
    mismatch = np.flatnonzero(frame["y_pred"].to_numpy() != probs.argmax(axis=1))
    if mismatch.size:
        row = int(mismatch[0])
        raise ArtifactError(
            f"{path}: line {row + 2}: y_pred={frame['y_pred'][row]} is not the argmax of its probabilities "
            f"({int(probs[row].argmax())}); {mismatch.size} row(s) disagree"
        )
    return frame


def read_history(run_dir: Path) -> pd.DataFrame:
    """Read `history.csv` (one row per epoch)."""
    path = _require(Path(run_dir) / HISTORY)
    frame = pd.read_csv(path)
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    if frame.empty:
        raise ArtifactError(f"{path}: no rows; expected one row per epoch")
    return frame


def read_latency(run_dir: Path) -> dict:
    """Read `latency.json`, checking that it has device and per-batch-size results."""
    path = Path(run_dir) / LATENCY
    data = read_json(path)
    results = data.get("results")
    if not isinstance(results, list) or not results:
        raise ArtifactError(f"{path}: expected a non-empty 'results' list")
    for i, entry in enumerate(results):
        for key in ("batch_size", "p50_ms", "p95_ms", "items_per_s"):
            if not isinstance(entry.get(key), (int, float)):
                raise ArtifactError(f"{path}: results[{i}].{key} must be a number, found {entry.get(key)!r}")
    if "device" not in data:
        raise ArtifactError(f"{path}: no 'device': latency without the hardware it was measured on is meaningless")
    return data


def read_manifest(run_dir: Path) -> dict:
    """Read `run.json`."""
    return read_json(Path(run_dir) / MANIFEST)


def missing_files(run_dir: Path, names: Iterable[str] = REQUIRED) -> list[str]:
    """Names of the required files a run directory lacks."""
    return [name for name in names if not (Path(run_dir) / name).is_file()]


def is_complete(run_dir: Path) -> bool:
    """Whether a run directory has every file a report needs (including latency and manifest)."""
    return not missing_files(run_dir, (*REQUIRED, LATENCY, MANIFEST))


def find_runs(results_dir: Path) -> list[str]:
    """Names of the run directories under `results_dir` that hold the files a report needs."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return []
    return sorted(p.name for p in results_dir.iterdir() if p.is_dir() and not missing_files(p))
