"""Metrics written from their textbook definitions with plain numpy: the tests' independent expectation.

Nothing here calls scikit-learn or `mathreport.metrics`, so a wrong argument or formula there cannot hide by
being repeated in the expectation. Class ids are 0..7; a ratio with a zero denominator is 0 (the convention
`metrics` documents as zero_division=0).
"""

from __future__ import annotations

import numpy as np

K = 8


def confusion(y_true, y_pred, k: int = K) -> np.ndarray:
    """cm[t, p] = number of items of true class t predicted as p."""
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.array([a / b if b else 0.0 for a, b in zip(num, den, strict=True)])


def label_metrics(y_true, y_pred) -> dict:
    """Per-class precision/recall/F1/support and their micro, macro and weighted means.

    Macro means are over the classes that occur (as a true label or a prediction): a class with neither has no
    precision, recall or F1 to average.
    """
    cm = confusion(y_true, y_pred)
    tp, true_n, pred_n = np.diag(cm).astype(float), cm.sum(axis=1), cm.sum(axis=0)
    n = cm.sum()
    precision, recall = _ratio(tp, pred_n), _ratio(tp, true_n)
    f1 = _ratio(2 * precision * recall, precision + recall)  # the harmonic mean of P and R
    occurs = (true_n + pred_n) > 0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": true_n,
        "occurs": occurs,
        "Accuracy": tp.sum() / n,
        "F1_micro": tp.sum() / n,
        "Precision_macro": precision[occurs].mean(),
        "Recall_macro": recall[occurs].mean(),
        "F1_macro": f1[occurs].mean(),
        "Precision_weighted": (precision * true_n).sum() / n,
        "Recall_weighted": (recall * true_n).sum() / n,
        "F1_weighted": (f1 * true_n).sum() / n,
    }


def auc_by_pairs(positive_scores, negative_scores) -> float:
    """ROC AUC as the Mann-Whitney statistic: the share of (positive, negative) pairs the positive outscores,
    a tie counting one half."""
    pos = np.asarray(positive_scores, dtype=float)[:, None]
    neg = np.asarray(negative_scores, dtype=float)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def auc_per_class(y_true, probs) -> list[float | None]:
    """One-vs-rest AUC of each class; None where the class has no positives or no negatives."""
    y, p = np.asarray(y_true), np.asarray(probs, dtype=float)
    out: list[float | None] = []
    for k in range(K):
        pos, neg = p[y == k, k], p[y != k, k]
        out.append(auc_by_pairs(pos, neg) if len(pos) and len(neg) else None)
    return out


def auc_micro(y_true, probs) -> float:
    """AUC over all n*8 (item, class) scores pooled: the true class's score is a positive, the others negatives."""
    p = np.asarray(probs, dtype=float)
    is_true = np.eye(K, dtype=bool)[np.asarray(y_true)]
    return auc_by_pairs(p[is_true], p[~is_true])


def log_loss(y_true, probs) -> float:
    """Mean negative natural log of the probability given to the true class."""
    p = np.asarray(probs, dtype=float)
    return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(y_true)])))


def top_k_accuracy(y_true, probs, k: int) -> float:
    """Share of items whose true class is among the k highest scores (fewer than k classes score higher)."""
    p = np.asarray(probs, dtype=float)
    true_score = p[np.arange(len(p)), np.asarray(y_true)]
    return float(np.mean((p > true_score[:, None]).sum(axis=1) < k))
