"""i18n: every language has the same messages; a language is one table; a missing message fails loudly."""

from __future__ import annotations

import re
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mathreport import i18n, labels, plots, record, summary
from mathreport.errors import MissingMessageError, UnknownLanguageError

FIXTURE = Path(__file__).parent / "fixtures" / "team_results"


def _fields(template: str) -> set[str]:
    """Placeholder names of a format template, read with the standard library's own parser."""
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def test_every_language_has_the_same_keys_and_placeholders():
    assert {"tr", "en"} <= set(i18n.CATALOG)
    reference = i18n.CATALOG["tr"]
    for lang, table in i18n.CATALOG.items():
        assert set(table) == set(reference), lang
        for key, template in table.items():
            assert isinstance(template, str) and template.strip(), (lang, key)
            assert _fields(template) == _fields(reference[key]), (lang, key)
            template.format(
                **dict.fromkeys(_fields(template), 1.5)
            )  # no stray brace, every spec fits a number


def test_topic_names_are_those_of_labels():
    # The catalog does not retype the topics: its tr/en names are the ones labels holds.
    for lang in ("tr", "en"):
        assert i18n.class_names(lang) == [getattr(t, lang) for t in labels.TOPICS]
    assert (
        i18n.class_names("tr")[4] == "Sayı Teorisi" and i18n.class_names("en")[4] == "Number Theory"
    )


def test_a_missing_message_names_its_key_and_language(monkeypatch):
    with pytest.raises(
        MissingMessageError, match=r"no message 'summary\.nothing' in the 'en' table"
    ):
        i18n.message("summary.nothing", "en")
    with pytest.raises(UnknownLanguageError, match=r"lang must be one of \['en', 'tr'\], got 'de'"):
        i18n.message("report.title", "de")
    with pytest.raises(
        MissingMessageError, match=r"'report\.banner' \('tr'\) needs a value for placeholder 'runs'"
    ):
        i18n.message("report.banner", "tr")
    assert (
        i18n.message("summary.verdict", "en", best="x")
        == "**Conclusion:** by macro F1 the best model is **x**."
    )
    # A table that lost a key fails where the key is used, naming both; nothing falls back to another language.
    monkeypatch.delitem(i18n.CATALOG["en"], "summary.no_latency")
    with pytest.raises(MissingMessageError, match=r"'summary\.no_latency' in the 'en' table"):
        summary.no_latency("en")


def test_register_refuses_an_incomplete_table():
    table = dict(i18n.CATALOG["en"])
    del table["plot.roc_title"]
    table["summary.verdict"] = "Winner: {model}"  # placeholder renamed
    table["summary.extra"] = "x"
    with pytest.raises(ValueError) as error:
        i18n.register("xx", table)
    message = str(error.value)
    assert "missing keys ['plot.roc_title']" in message and "['summary.extra']" in message
    assert "'summary.verdict' has placeholders ['model']; the 'tr' one has ['best']" in message
    assert "xx" not in i18n.CATALOG


def test_require_names_the_catalog_to_edit_and_every_missing_key(monkeypatch):
    i18n.require(["report.title", "plot.roc_title"], "a test")  # every language has them: nothing
    with pytest.raises(
        MissingMessageError,
        match=r"^mathreport/locales/en\.toml has no 'nope\.a', "
        r"'nope\.b', which a test shows; add them",
    ):
        i18n.require(["report.title", "nope.a", "nope.b"], "a test")
    monkeypatch.setitem(i18n.CATALOG, "xx", {})  # a table given to `register`, not a shipped file
    assert i18n.catalog_file("xx") == "the 'xx' table given to register"
    with pytest.raises(MissingMessageError, match=r"^the 'xx' table given to register has no "):
        i18n.require(["report.title"], "a test")


# --- a new language is one table -------------------------------------------------------------------------
MARK = "ΩΩ"  # letters: markdown escaping leaves them as they are


def _unmark(value):
    """Text, table or list with the fake language's marker taken out."""
    if isinstance(value, str):
        return value.replace(MARK, "")
    if isinstance(value, list):
        return [_unmark(v) for v in value]
    if isinstance(value, pd.DataFrame):
        frame = value.copy()
        frame.index = [_unmark(str(i)) if isinstance(i, str) else i for i in frame.index]
        frame.index.name = _unmark(value.index.name) if value.index.name else value.index.name
        frame.columns = [_unmark(c) if isinstance(c, str) else c for c in frame.columns]
        return frame
    return value


@pytest.fixture
def marked_languages():
    """Two languages made only by adding tables: "xx" = Turkish and "yy" = English, every message marked.

    Code that still chose words with `if lang == "tr"` (or "en") would show one of them unmarked text of the
    other language, and the marked report would then differ from the original by more than the marks.
    """
    for fake, source in (("xx", "tr"), ("yy", "en")):
        i18n.register(fake, {key: MARK + text for key, text in i18n.CATALOG[source].items()})
    yield {"xx": "tr", "yy": "en"}
    for fake in ("xx", "yy"):
        i18n.CATALOG.pop(fake)


