"""plots: each figure draws what it should (lines, bars, labels, legend), numbers computed here with sklearn."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mathreport import errors, labels, metrics, plots

K = labels.NUM_CLASSES
LABELS = list(range(K))


def random_run(
    seed: int, n: int = 300, classes: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from `classes` and per-row Dirichlet probabilities leaning towards the true class."""
    rng = np.random.default_rng(seed)
    y = rng.choice(classes if classes is not None else LABELS, size=n)
    alpha = np.ones((n, K))
    alpha[np.arange(n), y] += 2.0
    gamma = rng.gamma(alpha)
    return y, gamma / gamma.sum(axis=1, keepdims=True)


# Expected values computed here from their definitions, not with the library calls the code under test makes.
def auc_by_pairs(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the share of (positive, negative) pairs ranked right, ties counting one half."""
    pos, neg = score[positive][:, None], score[~positive][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def average_precision_by_ranks(positive: np.ndarray, score: np.ndarray) -> float:
    """AP as the mean, over the positives, of the precision among the items scored at least as high (no ties)."""
    ranked = positive[np.argsort(-score, kind="stable")]
    hits = np.cumsum(ranked)
    return float(np.mean((hits / np.arange(1, len(ranked) + 1))[ranked]))


def confusion_by_counting(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    counts = np.zeros((K, K), dtype=int)
    np.add.at(counts, (y, pred), 1)
    return counts


def f1_by_counting(y: np.ndarray, pred: np.ndarray) -> list[float]:
    out = []
    for k in LABELS:
        tp, fp, fn = (
            np.sum((pred == k) & (y == k)),
            np.sum((pred == k) & (y != k)),
            np.sum((pred != k) & (y == k)),
        )
        out.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return out


def legend_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def figure_legend_texts(fig: Figure) -> list[str]:
    (legend,) = fig.legends
    return [text.get_text() for text in legend.get_texts()]


def tick_texts(labels_: list) -> list[str]:
    return [label.get_text() for label in labels_]


# --------------------------------------------------------------------------------------------- training
def test_lr_search_marks_the_best_rate() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "learning_rate": [1e-3, 1e-5, 2e-4, 5e-5, 1e-4],
            "val_accuracy": rng.uniform(0.5, 0.9, 5),
            "val_macro_f1": rng.uniform(0.5, 0.9, 5),
        }
    )
    fig = plots.plot_lr_search(df)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    assert ax.get_xscale() == "log"
    assert ax.get_title() == "Öğrenme oranı taraması"
    assert ax.get_xlabel() == "Öğrenme oranı (log ölçek)" and ax.get_ylabel() == "Doğrulama skoru"
    accuracy_line = ax.lines[0]
    np.testing.assert_array_equal(accuracy_line.get_xdata(), np.sort(df["learning_rate"]))
    best = df.loc[df["val_macro_f1"].idxmax()]
    marker = ax.lines[2]
    assert (
        marker.get_xdata()[0] == best["learning_rate"]
        and marker.get_ydata()[0] == best["val_macro_f1"]
    )
    texts = legend_texts(ax)
    assert len(texts) == 3 and f"{best['learning_rate']:.1e}" in texts[2]

    en = plots.plot_lr_search(df, select_by="val_accuracy", lang="en").axes[0]
    assert en.get_title() == "Learning-rate search"
    assert en.lines[2].get_xdata()[0] == df.loc[df["val_accuracy"].idxmax(), "learning_rate"]
    with pytest.raises(ValueError, match=r"lacks columns \['val_macro_f1'\]"):
        plots.plot_lr_search(df.drop(columns="val_macro_f1"))


def test_training_curves_skip_missing_train_accuracy() -> None:
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.5, 0.9, 0.6],
            "val_loss": [1.4, 1.0, 0.8],
            "train_accuracy": [np.nan] * 3,
            "val_accuracy": [0.5, 0.6, 0.7],
        }
    )
    fig = plots.plot_training_curves(history)
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(acc_ax.lines) == 1
    assert legend_texts(loss_ax) == ["Eğitim", "Doğrulama"] and legend_texts(acc_ax) == [
        "Doğrulama"
    ]
    assert loss_ax.get_xlabel() == acc_ax.get_xlabel() == "Epok"
    assert (loss_ax.get_ylabel(), acc_ax.get_ylabel()) == ("Kayıp", "Doğruluk")
    assert fig.get_suptitle() == "Eğitim eğrileri"
    np.testing.assert_array_equal(acc_ax.lines[0].get_ydata(), history["val_accuracy"])

    history["train_accuracy"] = [0.4, np.nan, 0.8]
    acc_ax = plots.plot_training_curves(history, lang="en").axes[1]
    assert legend_texts(acc_ax) == ["Training", "Validation"]
    np.testing.assert_array_equal(acc_ax.lines[0].get_xdata(), [1, 3])


# ---------------------------------------------------------------------------------------- probabilities
def test_roc_all_classes_present() -> None:
    y, p = random_run(0)
    ax = plots.plot_roc(y, p).axes[0]
    assert len(ax.lines) == K + 3  # classes, micro, macro, chance diagonal
    texts = legend_texts(ax)
    assert len(texts) == K + 3
    for k in LABELS:
        assert texts[k] == f"{labels.name(k)} (AUC = {auc_by_pairs(y == k, p[:, k]):.3f})"
    micro = auc_by_pairs(np.eye(K, dtype=bool)[y].ravel(), p.ravel())
    macro = np.mean([auc_by_pairs(y == k, p[:, k]) for k in LABELS])
    assert texts[K] == f"Mikro ortalama (AUC = {micro:.3f})"
    assert texts[K + 1] == f"Makro ortalama (AUC = {macro:.3f})"
    assert ax.get_xlabel() == "Yanlış pozitif oranı" and ax.get_ylabel() == "Doğru pozitif oranı"
    assert ax.get_title() == "ROC eğrileri (bire karşı hepsi)"


def test_roc_absent_class_is_listed_not_drawn() -> None:
    y, p = random_run(1, classes=[k for k in LABELS if k != 5])
    ax = plots.plot_roc(y, p, lang="en").axes[0]
    assert len(ax.lines) == (K - 1) + 3
    texts = legend_texts(ax)
    assert len(texts) == K + 3
    assert texts[-1] == f"{labels.name(5, 'en')}: AUC undefined (no test samples)"
    assert not any("nan" in text.lower() for text in texts)


def test_roc_single_class_draws_micro_only() -> None:
    y, p = random_run(2, n=30, classes=[4])
    ax = plots.plot_roc(y, p).axes[0]
    assert len(ax.lines) == 2  # micro and chance
    texts = legend_texts(ax)
    assert len(texts) == 2 + K
    assert f"{labels.name(4)}: AUC tanımsız (testteki tek sınıf)" in texts


def test_precision_recall_curves() -> None:
    y, p = random_run(3, classes=[k for k in LABELS if k != 0])
    ax = plots.plot_precision_recall(y, p).axes[0]
    assert len(ax.lines) == (K - 1) + 1
    texts = legend_texts(ax)
    assert len(texts) == K + 1
    for i, k in enumerate(range(1, K)):
        assert (
            texts[i] == f"{labels.name(k)} (AP = {average_precision_by_ranks(y == k, p[:, k]):.3f})"
        )
    micro = average_precision_by_ranks(np.eye(K, dtype=bool)[y].ravel(), p.ravel())
    assert texts[K - 1] == f"Mikro ortalama (AP = {micro:.3f})"
    assert texts[K] == f"{labels.name(0)}: AP tanımsız (testte örnek yok)"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Duyarlılık", "Kesinlik")


def test_reliability_diagram() -> None:
    y, p = random_run(4)
    fig = plots.plot_reliability(y, p, n_bins=10)
    ax, ax_count = fig.axes
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    edges = np.linspace(0, 1, 11)
    # Right-closed bins, as the module documents, computed here by masks.
    in_bin = [(conf > lo) & (conf <= hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    non_empty = [m for m in in_bin if m.any()]
    ece = sum(m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean()) for m in non_empty)
    assert len(ax.patches) == len(ax_count.patches) == len(non_empty)
    np.testing.assert_allclose(
        [bar.get_height() for bar in ax.patches], [(pred[m] == y[m]).mean() for m in non_empty]
    )
    assert [bar.get_height() for bar in ax_count.patches] == [m.sum() for m in non_empty]
    assert ax.get_title() == f"Güvenilirlik diyagramı (ECE = {ece:.3f})"
    assert len(ax.lines) == 1  # the diagonal
    assert sorted(legend_texts(ax)) == ["Doğruluk", "Mükemmel kalibrasyon"]
    assert ax_count.get_xlabel() == "Güven (tahmin edilen sınıfın olasılığı)"


# ------------------------------------------------------------------------------------------- confusion
def heatmap_cells(ax) -> np.ma.MaskedArray:
    """The K x K values seaborn's heatmap drew (its QuadMesh), masked where no cell was drawn."""
    mesh = ax.collections[0]
    return np.ma.masked_invalid(np.ma.filled(mesh.get_array().astype(float), np.nan)).reshape(K, K)


def cell_texts(ax) -> dict[tuple[int, int], str]:
    """Annotation text per (row, column) cell of a heatmap, from the texts' positions."""
    return {(int(t.get_position()[1]), int(t.get_position()[0])): t.get_text() for t in ax.texts}


def test_confusion_matrix_row_normalised() -> None:
    y, p = random_run(5, classes=[k for k in LABELS if k != 6])
    pred = p.argmax(axis=1)
    ax = plots.plot_confusion_matrix(y, pred).axes[0]
    shown = heatmap_cells(ax)
    counts = confusion_by_counting(y, pred)
    present = [k for k in LABELS if k != 6]
    expected = np.zeros((K, K))
    expected[present] = counts[present] / counts[present].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shown[present], expected[present])
    assert shown.mask[6].all() and not shown.mask[present].any()
    texts = cell_texts(ax)
    assert len(texts) == K * K
    assert [texts[6, j] for j in LABELS] == ["–"] * K
    assert texts[0, 0] == f"{expected[0, 0]:.2f}" and texts[3, 5] == f"{expected[3, 5]:.2f}"
    assert ax.get_xlabel() == "Tahmin edilen sınıf" and ax.get_ylabel() == "Gerçek sınıf"
    assert tick_texts(ax.get_xticklabels()) == labels.names("tr")
    assert tick_texts(ax.get_yticklabels()) == labels.names("tr")
    assert ax.get_title() == "Karışıklık matrisi (satıra göre normalize)"

    counts_ax = plots.plot_confusion_matrix(y, pred, normalize=False, lang="en").axes[0]
    np.testing.assert_array_equal(heatmap_cells(counts_ax).filled(-1)[present], counts[present])
    assert cell_texts(counts_ax)[1, 1] == str(counts[1, 1])
    assert tick_texts(counts_ax.get_xticklabels()) == labels.names("en")
    assert counts_ax.get_xlabel() == "Predicted class"


