"""One function per report figure, each returning a matplotlib Figure drawn with the object API (no pyplot state).
Every word drawn comes from `mathreport.i18n`; model names are data, escaped by `markup.mpl` and wrapped. Figures
are at most MAX_WIDTH inches wide, so on an A4 page no text prints smaller than its point size (8 pt and up).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
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

from mathreport import i18n, labels, metrics
from mathreport.files import atomic_path
from mathreport.markup import mpl

DPI = 200
TITLE_SIZE = 12
LABEL_SIZE = 10
TICK_SIZE = 9
LEGEND_SIZE = 8
ANNOTATION_SIZE = 8
# The printable width of an A4 page with the report's margins, less the notebook's own padding.
MAX_WIDTH = 7.0
NAME_WRAP = 18
# Fixed colours per class id, so a class looks the same in every figure of the report.
CLASS_COLORS = matplotlib.colormaps["tab10"].colors[: labels.NUM_CLASSES]
MODEL_COLORS = matplotlib.colormaps["Set2"].colors


def _words(lang: str) -> dict[str, str]:
    # The `plot.*` messages of one language; an unknown language fails here, before any drawing.
    return {
        key.removeprefix("plot."): text
        for key, text in i18n.table(lang).items()
        if key.startswith("plot.")
    }


def metric_name(key: str, lang: str = "tr") -> str:
    """A metric's name as the figures show it ("F1_macro" -> "F1 (makro)")."""
    return i18n.message(f"metric.{key}", lang)


def _new_figure(figsize: tuple[float, float], **subplots: Any) -> tuple[Figure, Any]:
    fig = Figure(figsize=(min(figsize[0], MAX_WIDTH), figsize[1]), layout="constrained")
    return fig, fig.subplots(**subplots)


def _stack_apart(fig: Figure) -> None:
    # Stacked panels: keep the lowest y tick label of one panel off the highest of the panel below.
    fig.get_layout_engine().set(h_pad=0.1)


def name_label(name: object, width: int = NAME_WRAP) -> str:
    """A model or run name as a figure label: escaped for mathtext and wrapped onto lines of `width` characters."""
    return (
        "\n".join(textwrap.wrap(mpl(name), width, break_long_words=True, break_on_hyphens=True))
        or " "
    )


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    ax.grid(True, alpha=0.3)
    ax.set_axisbelow(True)


def _slant_x_labels(ax: Axes) -> None:
    ax.tick_params(axis="x", labelrotation=60)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")


def _legend_below(fig: Figure, handles: Sequence[Any]) -> None:
    # Bars fill the axes up to the annotations, so a legend inside would cover data; put it under the axes.
    # Handles are passed explicitly: collecting them would drop a model whose name starts with "_".
    handles = list(handles)
    fig.legend(
        handles=handles,
        labels=[h.get_label() for h in handles],
        loc="outside lower center",
        ncols=min(len(handles), 3),
        fontsize=LEGEND_SIZE,
    )


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Write `fig` as PNG atomically and close it; ValueError unless `path` ends in .png."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_figure writes PNG; path must end in .png, found {path.name!r}")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        import matplotlib.pyplot as plt

        plt.close(
            fig
        )  # frees a figure made with pyplot; ours are not registered there, and this does nothing
    return path


