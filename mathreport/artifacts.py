"""The on-disk schema of a run directory `results/<run>/` (README.md, "A run's directory"): file names, validating
readers, the one-writer lock and the consistency check. A reader's ArtifactError names the file, what was wrong and
the command that makes it, so a report never shows a number that no computation produced.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import os
import shlex
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from mathreport import lockfile, record
from mathreport.errors import ArtifactError, RunLockedError
from mathreport.files import file_sha256, write_csv, write_json, write_text, writing
from mathreport.labels import NUM_CLASSES
from mathreport.presets import PRESETS, gpu_presets

_F = TypeVar("_F", bound=Callable)

METRICS = "metrics.json"
CLASS_REPORT = "class_report.json"
PREDICTIONS = "preds_test.csv"
PREDS_VAL = "preds_val.csv"  # the same table for the validation split; ensembles are fitted on it
HISTORY = "history.csv"
LATENCY = "latency.json"
MANIFEST = record.FILE
LR_SEARCH = "lr_search.csv"
LR_SEARCH_JSON = "lr_search.json"  # the search's settings and best rate, beside lr_search.csv
LR_SCRATCH = ".lr_search-"  # the prefix of a search training's scratch folder
CHECKPOINTS = "checkpoints"  # Trainer's output_dir: what `train --resume` continues from
LOCK = ".lock"
MODEL_DIR = "model"
# Inside model/: its card (written from run.json once it says complete: modelcard), peft's
# adapter files, and a scikit-learn run's pipeline.
MODEL_CARD = "README.md"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SKLEARN_PIPELINE = "pipeline.joblib"
# export-onnx's files by the dtype of their weights, and the external-data file torch.onnx
# writes beside a model over 2 GiB.
ONNX_FILES = {"float32": "model.onnx", "int8": "model-int8.onnx"}
ONNX_DATA = "model.onnx.data"
COMPARISONS = "comparisons.json"  # in the results folder, beside its runs (compare, pipeline)

# What a trained run has that an ensemble has not: left in a folder an ensemble replaces
# (--force), it would be taken for the ensemble's own (predict, bench, export-onnx read model/).
TRAINED_ONLY = (MODEL_DIR, CHECKPOINTS, *ONNX_FILES.values(), ONNX_DATA, LR_SEARCH)
# The files of a run's own folder that a user's output must never replace (predict --output).
RUN_FILES = (
    METRICS,
    CLASS_REPORT,
    PREDICTIONS,
    PREDS_VAL,
    HISTORY,
    LATENCY,
    MANIFEST,
    LR_SEARCH,
    LR_SEARCH_JSON,
    LOCK,
    *ONNX_FILES.values(),
    ONNX_DATA,
)
# Every name above. No other module spells one (tests/test_artifacts.py checks the package), so
# renaming a run folder's file is an edit of this block only; run.json's is record.FILE.
RUN_FOLDER_NAMES = (
    *RUN_FILES,
    LR_SCRATCH,
    CHECKPOINTS,
    MODEL_DIR,
    MODEL_CARD,
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    SKLEARN_PIPELINE,
    COMPARISONS,
)

# The files a run must have before a report can be made of it (latency and the manifest are
# optional so that the team's own result folders, which lack them, still load).
REQUIRED = (METRICS, CLASS_REPORT, PREDICTIONS, HISTORY)
PROB_COLUMNS = [f"prob_class_{i}" for i in range(NUM_CLASSES)]
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"]
REQUIRED_METRICS = (
    "Accuracy",
    "Precision_macro",
    "Recall_macro",
    "F1_micro",
    "F1_macro",
    "F1_weighted",
)


def make_command(run_dir: Path) -> str:
    """The command that (re)makes a run directory's files, for error messages: `evaluate` when only the metrics are
    missing, else the run's recorded `train` command aimed at `run_dir` (never at the folder it was copied from),
    with `--force` or `--resume` as the folder's state needs."""
    run_dir = Path(run_dir)
    if (run_dir / PREDICTIONS).is_file() and missing_files(run_dir, REQUIRED) in (
        [METRICS],
        [CLASS_REPORT],
        [METRICS, CLASS_REPORT],
    ):
        return f"mathreport evaluate --run_dir {shlex.quote(str(run_dir))}"
    recorded = None
    with contextlib.suppress(OSError, ArtifactError):
        recorded = record.read(run_dir).command
    flag = {"complete": " --force", "unfinished": " --resume"}.get(run_state(run_dir), "")
    if isinstance(recorded, str) and recorded.startswith("mathreport train"):
        return f"{_with_output_dir(recorded, run_dir)}{flag}"
    model = run_dir.name if run_dir.name in PRESETS else "MODEL"
    gpu = gpu_presets()  # the registry says which presets a CPU cannot train (Preset.needs_gpu)
    elsewhere = f"; for {' or '.join(gpu)} train on a GPU machine and copy its {run_dir}/ here"
    return (
        f"mathreport train --model {model} --output_dir {run_dir}{flag} "
        f"(or `mathreport pipeline --models {model}`{elsewhere if gpu else ''})"
    )


