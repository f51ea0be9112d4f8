"""The report's sections, drawn from the loaded runs. A section is one `ReportContext` method
registered with `@section(key)`: its heading and introduction are the catalog keys `report.<key>`
and `intro.<key>` of every `mathreport/locales/*.toml`, and `final_report.ipynb` calls it once, in
the order of this file (`python -m mathreport.notebook_build` writes the notebook from `SECTIONS`).
Default paths resolve against the project root: JupyterLab runs a notebook in its own folder,
papermill in the caller's."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython.display import HTML, Image, display

from mathreport import i18n, plots, summary
from mathreport.artifacts import PROB_COLUMNS
from mathreport.markup import markdown_html, md
from mathreport.summary import Run, text

ROOT_ENV = "MATHREPORT_ROOT"
ROOT_MARKERS = ("pyproject.toml", ".git")
CSS_PX_PER_INCH = 96


def project_root(start: Path | None = None) -> Path:
    """$MATHREPORT_ROOT, else the nearest folder at or above `start` (default: the working directory) holding
    pyproject.toml or .git, else `start`."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return start


def project_path(value: str | os.PathLike[str] | None, default: str) -> Path:
    """An explicit path as given (relative to the working directory), or `default` under the project root."""
    return Path(value) if value not in (None, "") else project_root() / default


@dataclass(frozen=True)
class ReportSection:
    """One report section: `key` names its catalog entries, `method` the ReportContext method.

    `keys`: the other catalog keys in the section namespaces (`SECTION_NAMESPACES`) that it shows.
    """

    key: str
    method: str
    keys: tuple[str, ...] = ()

    @property
    def heading_key(self) -> str:
        return f"report.{self.key}"

    @property
    def intro_key(self) -> str:
        return f"intro.{self.key}"

    @property
    def catalog_keys(self) -> tuple[str, ...]:
        return (self.heading_key, self.intro_key, *self.keys)


# The catalog prefixes that belong to sections: each such key is declared by a section (or the
# title), so a section's words are added, renamed and removed with it. summary.*, plot.* and the
# rest belong to the modules that use them.
SECTION_NAMESPACES = ("report.", "intro.", "sections.")
# In notebook order: registration order, which is the order of the methods in ReportContext.
SECTIONS: dict[str, ReportSection] = {}
# The title is not a section (its call opens the notebook, before any heading) but owns words like
# one: the banner's, which it shows.
TITLE = ReportSection(
    "title", "title", ("report.banner", "report.banner_synthetic", "report.banner_demo")
)


