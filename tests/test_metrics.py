"""metrics: every number against scikit-learn computed here, plus the edge cases of real test splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)
from sklearn.preprocessing import label_binarize

from mathreport import labels, metrics

K = labels.NUM_CLASSES
LABELS = list(range(K))
SEEDS = range(5)


def random_run(seed: int, n: int = 300, classes: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
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


# ------------------------------------------------------------------------------------- equals sklearn
@pytest.mark.parametrize("seed", SEEDS)
def test_compute_metrics_equals_sklearn(seed: int) -> None:
    y, p = random_run(seed)
    pred = p.argmax(axis=1)
    m = metrics.compute_metrics(y, p, n_bootstrap=200, seed=seed)
    expected = {
        "Accuracy": accuracy_score(y, pred),
        "Precision_macro": precision_score(y, pred, labels=LABELS, average="macro", zero_division=0),
        "Recall_macro": recall_score(y, pred, labels=LABELS, average="macro", zero_division=0),
        "Precision_weighted": precision_score(y, pred, labels=LABELS, average="weighted", zero_division=0),
        "Recall_weighted": recall_score(y, pred, labels=LABELS, average="weighted", zero_division=0),
        "F1_micro": f1_score(y, pred, labels=LABELS, average="micro", zero_division=0),
        "F1_macro": f1_score(y, pred, labels=LABELS, average="macro", zero_division=0),
        "F1_weighted": f1_score(y, pred, labels=LABELS, average="weighted", zero_division=0),
        "AUC_macro": roc_auc_score(y, p, multi_class="ovr", average="macro", labels=LABELS),
        "AUC_micro": roc_auc_score(y, p, multi_class="ovr", average="micro", labels=LABELS),
        "Top2_accuracy": top_k_accuracy_score(y, p, k=2, labels=LABELS),
        "LogLoss": log_loss(y, p, labels=LABELS),
        "ECE": ece_by_loop(y, p, 15),
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        assert type(m[key]) is float, key
    assert m["n_test"] == len(y)
    assert m["AUC_macro_excluded"] == {} and m["undefined"] == {}
    assert_json_clean(m)


@pytest.mark.parametrize("seed", SEEDS)
def test_per_class_report_equals_sklearn(seed: int) -> None:
    y, p = random_run(seed)
    pred = p.argmax(axis=1)
    report = metrics.per_class_report(y, p)["per_class"]
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=LABELS, average=None, zero_division=0
    )
    assert list(report) == [f"class_{k}" for k in LABELS]
    for k in LABELS:
        row = report[f"class_{k}"]
        assert row["name_tr"] == labels.name(k, "tr") and row["name_en"] == labels.name(k, "en")
        assert row["precision"] == pytest.approx(precision[k])
        assert row["recall"] == pytest.approx(recall[k])
        assert row["f1_score"] == pytest.approx(f1[k])
        assert row["support"] == support[k] and type(row["support"]) is int
        assert row["auc"] == pytest.approx(roc_auc_score(y == k, p[:, k]))
    assert_json_clean(report)


# ------------------------------------------------------------------------------------------ bootstrap
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
            assert reps[f"F1_{avg}"][b] == pytest.approx(f1_score(yt, yp, labels=LABELS, average=avg, zero_division=0))
        assert reps["Precision_macro"][b] == pytest.approx(
            precision_score(yt, yp, labels=LABELS, average="macro", zero_division=0)
        )
        assert reps["Recall_macro"][b] == pytest.approx(
            recall_score(yt, yp, labels=LABELS, average="macro", zero_division=0)
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
    assert m["ci95"]["F1_macro"] == pytest.approx(list(np.percentile(reps["F1_macro"], [2.5, 97.5])))


# ----------------------------------------------------------------------------------------- edge cases
def test_class_absent_from_test_split() -> None:
    present = [k for k in LABELS if k != 3]
    y, p = random_run(0, classes=present)
    m = metrics.compute_metrics(y, p, n_bootstrap=100)
    binarized = label_binarize(y, classes=present)
    assert m["AUC_macro"] == pytest.approx(roc_auc_score(binarized, p[:, present], average="macro"))
    assert list(m["AUC_macro_excluded"]) == ["class_3"]
    assert "no samples" in m["AUC_macro_excluded"]["class_3"]
    assert m["undefined"] == {}
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
    assert m["AUC_micro"] == pytest.approx(roc_auc_score(label_binarize(y, classes=LABELS), p, average="micro"))
    assert m["Accuracy"] == pytest.approx(accuracy_score(y, p.argmax(axis=1)))
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
    ranked = sorted((pair for pair in pairs if counts[pair]), key=lambda pair: (-counts[pair], pair))[:5]
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