def test_class_distribution_shows_each_topics_share_per_split() -> None:
    counts = pd.DataFrame(
        {"train": [10, 20, 30, 40, 0, 5, 5, 10], "test": [1, 1, 1, 1, 1, 1, 1, 3]},
        index=labels.names("tr"),
    )
    fig = plots.plot_class_distribution(counts)
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches if bar.get_width() > 0]
    expected = [
        100 * v / counts[c].sum() for c in counts.columns for v in counts[c]
    ]  # seaborn: hue by hue
    assert heights == pytest.approx(expected)
    assert tick_texts(ax.get_xticklabels()) == labels.names("tr")
    assert figure_legend_texts(fig) == ["train", "test"]
    assert ax.get_ylabel() == "Soruların payı (%)"
    with pytest.raises(ValueError, match="8 rows"):
        plots.plot_class_distribution(counts.iloc[:3])
    with pytest.raises(ValueError, match="at least one question"):
        plots.plot_class_distribution(counts.assign(train=0))


def test_confidence_distribution_separates_right_and_wrong() -> None:
    y, p = random_run(3)
    fig = plots.plot_confidence(y, p, n_bins=10)
    ax = fig.axes[0]
    right = p.argmax(axis=1) == y
    confidence = p.max(axis=1)
    # histplot(element="step") draws one filled polygon per group; its outline climbs to each bin's share.
    assert len(ax.collections) == 2
    tops = sorted(c.get_paths()[0].vertices[:, 1].max() for c in ax.collections)
    expected = sorted(
        np.histogram(confidence[m], bins=10, range=(0, 1))[0].max() / m.sum()
        for m in (right, ~right)
    )
    assert tops == pytest.approx(expected)
    assert legend_texts(ax) == ["Doğru tahmin", "Yanlış tahmin"]
    assert ax.get_xlabel() == "Güven (tahmin edilen sınıfın olasılığı)"


