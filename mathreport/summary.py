"""What the report says: the runs it is about, its tables, and prose generated from the numbers.

Every number in `notebooks/final_report.ipynb` comes from a run's files through here, never from the notebook's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pandas as pd

from mathreport import artifacts, i18n, metrics, options, presets, record
from mathreport.errors import MissingResultsError
from mathreport.labels import NUM_CLASSES
from mathreport.markup import dollar_math, escape_html, md, md_code, question_html

# The report's headings and banner, and each section's introduction, per language (views of `i18n`'s catalog).
TEXT = i18n.Section("report.")
INTRO = i18n.Section("intro.")

SUMMARY_COLUMNS = [
    "Accuracy",
    "Precision_macro",
    "Recall_macro",
    "F1_micro",
    "F1_macro",
    "F1_weighted",
    "AUC_macro",
]


def text(key: str, lang: str = "tr") -> str:
    """A fixed piece of report text (a heading or note) in the report's language."""
    return i18n.message(f"report.{key}", lang)


@dataclass
class Run:
    """Everything a report reads of one run directory."""

    name: str
    path: Path
    metrics: dict
    class_report: dict
    predictions: pd.DataFrame
    history: pd.DataFrame
    latency: dict | None
    manifest: record.RunRecord | None


def _gpu_note() -> str:
    """Which presets need a GPU machine, from the registry (`Preset.needs_gpu`)."""
    names = presets.gpu_presets()
    verb = "needs" if len(names) == 1 else "need"
    return f" ({' and '.join(names)} {verb} a GPU machine with their weights)" if names else ""


def load_run(results_dir: Path, name: str) -> Run:
    """Read and validate one run; a missing run or file raises MissingResultsError saying what to do."""
    run_dir = Path(results_dir) / name
    if not run_dir.is_dir():
        raise MissingResultsError(
            f"no results for model {name!r}: {run_dir}/ does not exist. Train it with `mathreport train --model "
            f"{name} --output_dir {run_dir}`{_gpu_note()}, or copy its results/{name}/ folder from the machine "
            "that trained it."
        )
    missing = artifacts.missing_files(run_dir)
    if missing:
        raise MissingResultsError(
            f"results for model {name!r} are incomplete: {run_dir}/ lacks "
            f"{', '.join(missing)}. Make them with: {artifacts.make_command(run_dir)}"
        )
    manifest = record.read_if_present(run_dir)
    return Run(
        name=(manifest and manifest.display_name)
        or name,  # the folder's name unless run.json gives another
        path=run_dir,
        metrics=artifacts.read_metrics(run_dir),
        class_report=artifacts.read_class_report(run_dir),
        predictions=artifacts.read_predictions(run_dir),
        history=artifacts.read_history(run_dir),
        latency=artifacts.read_latency(run_dir)
        if (run_dir / artifacts.LATENCY).is_file()
        else None,
        manifest=manifest,
    )


def load_runs(results_dir: Path, model: str, compare: list[str] | None = None) -> dict[str, Run]:
    """The report's runs keyed by display name, `model` first; compare: the other folders (None: every run found)."""
    others = (
        compare
        if compare is not None
        else [n for n in artifacts.find_runs(results_dir) if n != model]
    )
    runs: dict[str, Run] = {}
    for directory in [model, *[n for n in others if n != model]]:
        run = load_run(results_dir, directory)
        if run.name in runs:
            raise artifacts.ArtifactError(
                f"two runs are both named {run.name!r} ({runs[run.name].path} and {run.path}); give one of "
                f"them another display_name in its {artifacts.MANIFEST}"
            )
        runs[run.name] = run
    return runs