# ------------------------------------------------------------------------------------------ training
def plot_lr_search(
    df: pd.DataFrame, *, select_by: str = "val_macro_f1", lang: str = "tr"
) -> Figure:
    """Validation accuracy and macro F1 against learning rate (log x), the best rate by `select_by` marked."""
    t = _words(lang)
    required = ["learning_rate", "val_accuracy", "val_macro_f1"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"lr search table lacks columns {missing}; found {list(df.columns)}")
    if select_by not in ("val_accuracy", "val_macro_f1"):
        raise ValueError(f"select_by must be 'val_accuracy' or 'val_macro_f1'; found {select_by!r}")
    data = (
        df[required]
        .astype(float)
        .sort_values("learning_rate", kind="stable")
        .reset_index(drop=True)
    )
    if data.empty:
        raise ValueError("lr search table has no rows")
    lr = data["learning_rate"].to_numpy()
    if not (np.isfinite(lr) & (lr > 0)).all():
        raise ValueError(
            f"learning_rate must be positive and finite for a log axis; found {lr.tolist()}"
        )
    if data[select_by].isna().all():
        raise ValueError(f"column {select_by!r} has no values; cannot mark the best learning rate")

    fig, ax = _new_figure((7.0, 4.5))
    for column, marker, color in (
        ("val_accuracy", "o", MODEL_COLORS[0]),
        ("val_macro_f1", "s", MODEL_COLORS[1]),
    ):
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
    t = _words(lang)
    required = ["epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"]
    missing = [c for c in required if c not in history.columns]
    if missing:
        raise ValueError(f"history lacks columns {missing}; found {list(history.columns)}")
    if history.empty:
        raise ValueError("history has no rows")
    data = history[required].astype(float).sort_values("epoch", kind="stable")
    if data["epoch"].isna().any():
        raise ValueError("history has rows without an epoch")

    fig, (ax_loss, ax_acc) = _new_figure((MAX_WIDTH, 3.6), ncols=2)
    fig.suptitle(t["curves_title"], fontsize=TITLE_SIZE)
    for ax, quantity in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for split, marker, color in (
            ("train", "o", MODEL_COLORS[0]),
            ("val", "s", MODEL_COLORS[1]),
        ):
            # The Trainer reports no training accuracy; such a column is all NaN and is simply left out.
            series = data[["epoch", f"{split}_{quantity}"]].dropna()
            if not series.empty:
                ax.plot(
                    series["epoch"], series.iloc[:, 1], marker=marker, color=color, label=t[split]
                )
        _style(ax, t[quantity], t["epoch"], t[quantity])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=LEGEND_SIZE)
    return fig


# ------------------------------------------------------------------------------------- probabilities
def _roc_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(positive, score)
    return fpr, tpr


def _pr_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    precision, recall, _ = precision_recall_curve(positive, score)
    return recall, precision


def _class_curves(
    ax: Axes,
    y_true: np.ndarray,
    probs: np.ndarray,
    scores: Sequence[float | None],
    points: Callable,
    score_name: str,
    micro: float,
    lang: str,
    **line: Any,
) -> list[Line2D]:
    # One-vs-rest curve of each class that has a score, then the micro average over all (item, class) pairs.
    names = i18n.class_names(lang)
    onehot = label_binarize(y_true, classes=metrics.LABELS)
    handles = []
    for k, score in enumerate(scores):
        if score is not None:
            handles += ax.plot(
                *points(onehot[:, k], probs[:, k]),
                color=CLASS_COLORS[k],
                linewidth=1.3,
                label=f"{names[k]} ({score_name} = {score:.3f})",
                **line,
            )
    handles += ax.plot(
        *points(onehot.ravel(), probs.ravel()),
        color="black",
        linestyle=":",
        linewidth=2.2,
        label=f"{_words(lang)['micro']} ({score_name} = {micro:.3f})",
        **line,
    )
    return handles


def _undefined(label: str) -> Line2D:
    # A legend entry with no line: lists a class whose curve is undefined without drawing anything.
    return Line2D([], [], linestyle="none", label=label)


def plot_roc(y_true: ArrayLike, probs: ArrayLike, *, lang: str = "tr") -> Figure:
    """One-vs-rest ROC per class present in y_true, plus micro and macro averages, AUC in the legend."""
    t = _words(lang)
    y_true, probs, _ = metrics.validate_predictions(y_true, probs)
    aucs, _ = metrics.roc_auc_per_class(y_true, probs)
    names = i18n.class_names(lang)

    fig, ax = _new_figure((6.5, 6.0))
    handles = _class_curves(
        ax, y_true, probs, aucs, _roc_points, "AUC", metrics.roc_auc_micro(y_true, probs), lang
    )
    defined = [a for a in aucs if a is not None]
    if defined:
        # The mean TPR of the class curves on a common FPR grid, labelled with the mean AUC (AUC_macro).
        grid = np.linspace(0.0, 1.0, 501)
        mean_tpr = np.mean(
            [np.interp(grid, h.get_xdata(), h.get_ydata()) for h in handles[:-1]], axis=0
        )
        handles += ax.plot(
            grid,
            mean_tpr,
            color="navy",
            linestyle="--",
            linewidth=2.2,
            label=f"{t['macro']} (AUC = {np.mean(defined):.3f})",
        )
    handles += ax.plot(
        [0, 1], [0, 1], color="gray", linestyle="--", linewidth=1.0, label=t["chance"]
    )
    present = set(np.unique(y_true).tolist())
    handles += [
        _undefined(
            f"{names[k]}: AUC {t['undefined']} ({t['absent'] if k not in present else t['only_class']})"
        )
        for k, auc in enumerate(aucs)
        if auc is None
    ]
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    _style(ax, t["roc_title"], t["fpr"], t["tpr"])
    ax.legend(handles=handles, fontsize=LEGEND_SIZE, loc="lower right")
    return fig


