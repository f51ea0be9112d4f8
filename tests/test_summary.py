"""Prose generated from the numbers: change the results and the conclusions change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, metrics, record, summary


def _run(
    name: str, y_true: np.ndarray, accuracy: float, p50: float, device: str, seed: int
) -> summary.Run:
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
        name=name,
        path=Path("/nonexistent") / name,
        metrics=metrics.compute_metrics(y_true, probs, n_bootstrap=200),
        class_report=metrics.per_class_report(y_true, probs),
        predictions=frame,
        history=pd.DataFrame(
            {
                "epoch": [1],
                "train_loss": [1.0],
                "val_loss": [1.0],
                "train_accuracy": [0.5],
                "val_accuracy": [0.5],
            }
        ),
        latency={
            "device": device,
            "results": [
                {"batch_size": 1, "p50_ms": p50, "p95_ms": p50 * 1.2, "items_per_s": 1000 / p50}
            ],
        },
        manifest=None,
    )


def _two_runs(acc_a: float, acc_b: float, device_b: str = "cpu X") -> dict[str, summary.Run]:
    y_true = np.random.default_rng(0).integers(0, 8, 400)
    return {
        "alpha": _run("alpha", y_true, acc_a, 5.0, "cpu X", 1),
        "beta": _run("beta", y_true, acc_b, 40.0, device_b, 2),
    }


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


def _run_with(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> summary.Run:
    """A run with exactly these predictions (one-hot probabilities) and the metrics computed from them."""
    probs = np.full((len(y_true), 8), 0.01)
    probs[np.arange(len(y_true)), y_pred] = 0.93
    return summary.Run(
        name=name,
        path=Path("/nonexistent") / name,
        metrics=metrics.compute_metrics(y_true, probs, n_bootstrap=50),
        class_report=metrics.per_class_report(y_true, probs),
        predictions=artifacts.predictions_frame(
            y_true, probs, [f"q{i}" for i in range(len(y_true))]
        ),
        history=pd.DataFrame(),
        latency=None,
        manifest=None,
    )


Y_TRUE = np.arange(100) % 8


def _wrong_on(rows: range) -> np.ndarray:
    """Y_TRUE with the given rows predicted as the next class (wrong)."""
    y_pred = Y_TRUE.copy()
    y_pred[list(rows)] = (Y_TRUE[list(rows)] + 1) % 8
    return y_pred


def test_identical_predictions_are_not_significant():
    # Both runs wrong on the same 30 rows: no discordant pair, so McNemar's exact p is 1.
    same = _wrong_on(range(30))
    runs = {
        "alpha": _run_with("alpha", Y_TRUE, same),
        "beta": _run_with("beta", Y_TRUE, same.copy()),
    }
    en, tr = summary.conclusion(runs, "alpha", "en"), summary.conclusion(runs, "alpha", "tr")
    assert (
        "only alpha right: 0, only beta right: 0): p = 1.0000 — the difference is **not significant**"
        in en
    )
    assert "statistically significant" not in en
    assert "p = 1.0000 — fark **anlamlı değil**" in tr and "istatistiksel olarak anlamlı" not in tr


def test_twenty_one_sided_discordant_pairs_are_significant():
    # alpha right everywhere, beta wrong on 20 rows: b = 20, c = 0; exact two-sided p = 2 * 0.5**20 < 0.05.
    runs = {
        "alpha": _run_with("alpha", Y_TRUE, Y_TRUE.copy()),
        "beta": _run_with("beta", Y_TRUE, _wrong_on(range(20))),
    }
    test = summary.significance(runs, "alpha", "beta")
    assert (test["b"], test["c"], test["n"]) == (20, 0, 100)
    assert test["p_value"] == pytest.approx(2 * 0.5**20, rel=1e-9)
    en, tr = summary.conclusion(runs, "alpha", "en"), summary.conclusion(runs, "alpha", "tr")
    assert (
        "(alpha vs beta, 100 questions; only alpha right: 20, only beta right: 0): p = 0.0000 — the difference "
        "is **statistically significant** (p < 0.05)."
    ) in en
    assert "not significant" not in en
    assert "fark **istatistiksel olarak anlamlı** (p < 0.05)." in tr and "anlamlı değil" not in tr


def test_leader_sentence_states_the_gap_from_the_predictions():
    # alpha wrong on 10 of 100 rows, beta on 40: accuracies 0.9 and 0.6, a gap of 0.300 (30.0 points).
    runs = {
        "alpha": _run_with("alpha", Y_TRUE, _wrong_on(range(10))),
        "beta": _run_with("beta", Y_TRUE, _wrong_on(range(40))),
    }
    en, tr = summary.leaders(runs, "en")[0], summary.leaders(runs, "tr")[0]
    assert en == "Accuracy: **alpha** leads with 0.900; beta 0.600 (gap 0.300, 30.0 points)."
    assert tr == "Accuracy: **alpha** 0.900 ile önde; beta 0.600 (fark 0.300, 30.0 puan)."


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
    for prose in (
        summary.overview(runs, HOSTILE_NAME, "tr"),
        summary.conclusion(runs, HOSTILE_NAME, "en"),
        summary.latency_sentence(runs, "en"),
        "\n".join(summary.leaders(runs, "tr")),
    ):
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
    questions = ["<script>alert(1)</script>", "if x<y then y>z", r"Solve $x^2 = 4$.", "A" * 10_000]
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
    runs["beta"].manifest = record.RunRecord(synthetic=True, display_name="beta")
    text = summary.banner(runs, "tr")
    assert "**beta** (sentetik" in text and "alpha" not in text
    assert "synthetic" in summary.banner(runs, "en")


@pytest.mark.parametrize(
    ("lang", "words"), [("tr", "ortalamaya katmaz"), ("en", "leave out the 6 classes")]
)
def test_report_names_the_classes_macro_means_leave_out(lang, words):
    """Issue 20, 6: a run tested on two classes; the report says which six its macro means do not count."""
    from mathreport import i18n

    y_true = np.random.default_rng(3).integers(0, 2, 200)
    runs = {"two": _run("two", y_true, 1.0, 5.0, "cpu X", 1), "all": _two_runs(0.8, 0.7)["alpha"]}
    note = summary.macro_note(runs, lang)
    names = i18n.class_names(lang)
    assert words in note and all(names[k] in note for k in range(2, 8))
    assert f": {names[0]}," not in note and f"{names[1]}," not in note
    assert len(note.splitlines()) == 1  # a run of all 8 classes gets no note
    assert summary.macro_note({"all": runs["all"]}, lang) == ""


def test_the_runs_description_states_each_models_size(tmp_path):
    """The decoder comparison puts models of different sizes side by side: the report says how big each is."""
    from mathreport import record

    run = summary.Run(
        name="qwen-0.5b",
        path=tmp_path,
        metrics={},
        class_report={},
        predictions=None,
        history=None,
        latency=None,
        manifest=record.RunRecord(
            model="qwen-0.5b",
            kind="transformer",
            command="mathreport train --model qwen-0.5b",
            training={"total_parameters": 494_407_552, "trainable_parameters": 3_166_208},
        ),
    )
    assert "494.4 M parameters, 3.17 M trained" in summary.runs_description(
        {"qwen-0.5b": run}, "en"
    )
    assert "494.4 M parametre, 3.17 M eğitilen" in summary.runs_description(
        {"qwen-0.5b": run}, "tr"
    )
    run.manifest.training = {}
    assert "parameters" not in summary.runs_description({"qwen-0.5b": run}, "en")


# --- issue 28, 7: the settings each model uses, and no others ------------------------------------------------------


@pytest.mark.parametrize("model", ["tfidf", "minilm"])
def test_the_runs_description_lists_only_the_settings_the_model_uses(tmp_path, model):
    """The tfidf row read `learning_rate=0.0, batch_size=0, max_length=0, top_k_layers=0`."""
    from mathreport import models, options

    preset = models.PRESETS[model]
    cfg = options.TrainConfig(
        model=model,
        train_path=Path("t.csv"),
        val_path=Path("v.csv"),
        test_path=Path("s.csv"),
        output_dir=tmp_path,
    )
    hyper = options.hyperparameters(cfg, preset)  # as train writes them
    run = summary.Run(
        name=model,
        path=tmp_path,
        metrics={},
        class_report={},
        predictions=None,
        history=None,
        latency=None,
        manifest=record.RunRecord(
            model=model,
            kind=preset.kind,
            hyperparameters=hyper,
            command=f"mathreport train --model {model}",
        ),
    )
    text = summary.runs_description({model: run}, "en").replace("\\", "")  # markdown escapes off
    transformer_settings = (
        "learning_rate=",
        "batch_size=",
        "max_length=",
        "top_k_layers=",
        "num_epochs=",
    )
    assert f"seed={hyper['seed']}" in text and f"imbalance={hyper['imbalance']}" in text
    if model == "tfidf":
        assert not any(setting in text for setting in transformer_settings), text
    else:
        assert all(setting in text for setting in transformer_settings), text
        assert f"learning_rate={preset.learning_rate}" in text
    assert "max_train_samples" not in text  # not given: left open, so not a setting of the run


def test_the_runs_description_states_the_training_rate_against_the_ceiling(tmp_path):
    """Issue 29: each run's achieved FLOP/s as a share of the machine's ceiling in the precision that ran."""
    from mathreport import record

    training = {
        "gflop_per_s": 297.2,
        "ceiling_share": 0.1554,
        "ceiling": {
            "dtype": "bfloat16",
            "device": "cpu",
            "gflop_per_s": 1912.4,
            "measured": "2026-12-06",
        },
    }
    run = summary.Run(
        name="mpnet",
        path=tmp_path,
        metrics={},
        class_report={},
        predictions=None,
        history=None,
        latency=None,
        manifest=record.RunRecord(
            model="mpnet",
            kind="transformer",
            command="mathreport train --model mpnet",
            training=training,
            world_size=2,
            global_batch_size=32,
        ),
    )
    en = summary.runs_description({"mpnet": run}, "en")
    assert "297 GFLOP/s, 15.5 % of this machine's bfloat16 matmul ceiling (1912 GFLOP/s)" in en
    assert "trained by 2 processes (global batch 32)" in en
    assert "bfloat16 matris çarpımı tavanının %15.5'i" in summary.runs_description(
        {"mpnet": run}, "tr"
    )
    run.manifest.training, run.manifest.world_size = {}, 1
    assert "GFLOP/s" not in summary.runs_description({"mpnet": run}, "en")
    assert "processes" not in summary.runs_description({"mpnet": run}, "en")
