"""The report notebook's side of the package: each section loads nothing new, draws from the loaded runs.

`notebooks/final_report.ipynb` holds one short call per section; the section bodies live here so they are
tested and so the notebook stays readable top to bottom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mathreport import summary
from mathreport.artifacts import PROB_COLUMNS
from mathreport.summary import Run, text


def _display(obj) -> None:
    from IPython.display import display

    display(obj)


def _markdown(md: str) -> None:
    from IPython.display import Markdown

    _display(Markdown(md))


@dataclass
class ReportContext:
    """The runs a report is about and where its figures go."""

    runs: dict[str, Run]
    model: str
    figures_dir: Path
    lang: str = "tr"

    @classmethod
    def load(cls, model: str, compare: list[str] | None, results_dir: str, figures_dir: str,
             lang: str = "tr") -> ReportContext:
        """Load every run the report needs; fails before anything is shown if one is missing."""
        if lang not in summary.TEXT:
            raise ValueError(f"lang must be one of {sorted(summary.TEXT)}, got {lang!r}")
        runs = summary.load_runs(Path(results_dir), model, compare)
        return cls(runs, next(iter(runs)), Path(figures_dir), lang)

    # --- display helpers ---------------------------------------------------------------------------

    @property
    def main(self) -> Run:
        return self.runs[self.model]

    def heading(self, key: str) -> None:
        """A section heading in the report's language."""
        _markdown(f"## {text(key, self.lang)}")

    def show(self, fig, name: str) -> Path:
        """Save a figure under figures_dir (PNG, print resolution) and embed it in the notebook."""
        from IPython.display import Image

        from mathreport import plots

        path = plots.save_figure(fig, self.figures_dir / f"{self.model}_{name}.png")
        _display(Image(filename=str(path)))
        return path

    def table(self, frame: pd.DataFrame, digits: int = 3) -> None:
        """Display a table with fixed decimals."""
        _display(summary.format_table(frame, digits))

    # --- sections ----------------------------------------------------------------------------------

    def title(self) -> None:
        _markdown(f"# {text('title', self.lang)}")

    def overview(self) -> None:
        if summary.uses_demo_data(self.runs):
            _markdown(text("demo", self.lang))
        _markdown(summary.overview(self.runs, self.model, self.lang))

    def data_section(self) -> None:
        _markdown(summary.data_description(self.runs, self.lang))
        counts = summary.split_class_counts(self.runs, self.lang)
        self.table(counts if counts is not None else summary.class_counts(self.runs, self.lang), 0)

    def setup_section(self) -> None:
        self.table(summary.setup_table(self.runs, self.lang), 0)

    def lr_search_section(self) -> None:
        from mathreport import plots

        found = summary.lr_searches(self.runs)
        if not found:
            _markdown(summary.no_lr_search(self.runs, self.lang))
            return
        for name, frame in found.items():
            _markdown(f"**{name}**")
            self.table(frame, 4)
            self.show(plots.plot_lr_search(frame, lang=self.lang), f"lr_search_{name}")

    def runs_section(self) -> None:
        _markdown(summary.runs_description(self.runs, self.lang))

    def summary_section(self) -> None:
        self.table(summary.summary_table(self.runs, self.lang))

    def classic_metrics_section(self) -> None:
        from mathreport import plots

        self.show(plots.plot_metric_bars(self._metrics(), lang=self.lang), "metrics")

    def f1_section(self) -> None:
        from mathreport import plots

        self.show(plots.plot_f1_bars(self._metrics(), lang=self.lang), "f1")

    def roc_section(self) -> None:
        from mathreport import plots

        y_true, probs = self._y_probs(self.main)
        self.show(plots.plot_roc(y_true, probs, lang=self.lang), "roc")
        self.show(plots.plot_precision_recall(y_true, probs, lang=self.lang), "precision_recall")
        _markdown(summary.auc_sentence(self.main, self.lang))

    def confusion_section(self) -> None:
        from mathreport import plots

        frame = self.main.predictions
        self.show(plots.plot_confusion_matrix(frame["y_true"], frame["y_pred"], lang=self.lang), "confusion")

    def per_class_section(self) -> None:
        from mathreport import plots

        self.show(plots.plot_per_class_f1({n: r.class_report for n, r in self.runs.items()}, lang=self.lang),
                  "per_class_f1")
        self.table(summary.per_class_table(self.main, self.lang))
        _markdown(summary.per_class_sentence(self.main, self.lang))

    def training_section(self) -> None:
        from mathreport import plots

        for name, run in self.runs.items():
            if len(run.history) < 2:
                # A single fit (tfidf) has no curve to draw; its one row is shown as a table instead.
                _markdown(f"**{name}**: " + ("tek adımda eğitildi (epoch eğrisi yok)." if self.lang == "tr"
                                              else "fitted in one step (no epoch curve)."))
                self.table(run.history.set_index("epoch"))
                continue
            _markdown(f"**{name}**")
            self.show(plots.plot_training_curves(run.history, lang=self.lang), f"training_{name}")

    def latency_section(self) -> None:
        frame = summary.latency_table(self.runs, self.lang)
        if frame.empty:
            _markdown(summary.no_latency(self.lang))
            return
        self.table(frame, 2)
        _markdown(summary.latency_sentence(self.runs, self.lang))

    def latency_vs_accuracy_section(self) -> None:
        from mathreport import plots

        latency = {n: summary.latency_p50(r) for n, r in self.runs.items()}
        latency = {n: v for n, v in latency.items() if v is not None}
        if not latency:
            _markdown(summary.no_latency(self.lang))
            return
        accuracy = {n: self.runs[n].metrics["Accuracy"] for n in latency}
        self.show(plots.plot_latency_vs_accuracy(latency, accuracy, lang=self.lang), "latency_vs_accuracy")

    def calibration_section(self) -> None:
        from mathreport import plots

        y_true, probs = self._y_probs(self.main)
        self.show(plots.plot_reliability(y_true, probs, lang=self.lang), "reliability")
        _markdown(summary.calibration_sentence(self.runs, self.lang))

    def errors_section(self) -> None:
        _markdown(summary.error_analysis(self.main, self.lang))

    def conclusion_section(self) -> None:
        if len(self.runs) > 1:
            self.table(summary.comparisons_table(self.runs, self.lang), 4)
        _markdown(summary.conclusion(self.runs, self.model, self.lang))

    # --- data access -------------------------------------------------------------------------------

    def _metrics(self) -> dict[str, dict]:
        return {name: run.metrics for name, run in self.runs.items()}

    @staticmethod
    def _y_probs(run: Run):
        return run.predictions["y_true"].to_numpy(), run.predictions[PROB_COLUMNS].to_numpy(dtype=float)