def section(key: str, *, keys: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Register a ReportContext method as the report section `key`, in the notebook in order.

    key: its heading and introduction are the catalog keys `report.<key>` and `intro.<key>`.
    keys: any other key of SECTION_NAMESPACES the method shows (the words of its numbers belong
        to summary and plots).
    """

    def register(method: Callable) -> Callable:
        if key in SECTIONS or key == TITLE.key:
            raise ValueError(
                f"report section {key!r} is registered twice in "
                f"mathreport/sections.py; rename one (its catalog keys "
                f"report.{key}, intro.{key} follow it)"
            )
        SECTIONS[key] = ReportSection(key, method.__name__, tuple(keys))
        return method

    return register


def catalog_keys() -> set[str]:
    """Every catalog key the title and the registered sections declare."""
    return {k for s in (TITLE, *SECTIONS.values()) for k in s.catalog_keys}


def _markdown(markdown: str) -> None:
    display(
        HTML(markdown_html(markdown))
    )  # raw HTML switched off: the data parts of the prose are escaped already


def _file_stem(name: str) -> str:
    # Figure files are named after run folders; keep only characters that are safe in any file name.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"


@dataclass
class ReportContext:
    """The runs a report is about and where its figures go."""

    runs: dict[str, Run]
    model: str
    figures_dir: Path
    lang: str = "tr"

    @classmethod
    def load(
        cls,
        model: str,
        compare: list[str] | None = None,
        results_dir: str | None = None,
        figures_dir: str | None = None,
        lang: str = "tr",
    ) -> ReportContext:
        """Load every run the report needs, failing before anything is shown if one is missing.

        results_dir, figures_dir: None means `results/`, `figures/` under the project root.
        """
        if lang not in summary.TEXT:
            raise ValueError(f"lang must be one of {sorted(summary.TEXT)}, got {lang!r}")
        runs = summary.load_runs(project_path(results_dir, "results"), model, compare)
        return cls(runs, next(iter(runs)), project_path(figures_dir, "figures"), lang)

    @property
    def main(self) -> Run:
        return self.runs[self.model]

    def heading(self, key: str) -> None:
        """A section's heading and introduction, except in Turkish: those are the notebook's own `lang-tr` cells."""
        if self.lang != "tr":
            _markdown(f"## {text(key, self.lang)}\n\n{summary.INTRO[self.lang][key]}")

    def show(self, fig, name: str) -> Path:
        """Save a figure under figures_dir (PNG, print resolution) and embed it at its physical size."""
        width_px = round(fig.get_figwidth() * CSS_PX_PER_INCH)
        path = plots.save_figure(
            fig, self.figures_dir / f"{_file_stem(self.main.path.name)}_{name}.png"
        )
        display(Image(filename=str(path), width=width_px))
        return path

    def table(self, frame: pd.DataFrame, digits: int = 3) -> None:
        """Display a table with fixed decimals, every string in it escaped."""
        display(summary.format_table(frame, digits))

    def title(self) -> None:
        """The title (languages other than Turkish) and, whenever a run is synthetic or demo-trained, a banner."""
        if self.lang != "tr":
            _markdown(f"# {text('title', self.lang)}\n\n{summary.INTRO[self.lang]['title']}")
        self.banner()

    def banner(self) -> None:
        warning = summary.banner(self.runs, self.lang)
        if warning:
            display(
                HTML(
                    f'<div class="mathreport-banner" style="border: 2px solid #b00020; background: #fdecea; '
                    f'padding: 6px 10px; margin: 6px 0;">{markdown_html(warning)}</div>'
                )
            )

    @section("overview")
    def overview(self) -> None:
        _markdown(summary.overview(self.runs, self.model, self.lang))

    @section("data")
    def data_section(self) -> None:
        _markdown(summary.data_description(self.runs, self.lang))
        counts = summary.split_class_counts(self.runs, self.lang)
        counts = counts if counts is not None else summary.class_counts(self.runs, self.lang)
        self.table(counts, 0)
        self.show(plots.plot_class_distribution(counts, lang=self.lang), "class_distribution")

    @section("setup")
    def setup_section(self) -> None:
        self.table(summary.setup_table(self.runs, self.lang), 0)

    @section("lr")
    def lr_search_section(self) -> None:
        found = summary.lr_searches(self.runs)
        if not found:
            _markdown(summary.no_lr_search(self.runs, self.lang))
            return
        for name, frame in found.items():
            _markdown(f"**{md(name)}**")
            self.table(frame, 4)
            self.show(
                plots.plot_lr_search(frame, lang=self.lang),
                f"lr_search_{_file_stem(self.runs[name].path.name)}",
            )

    @section("runs")
    def runs_section(self) -> None:
        _markdown(summary.runs_description(self.runs, self.lang))

    @section("summary", keys=("report.model",))
    def summary_section(self) -> None:
        self.table(summary.summary_table(self.runs, self.lang))
        note = summary.macro_note(self.runs, self.lang)
        if note:
            _markdown(note)

    @section("classic")
    def classic_metrics_section(self) -> None:
        self.show(plots.plot_metric_bars(self._metrics(), lang=self.lang), "metrics")

    @section("f1")
    def f1_section(self) -> None:
        self.show(plots.plot_f1_bars(self._metrics(), lang=self.lang), "f1")

    @section("roc")
    def roc_section(self) -> None:
        y_true, probs = self._y_probs(self.main)
        self.show(plots.plot_roc(y_true, probs, lang=self.lang), "roc")
        self.show(plots.plot_precision_recall(y_true, probs, lang=self.lang), "precision_recall")
        _markdown(summary.auc_sentence(self.main, self.lang))

    @section("confusion")
    def confusion_section(self) -> None:
        frame = self.main.predictions
        self.show(
            plots.plot_confusion_matrix(frame["y_true"], frame["y_pred"], lang=self.lang),
            "confusion",
        )

    @section("per_class")
    def per_class_section(self) -> None:
        self.show(
            plots.plot_per_class_f1(
                {n: r.class_report for n, r in self.runs.items()}, lang=self.lang
            ),
            "per_class_f1",
        )
        self.table(summary.per_class_table(self.main, self.lang))
        _markdown(summary.per_class_sentence(self.main, self.lang))

    @section("training", keys=("sections.one_step_fit",))
    def training_section(self) -> None:
        for name, run in self.runs.items():
            if len(run.history) < 2:
                # A single fit (tfidf) has no curve to draw; its one row is shown as a table instead.
                _markdown(f"**{md(name)}**: " + i18n.message("sections.one_step_fit", self.lang))
                self.table(run.history.set_index("epoch"))
                continue
            _markdown(f"**{md(name)}**")
            self.show(
                plots.plot_training_curves(run.history, lang=self.lang),
                f"training_{_file_stem(run.path.name)}",
            )

    @section("latency", keys=("report.model",))
    def latency_section(self) -> None:
        frame = summary.latency_table(self.runs, self.lang)
        if frame.empty:
            _markdown(summary.no_latency(self.lang))
            return
        self.table(frame, 2)
        _markdown(summary.latency_sentence(self.runs, self.lang))

    @section("latency_vs_acc")
    def latency_vs_accuracy_section(self) -> None:
        latency = {n: summary.latency_p50(r) for n, r in self.runs.items()}
        latency = {n: v for n, v in latency.items() if v is not None}
        if not latency:
            _markdown(summary.no_latency(self.lang))
            return
        accuracy = {n: self.runs[n].metrics["Accuracy"] for n in latency}
        self.show(
            plots.plot_latency_vs_accuracy(latency, accuracy, lang=self.lang), "latency_vs_accuracy"
        )

    @section("calibration")
    def calibration_section(self) -> None:
        y_true, probs = self._y_probs(self.main)
        self.show(plots.plot_reliability(y_true, probs, lang=self.lang), "reliability")
        self.show(plots.plot_confidence(y_true, probs, lang=self.lang), "confidence")
        _markdown(summary.calibration_sentence(self.runs, self.lang))

    @section("errors")
    def errors_section(self) -> None:
        display(HTML(summary.error_analysis_html(self.main, self.lang)))

    @section("conclusion")
    def conclusion_section(self) -> None:
        if len(self.runs) > 1:
            self.table(summary.comparisons_table(self.runs, self.lang), 4)
        _markdown(summary.conclusion(self.runs, self.model, self.lang))

    def _metrics(self) -> dict[str, dict]:
        return {name: run.metrics for name, run in self.runs.items()}

    @staticmethod
    def _y_probs(run: Run):
        return run.predictions["y_true"].to_numpy(), run.predictions[PROB_COLUMNS].to_numpy(
            dtype=float
        )