def _summary_outputs(runs: dict, model: str, lang: str) -> dict:
    main = runs[model]
    return {
        "banner": summary.banner(runs, lang),
        "overview": summary.overview(runs, model, lang),
        "data": summary.data_description(runs, lang),
        "class_counts": summary.class_counts(runs, lang),
        "no_lr_search": summary.no_lr_search(runs, lang),
        "runs": summary.runs_description(runs, lang),
        "summary_table": summary.summary_table(runs, lang),
        "auc": summary.auc_sentence(main, lang),
        "per_class_table": summary.per_class_table(main, lang),
        "per_class": summary.per_class_sentence(main, lang),
        "latency_table": summary.latency_table(runs, lang),
        "no_latency": summary.no_latency(lang),
        "latency": summary.latency_sentence(runs, lang),
        "calibration": summary.calibration_sentence(runs, lang),
        "errors": summary.error_analysis_html(main, lang),
        "leaders": summary.leaders(runs, lang),
        "conclusion": summary.conclusion(runs, model, lang),
        "comparisons": summary.comparisons_table(runs, lang),
        "cleaning": summary.cleaning_lines(
            {"source": "demo", "cleaning": {"rows_dropped": {"duplicate_exact": 2}}}, lang
        ),
        "headings": summary.TEXT[lang],
        "intros": summary.INTRO[lang],
    }


def _runs_with_latency() -> dict:
    runs = summary.load_runs(FIXTURE, "qwen_math")
    for i, run in enumerate(runs.values()):
        run.latency = {
            "device": f"cpu {i}",
            "results": [
                {"batch_size": 1, "p50_ms": 4.0 * (i + 1), "p95_ms": 9.0, "items_per_s": 100.0}
            ],
        }
        run.manifest = run.manifest or record.RunRecord()
        run.manifest.synthetic = i == 0
    return runs


def test_a_language_added_as_one_table_reaches_every_summary_text(marked_languages):
    runs = _runs_with_latency()
    model = next(iter(runs))
    for fake, source in marked_languages.items():
        assert fake in summary.TEXT and fake in summary.INTRO
        original, marked = (
            _summary_outputs(runs, model, source),
            _summary_outputs(runs, model, fake),
        )
        for key, value in marked.items():
            if isinstance(value, pd.DataFrame):
                pd.testing.assert_frame_equal(_unmark(value), original[key], obj=key)
            elif isinstance(value, dict):
                assert {k: _unmark(v) for k, v in value.items()} == original[key], key
            else:
                assert _unmark(value) == original[key], key
            for text in (
                [value] if isinstance(value, str) else value if isinstance(value, list) else []
            ):
                assert text == "" or MARK in text, (
                    key
                )  # the fake language's words are the ones shown
        # The topic names come from the new table too.
        assert list(marked["per_class_table"].index) == [MARK + n for n in labels.names(source)]
        assert marked["per_class_table"].index.name == MARK + original["per_class_table"].index.name


def _figure_texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


@pytest.mark.slow  # draws every figure
def test_a_language_added_as_one_table_reaches_every_figure(marked_languages):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 120)  # class 7 absent: its "undefined" legend entry is drawn too
    probs = rng.dirichlet(np.ones(8), size=120)
    by_model = {
        "a": {
            k: 0.5
            for k in (
                "Accuracy",
                "Precision_macro",
                "Recall_macro",
                "F1_micro",
                "F1_macro",
                "F1_weighted",
            )
        }
    }
    history = pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_loss": [1.0, 0.5],
            "val_loss": [1.1, 0.7],
            "train_accuracy": [0.5, 0.7],
            "val_accuracy": [0.4, 0.6],
        }
    )
    lr = pd.DataFrame(
        {"learning_rate": [1e-5, 1e-4], "val_accuracy": [0.5, 0.7], "val_macro_f1": [0.4, 0.6]}
    )
    counts = pd.DataFrame({"train": np.arange(8) + 1})

    def figures(lang):
        return {
            "lr": plots.plot_lr_search(lr, lang=lang),
            "training": plots.plot_training_curves(history, lang=lang),
            "roc": plots.plot_roc(y, probs, lang=lang),
            "pr": plots.plot_precision_recall(y, probs, lang=lang),
            "reliability": plots.plot_reliability(y, probs, lang=lang),
            "confidence": plots.plot_confidence(y, probs, lang=lang),
            "confusion": plots.plot_confusion_matrix(y, probs.argmax(axis=1), lang=lang),
            "distribution": plots.plot_class_distribution(counts, lang=lang),
            "metrics": plots.plot_metric_bars(by_model, lang=lang),
            "f1": plots.plot_f1_bars(by_model, lang=lang),
            "per_class": plots.plot_per_class_f1(
                {"a": {f"class_{k}": {"f1_score": 0.5} for k in range(8)}}, lang=lang
            ),
            "latency": plots.plot_latency_vs_accuracy({"a": 3.0}, {"a": 0.5}, lang=lang),
        }

    for fake, source in marked_languages.items():
        original, marked = figures(source), figures(fake)
        for key, fig in marked.items():
            texts = _figure_texts(fig)
            assert _unmark(texts) == _figure_texts(original[key]), key
            # Every word drawn is marked: what is left unmarked is numbers, model names and the "–" of empty cells.
            unmarked = [
                t for t in texts if MARK not in t and not re.fullmatch(r"[-−–\d.e+]*|a|train", t)
            ]
            assert unmarked == [], key