def _with_output_dir(command: str, run_dir: Path) -> str:
    """`command` with its --output_dir value replaced by `run_dir` (added when it has none)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words):
        if word in ("--output_dir", "--output-dir") and i + 1 < len(words):
            words[i + 1] = str(run_dir)
            break
        if word.startswith(("--output_dir=", "--output-dir=")):
            words[i] = f"--output_dir={run_dir}"
            break
    else:
        words += ["--output_dir", str(run_dir)]
    return shlex.join(words)


def model_dir(run_dir: Path) -> Path:
    """A run's `model/` folder: the adapter and tokenizer, or the scikit-learn pipeline."""
    return Path(run_dir) / MODEL_DIR


def has_adapter(run_dir: Path) -> bool:
    """Whether the run saved a peft adapter (transformer runs; not tfidf or ensembles)."""
    return (model_dir(run_dir) / ADAPTER_CONFIG).is_file()


def onnx_path(run_dir: Path, dtype: str) -> Path:
    """The ONNX file of a run whose weights are `dtype` ("float32" or "int8": ONNX_FILES)."""
    if dtype not in ONNX_FILES:
        raise ValueError(f"the onnx backend runs {sorted(ONNX_FILES)}, not {dtype!r}")
    return Path(run_dir) / ONNX_FILES[dtype]


def predictions_frame(
    y_true: Iterable[int], probs: np.ndarray, texts: Iterable[str] | None = None
) -> pd.DataFrame:
    """The `preds_test.csv` table: y_true, y_pred (argmax), prob_class_0..7 and optional text."""
    probs = np.asarray(probs, dtype=float)
    frame = pd.DataFrame(
        {"y_true": np.asarray(list(y_true), dtype=int), "y_pred": probs.argmax(axis=1)}
    )
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


# --- one writer per run directory --------------------------------------------------------


def lock_holder(run_dir: Path) -> dict | None:
    """Who is writing into a run directory ({"pid", "host", "command", "started"}), or None:
    nobody, or this process. Only probes the lock, so a reader never makes a writer fail."""
    return lockfile.holder(Path(run_dir) / LOCK)


@contextlib.contextmanager
def run_lock(run_dir: Path, command: str | None = None):
    """Hold the one-writer lock of a run directory while the block writes into it (`lockfile`).

    A second process fails at once with RunLockedError naming the holder, the same process
    re-enters, a killed holder's lock is taken over with a warning. `run_dir` is created if needed
    and removed on exit if it stayed empty. command: what the holder does.
    """
    with lockfile.hold(Path(run_dir) / LOCK, command):
        yield Path(run_dir)


