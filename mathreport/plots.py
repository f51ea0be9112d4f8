"""One function per report figure. Each returns a matplotlib Figure (Turkish text by default); the caller saves.

Figures are built with the object API (`matplotlib.figure.Figure`), not pyplot, so no global figure state
accumulates and nothing depends on the interactive backend; in a notebook, `display(fig)` shows one.
Every number drawn is computed here or in `metrics` from the arrays passed in.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve
from sklearn.preprocessing import label_binarize

from mathreport import labels, metrics

DPI = 200
TITLE_SIZE = 12
LABEL_SIZE = 10
TICK_SIZE = 9
LEGEND_SIZE = 8
ANNOTATION_SIZE = 7
# Fixed colours per class id, so a class looks the same in every figure of the report.
CLASS_COLORS = matplotlib.colormaps["tab10"].colors[: labels.NUM_CLASSES]
MODEL_COLORS = matplotlib.colormaps["Set2"].colors

_TEXT: dict[str, dict[str, str]] = {
    "tr": {
        "lr_title": "Öğrenme oranı taraması",
        "lr_x": "Öğrenme oranı (log ölçek)",
        "lr_y": "Doğrulama skoru",
        "val_accuracy": "Doğrulama doğruluğu",
        "val_macro_f1": "Doğrulama makro F1",
        "best": "En iyi",
        "roc_title": "ROC eğrileri (bire karşı hepsi)",
        "fpr": "Yanlış pozitif oranı",
        "tpr": "Doğru pozitif oranı",
        "micro": "Mikro ortalama",
        "macro": "Makro ortalama",
        "chance": "Şans düzeyi",
        "undefined": "tanımsız",
        "absent": "testte örnek yok",
        "only_class": "testteki tek sınıf",
        "pr_title": "Kesinlik–duyarlılık eğrileri",
        "recall": "Duyarlılık",
        "precision": "Kesinlik",
        "latency_title": "Gecikme ve doğruluk",
        "latency": "Gecikme (ms)",
        "accuracy": "Doğruluk",
        "model": "Model",
        "score": "Skor",
        "metric_bars_title": "Doğruluk, kesinlik ve duyarlılık",
        "f1_bars_title": "F1 skorları",
        "cm_title": "Karışıklık matrisi",
        "cm_normalized": "satıra göre normalize",
        "true_class": "Gerçek sınıf",
        "pred_class": "Tahmin edilen sınıf",
        "row_share": "Satır oranı",
        "count": "Örnek sayısı",
        "per_class_title": "Sınıf bazında F1 skoru",
        "class": "Sınıf",
        "f1": "F1 skoru",
        "curves_title": "Eğitim eğrileri",
        "loss": "Kayıp",
        "epoch": "Epok",
        "train": "Eğitim",
        "val": "Doğrulama",
        "reliability_title": "Güvenilirlik diyagramı",
        "confidence": "Güven (tahmin edilen sınıfın olasılığı)",
        "perfect": "Mükemmel kalibrasyon",
    },
    "en": {
        "lr_title": "Learning-rate search",
        "lr_x": "Learning rate (log scale)",
        "lr_y": "Validation score",
        "val_accuracy": "Validation accuracy",
        "val_macro_f1": "Validation macro F1",
        "best": "Best",
        "roc_title": "ROC curves (one-vs-rest)",
        "fpr": "False positive rate",
        "tpr": "True positive rate",
        "micro": "Micro-average",
        "macro": "Macro-average",
        "chance": "Chance level",
        "undefined": "undefined",
        "absent": "no test samples",
        "only_class": "only class in test",
        "pr_title": "Precision–recall curves",
        "recall": "Recall",
        "precision": "Precision",
        "latency_title": "Latency and accuracy",
        "latency": "Latency (ms)",
        "accuracy": "Accuracy",
        "model": "Model",
        "score": "Score",
        "metric_bars_title": "Accuracy, precision and recall",
        "f1_bars_title": "F1 scores",
        "cm_title": "Confusion matrix",
        "cm_normalized": "row-normalised",
        "true_class": "True class",
        "pred_class": "Predicted class",
        "row_share": "Share of row",
        "count": "Count",
        "per_class_title": "Per-class F1 score",
        "class": "Class",
        "f1": "F1 score",
        "curves_title": "Training curves",
        "loss": "Loss",
        "epoch": "Epoch",
        "train": "Training",
        "val": "Validation",
        "reliability_title": "Reliability diagram",
        "confidence": "Confidence (probability of the predicted class)",
        "perfect": "Perfect calibration",
    },
}

METRIC_NAMES: dict[str, dict[str, str]] = {
    "Accuracy": {"tr": "Doğruluk", "en": "Accuracy"},
    "Precision_macro": {"tr": "Kesinlik (makro)", "en": "Precision (macro)"},
    "Recall_macro": {"tr": "Duyarlılık (makro)", "en": "Recall (macro)"},
    "F1_micro": {"tr": "F1 (mikro)", "en": "F1 (micro)"},
    "F1_macro": {"tr": "F1 (makro)", "en": "F1 (macro)"},
    "F1_weighted": {"tr": "F1 (ağırlıklı)", "en": "F1 (weighted)"},
}


def _text(lang: str) -> dict[str, str]:
    labels.names(lang)  # the one place that decides which languages exist
    return _TEXT[lang]


def _new_figure(figsize: tuple[float, float], **subplots: Any) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(**subplots)


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    ax.grid(True, alpha=0.3)
    ax.set_axisbelow(True)


def _undefined_handle() -> Line2D:
    # A legend entry with no line: lists a class whose curve is undefined without drawing anything.
    return Line2D([], [], linestyle="none")


def _legend_below(fig: Figure, handles: Sequence[Any] | None = None) -> None:
    # Bars fill the axes up to the annotations, so a legend inside would cover data; put it under the axes.
    handles = list(handles) if handles is not None else fig.axes[0].get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=LEGEND_SIZE)


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Write `fig` as PNG atomically (temp file in the same folder, then rename) and close it."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_figure writes PNG; path must end in .png, found {path.name!r}")
    from mathreport.artifacts import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        # A figure made with pyplot stays registered until closed; ours are not registered, and closing
        # an unregistered figure is a no-op.
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ training
def plot_lr_search(df: pd.DataFrame, *, select_by: str = "val_macro_f1", lang: str = "tr") -> Figure:
    """Validation accuracy and macro F1 against learning rate (log x), the best rate by `select_by` marked."""
    t = _text(lang)
    required = ["learning_rate", "val_accuracy", "val_macro_f1"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"lr search table lacks columns {missing}; found {list(df.columns)}")
    if select_by not in ("val_accuracy", "val_macro_f1"):
        raise ValueError(f"select_by must be 'val_accuracy' or 'val_macro_f1'; found {select_by!r}")
    data = df[required].astype(float).sort_values("learning_rate", kind="stable").reset_index(drop=True)
    if data.empty:
        raise ValueError("lr search table has no rows")
    lr = data["learning_rate"].to_numpy()
    if not (np.isfinite(lr) & (lr > 0)).all():
        raise ValueError(f"learning_rate must be positive and finite for a log axis; found {lr.tolist()}")
    if data[select_by].isna().all():
        raise ValueError(f"column {select_by!r} has no values; cannot mark the best learning rate")

    fig, ax = _new_figure((7.0, 4.5))
    for column, marker, color in (("val_accuracy", "o", MODEL_COLORS[0]), ("val_macro_f1", "s", MODEL_COLORS[1])):
        ax.plot(lr, data[column], marker=marker, color=color, linewidth=1.8, label=t[column])
    best = data.loc[data[select_by].idxmax()]
    ax.plot(
        [best["learning_rate"]],
        [best[select_by]],
        linestyle="none",
        marker="*",
        markersize=16,
        color="crimson",
        label=f"{t['best']} ({t[select_by]}): {best['learning_rate']:.1e}",
    )
    ax.set_xscale("log")
    _style(ax, t["lr_title"], t["lr_x"], t["lr_y"])
    ax.legend(fontsize=LEGEND_SIZE)
    return fig


def plot_training_curves(history: pd.DataFrame, *, lang: str = "tr") -> Figure:
    """Loss (left) and accuracy (right) per epoch, training vs validation; all-NaN series are not drawn."""
    t = _text(lang)
    required = ["epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"]
    missing = [c for c in required if c not in history.columns]
    if missing:
        raise ValueError(f"history lacks columns {missing}; found {list(history.columns)}")
    if history.empty:
        raise ValueError("history has no rows")
    data = history[required].astype(float).sort_values("epoch", kind="stable")
    if data["epoch"].isna().any():
        raise ValueError("history has rows without an epoch")

    fig, (ax_loss, ax_acc) = _new_figure((10.0, 4.0), ncols=2)
    fig.suptitle(t["curves_title"], fontsize=TITLE_SIZE)
    for ax, quantity in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for split, marker, color in (("train", "o", MODEL_COLORS[0]), ("val", "s", MODEL_COLORS[1])):
            # The Trainer reports no training accuracy; such a column is all NaN and is simply left out.
            series = data[["epoch", f"{split}_{quantity}"]].dropna()
            if not series.empty:
                ax.plot(series["epoch"], series.iloc[:, 1], marker=marker, color=color, label=t[split])
        _style(ax, t[quantity], t["epoch"], t[quantity])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=LEGEND_SIZE)
    return fig


# ------------------------------------------------------------------------------------- probabilities
def plot_roc(y_true: ArrayLike, probs: ArrayLike, *, lang: str = "tr") -> Figure:
    """One-vs-rest ROC per class present in y_true, plus micro and macro averages, AUC in the legend."""
    t = _text(lang)
    y_true, probs, _ = metrics.validate_predictions(y_true, probs)
    aucs, _ = metrics.roc_auc_per_class(y_true, probs)
    names = labels.names(lang)

    fig, ax = _new_figure((6.5, 6.0))
    handles: list[Any] = []
    tpr_on_grid = []
    grid = np.linspace(0.0, 1.0, 501)
    for k, auc in enumerate(aucs):
        if auc is None:
            continue
        fpr, tpr, _ = roc_curve(y_true == k, probs[:, k])
        tpr_on_grid.append(np.interp(grid, fpr, tpr))
        (line,) = ax.plot(fpr, tpr, color=CLASS_COLORS[k], linewidth=1.3, label=f"{names[k]} (AUC = {auc:.3f})")
        handles.append(line)
    onehot = label_binarize(y_true, classes=metrics.LABELS)
    fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    (line,) = ax.plot(
        fpr,
        tpr,
        color="black",
        linestyle=":",
        linewidth=2.2,
        label=f"{t['micro']} (AUC = {metrics.roc_auc_micro(y_true, probs):.3f})",
    )
    handles.append(line)
    if tpr_on_grid:
        # The curve is the mean TPR on a common FPR grid; its label is the mean of per-class AUCs, the
        # number reported as AUC_macro.
        mean_auc = float(np.mean([a for a in aucs if a is not None]))
        mean_tpr = np.mean(tpr_on_grid, axis=0)
        (line,) = ax.plot(
            grid, mean_tpr, color="navy", linestyle="--", linewidth=2.2, label=f"{t['macro']} (AUC = {mean_auc:.3f})"
        )
        handles.append(line)
    (line,) = ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1.0, label=t["chance"])
    handles.append(line)
    present = set(np.unique(y_true).tolist())
    for k, auc in enumerate(aucs):
        if auc is None:
            why = t["absent"] if k not in present else t["only_class"]
            handles.append(_undefined_handle())
            handles[-1].set_label(f"{names[k]}: AUC {t['undefined']} ({why})")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    _style(ax, t["roc_title"], t["fpr"], t["tpr"])
    ax.legend(handles=handles, fontsize=LEGEND_SIZE, loc="lower right")
    return fig


def plot_precision_recall(y_true: ArrayLike, probs: ArrayLike, *, lang: str = "tr") -> Figure:
    """One-vs-rest precision–recall curve per class present in y_true, plus the micro average; AP in the legend."""
    t = _text(lang)
    y_true, probs, _ = metrics.validate_predictions(y_true, probs)
    aps, _ = metrics.average_precision_per_class(y_true, probs)
    names = labels.names(lang)

    fig, ax = _new_figure((6.5, 6.0))
    handles: list[Any] = []
    for k, ap in enumerate(aps):
        if ap is None:
            continue
        precision, recall, _ = precision_recall_curve(y_true == k, probs[:, k])
        (line,) = ax.plot(
            recall,
            precision,
            drawstyle="steps-post",
            color=CLASS_COLORS[k],
            linewidth=1.3,
            label=f"{names[k]} (AP = {ap:.3f})",
        )
        handles.append(line)
    onehot = label_binarize(y_true, classes=metrics.LABELS)
    precision, recall, _ = precision_recall_curve(onehot.ravel(), probs.ravel())
    (line,) = ax.plot(
        recall,
        precision,
        drawstyle="steps-post",
        color="black",
        linestyle=":",
        linewidth=2.2,
        label=f"{t['micro']} (AP = {metrics.average_precision_micro(y_true, probs):.3f})",
    )
    handles.append(line)
    for k, ap in enumerate(aps):
        if ap is None:
            handles.append(_undefined_handle())
            handles[-1].set_label(f"{names[k]}: AP {t['undefined']} ({t['absent']})")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    _style(ax, t["pr_title"], t["recall"], t["precision"])
    ax.legend(handles=handles, fontsize=LEGEND_SIZE, loc="lower left")
    return fig


def plot_reliability(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15, *, lang: str = "tr") -> Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, bin counts below, ECE in the title."""
    t = _text(lang)
    bins = metrics.calibration_bins(y_true, probs, n_bins)
    widths = bins["upper"] - bins["lower"]

    fig, (ax, ax_count) = _new_figure((6.0, 6.5), nrows=2, sharex=True, height_ratios=[3, 1])
    ax.bar(
        bins["lower"],
        bins["accuracy"],
        width=widths,
        align="edge",
        color=MODEL_COLORS[2],
        edgecolor="black",
        linewidth=0.6,
        label=t["accuracy"],
    )
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1.2, label=t["perfect"])
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    _style(ax, f"{t['reliability_title']} (ECE = {bins['ece']:.3f})", "", t["accuracy"])
    ax.legend(fontsize=LEGEND_SIZE, loc="upper left")
    ax_count.bar(
        bins["lower"], bins["count"], width=widths, align="edge", color="gray", edgecolor="black", linewidth=0.6
    )
    _style(ax_count, "", t["confidence"], t["count"])
    return fig