def plot_precision_recall(y_true: ArrayLike, probs: ArrayLike, *, lang: str = "tr") -> Figure:
    """One-vs-rest precision–recall curve per class present in y_true, plus the micro average; AP in the legend."""
    t = _words(lang)
    y_true, probs, _ = metrics.validate_predictions(y_true, probs)
    aps, _ = metrics.average_precision_per_class(y_true, probs)
    names = i18n.class_names(lang)

    fig, ax = _new_figure((6.5, 6.0))
    handles = _class_curves(
        ax,
        y_true,
        probs,
        aps,
        _pr_points,
        "AP",
        metrics.average_precision_micro(y_true, probs),
        lang,
        drawstyle="steps-post",
    )
    handles += [
        _undefined(f"{names[k]}: AP {t['undefined']} ({t['absent']})")
        for k, ap in enumerate(aps)
        if ap is None
    ]
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    _style(ax, t["pr_title"], t["recall"], t["precision"])
    ax.legend(handles=handles, fontsize=LEGEND_SIZE, loc="lower left")
    return fig


def plot_reliability(
    y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15, *, lang: str = "tr"
) -> Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, bin counts below, ECE in the title."""
    t = _words(lang)
    bins = metrics.calibration_bins(y_true, probs, n_bins)
    bars = {
        "x": bins["lower"],
        "width": bins["upper"] - bins["lower"],
        "align": "edge",
        "edgecolor": "black",
        "linewidth": 0.6,
    }

    fig, (ax, ax_count) = _new_figure((6.0, 6.5), nrows=2, sharex=True, height_ratios=[3, 1])
    _stack_apart(fig)
    ax.bar(height=bins["accuracy"], color=MODEL_COLORS[2], label=t["accuracy"], **bars)
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1.2, label=t["perfect"])
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    _style(ax, f"{t['reliability_title']} (ECE = {bins['ece']:.3f})", "", t["accuracy"])
    ax.legend(fontsize=LEGEND_SIZE, loc="upper left")
    ax_count.bar(height=bins["count"], color="gray", **bars)
    _style(ax_count, "", t["confidence"], t["count"])
    return fig


def plot_confidence(
    y_true: ArrayLike, probs: ArrayLike, n_bins: int = 20, *, lang: str = "tr"
) -> Figure:
    """Histogram of the predicted class's probability, right and wrong predictions apart, each normalised to 1."""
    import seaborn as sns

    t = _words(lang)
    y_true, probs, _ = metrics.validate_predictions(y_true, probs)
    right = probs.argmax(axis=1) == y_true
    frame = pd.DataFrame(
        {"confidence": probs.max(axis=1), "group": np.where(right, t["right"], t["wrong"])}
    )
    fig, ax = _new_figure((6.5, 3.8))
    # common_norm=False: a small group of errors is as visible as the right answers.
    sns.histplot(
        data=frame,
        x="confidence",
        hue="group",
        hue_order=[t["right"], t["wrong"]],
        bins=n_bins,
        binrange=(0.0, 1.0),
        stat="probability",
        common_norm=False,
        element="step",
        palette=[MODEL_COLORS[0], "crimson"],
        ax=ax,
    )
    ax.set_xlim(0.0, 1.0)
    _style(ax, t["confidence_title"], t["confidence"], t["share"])
    sns.move_legend(ax, "best", title=None, fontsize=LEGEND_SIZE)
    return fig


