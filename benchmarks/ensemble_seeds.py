"""Which variant of one member makes the better ensemble, judged on the validation split only, over seeds.

    python benchmarks/ensemble_seeds.py OUT.json --fixed RUN_DIR RUN_DIR --arm NAME=RUN_DIR,RUN_DIR ... [--arm ...]

For each run of an arm (one seed of the variant), the ensemble of the fixed members and that run is pooled as
`mathreport ensemble` pools it (loglinear, weights fitted by ensemble.fit_weights) and scored out of fold: 5-fold
cross-validation on the validation split, 3 shuffles, out-of-fold probabilities averaged over the shuffles (as
benchmarks/ensemble_cv.py). The test split is not read. OUT.json holds each run's accuracy and macro-F1 and each
arm's mean and sd (ddof 1); `make perf-doc` turns it into a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from mathreport import artifacts, ensemble, files
from mathreport.labels import NUM_CLASSES


def out_of_fold(runs: list[str], folds: int = 5, shuffles: int = 3) -> dict:
    """Accuracy and macro-F1 of the loglinear pool of `runs`, out of fold on their validation predictions."""
    frames = [artifacts.read_val_predictions(Path(r)) for r in runs]
    y = frames[0]["y_true"].to_numpy()
    for run, frame in zip(runs, frames, strict=True):
        if not np.array_equal(frame["y_true"].to_numpy(), y):
            raise SystemExit(
                f"{run}: its preds_val.csv is not for the same validation questions as {runs[0]}'s"
            )
    probs = [f[artifacts.PROB_COLUMNS].to_numpy(dtype=float) for f in frames]
    out = np.zeros_like(probs[0])
    for seed in range(shuffles):
        for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y):
            weights = ensemble.fit_weights([p[train] for p in probs], y[train], "loglinear")
            out[held] += ensemble.combine([p[held] for p in probs], weights, "loglinear") / shuffles
    pred = out.argmax(1)
    return {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(
            f1_score(y, pred, labels=list(range(NUM_CLASSES)), average="macro", zero_division=0)
        ),
    }


def _mean_sd(values: list[float]) -> dict:
    return {
        "mean": float(np.mean(values)),
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--fixed", nargs="+", required=True, help="the members every ensemble has")
    parser.add_argument(
        "--arm", action="append", required=True, help="NAME=RUN_DIR,RUN_DIR,... (one run per seed)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rows = []
    for arm in args.arm:
        name, sep, runs = arm.partition("=")
        if not sep or not runs:
            parser.error(f"--arm {arm!r}: expected NAME=RUN_DIR,RUN_DIR,...")
        scores = [{"run": run, **out_of_fold([*args.fixed, run])} for run in runs.split(",")]
        rows.append(
            {
                "arm": name,
                "n_runs": len(scores),
                "runs": scores,
                **{key: _mean_sd([s[key] for s in scores]) for key in ("accuracy", "macro_f1")},
            }
        )
    command = " ".join(
        ["python benchmarks/ensemble_seeds.py", *(sys.argv[1:] if argv is None else argv)]
    )
    files.write_json(
        args.out,
        {
            "fixed": args.fixed,
            "pool": "loglinear, 5-fold CV on validation, 3 shuffles",
            "command": command,
            "rows": rows,
        },
    )
    print(f"wrote {args.out} ({len(rows)} arms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