# ------------------------------------------------------------------------------------------ labels only
def plot_confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, normalize: bool = True, *, lang: str = "tr") -> Figure:
    """Confusion matrix heatmap over the 8 classes, row-normalised by default, every cell annotated.

    A class absent from y_true has no row to normalise; its cells are shown empty with a dash.
    """
    t = _text(lang)
    y_true = metrics.check_class_ids(y_true, "y_true")
    y_pred = metrics.check_class_ids(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"Found input variables with inconsistent numbers of samples: [{len(y_true)}, {len(y_pred)}]")
    counts = confusion_matrix(y_true, y_pred, labels=metrics.LABELS)
    support = counts.sum(axis=1)
    if normalize:
        shares = np.divide(counts, support[:, None], out=np.zeros(counts.shape), where=support[:, None] > 0)
        shown = np.ma.masked_array(shares, mask=np.repeat(support[:, None] == 0, counts.shape[1], axis=1))
        vmax = 1.0
    else:
        shown = np.ma.masked_array(counts, mask=np.zeros(counts.shape, dtype=bool))
        vmax = max(int(counts.max()), 1)
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#eeeeee")
    names = labels.names(lang)

    fig, ax = _new_figure((7.5, 6.5))
    image = ax.imshow(shown, cmap=cmap, vmin=0, vmax=vmax)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if shown.mask[i, j]:
                text, color = "–", "gray"
            else:
                value = shown[i, j]
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                color = "white" if value > vmax / 2 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=ANNOTATION_SIZE + 1, color=color)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=40, ha="right")
    ax.set_yticks(ticks, names)
    title = f"{t['cm_title']} ({t['cm_normalized']})" if normalize else t["cm_title"]
    _style(ax, title, t["pred_class"], t["true_class"])
    ax.grid(False)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label(t["row_share"] if normalize else t["count"], fontsize=LABEL_SIZE)
    return fig


