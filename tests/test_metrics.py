"""metrics: hand-computed cases, known closed-form values, and definitions written in numpy (reference_metrics),
never the scikit-learn calls metrics.py makes; plus the edge cases of real test splits."""

from __future__ import annotations

import json
import math
from fractions import Fraction as F

import numpy as np
import pytest
import reference_metrics as ref
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from mathreport import labels, metrics

K = labels.NUM_CLASSES
LABELS = list(range(K))
SEEDS = range(5)


def random_run(
    seed: int, n: int = 300, classes: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from `classes` and Dirichlet probabilities that lean towards the true class."""
    rng = np.random.default_rng(seed)
    y = rng.choice(classes if classes is not None else LABELS, size=n)
    alpha = np.ones((n, K))
    alpha[np.arange(n), y] += 2.0  # better than chance, so the metrics are not all near 1/8
    gamma = rng.gamma(alpha)  # per-row Dirichlet(alpha): numpy's dirichlet takes one alpha only
    return y, gamma / gamma.sum(axis=1, keepdims=True)


def ece_by_loop(y: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """ECE written independently of the module: masks per bin, (lo, hi] with the first bin closed."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    edges = np.linspace(0, 1, n_bins + 1)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        mask = (conf > lo) & (conf <= hi) if i else (conf >= lo) & (conf <= hi)
        if mask.any():
            total += mask.mean() * abs((pred[mask] == y[mask]).mean() - conf[mask].mean())
    return total


def assert_json_clean(obj: object) -> None:
    json.dumps(obj, allow_nan=False)


# ------------------------------------------------------------------------------------- a hand-computed case
# Eight questions of classes 0-2. Each row, in 64ths: the scores of classes 0, 1, 2 below and 2/64 on each of
# classes 3-7 (exact binary fractions: equal scores stay exactly equal when validate_predictions rescales rows).
HAND_Y = [0, 0, 0, 0, 1, 1, 2, 2]
HAND_64THS = [
    (40, 8, 6),
    (34, 14, 6),
    (28, 20, 6),
    (18, 30, 6),
    (10, 38, 6),
    (24, 2, 28),
    (2, 8, 44),
    (22, 2, 30),
]
#   argmax:       0           0           0           1           1           2           2           2
# Confusion matrix (rows true, columns predicted):
#            pred 0  1  2   support
#   true 0        3  1  0   4
#   true 1        0  1  1   2
#   true 2        0  0  2   2
#   predicted     3  2  3
# precision = tp/predicted: 3/3, 1/2, 2/3;  recall = tp/support: 3/4, 1/2, 2/2
# F1 = 2PR/(P+R): class 0 2(1)(3/4)/(7/4) = 6/7; class 1 1/2; class 2 2(2/3)(1)/(5/3) = 4/5
# Classes 3-7 have no item and no prediction: they have no P, R or F1, and macro means are over classes 0-2.
HAND_EXPECTED = {
    "Accuracy": F(6, 8),
    "F1_micro": F(6, 8),
    "Precision_macro": (1 + F(1, 2) + F(2, 3)) / 3,  # 13/18
    "Recall_macro": (F(3, 4) + F(1, 2) + 1) / 3,  # 3/4
    "F1_macro": (F(6, 7) + F(1, 2) + F(4, 5)) / 3,  # 151/210
    "Precision_weighted": (4 * 1 + 2 * F(1, 2) + 2 * F(2, 3)) / 8,  # 19/24
    "Recall_weighted": (4 * F(3, 4) + 2 * F(1, 2) + 2 * 1) / 8,  # 3/4 (= accuracy, always)
    "F1_weighted": (4 * F(6, 7) + 2 * F(1, 2) + 2 * F(4, 5)) / 8,  # 211/280
    # Top-2: only row 5 (true 1, scores 24, 2, 28) has its true class third.
    "Top2_accuracy": F(7, 8),
    # One-vs-rest AUC = share of (positive, negative) pairs won, a tie counting 1/2:
    #   class 0: positives 40 34 28 18 vs negatives 10 24 2 22: 18 loses to 24 and 22 -> 14/16 = 7/8
    #   class 1: positives 38 2 vs negatives 8 14 20 30 8 2: 38 wins 6, 2 ties row 7's 2 -> 6.5/12 = 13/24
    #   class 2: positives 44 30 vs negatives 6 6 6 6 6 28: all 12 won -> 1
    "AUC_macro": (F(7, 8) + F(13, 24) + 1)
    / 3,  # 29/36; classes 3-7 have no positives and are excluded
    # Micro AUC pools the 8 true-class scores (40 34 28 18 38 2 44 30) against the other 56 scores
    # (42 of them 2/64, plus 8 6 14 6 20 6 30 6 10 6 24 28 8 22). Pairs won per positive:
    #   40, 34, 38, 44: 56 each; 28: 54 + 0.5 (tie 28); 18: 51; 2: 42 ties -> 21; 30: 55 + 0.5 (tie 30)
    "AUC_micro": (4 * 56 + F(109, 2) + 51 + 21 + F(111, 2)) / (8 * 56),  # 406/448 = 29/32
    # ECE, 15 bins of the top score (in 64ths): 28 28 | 30 30 34 | 38 | 40 | 44, correct: 1 0 | 0 1 1 | 1 | 1 | 1
    #   sum over bins of |correct - sum of confidence| / 8 = (|1 - 56/64| + |2 - 94/64| + 26/64 + 24/64 + 20/64) / 8
    "ECE": (F(8, 64) + F(34, 64) + F(26, 64) + F(24, 64) + F(20, 64)) / 8,  # 7/32
}
HAND_PER_CLASS = {  # class: (precision, recall, f1, support, auc)
    0: (1, F(3, 4), F(6, 7), 4, F(7, 8)),
    1: (F(1, 2), F(1, 2), F(1, 2), 2, F(13, 24)),
    2: (F(2, 3), 1, F(4, 5), 2, 1),
}


def hand_probs() -> np.ndarray:
    return np.array([[*row, 2, 2, 2, 2, 2] for row in HAND_64THS], dtype=float) / 64


def test_hand_computed_case() -> None:
    m = metrics.compute_metrics(HAND_Y, hand_probs(), n_bootstrap=100)
    for key, value in HAND_EXPECTED.items():
        assert m[key] == pytest.approx(float(value), rel=1e-12, abs=1e-12), key
    # LogLoss = -mean ln p(true class), the true-class scores in 64ths:
    assert m["LogLoss"] == pytest.approx(
        -sum(math.log(s / 64) for s in (40, 34, 28, 18, 38, 2, 44, 30)) / 8
    )
    assert m["n_test"] == 8
    assert sorted(m["AUC_macro_excluded"]) == [f"class_{k}" for k in range(3, 8)]
    assert sorted(m["macro_excluded"]) == [f"class_{k}" for k in range(3, 8)]
    assert m["undefined"] == {}


def test_hand_computed_per_class_report() -> None:
    report = metrics.per_class_report(HAND_Y, hand_probs())["per_class"]
    for k, (precision, recall, f1, support, auc) in HAND_PER_CLASS.items():
        row = report[f"class_{k}"]
        assert (row["precision"], row["recall"], row["f1_score"], row["auc"]) == pytest.approx(
            (float(precision), float(recall), float(f1), float(auc)), rel=1e-12
        ), k
        assert row["support"] == support and "auc_undefined_reason" not in row
    for k in range(3, 8):  # no item of these classes: 0 by zero_division, AUC None with the reason
        row = report[f"class_{k}"]
        assert (row["precision"], row["recall"], row["f1_score"], row["support"], row["auc"]) == (
            0,
            0,
            0,
            0,
            None,
        )
        assert "has no samples in y_true" in row["auc_undefined_reason"]


# --------------------------------------------------------------------------------------- known closed forms
def _two_level_probs(y: np.ndarray, true_score: float) -> np.ndarray:
    """Each row gives `true_score` to its true class and splits the rest evenly over the other 7."""
    p = np.full((len(y), K), (1 - true_score) / (K - 1))
    p[np.arange(len(y)), y] = true_score
    return p


@pytest.mark.parametrize(
    ("true_score", "auc"),
    [
        (0.3, 1.0),  # every positive outscores every negative (0.3 > 0.1): perfectly separable
        (0.02, 0.0),  # every positive scores below every negative (0.02 < 0.14): perfectly reversed
        (1 / 8, 0.5),  # every score equal: every pair a tie
    ],
)
def test_auc_known_values(true_score: float, auc: float) -> None:
    y = np.repeat(LABELS, 2)
    m = metrics.compute_metrics(y, _two_level_probs(y, true_score), n_bootstrap=50)
    report = metrics.per_class_report(y, _two_level_probs(y, true_score))["per_class"]
    assert m["AUC_macro"] == auc and m["AUC_micro"] == auc
    assert [report[f"class_{k}"]["auc"] for k in LABELS] == [auc] * K


def test_perfect_predictions_score_one() -> None:
    y = np.repeat(LABELS, 3)
    m = metrics.compute_metrics(y, np.eye(K)[y], n_bootstrap=50)
    for key in (
        "Accuracy",
        "F1_micro",
        "F1_macro",
        "F1_weighted",
        "Precision_macro",
        "Recall_macro",
        "Top2_accuracy",
        "AUC_macro",
        "AUC_micro",
    ):
        assert m[key] == 1.0, key
    assert m["ECE"] == 0.0
    assert m["ci95"]["Accuracy"] == [1.0, 1.0]


# ---------------------------------------------------------------------------- against the numpy definitions
@pytest.mark.parametrize("seed", SEEDS)
def test_compute_metrics_match_the_definitions(seed: int) -> None:
    y, p = random_run(seed)
    pred = p.argmax(axis=1)
    m = metrics.compute_metrics(y, p, n_bootstrap=200, seed=seed)
    by_label = ref.label_metrics(y, pred)
    expected = {
        **{
            key: by_label[key]
            for key in (
                "Accuracy",
                "Precision_macro",
                "Recall_macro",
                "Precision_weighted",
                "Recall_weighted",
                "F1_micro",
                "F1_macro",
                "F1_weighted",
            )
        },
        "AUC_macro": np.mean(ref.auc_per_class(y, p)),
        "AUC_micro": ref.auc_micro(y, p),
        "Top2_accuracy": ref.top_k_accuracy(y, p, 2),
        "LogLoss": ref.log_loss(y, p),
        "ECE": ece_by_loop(y, p, 15),
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        assert type(m[key]) is float, key
    assert m["n_test"] == len(y)
    assert m["AUC_macro_excluded"] == {} and m["undefined"] == {}
    assert_json_clean(m)


@pytest.mark.parametrize("seed", SEEDS)
def test_per_class_report_matches_the_definitions(seed: int) -> None:
    y, p = random_run(seed)
    report = metrics.per_class_report(y, p)["per_class"]
    by_label = ref.label_metrics(y, p.argmax(axis=1))
    aucs = ref.auc_per_class(y, p)
    assert list(report) == [f"class_{k}" for k in LABELS]
    for k in LABELS:
        row = report[f"class_{k}"]
        assert row["name_tr"] == labels.name(k, "tr") and row["name_en"] == labels.name(k, "en")
        assert row["precision"] == pytest.approx(by_label["precision"][k])
        assert row["recall"] == pytest.approx(by_label["recall"][k])
        assert row["f1_score"] == pytest.approx(by_label["f1"][k])
        assert row["support"] == by_label["support"][k] and type(row["support"]) is int
        assert row["auc"] == pytest.approx(aucs[k])
    assert_json_clean(report)


# ------------------------------------------------------------------------------------------ bootstrap
# The bootstrap counts per class with numpy (metrics._count_metrics), not with scikit-learn: here
# scikit-learn is the independent expectation.
@pytest.mark.parametrize("seed", SEEDS)
def test_bootstrap_replicates_equal_sklearn_on_the_same_resamples(seed: int) -> None:
    y, p = random_run(seed)
    pred = p.argmax(axis=1)
    # 300 resamples span two numpy batches, so the batch boundary is covered too.
    reps = metrics.bootstrap_replicates(y, pred, n_bootstrap=300, seed=seed)
    idx = metrics.bootstrap_indices(len(y), 300, seed)
    assert idx.shape == (300, len(y))
    for b in (0, 1, 251, 299):
        yt, yp = y[idx[b]], pred[idx[b]]
        assert reps["Accuracy"][b] == pytest.approx(accuracy_score(yt, yp))
        for avg in ("macro", "weighted"):
            assert reps[f"F1_{avg}"][b] == pytest.approx(
                f1_score(yt, yp, average=avg, zero_division=0)
            )
        # scikit-learn's default (no labels=): macro means over the classes the resample has.
        assert reps["Precision_macro"][b] == pytest.approx(
            precision_score(yt, yp, average="macro", zero_division=0)
        )
        assert reps["Recall_macro"][b] == pytest.approx(
            recall_score(yt, yp, average="macro", zero_division=0)
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_ci_brackets_point_estimate_and_is_deterministic(seed: int) -> None:
    y, p = random_run(seed)
    m = metrics.compute_metrics(y, p, seed=seed)
    assert m["bootstrap"] == {"method": "percentile", "n_resamples": 1000, "seed": seed}
    assert set(m["ci95"]) == set(metrics.BOOTSTRAP_METRICS)
    for key, (low, high) in m["ci95"].items():
        assert low <= m[key] <= high, key
        assert low < high, key
    again = metrics.compute_metrics(y, p, seed=seed)
    assert again["ci95"] == m["ci95"]
    other = metrics.compute_metrics(y, p, seed=seed + 100)
    assert other["ci95"] != m["ci95"]
    # The interval is the percentile interval of the replicates, computed here with numpy.
    reps = metrics.bootstrap_replicates(y, p.argmax(axis=1), n_bootstrap=1000, seed=seed)
    assert m["ci95"]["F1_macro"] == pytest.approx(
        list(np.percentile(reps["F1_macro"], [2.5, 97.5]))
    )


# ----------------------------------------------------------------------------------------- edge cases


# ----------------------------------------------------------------------------------------- edge cases
def test_class_absent_from_test_split() -> None:
    """A class with no test item: its AUC is None with the reason, AUC_macro averages the other 7, and the
    label metrics' macro means count it (recall 0) only where some item is predicted as it."""
    present = [k for k in LABELS if k != 3]
    y, p = random_run(0, classes=present)
    m = metrics.compute_metrics(y, p, n_bootstrap=100)
    aucs = ref.auc_per_class(y, p)
    assert aucs[3] is None
    assert m["AUC_macro"] == pytest.approx(np.mean([aucs[k] for k in present]), rel=1e-12)
    assert list(m["AUC_macro_excluded"]) == ["class_3"]
    assert "no samples" in m["AUC_macro_excluded"]["class_3"]
    assert m["undefined"] == {}
    by_label = ref.label_metrics(y, p.argmax(axis=1))
    assert by_label["recall"][3] == 0
    predicted_3 = bool((p.argmax(axis=1) == 3).any())
    assert m["Recall_macro"] == pytest.approx(
        sum(by_label["recall"][k] for k in present) / (8 if predicted_3 else 7), rel=1e-12
    )
    assert m["macro_excluded"] == (
        {} if predicted_3 else {"class_3": "no test item and no prediction"}
    )
    assert m["AUC_micro"] == pytest.approx(ref.auc_micro(y, p), rel=1e-12)
    report = metrics.per_class_report(y, p)["per_class"]
    assert report["class_3"]["auc"] is None
    assert report["class_3"]["support"] == 0
    assert "no samples" in report["class_3"]["auc_undefined_reason"]
    assert all("auc_undefined_reason" not in report[f"class_{k}"] for k in present)
    assert_json_clean(m)
    assert_json_clean(report)


def test_single_class_test_split() -> None:
    y, p = random_run(1, n=40, classes=[2])
    m = metrics.compute_metrics(y, p, n_bootstrap=100)
    assert m["AUC_macro"] is None
    assert "single class" in m["undefined"]["AUC_macro"]
    assert len(m["AUC_macro_excluded"]) == K
    assert "only class" in m["AUC_macro_excluded"]["class_2"]
    # Micro-AUC pools (item, class) pairs and stays defined.
    assert m["AUC_micro"] == pytest.approx(ref.auc_micro(y, p), rel=1e-12)
    assert m["Accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == 2))
    report = metrics.per_class_report(y, p)["per_class"]
    assert all(report[f"class_{k}"]["auc"] is None for k in LABELS)
    assert "only class" in report["class_2"]["auc_undefined_reason"]
    assert_json_clean(m)
    assert_json_clean(report)


def test_rows_not_summing_to_one_name_the_row() -> None:
    y, p = random_run(0, n=20)
    p[7] *= 0.9
    with pytest.raises(ValueError, match=r"row 7 sums to 0\.9"):
        metrics.compute_metrics(y, p)


def test_logits_are_rejected() -> None:
    y, p = random_run(0, n=20)
    with pytest.raises(ValueError, match=r"\[0, 1\].*row 0"):
        metrics.validate_predictions(y, np.log(p))


def test_y_pred_inconsistent_with_probs() -> None:
    y, p = random_run(0, n=20)
    pred = p.argmax(axis=1)
    pred[[4, 9]] = (pred[[4, 9]] + 1) % K
    with pytest.raises(ValueError, match=r"2 of 20 rows \(first at row 4"):
        metrics.validate_predictions(y, p, pred)


def test_y_pred_may_break_an_exact_tie_either_way() -> None:
    y = np.array([0, 1])
    p = np.full((2, K), 1 / K)
    _, _, pred = metrics.validate_predictions(y, p, [5, 6])
    assert pred.tolist() == [5, 6]


def test_rows_within_tolerance_are_rescaled() -> None:
    y, p = random_run(0, n=20)
    p32 = p.astype(np.float32)
    p32[0] *= np.float32(1.0005)
    _, q, pred = metrics.validate_predictions(y, p32)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (pred == p.argmax(axis=1)).all()


@pytest.mark.parametrize(
    ("y", "probs", "message"),
    [
        ([0, 1], np.full((3, K), 1 / K), r"inconsistent numbers of samples: \[2, 3\]"),
        ([0, 1], np.full((2, 7), 1 / 7), r"shape \(n_samples, 8\); found shape \(2, 7\)"),
        ([0, 8], np.full((2, K), 1 / K), r"outside 0\.\.7: \[8\] \(first at row 1\)"),
        ([0, 1.5], np.full((2, K), 1 / K), r"integer class ids; found 1\.5 at row 1"),
        ([], np.zeros((0, K)), r"minimum of 1"),
        ([0, 1], np.where(np.eye(2, K) > 0, np.nan, 1 / K), r"NaN or infinity; .* row 0, column 0"),
    ],
)
def test_invalid_inputs_say_what_was_found(y: list, probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.validate_predictions(y, probs)


# ---------------------------------------------------------------------------------------- calibration
def test_calibration_bins_match_a_loop_and_perfect_predictions_have_zero_ece() -> None:
    y, p = random_run(3)
    bins = metrics.calibration_bins(y, p, n_bins=10)
    assert bins["ece"] == pytest.approx(ece_by_loop(y, p, 10))
    assert bins["count"].sum() == len(y)
    assert (bins["count"] > 0).all()
    onehot = np.eye(K)[y]
    assert metrics.expected_calibration_error(y, onehot) == 0.0


def test_a_confidence_on_a_bin_edge_falls_in_the_bin_below_it() -> None:
    """Bins are (lo, hi]: a top probability of exactly 0.5 with 4 bins is in (0.25, 0.5], not in (0.5, 0.75]."""

    def row(top: float, cls: int) -> np.ndarray:
        # the rest split as r/2, r/4, ..., r/64, r/64: every entry and the row sum are exact in binary
        rest = (1.0 - top) * np.array([2.0**-k for k in range(1, K - 1)] + [2.0 ** -(K - 2)])
        return np.insert(rest, cls, top)

    # Confidences 0.5, 0.75 and 1.0 are exact in binary, so each sits exactly on an edge of 4 equal bins.
    probs = np.array([row(0.5, 0), row(0.75, 1), row(0.75, 2), row(1.0, 3)])
    y = np.array([0, 1, 0, 3])  # the third row is wrong
    bins = metrics.calibration_bins(y, probs, n_bins=4)
    assert bins["lower"].tolist() == [0.25, 0.5, 0.75]
    assert bins["upper"].tolist() == [0.5, 0.75, 1.0]
    assert bins["count"].tolist() == [1, 2, 1]
    assert bins["accuracy"].tolist() == [1.0, 0.5, 1.0]
    # |1 - 0.5| / 4 + 2/4 * |0.5 - 0.75| + 0 = 1/8 + 1/8
    assert bins["ece"] == pytest.approx(0.25)
    assert bins["ece"] == pytest.approx(ece_by_loop(y, probs, 4))


# ------------------------------------------------------------------------------------------ comparisons
def test_mcnemar_counts_and_exact_p() -> None:
    y, p = random_run(0)
    rng = np.random.default_rng(1)
    pred_a = p.argmax(axis=1)
    pred_b = np.where(rng.random(len(y)) < 0.3, rng.integers(0, K, len(y)), pred_a)
    result = metrics.mcnemar_test(y, pred_a, pred_b)
    b = int(np.sum((pred_a == y) & (pred_b != y)))
    c = int(np.sum((pred_a != y) & (pred_b == y)))
    assert (result["b"], result["c"], result["n"]) == (b, c, len(y))
    assert b + c > 0
    assert result["p_value"] == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)
    same = metrics.mcnemar_test(y, pred_a, pred_a)
    assert same["n_discordant"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        metrics.mcnemar_test(y, pred_a, pred_b[:-1])


def test_mcnemar_one_sided_asks_whether_b_is_worse_than_a() -> None:
    y = np.zeros(20, dtype=int)
    pred_a = np.zeros(20, dtype=int)
    pred_b = np.zeros(20, dtype=int)
    pred_b[:7] = 1  # B wrong where A is right, 7 times; A never wrong where B is right
    worse = metrics.mcnemar_test(y, pred_a, pred_b, alternative="greater")
    assert (worse["b"], worse["c"], worse["alternative"]) == (7, 0, "greater")
    assert worse["p_value"] == pytest.approx(0.5**7)  # all 7 discordant pairs against B
    # The same pairs say nothing for "B better" and half as much two-sided as one-sided.
    assert metrics.mcnemar_test(y, pred_a, pred_b, alternative="less")["p_value"] == pytest.approx(
        1.0
    )
    two_sided = metrics.mcnemar_test(y, pred_a, pred_b)
    assert two_sided["p_value"] == pytest.approx(2 * 0.5**7) and "alternative" not in two_sided
    with pytest.raises(ValueError, match="alternative must be one of"):
        metrics.mcnemar_test(y, pred_a, pred_b, alternative="worse")


def test_compare_runs_pairs_and_ci_overlap() -> None:
    y, p = random_run(0)
    rng = np.random.default_rng(2)
    preds = {
        "good": p.argmax(axis=1),
        "noisy": np.where(rng.random(len(y)) < 0.5, rng.integers(0, K, len(y)), p.argmax(axis=1)),
        "random": rng.integers(0, K, len(y)),
    }
    cis = {name: metrics.bootstrap_ci(y, pred, n_bootstrap=300) for name, pred in preds.items()}
    rows = metrics.compare_runs({name: (y, pred) for name, pred in preds.items()}, cis)
    assert [(r["run_a"], r["run_b"]) for r in rows] == [
        ("good", "noisy"),
        ("good", "random"),
        ("noisy", "random"),
    ]
    for row in rows:
        expected = metrics.mcnemar_test(y, preds[row["run_a"]], preds[row["run_b"]])
        assert {k: row[k] for k in expected} == expected
        for key in ("Accuracy", "F1_macro"):
            a, b = cis[row["run_a"]][key], cis[row["run_b"]][key]
            assert row["ci_overlap"][key] == (max(a[0], b[0]) <= min(a[1], b[1]))
    # Whole metrics dicts are accepted in place of their ci95.
    whole = {name: {"ci95": ci} for name, ci in cis.items()}
    assert metrics.compare_runs({n: (y, pr) for n, pr in preds.items()}, whole) == rows


def test_compare_runs_rejects_different_test_items() -> None:
    y, p = random_run(0)
    shuffled = y.copy()
    shuffled[[10, 20]] = (shuffled[[10, 20]] + 1) % K
    with pytest.raises(ValueError, match=r"different y_true on 2 of 300 rows \(first at row 10\)"):
        metrics.compare_runs({"a": (y, p.argmax(axis=1)), "b": (shuffled, p.argmax(axis=1))})
    with pytest.raises(ValueError, match="different sizes"):
        metrics.compare_runs({"a": (y, p.argmax(axis=1)), "b": (y[:-1], p.argmax(axis=1)[:-1])})
    with pytest.raises(ValueError, match="at least 2 runs"):
        metrics.compare_runs({"a": (y, y)})


def test_top_confusions() -> None:
    y, p = random_run(4)
    pred = p.argmax(axis=1)
    texts = [f"question {i}" for i in range(len(y))]
    top = metrics.top_confusions(y, pred, texts, k=5, n_examples=3)
    pairs = [(t, q) for t in LABELS for q in LABELS if t != q]
    counts = {pair: int(np.sum((y == pair[0]) & (pred == pair[1]))) for pair in pairs}
    ranked = sorted(
        (pair for pair in pairs if counts[pair]), key=lambda pair: (-counts[pair], pair)
    )[:5]
    assert [(r["true_id"], r["pred_id"]) for r in top] == ranked
    for r in top:
        assert r["count"] == counts[(r["true_id"], r["pred_id"])]
        assert r["true_name_tr"] == labels.name(r["true_id"], "tr")
        assert r["pred_name_en"] == labels.name(r["pred_id"], "en")
        assert len(r["examples"]) == min(3, r["count"])
        for row, text in zip(r["rows"], r["examples"], strict=True):
            assert y[row] == r["true_id"] and pred[row] == r["pred_id"] and text == texts[row]
    assert metrics.top_confusions(y, y) == []
    assert all(r["examples"] == [] for r in metrics.top_confusions(y, pred))


def test_macro_means_leave_out_classes_absent_from_labels_and_predictions() -> None:
    """Issue 20, 6: a test split of classes 0 and 1, each with F1 about 0.92, had F1_macro 0.23 (six zeros)."""
    y = np.array([0] * 12 + [1] * 12)
    pred = y.copy()
    pred[[0, 12]] = [1, 0]  # one mistake each way: F1 11/12 for both classes
    p = np.full((len(y), 8), 0.01)
    p[np.arange(len(y)), pred] = 0.93
    m = metrics.compute_metrics(y, p, n_bootstrap=50)
    by_label = ref.label_metrics(y, pred)
    assert by_label["f1"][0] == by_label["f1"][1] == pytest.approx(11 / 12)
    for key in ("Precision_macro", "Recall_macro", "F1_macro"):
        assert m[key] == pytest.approx(11 / 12, rel=1e-12), key
        assert m[key] == pytest.approx(by_label[key], rel=1e-12), key
    assert sorted(m["macro_excluded"]) == [f"class_{k}" for k in range(2, 8)]
    low, high = m["ci95"]["F1_macro"]
    assert low <= m["F1_macro"] <= high and high <= 1