# ---------------------------------------------------------------------------------------- model tables
def two_models() -> dict[str, dict]:
    out = {}
    for seed, model in enumerate(["qwen", "tfidf"]):
        y, p = random_run(seed)
        out[model] = metrics.compute_metrics(y, p, n_bootstrap=10)
    return out


@pytest.mark.parametrize(
    ("plot", "keys", "ticks", "title"),
    [
        (
            plots.plot_metric_bars,
            ["Accuracy", "Precision_macro", "Recall_macro"],
            ["Doğruluk", "Kesinlik (makro)", "Duyarlılık (makro)"],
            "Doğruluk, kesinlik ve duyarlılık",
        ),
        (
            plots.plot_f1_bars,
            ["F1_micro", "F1_macro", "F1_weighted"],
            ["F1 (mikro)", "F1 (makro)", "F1 (ağırlıklı)"],
            "F1 skorları",
        ),
    ],
)
def test_metric_bars(plot, keys: list[str], ticks: list[str], title: str) -> None:
    by_model = two_models()
    fig = plot(by_model)
    ax = fig.axes[0]
    assert len(ax.patches) == len(keys) * len(by_model)
    heights = [bar.get_height() for bar in ax.patches]
    expected = [by_model[m][k] for m in by_model for k in keys]  # bars are added model by model
    assert heights == expected
    assert [t.get_text() for t in ax.texts] == [f"{v:.3f}" for v in expected]
    assert figure_legend_texts(fig) == list(by_model)
    assert tick_texts(ax.get_xticklabels()) == ticks
    assert ax.get_title() == title and ax.get_ylabel() == "Skor"
    del by_model["tfidf"][keys[1]]
    with pytest.raises(ValueError, match=rf"'tfidf' lack \['{keys[1]}'\]"):
        plot(by_model)