def summary_table(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame:
    """One row per model: the headline metrics, test size and batch-1 latency."""
    rows = [
        {
            text("model", lang): name,
            **{col: run.metrics.get(col) for col in SUMMARY_COLUMNS},
            "n_test": len(run.predictions),
            "p50_ms (bs=1)": latency_p50(run),
        }
        for name, run in runs.items()
    ]
    return pd.DataFrame(rows).set_index(text("model", lang))


def latency_p50(run: Run, batch_size: int = 1) -> float | None:
    """Per-item p50 latency at a batch size, or None when the run has no such measurement."""
    entries = run.latency["results"] if run.latency else []
    return next((float(e["p50_ms"]) for e in entries if e["batch_size"] == batch_size), None)


def format_table(frame: pd.DataFrame, digits: int = 3):
    """A pandas Styler: numbers with `digits` decimals, missing values as a dash, every string HTML-escaped."""
    # A zero-width space after each "_" lets a narrow column's header ("Precision_macro") wrap there.
    styler = (
        frame.style.format(precision=digits, na_rep="—", escape="html")
        .format_index(escape="html", axis=0)
        .format_index(lambda label: str(label).replace("_", "_\u200b"), escape="html", axis=1)
    )
    # Row numbers (a default RangeIndex) say nothing to the reader.
    return styler.hide(axis="index") if isinstance(frame.index, pd.RangeIndex) else styler


def is_synthetic(run: Run) -> bool:
    """Whether a run's run.json marks its results as synthetic (made for tests, not by training)."""
    return run.manifest is not None and run.manifest.synthetic is True


def _trained_on_demo(run: Run) -> bool:
    return (_prepare_report(run) or {}).get("source") == "demo"


def banner(runs: dict[str, Run], lang: str = "tr") -> str:
    """A warning naming every run that is synthetic or trained on the demo corpus; "" when there is none."""
    flagged = []
    for name, run in runs.items():
        why = [
            i18n.message(key, lang)
            for key, hit in (
                ("report.banner_synthetic", is_synthetic(run)),
                ("report.banner_demo", _trained_on_demo(run)),
            )
            if hit
        ]
        if why:
            flagged.append(f"**{md(name)}** ({md('; '.join(why))})")
    return i18n.message("report.banner", lang, runs=", ".join(flagged)) if flagged else ""


# --- prose and tables generated from the numbers ---------------------------------------------------

HEADLINE = ("Accuracy", "F1_macro", "F1_weighted", "AUC_macro")
# The significance level the conclusion tests McNemar's p-value against.
ALPHA = 0.05


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ranked(runs: dict[str, Run], metric: str) -> list[tuple[str, float]]:
    values = [(n, r.metrics.get(metric)) for n, r in runs.items()]
    return sorted(
        [(n, float(v)) for n, v in values if isinstance(v, (int, float))], key=lambda x: -x[1]
    )


def winner(runs: dict[str, Run]) -> str:
    """The best model: highest F1_macro, ties broken by Accuracy (the order the conclusion uses)."""
    return max(runs, key=lambda n: (runs[n].metrics["F1_macro"], runs[n].metrics["Accuracy"]))


def leaders(runs: dict[str, Run], lang: str = "tr") -> list[str]:
    """One sentence per headline metric: which model leads and by how much over the next."""
    out = []
    for metric in HEADLINE:
        ranked = _ranked(runs, metric)
        if len(ranked) == 1:
            ((best, value),) = ranked
            out.append(
                i18n.message(
                    "summary.leader_alone", lang, metric=metric, best=md(best), value=_f(value)
                )
            )
        elif ranked:
            (best, value), (second, value2) = ranked[:2]
            gap = value - value2
            out.append(
                i18n.message(
                    "summary.leader",
                    lang,
                    metric=metric,
                    best=md(best),
                    value=_f(value),
                    second=md(second),
                    value2=_f(value2),
                    gap=_f(gap),
                    gap_points=gap * 100,
                )
            )
    return out


def overview(runs: dict[str, Run], model: str, lang: str = "tr") -> str:
    """The report's opening paragraph: what was compared, on how many test questions, who leads."""
    listed = ", ".join(f"**{md(n)}**" for n in runs)
    best = winner(runs)
    return i18n.message(
        "summary.overview",
        lang,
        model=md(model),
        n_runs=len(runs),
        runs=listed,
        n_test=len(runs[model].predictions),
        best=md(best),
        f1_macro=_f(runs[best].metrics["F1_macro"]),
        accuracy=_f(runs[best].metrics["Accuracy"]),
    )


def _prepare_report(run: Run) -> dict | None:
    """The prepare_report.json beside the run's training split, if there is one."""
    train = run.manifest.split("train").path if run.manifest else None
    path = Path(train).parent / "prepare_report.json" if train else None
    return artifacts.read_json(path) if path and path.is_file() else None


def _first_prepare_report(runs: dict[str, Run]) -> dict | None:
    return next((p for p in map(_prepare_report, runs.values()) if p), None)


def data_description(runs: dict[str, Run], lang: str = "tr") -> str:
    """Where the data came from, split sizes and cleaning counts, from run.json and prepare_report.json."""
    lines = []
    for name, run in runs.items():
        data = run.manifest.data if run.manifest else None
        if not data:
            no_record = i18n.message("summary.no_data_record", lang, n_test=len(run.predictions))
            lines.append(f"- **{md(name)}**: {no_record}")
            continue
        sizes = ", ".join(f"{md(split)} {md(info.rows)}" for split, info in data.items())
        files = ", ".join(
            f"{md_code(info.path)} (sha256 {md(str(info.sha256)[:12])})" for info in data.values()
        )
        lines.append(f"- **{md(name)}**: {sizes} — {files}")
    prep = _first_prepare_report(runs)
    if prep:
        lines.extend(cleaning_lines(prep, lang))
    return "\n".join(lines)


def cleaning_lines(prep: dict, lang: str = "tr") -> list[str]:
    """Source, rows in/kept, each cleaning step's count and augmentation, from prepare_report.json."""
    source = prep.get("source", "file")
    # A source or cleaning step this version has no words for is shown by its name in the file.
    words = i18n.table(lang)
    label = words.get(f"source.{source}", source)
    path = (prep.get("input") or {}).get("path", "")
    cleaning = prep.get("cleaning") or {}
    dropped = cleaning.get("rows_dropped") or {}
    drops = ", ".join(f"{md(words.get(f'drop.{k}', k))}: {md(v)}" for k, v in dropped.items())
    changes = ", ".join(
        f"{md(k)}: {md(v)}" for k, v in (cleaning.get("rows_changed") or {}).items()
    )
    aug = {k: md(v) for k, v in (prep.get("augmentation") or {}).items()}
    lines = [
        i18n.message("summary.cleaning_source", lang, source=md(label), path=md_code(path)),
        i18n.message(
            "summary.cleaning_rows",
            lang,
            rows_in=md(prep.get("rows_in")),
            rows_kept=md(prep.get("rows_kept")),
            dropped=drops,
        ),
        i18n.message("summary.cleaning_changed", lang, changed=changes),
        i18n.message(
            "summary.cleaning_splits",
            lang,
            splits=md(prep.get("rows_per_split")),
            method=aug.get("method", "none"),
            rows_added=aug.get("rows_added", 0),
        ),
    ]
    return [f"- {line}" for line in lines]


def _class_index(lang: str, heading: str = "summary.topic") -> pd.Index:
    return pd.Index(i18n.class_names(lang), name=i18n.message(heading, lang))


def split_class_counts(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame | None:
    """Class counts per split from prepare_report.json, with Turkish/English class names."""
    prep = _first_prepare_report(runs)
    if not prep or not prep.get("class_counts"):
        return None
    return pd.DataFrame(
        {
            split: [
                int(counts.get(str(i), counts.get(i, 0)) if isinstance(counts, dict) else 0)
                for i in range(NUM_CLASSES)
            ]
            for split, counts in prep["class_counts"].items()
        },
        index=_class_index(lang),
    )


def class_counts(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame | None:
    """Test-set class counts of each run (from preds_test.csv), one column per run."""
    table = {
        name: run.predictions["y_true"]
        .value_counts()
        .reindex(range(NUM_CLASSES), fill_value=0)
        .tolist()
        for name, run in runs.items()
    }
    return pd.DataFrame(table, index=_class_index(lang, "summary.topic_test"))


def setup_table(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame:
    """Package versions and hardware of each run (from run.json)."""
    rows = {}
    for name, run in runs.items():
        manifest = run.manifest or record.RunRecord()
        rows[name] = {
            **manifest.versions,
            "cpu": manifest.hardware.get("cpu"),
            "cuda": manifest.hardware.get("cuda"),
            "device": manifest.device or ("cpu" if run.manifest else None),
        }
    return pd.DataFrame(rows).fillna("—")


def lr_searches(runs: dict[str, Run]) -> dict[str, pd.DataFrame]:
    """The learning-rate searches found beside each run (`<run>/lr_search.csv`)."""
    return {
        n: artifacts.read_lr_search(r.path)
        for n, r in runs.items()
        if (r.path / artifacts.LR_SEARCH).is_file()
    }


def no_lr_search(runs: dict[str, Run], lang: str = "tr") -> str:
    """Says plainly that no search was run, and how to run one."""
    return i18n.message("summary.no_lr_search", lang)


# scikit-learn fits the whole train split in one call: a tfidf run has no batches and no epochs either.
_UNUSED_BY_TFIDF = ("batch_size", "num_epochs")


def used_hyperparameters(manifest: record.RunRecord) -> dict:
    """The hyperparameters of run.json that its model uses: none left open (None), and for a tfidf run none of
    the transformer options (learning rate, max_length, top_k_layers), batches or epochs."""
    unused = (
        {*options.transformer_only(), *_UNUSED_BY_TFIDF} if not manifest.traits.neural else set()
    )
    return {k: v for k, v in manifest.hyperparameters.items() if v is not None and k not in unused}


def runs_description(runs: dict[str, Run], lang: str = "tr") -> str:
    """The exact command and settings of each run (from run.json)."""
    lines = []
    for name, run in runs.items():
        manifest = run.manifest or record.RunRecord()
        if not manifest.command:
            why = i18n.message(
                "summary.run_synthetic" if is_synthetic(run) else "summary.run_no_record", lang
            )
            lines.append(f"- **{md(name)}**: {why}")
            continue
        hyper = ", ".join(f"{k}={v}" for k, v in used_hyperparameters(manifest).items())
        parts = [md(manifest.description), md(hyper)]
        training = manifest.training or {}
        speed, seconds = training.get("train_samples_per_second"), training.get("train_seconds")
        if (
            isinstance(speed, (int, float))
            and isinstance(seconds, (int, float))
            and speed
            and seconds
        ):
            parts.append(i18n.message("summary.run_speed", lang, seconds=seconds, speed=speed))
        rate, share, top = (
            training.get("gflop_per_s"),
            training.get("ceiling_share"),
            training.get("ceiling") or {},
        )
        if isinstance(rate, (int, float)) and isinstance(share, (int, float)) and top.get("dtype"):
            # The achieved arithmetic rate against this machine's matmul ceiling in the precision that ran.
            parts.append(
                i18n.message(
                    "summary.run_rate",
                    lang,
                    rate=rate,
                    share=share * 100,
                    dtype=md(top["dtype"]),
                    ceiling=top.get("gflop_per_s", 0.0),
                )
            )
        if manifest.world_size and manifest.world_size > 1:
            parts.append(
                i18n.message(
                    "summary.run_processes",
                    lang,
                    n=manifest.world_size,
                    batch=manifest.global_batch_size,
                )
            )
        total, trainable = training.get("total_parameters"), training.get("trainable_parameters")
        if isinstance(total, int) and isinstance(trainable, int):  # the models' sizes, side by side
            parts.append(
                i18n.message("summary.run_size", lang, total=total / 1e6, trainable=trainable / 1e6)
            )
        if manifest.lora:
            parts.append(f"LoRA {md(manifest.lora)}")
        lines.append(f"- **{md(name)}** — {md_code(manifest.command)}  \n  " + "; ".join(parts))
    return "\n".join(lines)


def macro_note(runs: dict[str, Run], lang: str = "tr") -> str:
    """For each run whose macro means leave classes out (metrics.json's macro_excluded), which ones; else ""."""
    class_names = i18n.class_names(lang)
    lines = []
    for run in runs.values():
        excluded = sorted(int(k.split("_")[1]) for k in run.metrics.get("macro_excluded") or {})
        if excluded:
            lines.append(
                i18n.message(
                    "summary.macro_excluded",
                    lang,
                    run=md(run.name),
                    n=len(excluded),
                    classes=", ".join(class_names[i] for i in excluded),
                )
            )
    return "\n\n".join(lines)


def auc_sentence(run: Run, lang: str = "tr") -> str:
    """Macro/micro AUC over all 8 classes and the weakest class by AUC."""
    per_class = run.class_report["per_class"]
    aucs = [
        (int(k.split("_")[1]), v.get("auc"))
        for k, v in per_class.items()
        if v.get("auc") is not None
    ]
    if not aucs:
        return ""
    worst = min(aucs, key=lambda x: x[1])
    undefined = [
        (int(k.split("_")[1]), v.get("auc_undefined_reason", ""))
        for k, v in per_class.items()
        if v.get("auc") is None
    ]
    class_names = i18n.class_names(lang)
    out = i18n.message(
        "summary.auc",
        lang,
        run=md(run.name),
        n_classes=NUM_CLASSES,
        macro=_f(run.metrics.get("AUC_macro")),
        micro=_f(run.metrics.get("AUC_micro")),
        worst=class_names[worst[0]],
        worst_auc=_f(worst[1]),
    )
    if undefined:
        out += " " + i18n.message(
            "summary.auc_undefined",
            lang,
            classes="; ".join(f"{class_names[i]} ({md(why)})" for i, why in undefined),
        )
    return out


def per_class_table(run: Run, lang: str = "tr") -> pd.DataFrame:
    """Per-class precision, recall, F1, AUC and support of one run."""
    entries = [run.class_report["per_class"][f"class_{i}"] for i in range(NUM_CLASSES)]
    return pd.DataFrame(
        [
            {
                "precision": e["precision"],
                "recall": e["recall"],
                "f1_score": e["f1_score"],
                "auc": e.get("auc"),
                "support": int(e["support"]),
            }
            for e in entries
        ],
        index=_class_index(lang),
    )


def per_class_sentence(run: Run, lang: str = "tr") -> str:
    """The strongest and weakest topics by F1."""
    table = per_class_table(run, lang)
    table = table[table["support"] > 0]
    best, worst = table["f1_score"].idxmax(), table["f1_score"].idxmin()
    return i18n.message(
        "summary.per_class",
        lang,
        run=md(run.name),
        best=best,
        best_f1=_f(table.loc[best, "f1_score"]),
        worst=worst,
        worst_f1=_f(table.loc[worst, "f1_score"]),
        worst_support=int(table.loc[worst, "support"]),
    )


def latency_table(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame:
    """One row per (model, batch size): per-item p50/p95/p99 and throughput, with the device and what ran (a
    run's rows may name different backends: the one it chose for single questions, and for batches)."""
    return pd.DataFrame(
        [
            {
                text("model", lang): name,
                "batch_size": entry["batch_size"],
                "p50_ms": entry["p50_ms"],
                "p95_ms": entry["p95_ms"],
                "p99_ms": entry.get("p99_ms"),
                "items_per_s": entry["items_per_s"],
                "device": run.latency["device"],
                "dtype": entry.get("backend", run.latency.get("dtype")),
            }
            for name, run in runs.items()
            if run.latency
            for entry in run.latency["results"]
        ]
    )


def no_latency(lang: str = "tr") -> str:
    """Says that no run has a latency measurement."""
    return i18n.message("summary.no_latency", lang)


def latency_sentence(runs: dict[str, Run], lang: str = "tr") -> str:
    """Which model answers fastest at batch size 1, on what hardware, and the accuracy it costs or gains."""
    measured = {
        n: (latency_p50(r), r.latency["device"])
        for n, r in runs.items()
        if latency_p50(r) is not None
    }
    if not measured:
        return no_latency(lang)
    fastest = min(measured, key=lambda n: measured[n][0])
    devices = {d for _, d in measured.values()}
    parts = [
        i18n.message("summary.latency_part", lang, run=md(name), p50_ms=p50, device=md(device))
        for name, (p50, device) in measured.items()
    ]
    hardware = (
        i18n.message("summary.latency_same_hardware", lang, device=md(devices.pop()))
        if len(devices) == 1
        else i18n.message("summary.latency_other_hardware", lang)
    )
    return (
        i18n.message("summary.latency", lang, parts="; ".join(parts), fastest=md(fastest))
        + " "
        + hardware
    )


def calibration_sentence(runs: dict[str, Run], lang: str = "tr") -> str:
    """ECE and log-loss of each run."""
    parts = [
        i18n.message(
            "summary.calibration_part",
            lang,
            run=md(n),
            ece=_f(r.metrics.get("ECE")),
            log_loss=_f(r.metrics.get("LogLoss")),
        )
        for n, r in runs.items()
        if r.metrics.get("ECE") is not None
    ]
    return i18n.message("summary.calibration", lang, parts="; ".join(parts)) if parts else ""


QUESTION_CHARS = 240


def shorten_question(question: str, limit: int = QUESTION_CHARS) -> str:
    """A question cut to about `limit` characters, never inside a `$...$` or `$$...$$` math span."""
    question = dollar_math(question)
    if len(question) <= limit:
        return question
    cut = question[:limit]
    delimiters = [m.start() for m in re.finditer(r"(?<!\\)\$\$?", cut)]
    if len(delimiters) % 2:  # the cut falls inside a math span: end before it opens
        cut = cut[: delimiters[-1]]
    return cut.rstrip() + " …"


def error_analysis_html(run: Run, lang: str = "tr", k: int = 5) -> str:
    """The most frequent confusions with up to 3 example questions each, as HTML (text escaped, LaTeX as MathML)."""
    frame = run.predictions
    texts = frame["text"].astype(str).tolist() if "text" in frame.columns else None
    confusions = metrics.top_confusions(frame["y_true"], frame["y_pred"], texts, k=k)
    if not confusions:
        return f"<p>{i18n.message('summary.no_errors', lang)}</p>"
    head = i18n.message("summary.errors_head", lang)
    class_names = i18n.class_names(lang)
    out = [
        f"<p><strong>{escape_html(run.name)}</strong> — {head}</p>",
        '<ul class="mathreport-errors">',
    ]
    for c in confusions:
        out.append(
            "<li>"
            + i18n.message(
                "summary.errors_pair",
                lang,
                true=escape_html(class_names[c["true_id"]]),
                pred=escape_html(class_names[c["pred_id"]]),
                count=int(c["count"]),
                share_percent=c["share_of_true"] * 100,
            )
        )
        if c["examples"]:
            out.append('<ul class="mathreport-questions">')
            out.extend(
                f'<li class="mathreport-question">{question_html(shorten_question(q))}</li>'
                for q in c["examples"]
            )
            out.append("</ul>")
        out.append("</li>")
    out.append("</ul>")
    return "\n".join(out)


def significance(runs: dict[str, Run], a: str, b: str) -> dict | None:
    """McNemar's exact test and CI overlap between two runs, or None when their test items differ."""
    pa, pb = runs[a].predictions, runs[b].predictions
    if len(pa) != len(pb) or not (pa["y_true"].to_numpy() == pb["y_true"].to_numpy()).all():
        return None
    # The team's metrics.json has no intervals: bootstrap them from the predictions, as metrics.json would.
    cis = {
        n: runs[n].metrics.get("ci95")
        or metrics.bootstrap_ci(runs[n].predictions["y_true"], runs[n].predictions["y_pred"])
        for n in (a, b)
    }
    return metrics.compare_runs(
        {a: (pa["y_true"], pa["y_pred"]), b: (pb["y_true"], pb["y_pred"])}, cis
    )[0]


def conclusion(runs: dict[str, Run], model: str, lang: str = "tr") -> str:
    """The conclusion, generated from the numbers: leader per metric, significance, latency trade-off."""
    best_key = winner(runs)
    best = md(best_key)
    lines = leaders(runs, lang)
    others = {n: r for n, r in runs.items() if n != best_key}
    if others:
        second_key = winner(others)
        test = significance(runs, best_key, second_key)
        second = md(second_key)
        if test is None:
            lines.append(i18n.message("summary.different_tests", lang, best=best, second=second))
        else:
            verdict = i18n.message(
                "summary.significant" if test["p_value"] < ALPHA else "summary.not_significant",
                lang,
                alpha=ALPHA,
            )
            line = i18n.message(
                "summary.mcnemar",
                lang,
                best=best,
                second=second,
                n=test["n"],
                b=test["b"],
                c=test["c"],
                p_value=test["p_value"],
                verdict=verdict,
            )
            overlap = test.get("ci_overlap", {})
            if overlap:
                line += " " + i18n.message(
                    "summary.ci_overlap" if overlap.get("Accuracy") else "summary.ci_no_overlap",
                    lang,
                )
            lines.append(line)
    measured = {n: latency_p50(r) for n, r in runs.items() if latency_p50(r) is not None}
    p50_best = measured.get(best_key)
    if p50_best is not None and len(measured) > 1:
        fastest = min(measured, key=measured.get)
        if fastest != best_key:
            lines.append(
                i18n.message(
                    "summary.latency_trade_off",
                    lang,
                    best=best,
                    fastest=md(fastest),
                    ratio=p50_best / measured[fastest],
                    best_ms=p50_best,
                    fastest_ms=measured[fastest],
                )
            )
        else:
            lines.append(i18n.message("summary.also_fastest", lang, best=best))
    return "\n".join(
        ["- " + line for line in lines] + ["", i18n.message("summary.verdict", lang, best=best)]
    )


def comparisons(runs: dict[str, Run]) -> list[dict]:
    """McNemar's exact test and 95% CI overlap for every pair of runs; pairs of different test items: the reason."""
    rows = []
    for a, b in combinations(runs, 2):
        test = significance(runs, a, b)
        # run_a/run_b are display names; dir_a/dir_b the run folders they were read from.
        where = {"dir_a": runs[a].path.name, "dir_b": runs[b].path.name}
        if test is None:
            rows.append(
                {
                    "run_a": a,
                    "run_b": b,
                    **where,
                    "comparable": False,
                    "reason": "different test items (sizes or y_true differ)",
                }
            )
        else:
            rows.append({"comparable": True, **test, **where})
    return rows


def comparisons_table(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame:
    """The pairwise comparisons as a table for the report."""
    rows = []
    for c in comparisons(runs):
        overlap = c.get("ci_overlap") or {}
        rows.append(
            {
                "A": c["run_a"],
                "B": c["run_b"],
                "Accuracy A": c.get("accuracy_a"),
                "Accuracy B": c.get("accuracy_b"),
                i18n.message("summary.only_a_right", lang): c.get("b"),
                i18n.message("summary.only_b_right", lang): c.get("c"),
                "McNemar p": c.get("p_value"),
                i18n.message("summary.ci_overlap_accuracy", lang): overlap.get("Accuracy"),
                i18n.message("summary.ci_overlap_f1", lang): overlap.get("F1_macro"),
            }
        )
    return pd.DataFrame(rows)