# ---------------------------------------------------------------------------------------- model tables
def _number(value: Any, where: str) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{where} must be a number; found {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{where} must be finite; found {value!r}")
    return float(value)


def _grouped_bars(ax: Axes, groups: Sequence[str], series: Mapping[str, Sequence[float]], *, annotate: bool) -> None:
    # One bar per series inside each group, centred on the group's tick.
    x = np.arange(len(groups))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        bars = ax.bar(x + offset, values, width, label=name, color=MODEL_COLORS[i % len(MODEL_COLORS)])
        if annotate:
            ax.bar_label(bars, fmt="%.3f", fontsize=ANNOTATION_SIZE, padding=2)
    ax.set_xticks(x, groups)


def _model_metric_bars(
    metrics_by_model: Mapping[str, Mapping[str, Any]], keys: Sequence[str], title_key: str, lang: str
) -> Figure:
    t = _text(lang)
    if not metrics_by_model:
        raise ValueError("metrics_by_model is empty; expected {model name: metrics dict}")
    series: dict[str, list[float]] = {}
    for model, values in metrics_by_model.items():
        missing = [k for k in keys if k not in values]
        if missing:
            raise ValueError(f"metrics of model {model!r} lack {missing}; found keys {sorted(values)}")
        series[str(model)] = [_number(values[k], f"{model!r} {k}") for k in keys]
    fig, ax = _new_figure((max(6.0, 2.0 + 0.6 * len(keys) * len(series)), 4.8))
    _grouped_bars(ax, [METRIC_NAMES[k][lang] for k in keys], series, annotate=True)
    ax.set_ylim(0.0, 1.1)
    _style(ax, t[title_key], "", t["score"])
    ax.grid(True, axis="y", alpha=0.3)
    ax.grid(False, axis="x")
    _legend_below(fig)
    return fig


def plot_metric_bars(metrics_by_model: Mapping[str, Mapping[str, Any]], *, lang: str = "tr") -> Figure:
    """Accuracy, macro precision and macro recall: one group per metric, one annotated bar per model."""
    return _model_metric_bars(
        metrics_by_model, ["Accuracy", "Precision_macro", "Recall_macro"], "metric_bars_title", lang
    )


def plot_f1_bars(metrics_by_model: Mapping[str, Mapping[str, Any]], *, lang: str = "tr") -> Figure:
    """Micro, macro and weighted F1: one group per metric, one annotated bar per model."""
    return _model_metric_bars(metrics_by_model, ["F1_micro", "F1_macro", "F1_weighted"], "f1_bars_title", lang)


def plot_per_class_f1(class_reports_by_model: Mapping[str, Mapping[str, Any]], *, lang: str = "tr") -> Figure:
    """F1 per class: one group per class, one bar per model, read from `per_class_report` dicts."""
    t = _text(lang)
    if not class_reports_by_model:
        raise ValueError("class_reports_by_model is empty; expected {model name: class report}")
    series: dict[str, list[float]] = {}
    for model, report in class_reports_by_model.items():
        per_class = report.get("per_class", report)
        values = []
        for k in metrics.LABELS:
            entry = per_class.get(f"class_{k}")
            if entry is None or "f1_score" not in entry:
                raise ValueError(
                    f"class report of model {model!r} has no class_{k} f1_score; found keys {sorted(per_class)}"
                )
            values.append(_number(entry["f1_score"], f"{model!r} class_{k} f1_score"))
        series[str(model)] = values
    fig, ax = _new_figure((11.0, 4.8))
    _grouped_bars(ax, labels.names(lang), series, annotate=False)
    ax.tick_params(axis="x", labelrotation=30)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    ax.set_ylim(0.0, 1.05)
    _style(ax, t["per_class_title"], t["class"], t["f1"])
    ax.grid(False, axis="x")
    _legend_below(fig)
    return fig


def plot_latency_vs_accuracy(
    latency_ms: Mapping[str, float],
    accuracy: Mapping[str, float],
    *,
    log_scale: bool | None = None,
    lang: str = "tr",
) -> Figure:
    """Latency per model as bars (left axis) and accuracy as a line (right axis), models on x.

    `log_scale=None` uses a log latency axis when latencies span more than two orders of magnitude, where
    a linear axis would flatten the fast models to nothing.
    """
    t = _text(lang)
    if not latency_ms:
        raise ValueError("latency_ms is empty; expected {model name: milliseconds}")
    if set(latency_ms) != set(accuracy):
        raise ValueError(
            f"latency_ms and accuracy must name the same models; found {sorted(latency_ms)} vs {sorted(accuracy)}"
        )
    models = [str(m) for m in latency_ms]
    latency = [_number(latency_ms[m], f"latency_ms[{m!r}]") for m in latency_ms]
    acc = [_number(accuracy[m], f"accuracy[{m!r}]") for m in latency_ms]
    if min(latency) <= 0:
        raise ValueError(f"latencies must be positive; found {dict(zip(models, latency, strict=True))}")
    if not all(0 <= a <= 1 for a in acc):
        raise ValueError(f"accuracies must be fractions in [0, 1]; found {dict(zip(models, acc, strict=True))}")
    if log_scale is None:
        log_scale = max(latency) / min(latency) > 100

    fig, ax = _new_figure((max(6.0, 1.4 * len(models)), 4.5))
    x = np.arange(len(models))
    bars = ax.bar(x, latency, width=0.6, color=MODEL_COLORS[1], label=t["latency"])
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in latency], fontsize=ANNOTATION_SIZE, padding=2)
    # Headroom above the tallest bar so its label stays inside the axes.
    if log_scale:
        ax.set_yscale("log")
        ax.set_ylim(top=max(latency) * 3)
    else:
        ax.set_ylim(0, max(latency) * 1.15)
    ax.set_xticks(x, models)
    _style(ax, t["latency_title"], t["model"], t["latency"])
    ax.grid(False, axis="x")
    ax_acc = ax.twinx()
    (line,) = ax_acc.plot(x, acc, color="crimson", marker="o", linewidth=2.0, label=t["accuracy"])
    for xi, a in zip(x, acc, strict=True):
        ax_acc.annotate(
            f"{a:.3f}", (xi, a), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=ANNOTATION_SIZE
        )
    ax_acc.set_ylim(0.0, 1.05)
    ax_acc.set_ylabel(t["accuracy"], fontsize=LABEL_SIZE)
    ax_acc.tick_params(labelsize=TICK_SIZE)
    _legend_below(fig, [bars, line])
    return fig