# ------------------------------------------------------------------------------------------ labels only
def plot_confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, normalize: bool = True, *, lang: str = "tr"
) -> Figure:
    """Confusion matrix heatmap over the 8 classes, row-normalised by default; a class absent from y_true is a row
    of dashes."""
    import seaborn as sns

    t = _words(lang)
    y_true = metrics.check_class_ids(y_true, "y_true")
    y_pred = metrics.check_class_ids(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{len(y_true)}, {len(y_pred)}]"
        )
    counts = confusion_matrix(y_true, y_pred, labels=metrics.LABELS)
    support = counts.sum(axis=1)
    empty = np.repeat(support[:, None] == 0, counts.shape[1], axis=1)
    if normalize:
        shown = np.divide(
            counts, support[:, None], out=np.zeros(counts.shape), where=support[:, None] > 0
        )
        vmax, fmt = 1.0, ".2f"
    else:
        shown, vmax, fmt = counts, max(int(counts.max()), 1), "d"
    names = i18n.class_names(lang)

    fig, ax = _new_figure((MAX_WIDTH, 6.0))
    sns.heatmap(
        shown,
        mask=empty,
        cmap="Blues",
        vmin=0,
        vmax=vmax,
        annot=True,
        fmt=fmt,
        square=True,
        linewidths=0.5,
        linecolor="white",
        xticklabels=names,
        yticklabels=names,
        annot_kws={"fontsize": ANNOTATION_SIZE + 1},
        cbar_kws={"shrink": 0.8, "label": t["row_share"] if normalize else t["count"]},
        ax=ax,
    )
    for i, j in zip(*np.nonzero(empty), strict=True):
        ax.text(
            j + 0.5,
            i + 0.5,
            "–",
            ha="center",
            va="center",
            fontsize=ANNOTATION_SIZE + 1,
            color="gray",
        )
    ax.set_facecolor("#eeeeee")
    ax.set_xticklabels(ax.get_xticklabels(), rotation=90)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    title = f"{t['cm_title']} ({t['cm_normalized']})" if normalize else t["cm_title"]
    _style(ax, title, t["pred_class"], t["true_class"])
    ax.grid(False)
    ax.figure.axes[-1].yaxis.label.set_fontsize(LABEL_SIZE)
    return fig


def plot_class_distribution(counts: pd.DataFrame, *, lang: str = "tr") -> Figure:
    """Percentage of each topic in each column of `counts` (rows: the 8 classes; columns: splits or runs)."""
    import seaborn as sns

    t = _words(lang)
    if counts.shape[0] != labels.NUM_CLASSES or counts.shape[1] == 0:
        raise ValueError(
            f"counts must have {labels.NUM_CLASSES} rows (classes) and at least one column; "
            f"found shape {counts.shape}"
        )
    totals = counts.sum(axis=0)
    if (totals <= 0).any():
        raise ValueError(
            f"every column of counts needs at least one question; totals {totals.to_dict()}"
        )
    shares = counts.div(totals, axis=1) * 100
    shares.index = i18n.class_names(lang)
    shares.columns = [name_label(c) for c in shares.columns]
    long = (
        shares.rename_axis("class")
        .reset_index()
        .melt(id_vars="class", var_name="set", value_name="share")
    )
    fig, ax = _new_figure((MAX_WIDTH, 4.2))
    sns.barplot(
        data=long,
        x="class",
        y="share",
        hue="set",
        palette=list(MODEL_COLORS[: shares.shape[1]]),
        ax=ax,
    )
    _slant_x_labels(ax)
    _style(ax, t["distribution_title"], "", t["share_percent"])
    ax.grid(False, axis="x")
    legend = ax.get_legend()
    handles = legend.legend_handles if legend is not None else []
    if legend is not None:
        legend.remove()
    for handle, label in zip(handles, shares.columns, strict=True):
        handle.set_label(label)
    _legend_below(fig, handles)
    return fig