def locked(command: str, run_dir: str, *, existing: bool = False) -> Callable[[_F], _F]:
    """Decorate a function that writes into a run directory: each call holds its lock (`run_lock`).

    command: what the holder does, as the lock records it ("mathreport search"). run_dir: the
    parameter that holds the directory, or an attribute of one ("cfg.output_dir"). existing:
    refuse a directory that does not exist (`require_run_dir`) before the lock would create it.

        @artifacts.locked("mathreport export-onnx", "run_dir", existing=True)
        def export_run(run_dir: Path) -> dict: ...
    """
    parameter, *attributes = run_dir.split(".")

    def decorate(func: _F) -> _F:
        signature = inspect.signature(func)
        if parameter not in signature.parameters:
            raise TypeError(
                f"locked({command!r}, {run_dir!r}): {func.__qualname__} has no "
                f"parameter {parameter!r}"
            )

        @functools.wraps(func)
        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            folder = functools.reduce(getattr, attributes, bound.arguments[parameter])
            if existing:
                require_run_dir(folder)
            with run_lock(Path(folder), command):
                return func(*args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate


# --- the one writer of a run ---------------------------------------------------------------


class RunWriter:
    """Every file of a run directory written by one object, as Trainer's `save_model`/`save_metrics`/`save_state`.

    Each process of a run makes one. Under torchrun or `accelerate launch` only the main process (rank 0,
    `is_main`) takes the lock and writes; every method of the others does nothing, so "rank 0 writes" is this
    one rule, not a check at each call site. One process alone is the main process.
    """

    def __init__(self, run_dir: Path, command: str | None = None, *, is_main: bool = True):
        self.run_dir, self.command, self.is_main = Path(run_dir), command, is_main

    @contextlib.contextmanager
    def locked(self):
        """Hold the run directory's one-writer lock (`run_lock`) on the main process; nothing elsewhere."""
        with run_lock(self.run_dir, self.command) if self.is_main else contextlib.nullcontext():
            yield self

    def record(self, rec: record.RunRecord) -> None:
        """run.json."""
        if self.is_main:
            record.write(self.run_dir, rec)

    def record_outputs(self, rec: record.RunRecord) -> None:
        """run.json with the files on disk recorded anew, after a file was added to a finished run
        (a backfilled preds_val.csv); a record without outputs (an older run) is left as it is."""
        if self.is_main and rec.outputs:
            rec.outputs = outputs_record(self.run_dir)
            record.write(self.run_dir, rec)

    def metrics(self, result: dict, class_report: dict) -> None:
        """metrics.json and class_report.json, computed from preds_test.csv."""
        if self.is_main:
            write_json(self.run_dir / METRICS, result)
            write_json(self.run_dir / CLASS_REPORT, class_report)

    def history(self, frame: pd.DataFrame) -> None:
        """history.csv: one row per epoch."""
        if self.is_main:
            write_csv(self.run_dir / HISTORY, frame)

    def predictions(self, split: str, y_true, probs, texts=None) -> None:
        """preds_test.csv (split "test") or preds_val.csv (split "val")."""
        if self.is_main:
            (write_predictions if split == "test" else write_val_predictions)(
                self.run_dir, y_true, probs, texts
            )

    def latency(self, result: dict) -> None:
        """latency.json."""
        if self.is_main:
            write_json(self.run_dir / LATENCY, result)

    def save_model(self, model, tokenizer=None, trainer=None) -> None:
        """model/: a peft adapter (`save_pretrained`) and its tokenizer, or a scikit-learn pipeline (joblib).

        trainer: save through Trainer's `save_model`, which every process must call (FSDP and DeepSpeed gather
        the shards across them) and which writes on the main process only.
        """
        folder = self.run_dir / MODEL_DIR
        with writing(
            folder
        ):  # a full disk in the libraries' own writes: one line naming the file (WriteError)
            if trainer is not None:
                trainer.save_model(str(folder))
            elif self.is_main and hasattr(model, "save_pretrained"):
                model.save_pretrained(str(folder))
            elif self.is_main:
                import joblib

                folder.mkdir(parents=True, exist_ok=True)
                joblib.dump(model, folder / SKLEARN_PIPELINE)
            if self.is_main and tokenizer is not None:
                tokenizer.save_pretrained(str(folder))

    def model_card(self, text: str) -> Path:
        """model/README.md, the adapter's card (modelcard makes it from a complete run.json)."""
        path = model_dir(self.run_dir) / MODEL_CARD
        if self.is_main:
            write_text(path, text)
        return path

    def lr_search(self, frame: pd.DataFrame, summary: dict) -> None:
        """lr_search.csv (one row per learning rate) and lr_search.json (settings, best rate)."""
        if self.is_main:
            write_csv(self.run_dir / LR_SEARCH, frame)
            write_json(self.run_dir / LR_SEARCH_JSON, summary)

    def remove(self, *names: str) -> None:
        """Remove files or folders of the run by name: what an earlier run left there."""
        if not self.is_main:
            return
        for name in names:
            path = self.run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    def drop_checkpoints(self) -> None:
        """Remove Trainer's checkpoints (a run that is complete, or one started over, needs none)."""
        if self.is_main:
            shutil.rmtree(self.run_dir / CHECKPOINTS, ignore_errors=True)

    def finish(self, rec: record.RunRecord) -> None:
        """The last write: run.json records the SHA-256 of the files written, then says complete."""
        if self.is_main:
            rec.outputs = outputs_record(
                self.run_dir
            )  # readers check the files against it (check_consistency)
            rec.stamp("complete")
            record.write(self.run_dir, rec)


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
        raise ArtifactError(
            f"{path}: expected a JSON object at the top, found {type(data).__name__}"
        )
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
                raise ArtifactError(
                    f"{path}: per_class.class_{i}.{key} must be a number, found {entry.get(key)!r}"
                )
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


def _read_csv(path: Path, columns: Iterable[str]) -> pd.DataFrame:
    """Read a CSV run file that must have `columns`; any fault is an ArtifactError naming the file and line (the bytes
    are decoded here, not by pandas, so that a byte that is not UTF-8 is reported by its line)."""
    path = Path(path)
    columns = list(columns)

    def redo() -> str:
        if path.name == PREDS_VAL:
            return f"make it again with: {val_predictions_command(path.parent)}"
        return f"make it again with: {make_command(path.parent)}"

    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ArtifactError(
            f"{path}: line {line}: byte {raw[exc.start : exc.start + 1]!r} is not UTF-8 text; "
            f"{redo()}"
        ) from None
    if not text.strip():
        raise ArtifactError(
            f"{path}: the file is empty; expected a header line ({', '.join(columns)}) and rows; "
            f"{redo()}"
        )
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ArtifactError(
            f"{path}: {_csv_fault(text) or ' '.join(str(exc).split())}; not a whole CSV "
            f"table (cut short or edited?); {redo()}"
        ) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    return frame


def _csv_fault(text: str) -> str | None:
    """Where the csv module's strict reader stops on `text` ("line N: reason"), or None if it reads it all."""
    import csv

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for _ in reader:
            pass
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    return None


def _read_prediction_table(path: Path, atol: float) -> pd.DataFrame:
    frame = _read_csv(path, ["y_true", "y_pred", *PROB_COLUMNS])
    if frame.empty:
        raise ArtifactError(f"{path}: no rows")
    for col in ["y_true", "y_pred", *PROB_COLUMNS]:
        bad = frame[col].isna() | ~frame[col].map(lambda v: isinstance(v, (int, float, np.number)))
        if bad.any():
            row = int(bad.idxmax())
            raise ArtifactError(
                f"{path}: line {row + 2}, column {col!r}: expected a number, found {frame[col][row]!r}"
            )
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
    frame = _read_csv(path, HISTORY_COLUMNS)
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
                raise ArtifactError(
                    f"{path}: results[{i}].{key} must be a number, found {entry.get(key)!r}"
                )
    if "device" not in data:
        raise ArtifactError(
            f"{path}: no 'device': latency without the hardware it was measured on is meaningless"
        )
    return data


def read_lr_search(run_dir: Path) -> pd.DataFrame:
    """Read `lr_search.csv` (one row per learning rate tried), checking the columns the report and search use."""
    return _read_csv(
        _require(Path(run_dir) / LR_SEARCH), ("learning_rate", "val_accuracy", "val_macro_f1")
    )


def read_manifest(run_dir: Path) -> record.RunRecord:
    """Read `run.json` (mathreport.record); a missing one names the command that makes the run."""
    return record.read(_require(Path(run_dir) / MANIFEST).parent)


def model_files(run_dir: Path) -> list[str]:
    """The files of a run's `model/` folder (adapter, tokenizer, scikit-learn pipeline), as run-relative POSIX paths;
    not its card, which is made from run.json after it."""
    folder = Path(run_dir) / MODEL_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(run_dir).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() != MODEL_CARD
    )


