"""Pure functions from (y_true, class probabilities) to every reported number. Reads no files."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)
from sklearn.preprocessing import label_binarize

from mathreport import labels

LABELS = list(range(labels.NUM_CLASSES))
# Metrics computed from per-class counts alone, so numpy does all resamples at once; AUC gets no interval.
BOOTSTRAP_METRICS = ("Accuracy", "Precision_macro", "Recall_macro", "F1_macro", "F1_weighted")
# Resamples handled per numpy batch: bounds memory to about this many x n_test integers.
_BOOTSTRAP_BATCH = 250


# --------------------------------------------------------------------------------------------- validation
def check_class_ids(values: ArrayLike, what: str = "y_true") -> np.ndarray:
    """A 1-D array of class ids 0..7 as int64, or a ValueError saying what was found."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D of shape (n_samples,); found shape {arr.shape}")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{what} must contain integer class ids 0..{labels.NUM_CLASSES - 1}; found dtype {arr.dtype}"
        )
    if arr.dtype.kind == "f":
        # Label columns read back from CSV can arrive as float; accept them only if exactly integral.
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{what} must contain integer class ids; found {arr[row].item()!r} at row {row}"
            )
    arr = arr.astype(np.int64)
    outside = (arr < 0) | (arr >= labels.NUM_CLASSES)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        found = sorted({int(v) for v in arr[outside]})
        raise ValueError(
            f"{what} contains class ids outside 0..{labels.NUM_CLASSES - 1}: {found} (first at row {row})"
        )
    return arr


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = [len(a) for a in arrays.values()]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: {lengths} ({', '.join(arrays)})"
        )
    if lengths[0] < 1:
        raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")