def test_per_class_f1_bars() -> None:
    reports = {}
    for seed, model in enumerate(["qwen", "mistral", "tfidf"]):
        y, p = random_run(seed, classes=[k for k in LABELS if k != 2])
        reports[model] = metrics.per_class_report(y, p)
        f1 = f1_by_counting(y, p.argmax(axis=1))
        assert [
            reports[model]["per_class"][f"class_{k}"]["f1_score"] for k in LABELS
        ] == pytest.approx(f1)
    fig = plots.plot_per_class_f1(reports)
    ax = fig.axes[0]
    assert len(ax.patches) == K * len(reports)
    expected = [reports[m]["per_class"][f"class_{k}"]["f1_score"] for m in reports for k in LABELS]
    assert [bar.get_height() for bar in ax.patches] == expected
    assert figure_legend_texts(fig) == list(reports)
    assert tick_texts(ax.get_xticklabels()) == labels.names("tr")
    assert ax.get_ylabel() == "F1 skoru" and ax.get_title() == "Sınıf bazında F1 skoru"
    # The inner per_class dict is accepted too.
    inner = {m: r["per_class"] for m, r in reports.items()}
    assert [b.get_height() for b in plots.plot_per_class_f1(inner).axes[0].patches] == expected


def test_latency_vs_accuracy() -> None:
    latency = {"qwen": 180.0, "minilm": 6.5, "tfidf": 0.04}
    accuracy = {"tfidf": 0.71, "qwen": 0.93, "minilm": 0.82}
    fig = plots.plot_latency_vs_accuracy(latency, accuracy)
    ax_acc, ax = fig.axes
    assert [bar.get_height() for bar in ax.patches] == list(latency.values())
    assert [bar.get_height() for bar in ax_acc.patches] == [accuracy[m] for m in latency]
    assert tick_texts(ax.get_xticklabels()) == list(latency)
    assert [t.get_text() for t in ax_acc.texts] == [f"{accuracy[m]:.3f}" for m in latency]
    assert [t.get_text() for t in ax.texts] == ["180", "6.5", "0.04"]
    assert ax.get_ylabel() == "Gecikme (ms)" and ax_acc.get_ylabel() == "Doğruluk"
    assert ax.get_yscale() == "log"  # latencies span over two orders of magnitude
    close = plots.plot_latency_vs_accuracy({"a": 10.0, "b": 20.0}, {"a": 0.5, "b": 0.6}, lang="en")
    assert close.axes[1].get_yscale() == "linear" and close.axes[1].get_ylabel() == "Latency (ms)"
    with pytest.raises(ValueError, match="same models"):
        plots.plot_latency_vs_accuracy({"a": 1.0}, {"b": 0.5})