def outputs_record(run_dir: Path, names: Iterable[str] | None = None) -> dict:
    """What run.json records of the files a run wrote ({name: {"sha256", "bytes"}}), for `check_consistency`:
    predictions, history and the model's files (names: those instead)."""
    run_dir = Path(run_dir)
    names = (PREDICTIONS, PREDS_VAL, HISTORY, *model_files(run_dir)) if names is None else names
    return {
        name: {"sha256": file_sha256(run_dir / name), "bytes": (run_dir / name).stat().st_size}
        for name in names
        if (run_dir / name).is_file()
    }


def require_run_dir(run_dir: Path) -> Path:
    """`run_dir`, which must exist (before a writer's lock, which would create it); else the command that makes it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(
            f"run directory {run_dir} does not exist. Make it with: {make_command(run_dir)}"
        )
    return run_dir


def check_consistency(run_dir: Path) -> None:
    """Refuse, naming the file and the fix, a run that is not whole and current; every reader of a finished run asks.

    Checked: nobody holds its lock; run.json says complete; the files it recorded are those on disk (SHA-256); an
    ensemble's members are current; metrics.json and class_report.json count the rows of preds_test.csv, and the
    accuracy is theirs. Folders without run.json get the checks that need none.
    """
    run_dir = require_run_dir(run_dir)
    holder = lock_holder(run_dir)
    if holder is not None:
        raise RunLockedError(
            f"{run_dir} is being written by {lockfile.describe(holder)}; use it when that finishes"
        )
    preds = read_predictions(run_dir)
    n = len(preds)
    redo = f"retrain it with: {make_command(run_dir)}"
    manifest = record.read_if_present(run_dir)
    if manifest is not None:
        if (
            manifest.status == "running"
        ):  # nobody holds the lock (checked above): its writer stopped midway
            raise ArtifactError(
                f"{run_dir} is incomplete: the process that wrote it is gone (killed, or its disk "
                f"was full) before {MANIFEST} said complete; {redo}"
            )
        if manifest.status not in (None, "complete"):
            raise ArtifactError(
                f"{run_dir / MANIFEST} says the run is {manifest.status!r}, not complete; {redo}"
            )
        for name, output in manifest.outputs.items():
            path = run_dir / name
            model_file = name.startswith(f"{MODEL_DIR}/")
            if model_file and isinstance(output, dict) and not path.is_file():
                raise ArtifactError(
                    f"{path} is missing (the run of {run_dir / MANIFEST} wrote it); {redo}"
                )
            if (
                isinstance(output, dict)
                and path.is_file()
                and output.get("sha256") != file_sha256(path)
            ):
                why = (
                    "damaged, cut short or replaced"
                    if model_file
                    else "the folder mixes files of two runs"
                )
                raise ArtifactError(
                    f"{path} is not the file that the run of {run_dir / MANIFEST} wrote (SHA-256 differs: {why}); "
                    f"{redo}"
                )
        if manifest.traits.combines_runs:
            check_members_current(run_dir, manifest)
        rows = manifest.split("test").rows
        if isinstance(rows, int) and rows != n:
            raise ArtifactError(
                f"{run_dir}: {MANIFEST} records {rows} test rows but {PREDICTIONS} has {n}: the folder mixes files "
                f"of two runs; {redo}"
            )
    metrics = read_metrics(run_dir)
    if isinstance(metrics.get("n_test"), int) and metrics["n_test"] != n:
        raise ArtifactError(
            f"{run_dir}: {METRICS} counts {metrics['n_test']} test rows but {PREDICTIONS} has {n}; "
            f"recompute it with: mathreport evaluate --run_dir {run_dir}"
        )
    accuracy = float((preds["y_true"] == preds["y_pred"]).mean())
    if abs(metrics["Accuracy"] - accuracy) > 1e-9:
        raise ArtifactError(
            f"{run_dir}: {METRICS} says Accuracy {metrics['Accuracy']:.6f} but {PREDICTIONS} gives {accuracy:.6f}; "
            f"recompute it with: mathreport evaluate --run_dir {run_dir}"
        )
    per_class = read_class_report(run_dir)["per_class"]
    support = sum(per_class[f"class_{i}"]["support"] for i in range(NUM_CLASSES))
    if support != n:
        raise ArtifactError(
            f"{run_dir}: {CLASS_REPORT} counts {support:g} test rows but {PREDICTIONS} has {n}; "
            f"recompute it with: mathreport evaluate --run_dir {run_dir}"
        )


def member_dir(ensemble_dir: Path, member: dict) -> Path:
    """An ensemble member's directory: its recorded absolute path, else its path relative to the ensemble (moved)."""
    path = Path(str(member.get("path", "")))
    relative = member.get("relative_path")
    if relative and not path.is_dir():
        moved = Path(os.path.normpath(Path(ensemble_dir) / relative))
        if moved.is_dir():
            return moved
    return path


