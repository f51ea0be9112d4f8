"""How to pool an ensemble, chosen on validation data only: k-fold cross-validation on the validation split.

    python benchmarks/ensemble_cv.py RUN_DIR RUN_DIR ...

Each pool is fitted on 4/5 of the members' preds_val.csv and scored on the other 1/5 (5 folds, 3 shuffles,
out-of-fold probabilities averaged over shuffles). The test split is not read.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from mathreport import artifacts, ensemble


def _stack_features(probs):
    return np.hstack([np.log(np.clip(p, ensemble.EPS, None)) for p in probs])


POOLS = {
    "plain average": (
        lambda probs, y: np.ones(len(probs)),
        lambda w, probs: ensemble.combine(probs, w, "linear"),
    ),
    "linear (fitted)": (
        lambda probs, y: ensemble.fit_weights(probs, y, "linear"),
        lambda w, probs: ensemble.combine(probs, w, "linear"),
    ),
    "loglinear (fitted)": (
        lambda probs, y: ensemble.fit_weights(probs, y, "loglinear"),
        lambda w, probs: ensemble.combine(probs, w, "loglinear"),
    ),
    "logistic-regression stacking": (
        lambda probs, y: LogisticRegression(max_iter=2000).fit(_stack_features(probs), y),
        lambda model, probs: model.predict_proba(_stack_features(probs)),
    ),
}


def cross_validate(runs: list[str], folds: int = 5, shuffles: int = 3) -> str:
    """A markdown table: each member's and each pool's validation accuracy and log-loss (pools out-of-fold)."""
    frames = [artifacts.read_val_predictions(r) for r in runs]
    y = frames[0]["y_true"].to_numpy()
    probs = [f[artifacts.PROB_COLUMNS].to_numpy(dtype=float) for f in frames]
    lines = ["| on the validation split | accuracy | log-loss |", "| --- | --- | --- |"]
    for run, p in zip(runs, probs, strict=True):
        lines.append(
            f"| member `{run}` | {(p.argmax(1) == y).mean():.4f} | {ensemble.log_loss(y, p):.4f} |"
        )
    for name, (fit, apply) in POOLS.items():
        out = np.zeros_like(probs[0])
        for seed in range(shuffles):
            for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y):
                model = fit([p[train] for p in probs], y[train])
                out[held] += apply(model, [p[held] for p in probs]) / shuffles
        lines.append(
            f"| {name}, {folds}-fold CV | {(out.argmax(1) == y).mean():.4f} | "
            f"{ensemble.log_loss(y, out):.4f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(
            f"usage: python benchmarks/ensemble_cv.py RUN_DIR RUN_DIR ...\n{__doc__.splitlines()[0]}"
        )
    print(cross_validate(sys.argv[1:]))
