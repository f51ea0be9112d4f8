"""The measurements behind docs/REAL_DATA.md's tables, computed from run directories (never typed in).

    python benchmarks/real_data_tables.py models OUT.json RUN_DIR...            # one row per run
    python benchmarks/real_data_tables.py arms OUT.json ARM=RUN_DIR,RUN_DIR ...   # mean ± sd over seeds per arm
    python benchmarks/real_data_tables.py lengths OUT.json PRESET CSV ...         # questions' token counts

Validation numbers come from each run's preds_val.csv, test numbers from preds_test.csv; the training time is
run.json's `training.train_seconds` (for an ensemble: the fit itself plus its members', see its run.json).
`lengths` counts the tokens of each question of the split files with a preset's tokenizer (special tokens
included, no truncation): how many questions a `--max_length` cuts. OUT.json is written atomically;
`make perf-doc` (tools/perf_doc.py) turns it into the markdown tables.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from mathreport import artifacts, files
from mathreport.labels import NUM_CLASSES

LABELS = list(range(NUM_CLASSES))
RARE = (6, 7)  # Lineer Cebir, Soyut Cebir: about 1 % of the questions each
KEYS = ("val_acc", "val_f1", "test_acc", "test_f1", "f1_rare", "train_s")
# Recorded by runs made since partial fine-tuning (issue 21); None for older runs, and then left out of the mean.
SPEED_KEYS = ("samples_per_s", "cache_s", "flop_per_s")


def scores(run_dir: Path) -> dict:
    """Accuracy and macro F1 on validation and test, training seconds, batch-1 p50 latency of one run."""
    run_dir = Path(run_dir)
    out: dict = {"run": str(run_dir)}
    frames = {
        "val": artifacts.read_val_predictions(run_dir),
        "test": artifacts.read_predictions(run_dir),
    }
    for split, frame in frames.items():
        out[f"{split}_acc"] = float(accuracy_score(frame["y_true"], frame["y_pred"]))
        out[f"{split}_f1"] = float(
            f1_score(
                frame["y_true"], frame["y_pred"], labels=LABELS, average="macro", zero_division=0
            )
        )
        if split == "test":
            per_class = f1_score(
                frame["y_true"], frame["y_pred"], labels=LABELS, average=None, zero_division=0
            )
            out["f1_rare"] = float(per_class[list(RARE)].mean())
    manifest = artifacts.read_manifest(run_dir)
    training = manifest.training or {}
    seconds = training.get("train_seconds")
    members = training.get("members_train_seconds")
    if members:
        seconds = (seconds or 0) + sum(v for v in members.values() if v is not None)
    out["train_s"] = seconds
    out["samples_per_s"] = training.get("train_samples_per_second")
    # A top-k run computes the frozen layers' states before Trainer starts, or reads them from the disk cache that
    # an earlier run of the same split, k and max_length wrote: cache_s is the computing, None when all were read.
    caches = list(((manifest.partial or {}).get("caches") or {}).values())
    computed = [c["seconds"] for c in caches if not c["loaded"]]
    out["cache_s"] = sum(computed) if computed else None
    out["cache_loaded"] = bool(caches) and not computed
    out["flop_per_s"] = (training.get("flop") or {}).get("flop_per_s")
    out["ceiling_share"] = training.get("ceiling_share")  # of the ceiling measured where it ran
    out["model"] = manifest.model
    out["default_backend"] = (manifest.inference or {}).get("default")
    out["hyperparameters"] = manifest.hyperparameters
    # Epochs mean something for a transformer only (tfidf is one fit; an ensemble trains nothing of its own).
    out["epochs"] = (
        out["hyperparameters"].get("num_epochs") if manifest.kind == "transformer" else None
    )
    out["train_autocast"] = manifest.train_autocast
    # The whole run, training and the steps after it, from run.json's own clock (None where a time is missing).
    times = [manifest.start_time, manifest.end_time]
    out["wall_s"] = (
        (datetime.fromisoformat(times[1]) - datetime.fromisoformat(times[0])).total_seconds()
        if all(times)
        else None
    )
    out["post_training_s"] = sum((manifest.post_training_seconds or {}).values()) or None
    # Its steps: the predictions, then (run.json inference.seconds, recorded since the fastest-first choice) the export
    # and each step of the backend choice.
    out["post_training_steps"] = (
        {
            "predictions": (manifest.post_training_seconds or {}).get("predict_test_and_val_s"),
            **((manifest.inference or {}).get("seconds") or {}),
        }
        if manifest.post_training_seconds
        else None
    )
    # An ensemble's run.json carries McNemar's exact test against its best member (mathreport.ensemble).
    vs = manifest.vs_best_member
    out["vs_best_member"] = (
        {k: vs[k] for k in ("member", "accuracy_member", "accuracy_ensemble", "b", "c", "p_value")}
        if vs
        else None
    )
    out["p50_ms"] = None
    if (run_dir / artifacts.LATENCY).is_file():
        for entry in artifacts.read_latency(run_dir)["results"]:
            if entry["batch_size"] == 1:
                out["p50_ms"] = entry["p50_ms"]
    return out


def models_rows(run_dirs: list[str]) -> list[dict]:
    """One row per run."""
    return [scores(Path(run)) for run in run_dirs]


def arms_rows(arms: list[str]) -> list[dict]:
    """Mean and sd (ddof 1; None for a single run) over the runs of each arm (ARM=RUN,RUN,...)."""
    rows = []
    for arm in arms:
        name, sep, runs = arm.partition("=")
        if not sep or not runs:
            raise SystemExit(f"{arm!r}: expected ARM=RUN_DIR,RUN_DIR,...")
        runs_scores = [scores(Path(r)) for r in runs.split(",")]
        row: dict = {"arm": name, "n_runs": len(runs_scores), "runs": runs_scores}
        for key in KEYS + SPEED_KEYS:
            values = np.array([r[key] for r in runs_scores if r.get(key) is not None], dtype=float)
            if key in SPEED_KEYS and len(values) == 0:
                row[key] = None
                continue
            row[key] = {
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
            }
        ks = {r["hyperparameters"].get("top_k_layers") for r in runs_scores}
        row["top_k_layers"] = ks.pop() if len(ks) == 1 else None
        rows.append(row)
    return rows


LENGTH_PERCENTILES = (50, 75, 90, 95, 99)
LENGTH_CUTS = (128, 256)


def length_row(name: str, counts: np.ndarray) -> dict:
    """Percentiles of the token counts of one split and the share of questions longer than each cut."""
    counts = np.asarray(counts)
    if counts.size == 0:
        raise ValueError(f"{name}: no questions")
    return {
        "split": name,
        "n": int(counts.size),
        "percentiles": {str(q): float(np.percentile(counts, q)) for q in LENGTH_PERCENTILES},
        "share_longer": {str(cut): float(np.mean(counts > cut)) for cut in LENGTH_CUTS},
    }


def lengths_rows(preset_name: str, csv_paths: list[str]) -> list[dict]:
    """One row per split file: its questions' token counts under the preset's tokenizer."""
    from transformers import AutoTokenizer

    from mathreport import data, models

    preset = models.get_preset(preset_name)
    tokenizer = AutoTokenizer.from_pretrained(models.resolve_weights(preset))
    rows = []
    for path in csv_paths:
        ids = tokenizer(data.read_questions(path), truncation=False)["input_ids"]
        rows.append(
            {"model": preset_name, **length_row(Path(path).name, np.array([len(x) for x in ids]))}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if (
        len(argv) < 3
        or argv[0] not in ("models", "arms", "lengths")
        or (argv[0] == "lengths" and len(argv) < 4)
    ):
        print(
            "usage:\n"
            + "\n".join(line for line in __doc__.splitlines() if "python benchmarks/" in line),
            file=sys.stderr,
        )
        return 2
    kind, out, *rest = argv
    if kind == "lengths":
        rows = lengths_rows(rest[0], rest[1:])
    else:
        rows = models_rows(rest) if kind == "models" else arms_rows(rest)
    command = " ".join(["python benchmarks/real_data_tables.py", *argv])
    files.write_json(Path(out), {"kind": kind, "command": command, "rows": rows})
    print(f"wrote {out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