def check_members_current(run_dir: Path, manifest: record.RunRecord) -> None:
    """Refuse an ensemble whose members are not whole runs, or whose predictions are no longer the ones its weights
    were fitted on."""
    members = manifest.members
    if not members:
        raise ArtifactError(f"{Path(run_dir) / MANIFEST}: an ensemble without 'members'")
    rebuild = (
        f"rebuild it with: mathreport ensemble --runs "
        f"{' '.join(shlex.quote(str(member_dir(run_dir, m))) for m in members)} "
        f"--method {manifest.method or 'loglinear'} --output_dir {shlex.quote(str(run_dir))} --force"
    )
    for member in members:
        path = member_dir(run_dir, member)
        for key, name in (("preds_val_sha256", PREDS_VAL), ("preds_test_sha256", PREDICTIONS)):
            if not (path / name).is_file():
                raise ArtifactError(
                    f"{run_dir} is an ensemble of {path}, whose {name} is gone; {rebuild}"
                )
            if file_sha256(path / name) != member.get(key):
                raise ArtifactError(
                    f"{run_dir} is stale: its member {path} has a different {name} (SHA-256) than the one its "
                    f"weights were fitted on (retrained since?); {rebuild}"
                )
        try:
            check_consistency(path)
        except ArtifactError as exc:
            raise type(exc)(
                f"{run_dir} is an ensemble of a run that is not whole now: {exc}"
            ) from None


