"""Prose generated from the numbers: change the results and the conclusions change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, metrics, summary


def _run(name: str, y_true: np.ndarray, accuracy: float, p50: float, device: str, seed: int) -> summary.Run:
    """A run whose predictions are right on a `accuracy` share of items, with metrics computed from them."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    right = rng.random(n) < accuracy
    y_pred = np.where(right, y_true, (y_true + rng.integers(1, 8, n)) % 8)
    probs = rng.dirichlet(np.ones(8) * 0.3, size=n)
    # Make each row's argmax its prediction so the predictions are consistent with the probabilities.
    probs[np.arange(n), y_pred] = probs.max(axis=1) + 0.5
    probs /= probs.sum(axis=1, keepdims=True)
    frame = artifacts.predictions_frame(y_true, probs, [f"question {i}" for i in range(n)])
    return summary.Run(
        name=name, path=Path("/nonexistent") / name,
        metrics=metrics.compute_metrics(y_true, probs, n_bootstrap=200),
        class_report=metrics.per_class_report(y_true, probs),
        predictions=frame,
        history=pd.DataFrame({"epoch": [1], "train_loss": [1.0], "val_loss": [1.0], "train_accuracy": [0.5],
                              "val_accuracy": [0.5]}),
        latency={"device": device, "results": [{"batch_size": 1, "p50_ms": p50, "p95_ms": p50 * 1.2,
                                                "items_per_s": 1000 / p50}]},
        manifest=None,
    )


def _two_runs(acc_a: float, acc_b: float, device_b: str = "cpu X") -> dict[str, summary.Run]:
    y_true = np.random.default_rng(0).integers(0, 8, 400)
    return {"alpha": _run("alpha", y_true, acc_a, 5.0, "cpu X", 1),
            "beta": _run("beta", y_true, acc_b, 40.0, device_b, 2)}


@pytest.mark.parametrize(("acc_a", "acc_b", "expected"), [(0.9, 0.5, "alpha"), (0.5, 0.9, "beta")])
def test_conclusion_names_the_winner_the_numbers_give(acc_a, acc_b, expected):
    runs = _two_runs(acc_a, acc_b)
    assert summary.winner(runs) == expected
    for lang, word in (("tr", "Sonuç"), ("en", "Conclusion")):
        text = summary.conclusion(runs, "alpha", lang)
        verdict = text.strip().splitlines()[-1]
        assert word in verdict and f"**{expected}**" in verdict
        other = "beta" if expected == "alpha" else "alpha"
        assert f"**{other}**" not in verdict


def test_large_gap_is_significant_and_no_gap_is_not():
    big = summary.conclusion(_two_runs(0.9, 0.5), "alpha", "tr")
    assert "istatistiksel olarak anlamlı" in big
    same = summary.conclusion(_two_runs(0.7, 0.7), "alpha", "en")
    assert "not significant" in same or "statistically significant" in same
    test = summary.significance(_two_runs(0.9, 0.5), "alpha", "beta")
    assert test["p_value"] < 0.05 and test["b"] > test["c"]


def test_leader_sentence_states_the_gap_from_the_metrics():
    runs = _two_runs(0.9, 0.6)
    gap = runs["alpha"].metrics["Accuracy"] - runs["beta"].metrics["Accuracy"]
    sentence = summary.leaders(runs, "en")[0]
    assert sentence.startswith("Accuracy: **alpha**") and f"gap {gap:.3f}" in sentence


def test_latency_on_different_hardware_is_flagged():
    same = summary.latency_sentence(_two_runs(0.8, 0.7), "tr")
    assert "aynı donanımda" in same and "Dikkat" not in same
    differ = summary.latency_sentence(_two_runs(0.8, 0.7, device_b="NVIDIA H100"), "tr")
    assert "farklı donanımlarda" in differ
    assert "**alpha**" in differ  # 5 ms beats 40 ms


def test_latency_trade_off_in_conclusion():
    text = summary.conclusion(_two_runs(0.5, 0.9), "alpha", "en")
    assert "beta is 8.0x slower than alpha" in text


def test_summary_table_carries_metrics_unrounded():
    runs = _two_runs(0.8, 0.7)
    table = summary.summary_table(runs, "tr")
    assert table.loc["alpha", "Accuracy"] == runs["alpha"].metrics["Accuracy"]
    assert table.loc["beta", "p50_ms (bs=1)"] == 40.0


HOSTILE_NAME = '<img src=x onerror="alert(1)"> | *a* _b_ `c` $5'


def _rendered(markdown: str):
    """The tags and the text of report prose as the report shows it."""
    from html.parser import HTMLParser

    from mathreport.markup import markdown_html

    class Collect(HTMLParser):
        tags: list = []
        text = ""

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)

        def handle_data(self, data):
            self.text += data

    parser = Collect()
    parser.tags = []
    parser.feed(markdown_html(markdown))
    return parser


def test_prose_shows_hostile_run_names_as_text():
    runs = _two_runs(0.9, 0.5)
    runs = {HOSTILE_NAME: runs["alpha"], "beta": runs["beta"]}
    runs[HOSTILE_NAME].name = HOSTILE_NAME
    runs[HOSTILE_NAME].latency["device"] = "cpu <b>X</b>"
    for prose in (summary.overview(runs, HOSTILE_NAME, "tr"), summary.conclusion(runs, HOSTILE_NAME, "en"),
                  summary.latency_sentence(runs, "en"), "\n".join(summary.leaders(runs, "tr"))):
        shown = _rendered(prose)
        assert "img" not in shown.tags and "b" not in shown.tags
        assert HOSTILE_NAME in shown.text
    assert "cpu <b>X</b>" in _rendered(summary.latency_sentence(runs, "en")).text
    styled = summary.format_table(summary.summary_table(runs, "tr")).to_html()
    assert "<img" not in styled and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; | *a*" in styled


def test_error_analysis_escapes_questions_and_renders_latex():
    runs = _two_runs(0.5, 0.5)
    run = runs["alpha"]
    wrong = run.predictions.index[run.predictions["y_true"] != run.predictions["y_pred"]]
    questions = ['<script>alert(1)</script>', "if x<y then y>z", r"Solve $x^2 = 4$.", "A" * 10_000]
    frame = run.predictions.copy()
    frame["text"] = frame["text"].astype(object)
    frame.loc[wrong, "text"] = (questions * len(wrong))[: len(wrong)]
    run.predictions = frame
    html = summary.error_analysis_html(run, "en", k=8)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "if x&lt;y then y&gt;z" in html
    assert "<math" in html and "$x^2" not in html
    assert "A" * summary.QUESTION_CHARS in html and "A" * (summary.QUESTION_CHARS + 1) not in html


def test_shorten_question_never_cuts_inside_math():
    question = "x" * 230 + " $a + b + c + d$ tail"
    short = summary.shorten_question(question)
    assert short.endswith(" …") and "$" not in short
    assert summary.shorten_question("short $x$") == "short $x$"


def test_banner_names_synthetic_runs_only():
    runs = _two_runs(0.8, 0.7)
    assert summary.banner(runs, "tr") == ""
    runs["beta"].manifest = {"synthetic": True, "display_name": "beta"}
    text = summary.banner(runs, "tr")
    assert "**beta** (sentetik" in text and "alpha" not in text
    assert "synthetic" in summary.banner(runs, "en")