def text_boxes(fig: Figure) -> list[tuple[str, object]]:
    """(text, window extent) of every visible, non-empty text the figure draws."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    # Tick labels outside the axis' view limits exist as Text objects but are not drawn.
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - span <= tick.get_loc() <= high + span:
                    hidden.update({id(tick.label1), id(tick.label2)})
    out = []
    for artist in fig.findobj(Text):
        if (
            artist.get_visible()
            and artist.get_text().strip()
            and artist.figure is not None
            and id(artist) not in hidden
        ):
            out.append((artist.get_text(), artist.get_window_extent(renderer)))
    return out


def overlapping_texts(fig: Figure) -> list[tuple[str, str]]:
    boxes = text_boxes(fig)
    hits = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            # A shared edge is not an overlap: shrink each box by half a pixel first.
            if (
                box_a.expanded(0.999, 0.999).overlaps(box_b.expanded(0.999, 0.999))
                and box_a.width
                and box_b.width
            ):
                hits.append((a, b))
    return hits


def test_latency_chart_labels_do_not_overlap() -> None:
    # The values that made the old twin-axis chart print the accuracy labels over the latency labels.
    latency = {"tfidf": 1.3, "minilm": 15.0, "qwen-very-long-model-name": 180.0}
    accuracy = {"tfidf": 0.71, "minilm": 0.82, "qwen-very-long-model-name": 0.93}
    for log_scale in (True, False):
        fig = plots.plot_latency_vs_accuracy(latency, accuracy, log_scale=log_scale)
        assert overlapping_texts(fig) == []
    names = [
        "tfidf",
        "ensemble",
        "ensemble-linear",
        "minilm",
        "minilm-bf16-s42",
        "minilm-onnx",
        "minilm-s1",
    ]
    fig = plots.plot_latency_vs_accuracy(
        {n: 10.0 + i for i, n in enumerate(names)}, {n: 0.8 for n in names}
    )
    assert overlapping_texts(fig) == []


def all_figures(names: list[str]) -> dict[str, Figure]:
    y, p = random_run(1, classes=[k for k in LABELS if k != 6])
    reports, by_model = {}, {}
    for seed, name in enumerate(names):
        yy, pp = random_run(seed)
        reports[name] = metrics.per_class_report(yy, pp)
        by_model[name] = metrics.compute_metrics(yy, pp, n_bootstrap=10)
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.2, 0.8, 0.5],
            "val_loss": [1.3, 0.9, 0.7],
            "train_accuracy": [0.5, 0.7, 0.8],
            "val_accuracy": [0.45, 0.6, 0.7],
        }
    )
    lr = pd.DataFrame(
        {
            "learning_rate": [1e-5, 1e-4, 2e-4],
            "val_accuracy": [0.5, 0.7, 0.6],
            "val_macro_f1": [0.4, 0.65, 0.6],
        }
    )
    counts = pd.DataFrame(
        {n: np.arange(8) + 3 * i + 1 for i, n in enumerate(names)}, index=labels.names("tr")
    )
    return {
        "lr": plots.plot_lr_search(lr),
        "training": plots.plot_training_curves(history),
        "roc": plots.plot_roc(y, p),
        "pr": plots.plot_precision_recall(y, p),
        "reliability": plots.plot_reliability(y, p),
        "confidence": plots.plot_confidence(y, p),
        "confusion": plots.plot_confusion_matrix(y, p.argmax(axis=1)),
        "confusion_counts": plots.plot_confusion_matrix(y, p.argmax(axis=1), normalize=False),
        "distribution": plots.plot_class_distribution(counts),
        "metrics": plots.plot_metric_bars(by_model),
        "f1": plots.plot_f1_bars(by_model),
        "per_class": plots.plot_per_class_f1(reports),
        "latency": plots.plot_latency_vs_accuracy(
            {n: 10.0**i for i, n in enumerate(names)}, {n: by_model[n]["Accuracy"] for n in names}
        ),
    }


@pytest.mark.slow  # draws and measures every figure
@pytest.mark.parametrize(
    "names",
    [
        ["tfidf", "minilm"],
        ["tfidf", "minilm", "qwen_math", "mistral (sentetik)"],
        [
            "tfidf",
            "ensemble",
            "ensemble-linear",
            "minilm",
            "minilm-bf16-s42",
            "minilm-onnx",
            "minilm-s1",
            "minilm-s2",
        ],
    ],
)
def test_no_figure_has_overlapping_labels(names) -> None:
    for key, fig in all_figures(names).items():
        assert overlapping_texts(fig) == [], key
        assert fig.get_figwidth() <= plots.MAX_WIDTH, key


def test_figure_text_is_at_least_8_points() -> None:
    from matplotlib.text import Text

    for key, fig in all_figures(["tfidf", "minilm"]).items():
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
        assert min(sizes) >= 8, key


def test_hostile_model_names_are_drawn_as_text() -> None:
    names = ["$x^2$ cost $5", "_hidden", "a" * 60, "<img src=x onerror=alert(1)>"]
    by_model = {}
    for seed, name in enumerate(names):
        yy, pp = random_run(seed)
        by_model[name] = metrics.compute_metrics(yy, pp, n_bootstrap=10)
    fig = plots.plot_metric_bars(by_model)
    text_boxes(fig)  # draws it: mathtext would fail or eat the dollars here
    shown = figure_legend_texts(fig)
    assert shown[0] == r"\$x^2\$ cost \$5"  # escaped: drawn with its dollar signs, not as math
    assert shown[1] == "_hidden"  # a leading underscore would otherwise hide it from the legend
    assert all(len(line) <= plots.NAME_WRAP for line in shown[2].split("\n"))
    assert shown[2].replace("\n", "") == "a" * 60
    assert shown[3].replace("\n", " ") == "<img src=x onerror=alert(1)>"
    latency = plots.plot_latency_vs_accuracy(
        {n: 1.0 + i for i, n in enumerate(names)}, {n: 0.5 for n in names}
    )
    assert overlapping_texts(latency) == []


# ----------------------------------------------------------------------------------------------- saving
def test_save_figure_writes_png_at_200_dpi(tmp_path) -> None:
    y, p = random_run(0, n=50)
    fig = plots.plot_confusion_matrix(y, p.argmax(axis=1))
    width, height = fig.get_size_inches()
    out = plots.save_figure(fig, tmp_path / "figs" / "cm.png")
    assert out == tmp_path / "figs" / "cm.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (round(height * plots.DPI), round(width * plots.DPI))
    assert [f.name for f in out.parent.iterdir()] == ["cm.png"]  # no temp file left behind
    with pytest.raises(ValueError, match="must end in .png"):
        plots.save_figure(plots.plot_confusion_matrix(y, y), tmp_path / "cm.pdf")


def test_unknown_language_is_rejected() -> None:
    y, p = random_run(0, n=20)
    with pytest.raises(errors.UnknownLanguageError, match="lang must be"):
        plots.plot_roc(y, p, lang="de")