def missing_files(run_dir: Path, names: Iterable[str] = REQUIRED) -> list[str]:
    """Names of the required files a run directory lacks."""
    return [name for name in names if not (Path(run_dir) / name).is_file()]


def is_complete(run_dir: Path) -> bool:
    """Whether a run directory has every file a report needs (including latency and manifest)."""
    return not missing_files(run_dir, (*REQUIRED, LATENCY, MANIFEST))


def training_finished(run_dir: Path) -> bool:
    """Whether an unfinished run's training is done: run.json records its training and model/ holds the final
    adapter, so `train --resume` only redoes the steps after training (predictions, metrics, export, latency)."""
    run_dir = Path(run_dir)
    try:
        manifest = record.read(run_dir)
    except (OSError, ArtifactError):
        return False
    return manifest.trained and has_adapter(run_dir) and (run_dir / HISTORY).is_file()


def has_checkpoints(run_dir: Path) -> bool:
    """Whether a run directory holds a Trainer checkpoint that `train --resume` can continue from."""
    return any((Path(run_dir) / CHECKPOINTS).glob("checkpoint-*"))


def run_state(run_dir: Path) -> str:
    """What a run directory holds, for `train`: "absent"; "complete" (only --force replaces it; an unreadable run.json
    counts too); "unfinished" (a checkpoint or finished training: --resume continues it); "failed" or "empty" (the
    same command starts it over)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return "absent"
    manifest_path = run_dir / MANIFEST
    if manifest_path.is_file():
        try:
            status = record.read(run_dir).status
        except (OSError, ArtifactError):
            return "complete"
        if status == "complete":
            return "complete"
        if status is not None:  # "running" (killed), "failed", "interrupted"
            return (
                "unfinished" if has_checkpoints(run_dir) or training_finished(run_dir) else "failed"
            )
    if (run_dir / METRICS).is_file():
        return "complete"
    return "unfinished" if has_checkpoints(run_dir) else "empty"


def write_comparisons(results_dir: Path, pairs: list) -> Path:
    """Write `comparisons.json` in the results folder: McNemar's exact test and CI overlap for each
    pair of runs."""
    return write_json(Path(results_dir) / COMPARISONS, {"pairs": pairs})


def find_runs(results_dir: Path) -> list[str]:
    """Names of the run directories under `results_dir` that hold the files a report needs."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return []
    return sorted(p.name for p in results_dir.iterdir() if p.is_dir() and not missing_files(p))


def incomplete_runs(results_dir: Path) -> dict[str, list[str]]:
    """The folders under `results_dir` with some run files but not all a report needs: {name: missing files}."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return {}
    known = (*REQUIRED, PREDS_VAL, MANIFEST, LATENCY)
    return {
        p.name: missing_files(p)
        for p in sorted(results_dir.iterdir())
        if p.is_dir() and missing_files(p) and any((p / name).is_file() for name in known)
    }
