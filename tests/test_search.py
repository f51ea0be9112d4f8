"""Learning-rate search: one row per rate in lr_search.csv, written as each rate finishes, and resumable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from mathreport import artifacts, cli, plots, search, train

matplotlib.use("Agg")

LRS = [1e-4, 1e-3]
REAL_FIT = train.fit_transformer


def _config(small_data, out, lrs=LRS, **kw) -> search.SearchConfig:
    return search.SearchConfig(
        model="minilm",
        learning_rates=list(lrs),
        train_path=small_data / "augmented_train.csv",
        val_path=small_data / "val_split.csv",
        output_dir=out,
        num_epochs=1,
        max_train_samples=64,
        max_length=32,
        train_eval_samples=16,
        **kw,
    )


class SimulatedCrash(RuntimeError):
    """Stands for the process being killed while a rate trains."""


class FitCounter:
    """Wraps train.fit_transformer: counts the rates trained, and can fail on one rate like a crash would."""

    def __init__(self, fail_on: float | None = None):
        self.rates: list[float] = []
        self.fail_on = fail_on

    def __call__(self, cfg, splits, work_dir):
        self.rates.append(cfg.learning_rate)
        if cfg.learning_rate == self.fail_on:
            raise SimulatedCrash(f"lr {cfg.learning_rate}")
        return REAL_FIT(cfg, splits, work_dir)


@pytest.fixture(scope="module")
def searched(small_data, tmp_path_factory):
    """A search over LRS interrupted after the first rate, then resumed: (output dir, rates trained per call)."""
    out = tmp_path_factory.mktemp("search") / "minilm"
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        first = FitCounter(fail_on=LRS[1])
        mp.setattr(train, "fit_transformer", first)
        with pytest.raises(SimulatedCrash):
            search.search(_config(small_data, out), log=lambda _: None)
        rows_after_crash = pd.read_csv(out / artifacts.LR_SEARCH)
        calls.append(first.rates)
        second = FitCounter()
        mp.setattr(train, "fit_transformer", second)
        table = search.search(_config(small_data, out), log=lambda _: None)
        calls.append(second.rates)
    return out, calls, rows_after_crash, table


def test_each_finished_rate_is_written_before_the_next_starts(searched):
    _, calls, rows_after_crash, _ = searched
    assert calls[0] == LRS  # the second rate was started and "crashed"
    assert rows_after_crash["learning_rate"].tolist() == [LRS[0]]
    assert rows_after_crash["best"].tolist() == [True]


def test_resumed_search_trains_only_the_missing_rate(searched):
    out, calls, _, table = searched
    assert calls[1] == [LRS[1]]
    written = pd.read_csv(out / artifacts.LR_SEARCH)
    assert written["learning_rate"].tolist() == LRS
    assert list(written.columns) == search.COLUMNS
    assert written["best"].sum() == 1
    assert written[["val_accuracy", "val_macro_f1"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (written["val_loss"] > 0).all() and (written["seconds"] > 0).all()
    assert not list(out.glob(".lr_search-*"))  # scratch folders of the trainings are gone
    assert not list(out.glob(".*.tmp"))
    pd.testing.assert_frame_equal(table.reset_index(drop=True), written, check_dtype=False)


def test_best_rate_is_recorded_and_is_the_top_macro_f1(searched):
    out, _, _, _ = searched
    written = pd.read_csv(out / artifacts.LR_SEARCH)
    meta = json.loads((out / artifacts.LR_SEARCH_JSON).read_text())
    best = written.loc[written["best"]].iloc[0]
    assert meta["best_learning_rate"] == pytest.approx(best["learning_rate"])
    assert best["val_macro_f1"] == written["val_macro_f1"].max()
    assert meta["settings"]["max_train_samples"] == 64 and len(meta["rows"]) == len(LRS)


def test_second_call_does_no_training(searched, small_data, monkeypatch, capsys):
    out, _, _, _ = searched
    before = (out / artifacts.LR_SEARCH).read_bytes()
    counter = FitCounter()
    monkeypatch.setattr(train, "fit_transformer", counter)
    code = cli.main(
        [
            "search",
            "--model",
            "minilm",
            "--lrs",
            *map(str, LRS),
            "--num_epochs",
            "1",
            "--max_train_samples",
            "64",
            "--max_length",
            "32",
            "--train_path",
            str(small_data / "augmented_train.csv"),
            "--val_path",
            str(small_data / "val_split.csv"),
            "--output_dir",
            str(out),
        ]
    )
    assert code == 0 and counter.rates == []
    assert (out / artifacts.LR_SEARCH).read_bytes() == before
    assert "best learning rate" in capsys.readouterr().out


def test_other_settings_are_refused_not_mixed_in(searched, small_data):
    out, _, _, _ = searched
    with pytest.raises(search.SearchError, match="num_epochs"):
        search.search(dataclasses.replace(_config(small_data, out), num_epochs=2))
    with pytest.raises(
        search.SearchError, match="training_args"
    ):  # Trainer's own flags change a row's meaning
        search.search(
            dataclasses.replace(_config(small_data, out), training_args=["--weight_decay", "0"])
        )


def test_report_figure_reads_the_search(searched):
    out, _, _, _ = searched
    fig = plots.plot_lr_search(pd.read_csv(out / artifacts.LR_SEARCH))
    assert fig.axes


def test_tfidf_is_refused_with_a_reason(small_data, tmp_path, capsys):
    code = cli.main(
        [
            "search",
            "--model",
            "tfidf",
            "--lrs",
            "1e-3",
            "--train_path",
            str(small_data / "augmented_train.csv"),
            "--val_path",
            str(small_data / "val_split.csv"),
            "--output_dir",
            str(tmp_path / "t"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no learning rate" in err and "Traceback" not in err
    assert not (tmp_path / "t" / artifacts.LR_SEARCH).exists()


def test_mark_best_prefers_macro_f1_then_accuracy():
    frame = pd.DataFrame(
        {
            "learning_rate": [3e-4, 1e-4, 2e-4],
            "val_accuracy": [0.9, 0.8, 0.85],
            "val_macro_f1": [0.7, 0.75, 0.75],
            "val_loss": [0.3, 0.4, 0.5],
        }
    )
    marked = search.mark_best(frame)
    assert marked["learning_rate"].tolist() == [1e-4, 2e-4, 3e-4]
    assert marked.loc[marked["best"], "learning_rate"].tolist() == [2e-4]


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_search_trains_with_the_precision_and_dropout_train_would_use(
    small_data, tmp_path, monkeypatch, fast_bf16
):
    """bf16 and LoRA dropout left open are decided as `mathreport train` decides them (issue 13)."""
    from mathreport import environment

    monkeypatch.setattr(environment, "cpu_has_fast_bf16", lambda *a, **k: fast_bf16)
    seen = []

    def fake_fit(cfg, splits, work_dir):
        seen.append(cfg)
        raise SimulatedCrash("stop after the first configuration")

    monkeypatch.setattr(train, "fit_transformer", fake_fit)
    with pytest.raises(SimulatedCrash):
        search.search(_config(small_data, tmp_path / "s", device="cpu"), log=lambda _: None)
    (cfg,) = seen
    assert cfg.bf16 is fast_bf16
    assert cfg.lora_dropout == train.CPU_LORA_DROPOUT
    expected = train.resolve_defaults(
        train.TrainConfig(
            model="minilm",
            train_path=Path("t"),
            val_path=Path("v"),
            test_path=Path("x"),
            output_dir=Path("o"),
            device="cpu",
        )
    )
    assert (cfg.bf16, cfg.lora_dropout) == (expected.bf16, expected.lora_dropout)