def validate_predictions(
    y_true: ArrayLike, probs: ArrayLike, y_pred: ArrayLike | None = None, *, atol: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check labels and an (n, 8) probability matrix; return (y_true, probs, y_pred) as numpy arrays.

    Rows must sum to 1 within `atol` and are rescaled to sum to 1 exactly (scikit-learn's AUC and log-loss checks
    are stricter than float32 softmax). `y_pred` must be a row maximum of `probs`; omitted, it is argmax(probs).
    """
    y_true = check_class_ids(y_true, "y_true")
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] != labels.NUM_CLASSES:
        raise ValueError(
            f"probs must have shape (n_samples, {labels.NUM_CLASSES}); found shape {p.shape}"
        )
    if p.dtype.kind not in "iuf" or p.dtype.kind == "b":
        raise ValueError(f"probs must be numeric; found dtype {p.dtype}")
    p = p.astype(np.float64)
    _check_same_length(y_true=y_true, probs=p)

    finite = np.isfinite(p)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"probs contains NaN or infinity; found {p[row, col].item()} at row {row}, column {col}"
        )
    outside = (p < 0) | (p > 1)
    if outside.any():
        row, col = (int(i) for i in np.argwhere(outside)[0])
        raise ValueError(
            f"probs must lie in [0, 1]; found {p[row, col].item()!r} at row {row}, column {col}"
        )
    sums = p.sum(axis=1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"probs rows must sum to 1 (within atol={atol}); row {row} sums to {sums[row]:.6g} "
            f"({int(off.sum())} of {len(p)} rows are off). Pass probabilities (softmax), not logits."
        )
    p = p / sums[:, None]

    argmax = p.argmax(axis=1)
    if y_pred is None:
        return y_true, p, argmax
    y_pred = check_class_ids(y_pred, "y_pred")
    _check_same_length(y_true=y_true, y_pred=y_pred)
    rows = np.arange(len(p))
    wrong = p[rows, y_pred] < p[rows, argmax]
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise ValueError(
            f"y_pred disagrees with argmax(probs) on {int(wrong.sum())} of {len(p)} rows "
            f"(first at row {row}: y_pred={int(y_pred[row])}, argmax={int(argmax[row])}); "
            "y_pred and probs must come from the same model output"
        )
    return y_true, p, y_pred


# ------------------------------------------------------------------------------------------- components
def roc_auc_per_class(
    y_true: ArrayLike, probs: ArrayLike
) -> tuple[list[float | None], dict[int, str]]:
    """One-vs-rest ROC AUC of each class (None where undefined) and, by class id, why it is undefined."""
    y_true, probs, _ = validate_predictions(y_true, probs)
    present = np.unique(y_true)
    aucs: list[float | None] = []
    reasons: dict[int, str] = {}
    for k in LABELS:
        if k not in present:
            reasons[k] = (
                f"class {k} ({labels.name(k, 'en')}) has no samples in y_true, so its one-vs-rest ROC "
                "curve has no positives"
            )
        elif len(present) == 1:
            reasons[k] = (
                f"class {k} ({labels.name(k, 'en')}) is the only class in y_true, so its one-vs-rest "
                "ROC curve has no negatives"
            )
        aucs.append(None if k in reasons else float(roc_auc_score(y_true == k, probs[:, k])))
    return aucs, reasons


def roc_auc_micro(y_true: ArrayLike, probs: ArrayLike) -> float:
    """Micro-averaged one-vs-rest ROC AUC over all n*8 (item, class) pairs: defined even for a single class."""
    y_true, probs, _ = validate_predictions(y_true, probs)
    return float(roc_auc_score(label_binarize(y_true, classes=LABELS), probs, average="micro"))


def average_precision_micro(y_true: ArrayLike, probs: ArrayLike) -> float:
    """Micro-averaged one-vs-rest average precision over all 8 classes."""
    y_true, probs, _ = validate_predictions(y_true, probs)
    return float(
        average_precision_score(label_binarize(y_true, classes=LABELS), probs, average="micro")
    )


def average_precision_per_class(
    y_true: ArrayLike, probs: ArrayLike
) -> tuple[list[float | None], dict[int, str]]:
    """One-vs-rest average precision of each class (None where it has no positives) and why."""
    y_true, probs, _ = validate_predictions(y_true, probs)
    present = set(np.unique(y_true).tolist())
    aps: list[float | None] = []
    reasons: dict[int, str] = {}
    for k in LABELS:
        if k in present:
            aps.append(float(average_precision_score(y_true == k, probs[:, k])))
        else:
            aps.append(None)
            reasons[k] = (
                f"class {k} ({labels.name(k, 'en')}) has no samples in y_true, so recall is undefined"
            )
    return aps, reasons


def calibration_bins(
    y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15, y_pred: ArrayLike | None = None
) -> dict[str, Any]:
    """Equal-width bins (i/n_bins, (i+1)/n_bins] of the predicted class's probability, the first closed at 0.

    Returns arrays `lower`, `upper`, `count`, `accuracy`, `confidence` (per non-empty bin) and the float `ece`.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; found {n_bins!r}")
    y_true, probs, y_pred = validate_predictions(y_true, probs, y_pred)
    confidence = probs[np.arange(len(probs)), y_pred]
    correct = (y_pred == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    # side="left" puts a confidence equal to an edge in the bin below it: right-closed bins.
    idx = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(idx, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    keep = count > 0
    accuracy = acc_sum[keep] / count[keep]
    mean_conf = conf_sum[keep] / count[keep]
    ece = float(np.sum(count[keep] / len(y_true) * np.abs(accuracy - mean_conf)))
    return {
        "lower": edges[:-1][keep],
        "upper": edges[1:][keep],
        "count": count[keep],
        "accuracy": accuracy,
        "confidence": mean_conf,
        "ece": ece,
    }


def expected_calibration_error(
    y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15, y_pred: ArrayLike | None = None
) -> float:
    """ECE: support-weighted mean |accuracy - confidence| over equal-width bins of the top probability."""
    return calibration_bins(y_true, probs, n_bins, y_pred)["ece"]


# -------------------------------------------------------------------------------------------- bootstrap
def _bootstrap_batches(n: int, n_bootstrap: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for start in range(0, n_bootstrap, _BOOTSTRAP_BATCH):
        yield rng.integers(0, n, size=(min(_BOOTSTRAP_BATCH, n_bootstrap - start), n))


def bootstrap_indices(n: int, n_bootstrap: int = 1000, seed: int = 0) -> np.ndarray:
    """The (n_bootstrap, n) row indices that `bootstrap_replicates` resamples with the same seed."""
    return np.concatenate(list(_bootstrap_batches(n, n_bootstrap, seed)), axis=0)


def _count_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray
) -> dict[str, np.ndarray]:
    # scikit-learn's zero_division=0 formulas without labels=: macro means over the classes a resample has in
    # y_true or y_pred. One bincount over ids offset by resample gives every resample's per-class counts.
    k = labels.NUM_CLASSES
    m = len(idx)
    offset = (np.arange(m) * k)[:, None]
    t, p = y_true[idx], y_pred[idx]
    true_n = np.bincount((t + offset).ravel(), minlength=m * k).reshape(m, k)
    pred_n = np.bincount((p + offset).ravel(), minlength=m * k).reshape(m, k)
    tp = np.bincount((t + offset).ravel(), weights=(t == p).ravel(), minlength=m * k).reshape(m, k)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)

    precision, recall = ratio(tp, pred_n), ratio(tp, true_n)
    f1 = ratio(2 * tp, true_n + pred_n)
    n = idx.shape[1]
    present = (true_n + pred_n) > 0
    n_present = present.sum(axis=1)

    def macro(per_class: np.ndarray) -> np.ndarray:
        return np.where(present, per_class, 0.0).sum(axis=1) / n_present

    return {
        "Accuracy": tp.sum(axis=1) / n,
        "Precision_macro": macro(precision),
        "Recall_macro": macro(recall),
        "F1_macro": macro(f1),
        "F1_weighted": (f1 * true_n).sum(axis=1) / n,
    }


def bootstrap_replicates(
    y_true: ArrayLike, y_pred: ArrayLike, *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Each metric of BOOTSTRAP_METRICS on every resample of `bootstrap_indices(n, n_bootstrap, seed)`."""
    y_true = check_class_ids(y_true, "y_true")
    y_pred = check_class_ids(y_pred, "y_pred")
    _check_same_length(y_true=y_true, y_pred=y_pred)
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer; found {n_bootstrap!r}")
    parts = [
        _count_metrics(y_true, y_pred, idx)
        for idx in _bootstrap_batches(len(y_true), n_bootstrap, seed)
    ]
    return {name: np.concatenate([part[name] for part in parts]) for name in BOOTSTRAP_METRICS}


def bootstrap_ci(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals {metric: [low, high]} for each metric of BOOTSTRAP_METRICS."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); found {confidence!r}")
    reps = bootstrap_replicates(y_true, y_pred, n_bootstrap=n_bootstrap, seed=seed)
    tail = 100 * (1 - confidence) / 2
    return {
        name: [float(v) for v in np.percentile(values, [tail, 100 - tail])]
        for name, values in reps.items()
    }


# ---------------------------------------------------------------------------------------------- reports
def _check_finite(tree: Any, path: str = "metrics") -> None:
    # A NaN in metrics.json would surface as a blank or "nan" cell in the report; fail here instead.
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            _check_finite(value, f"{path}[{key!r}]")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            _check_finite(value, f"{path}[{i}]")
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise RuntimeError(f"{path} is {tree}; undefined values must be None with a reason")


def compute_metrics(
    y_true: ArrayLike,
    probs: ArrayLike,
    *,
    y_pred: ArrayLike | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Every headline metric of one run as JSON-ready values, with 95% bootstrap intervals.

    Macro means are over the classes in y_true or y_pred (scikit-learn's default), the others listed in
    `macro_excluded`; AUC_macro over the classes where AUC is defined, the others in `AUC_macro_excluded`. An
    undefined value is None, explained in `undefined`.
    """
    y_true, probs, y_pred = validate_predictions(y_true, probs, y_pred)
    prf = {
        "macro": precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0),
        "weighted": precision_recall_fscore_support(
            y_true, y_pred, labels=LABELS, average="weighted", zero_division=0
        ),
    }
    occurring = set(np.unique(y_true)) | set(np.unique(y_pred))
    macro_excluded = {
        f"class_{k}": "no test item and no prediction" for k in LABELS if k not in occurring
    }
    aucs, auc_reasons = roc_auc_per_class(y_true, probs)
    defined = [a for a in aucs if a is not None]
    undefined: dict[str, str] = {}
    if not defined:
        undefined["AUC_macro"] = (
            f"y_true contains a single class ({int(y_true[0])}, "
            f"{labels.name(int(y_true[0]), 'en')}), so no one-vs-rest ROC curve has both "
            "positives and negatives"
        )

    out: dict[str, Any] = {
        "n_test": len(y_true),
        "Accuracy": float(accuracy_score(y_true, y_pred)),
        "Precision_macro": float(prf["macro"][0]),
        "Recall_macro": float(prf["macro"][1]),
        "Precision_weighted": float(prf["weighted"][0]),
        "Recall_weighted": float(prf["weighted"][1]),
        "F1_micro": float(
            f1_score(y_true, y_pred, labels=LABELS, average="micro", zero_division=0)
        ),
        "F1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "F1_weighted": float(
            f1_score(y_true, y_pred, labels=LABELS, average="weighted", zero_division=0)
        ),
        "AUC_macro": float(np.mean(defined)) if defined else None,
        "AUC_micro": roc_auc_micro(y_true, probs),
        "AUC_macro_excluded": {f"class_{k}": reason for k, reason in auc_reasons.items()},
        "macro_excluded": macro_excluded,
        "Top2_accuracy": float(top_k_accuracy_score(y_true, probs, k=2, labels=LABELS)),
        "LogLoss": float(log_loss(y_true, probs, labels=LABELS)),
        "ECE": expected_calibration_error(y_true, probs, n_bins, y_pred),
        "ECE_n_bins": int(n_bins),
        "undefined": undefined,
        "ci95": bootstrap_ci(y_true, y_pred, n_bootstrap=n_bootstrap, seed=seed, confidence=0.95),
        "bootstrap": {"method": "percentile", "n_resamples": int(n_bootstrap), "seed": int(seed)},
    }
    _check_finite(out)
    return out


def per_class_report(
    y_true: ArrayLike, probs: ArrayLike, y_pred: ArrayLike | None = None
) -> dict[str, Any]:
    """{"per_class": {"class_k": {name_tr, name_en, precision, recall, f1_score, support, auc}}} for all 8."""
    y_true, probs, y_pred = validate_predictions(y_true, probs, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, average=None, zero_division=0
    )
    aucs, reasons = roc_auc_per_class(y_true, probs)
    per_class: dict[str, dict[str, Any]] = {}
    for k in LABELS:
        entry: dict[str, Any] = {
            "name_tr": labels.name(k, "tr"),
            "name_en": labels.name(k, "en"),
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1_score": float(f1[k]),
            "support": int(support[k]),
            "auc": aucs[k],
        }
        if k in reasons:
            entry["auc_undefined_reason"] = reasons[k]
        per_class[f"class_{k}"] = entry
    out = {"per_class": per_class}
    _check_finite(out)
    return out


# ----------------------------------------------------------------------------------------- comparisons
MCNEMAR_ALTERNATIVES = ("two-sided", "greater", "less")


def mcnemar_test(
    y_true: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike, alternative: str = "two-sided"
) -> dict[str, Any]:
    """Exact McNemar test: b = items A gets right and B wrong, c = the reverse, binomial p on the b + c pairs.

    alternative: "two-sided" (A and B differ); "greater": A is right more often than B (b > c), the test of B
    being worse than A; "less": the reverse. A one-sided result says which in its "alternative" key.
    """
    if alternative not in MCNEMAR_ALTERNATIVES:
        raise ValueError(
            f"alternative must be one of {MCNEMAR_ALTERNATIVES}; found {alternative!r}"
        )
    y_true = check_class_ids(y_true, "y_true")
    pred_a = check_class_ids(pred_a, "pred_a")
    pred_b = check_class_ids(pred_b, "pred_b")
    _check_same_length(y_true=y_true, pred_a=pred_a, pred_b=pred_b)
    right_a, right_b = pred_a == y_true, pred_b == y_true
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    # With no discordant pairs the exact test has a single possible outcome, observed with probability 1.
    p_value = (
        float(stats.binomtest(b, b + c, 0.5, alternative=alternative).pvalue) if b + c else 1.0
    )
    result = {
        "b": b,
        "c": c,
        "n_discordant": b + c,
        "p_value": p_value,
        "n": len(y_true),
        "method": "exact",
    }
    return result if alternative == "two-sided" else {**result, "alternative": alternative}


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two [low, high] intervals share a point."""
    return bool(a[0] <= b[1] and b[0] <= a[1])


_SAME_ITEMS = "a paired comparison needs the same test items in the same order"


def compare_runs(
    runs: Mapping[str, tuple[ArrayLike, ArrayLike]],
    cis: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """McNemar test for every pair of runs on the same test items, and whether their 95% CIs overlap.

    runs: {run name: (y_true, y_pred)}. cis: {run name: its `ci95` dict, or its whole metrics dict}.
    """
    if len(runs) < 2:
        raise ValueError(f"compare_runs needs at least 2 runs; found {len(runs)}: {list(runs)}")
    arrays = {
        name: (
            check_class_ids(pair[0], f"y_true of run {name!r}"),
            check_class_ids(pair[1], f"y_pred of run {name!r}"),
        )
        for name, pair in runs.items()
    }
    first, (ref, _) = next(iter(arrays.items()))
    for name, (y_true, y_pred) in arrays.items():
        _check_same_length(**{f"y_true[{name}]": y_true, f"y_pred[{name}]": y_pred})
        if len(y_true) != len(ref):
            raise ValueError(
                f"runs {first!r} and {name!r} have test sets of different sizes "
                f"({len(ref)} vs {len(y_true)}); {_SAME_ITEMS}"
            )
        differ = np.flatnonzero(y_true != ref)
        if len(differ):
            raise ValueError(
                f"runs {first!r} and {name!r} have different y_true on {len(differ)} of {len(ref)} rows "
                f"(first at row {int(differ[0])}); {_SAME_ITEMS}"
            )
    compared = ("Accuracy", "F1_macro")
    ci95: dict[str, Mapping[str, Any]] = {}
    if cis is not None:
        for name in arrays:
            if name not in cis:
                raise ValueError(f"cis has no entry for run {name!r}; found runs {list(cis)}")
            ci = cis[name].get("ci95", cis[name])
            missing = [m for m in compared if m not in ci]
            if missing:
                raise ValueError(
                    f"cis[{name!r}] lacks intervals for {missing}; found keys {list(ci)}"
                )
            ci95[name] = ci

    rows = []
    for name_a, name_b in itertools.combinations(arrays, 2):
        y_true, pred_a = arrays[name_a]
        pred_b = arrays[name_b][1]
        row: dict[str, Any] = {
            "run_a": name_a,
            "run_b": name_b,
            "accuracy_a": float(accuracy_score(y_true, pred_a)),
            "accuracy_b": float(accuracy_score(y_true, pred_b)),
            **mcnemar_test(y_true, pred_a, pred_b),
        }
        if ci95:
            row["ci_overlap"] = {
                m: intervals_overlap(ci95[name_a][m], ci95[name_b][m]) for m in compared
            }
        rows.append(row)
    return rows


def top_confusions(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    texts: Sequence[str] | None = None,
    k: int = 5,
    n_examples: int = 3,
) -> list[dict[str, Any]]:
    """The k most frequent (true -> predicted) mistakes with counts, class names and example questions."""
    y_true = check_class_ids(y_true, "y_true")
    y_pred = check_class_ids(y_pred, "y_pred")
    _check_same_length(y_true=y_true, y_pred=y_pred)
    if texts is not None:
        texts = list(texts)
        if len(texts) != len(y_true):
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: [{len(y_true)}, "
                f"{len(texts)}] (y_true, texts)"
            )
    cm = confusion_matrix(y_true, y_pred, labels=LABELS)
    pairs = [(int(cm[t, p]), t, p) for t in LABELS for p in LABELS if t != p and cm[t, p] > 0]
    # Most frequent first; ties in class-id order so the table is stable across runs.
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    support = cm.sum(axis=1)
    out = []
    for count, t, p in pairs[:k]:
        rows = np.flatnonzero((y_true == t) & (y_pred == p))
        out.append(
            {
                "true_id": t,
                "pred_id": p,
                "true_name_tr": labels.name(t, "tr"),
                "true_name_en": labels.name(t, "en"),
                "pred_name_tr": labels.name(p, "tr"),
                "pred_name_en": labels.name(p, "en"),
                "count": count,
                "share_of_true": float(count / support[t]),
                "rows": [int(r) for r in rows[:n_examples]],
                "examples": [str(texts[r]) for r in rows[:n_examples]] if texts is not None else [],
            }
        )
    return out