# ---------------------------------------------------------------------------------------- model tables
def _number(value: Any, where: str) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{where} must be a number; found {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{where} must be finite; found {value!r}")
    return float(value)


def _grouped_bars(
    groups: Sequence[str], series: Mapping[str, list[float]], *, annotate: bool
) -> tuple[Figure, Axes]:
    # One bar per model inside each group, centred on the group's tick; the models' legend under the axes.
    fig, ax = _new_figure((MAX_WIDTH, 4.6))
    x = np.arange(len(groups))
    width = 0.8 / len(series)
    handles = []
    for i, (name, values) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        bars = ax.bar(
            x + offset,
            values,
            width,
            label=name_label(name),
            color=MODEL_COLORS[i % len(MODEL_COLORS)],
        )
        handles.append(bars)
        if annotate:
            # Side by side, horizontal labels of more than three bars would run into each other.
            ax.bar_label(
                bars,
                fmt="%.3f",
                fontsize=ANNOTATION_SIZE,
                padding=2,
                rotation=90 if len(series) > 3 else 0,
            )
    ax.set_xticks(x, groups)
    _legend_below(fig, handles)
    return fig, ax


def _model_metric_bars(
    metrics_by_model: Mapping[str, Mapping[str, Any]],
    keys: Sequence[str],
    title_key: str,
    lang: str,
) -> Figure:
    if not metrics_by_model:
        raise ValueError("metrics_by_model is empty; expected {model name: metrics dict}")
    series: dict[str, list[float]] = {}
    for model, values in metrics_by_model.items():
        missing = [k for k in keys if k not in values]
        if missing:
            raise ValueError(
                f"metrics of model {model!r} lack {missing}; found keys {sorted(values)}"
            )
        series[str(model)] = [_number(values[k], f"{model!r} {k}") for k in keys]
    fig, ax = _grouped_bars([metric_name(k, lang) for k in keys], series, annotate=True)
    ax.set_ylim(0.0, 1.1 if len(series) <= 3 else 1.2)
    t = _words(lang)
    _style(ax, t[title_key], "", t["score"])
    ax.grid(False, axis="x")
    return fig


def plot_metric_bars(
    metrics_by_model: Mapping[str, Mapping[str, Any]], *, lang: str = "tr"
) -> Figure:
    """Accuracy, macro precision and macro recall: one group per metric, one annotated bar per model."""
    return _model_metric_bars(
        metrics_by_model, ["Accuracy", "Precision_macro", "Recall_macro"], "metric_bars_title", lang
    )


def plot_f1_bars(metrics_by_model: Mapping[str, Mapping[str, Any]], *, lang: str = "tr") -> Figure:
    """Micro, macro and weighted F1: one group per metric, one annotated bar per model."""
    return _model_metric_bars(
        metrics_by_model, ["F1_micro", "F1_macro", "F1_weighted"], "f1_bars_title", lang
    )


def plot_per_class_f1(
    class_reports_by_model: Mapping[str, Mapping[str, Any]], *, lang: str = "tr"
) -> Figure:
    """F1 per class: one group per class, one bar per model, read from `per_class_report` dicts."""
    t = _words(lang)
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
    fig, ax = _grouped_bars(i18n.class_names(lang), series, annotate=False)
    _slant_x_labels(ax)
    ax.set_ylim(0.0, 1.05)
    _style(ax, t["per_class_title"], t["class"], t["f1"])
    ax.grid(False, axis="x")
    return fig


def latency_label(ms: float) -> str:
    """Milliseconds with three significant digits, without scientific notation."""
    return f"{ms:.3g}" if ms < 1000 else f"{ms:.0f}"


def plot_latency_vs_accuracy(
    latency_ms: Mapping[str, float],
    accuracy: Mapping[str, float],
    *,
    log_scale: bool | None = None,
    lang: str = "tr",
) -> Figure:
    """Accuracy (top panel) and batch-1 latency (bottom panel) per model, the models in the same columns.

    log_scale: None uses a log latency axis when latencies span more than two orders of magnitude.
    """
    t = _words(lang)
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
        raise ValueError(
            f"latencies must be positive; found {dict(zip(models, latency, strict=True))}"
        )
    if not all(0 <= a <= 1 for a in acc):
        raise ValueError(
            f"accuracies must be fractions in [0, 1]; found {dict(zip(models, acc, strict=True))}"
        )
    if log_scale is None:
        log_scale = max(latency) / min(latency) > 100

    # Two panels rather than two y axes on one, so that each panel's value labels cannot run into the other's.
    fig, (ax_acc, ax) = _new_figure(
        (min(MAX_WIDTH, max(5.0, 1.3 * len(models) + 1.5)), 5.6), nrows=2, sharex=True
    )
    _stack_apart(fig)
    x = np.arange(len(models))
    acc_bars = ax_acc.bar(x, acc, width=0.6, color=MODEL_COLORS[0], label=t["accuracy"])
    ax_acc.bar_label(
        acc_bars, labels=[f"{a:.3f}" for a in acc], fontsize=ANNOTATION_SIZE, padding=2
    )
    ax_acc.set_ylim(0.0, 1.15)  # headroom for the labels above a bar at 1.0
    _style(ax_acc, t["accuracy_title"], "", t["accuracy"])
    ax_acc.grid(False, axis="x")
    bars = ax.bar(x, latency, width=0.6, color=MODEL_COLORS[1], label=t["latency"])
    ax.bar_label(
        bars, labels=[latency_label(v) for v in latency], fontsize=ANNOTATION_SIZE, padding=2
    )
    # Headroom above the tallest bar so its label stays inside the axes.
    if log_scale:
        ax.set_yscale("log")
        ax.set_ylim(min(latency) / 3, max(latency) * 4)
    else:
        ax.set_ylim(0, max(latency) * 1.2)
    # As many characters per line as fit under one bar at the tick font size (about 0.6 em per character).
    per_line = max(6, int((fig.get_figwidth() - 1.2) / len(models) / (TICK_SIZE * 0.6 / 72)))
    ax.set_xticks(x, [name_label(m, per_line) for m in models])
    _style(ax, t["latency_panel_title"], t["model"], t["latency"])
    ax.grid(False, axis="x")
    return fig
