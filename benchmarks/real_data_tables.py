"""The tables of docs/REAL_DATA.md, computed from run directories (never typed in).

    python benchmarks/real_data_tables.py models RUN_DIR...            # one line per run
    python benchmarks/real_data_tables.py arms ARM=RUN_DIR,RUN_DIR ...   # mean ± sd over seeds per arm

Validation numbers come from each run's preds_val.csv, test numbers from preds_test.csv; the training time is
run.json's `training.train_seconds` (for an ensemble: the fit itself plus its members', see its run.json).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from mathreport import artifacts
from mathreport.labels import NUM_CLASSES

LABELS = list(range(NUM_CLASSES))


def scores(run_dir: Path) -> dict:
    """Accuracy and macro F1 on validation and test, training seconds, batch-1 p50 latency of one run."""
    run_dir = Path(run_dir)
    out = {}
    frames = {"val": artifacts.read_val_predictions(run_dir), "test": artifacts.read_predictions(run_dir)}
    for split, frame in frames.items():
        out[f"{split}_acc"] = accuracy_score(frame["y_true"], frame["y_pred"])
        out[f"{split}_f1"] = f1_score(frame["y_true"], frame["y_pred"], labels=LABELS, average="macro", zero_division=0)
        if split == "test":
            per_class = f1_score(frame["y_true"], frame["y_pred"], labels=LABELS, average=None, zero_division=0)
            out["f1_rare"] = float(per_class[6:].mean())  # Lineer Cebir, Soyut Cebir
    manifest = artifacts.read_manifest(run_dir)
    training = manifest.get("training") or {}
    seconds = training.get("train_seconds")
    members = training.get("members_train_seconds")
    if members:
        seconds = (seconds or 0) + sum(v for v in members.values() if v is not None)
    out["train_s"] = seconds
    out["p50_ms"] = None
    if (run_dir / artifacts.LATENCY).is_file():
        for entry in artifacts.read_latency(run_dir)["results"]:
            if entry["batch_size"] == 1:
                out["p50_ms"] = entry["p50_ms"]
    return out


def _fmt(v, digits=4):
    return "—" if v is None else f"{v:.{digits}f}"


def models_table(run_dirs: list[str]) -> str:
    """One markdown line per run."""
    lines = ["| run | test accuracy | test macro-F1 | val accuracy | val macro-F1 | F1 of the 2 rare classes (test) "
             "| training time (s) | p50 ms/item, batch 1 |", "|" + " --- |" * 8]
    for run in run_dirs:
        s = scores(Path(run))
        lines.append(f"| `{run}` | {_fmt(s['test_acc'])} | {_fmt(s['test_f1'])} | {_fmt(s['val_acc'])} | "
                     f"{_fmt(s['val_f1'])} | {_fmt(s['f1_rare'], 3)} | {_fmt(s['train_s'], 0)} | "
                     f"{_fmt(s['p50_ms'], 2)} |")
    return "\n".join(lines)


def arms_table(arms: list[str]) -> str:
    """Mean ± sd over the runs of each arm (ARM=RUN,RUN,...)."""
    lines = ["| arm | runs | val macro-F1 | test macro-F1 | test accuracy | F1 of the 2 rare classes (test) "
             "| training time (s) |", "|" + " --- |" * 7]
    for arm in arms:
        name, runs = arm.split("=", 1)
        rows = [scores(Path(r)) for r in runs.split(",")]

        def ms(key, digits=4, rows=rows):
            values = np.array([r[key] for r in rows], dtype=float)
            sd = values.std(ddof=1) if len(values) > 1 else float("nan")
            return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"

        lines.append(f"| {name} | {len(rows)} | {ms('val_f1')} | {ms('test_f1')} | {ms('test_acc')} | "
                     f"{ms('f1_rare', 3)} | {ms('train_s', 0)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("models", "arms"):
        sys.exit("usage:\n" + "\n".join(line for line in __doc__.splitlines() if "python benchmarks/" in line))
    kind, *rest = sys.argv[1:]
    print(models_table(rest) if kind == "models" else arms_table(rest))
