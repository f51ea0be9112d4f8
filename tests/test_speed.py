"""benchmarks/speed.py: comparisons interleaved, medians right, step timing without evaluation, usage."""

from __future__ import annotations

import json
import time

import pytest

from benchmarks import speed


def test_compare_interleaves_variants_and_takes_medians():
    order = []
    values = {"a": iter([3.0, 1.0, 2.0]), "b": iter([10.0, 30.0, 20.0])}

    def variant(name):
        return lambda: order.append(name) or next(values[name])

    row = speed._compare(
        "x", "m", "ms", {"a": variant("a"), "b": variant("b")}, rounds=3, better="higher"
    )
    assert order == ["a", "b"] * 3
    assert row["median"] == {"a": 2.0, "b": 20.0}
    assert row["values"]["b"] == [10.0, 30.0, 20.0]
    assert row["speedup_last_vs_first"] == pytest.approx(10.0)
    lower = speed._compare(
        "x", "m", "ms", {"a": lambda: 4.0, "b": lambda: 2.0}, rounds=1, better="lower"
    )
    assert lower["speedup_last_vs_first"] == pytest.approx(2.0)
    assert "| x | m | a: 4 ms; b: 2 ms | x2.00 |" in speed.to_markdown([lower])


def test_step_timer_leaves_out_evaluation():
    timer = speed.StepTimer()
    for _ in range(2):
        timer.on_epoch_begin(None, None, None)
        time.sleep(0.02)
        timer.on_step_end(None, None, None)
        time.sleep(0.06)  # what Trainer spends evaluating and saving after the last step
        timer.on_epoch_end(None, None, None)
    assert 0.035 < timer.seconds < 0.1


def test_tfidf_latency_part_writes_json_and_prints_markdown(trained_results, tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert (
        speed.main(
            [
                "--parts",
                "tfidf",
                "--tfidf_run_dir",
                str(trained_results / "tfidf"),
                "--rounds",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["comparison"].startswith("tfidf") and min(row["median"].values()) > 0
    assert result["hardware"]["cpu_count"] >= 1
    assert "tfidf" in capsys.readouterr().out
    assert not out.with_suffix(
        ".md"
    ).exists()  # docs/ tables come from the JSON (make perf-doc), not from here


def test_seed_arms_summarise_runs_on_validation_and_test(
    trained_results, small_data, tmp_path, capsys
):
    import numpy as np
    import pandas as pd
    from sklearn.metrics import f1_score

    from mathreport import artifacts, predict

    run = trained_results / "minilm"
    out = tmp_path / "seeds.json"
    assert (
        speed.main(["--arm", "a", str(run), str(run), "--arm", "b", str(run), "--out", str(out)])
        == 0
    )
    result = json.loads(out.read_text())
    a, b = result["arms"]["a"], result["arms"]["b"]
    assert len(a["runs"]) == 2 and a["summary"]["test_macro_f1"]["sd"] == 0.0
    assert b["summary"]["val_macro_f1"]["sd"] is None
    assert a["runs"][0]["test_macro_f1"] == artifacts.read_metrics(run)["F1_macro"]
    val = pd.read_csv(small_data / "val_split.csv")
    probs = predict.load_classifier(run, backend="torch").predict_proba(val["Question"].tolist())
    expected = f1_score(
        val["label"],
        np.argmax(probs, axis=1),
        average="macro",
        labels=list(range(8)),
        zero_division=0,
    )
    assert a["runs"][0]["val_macro_f1"] == pytest.approx(expected)
    assert "| **a** | mean ± sd |" in capsys.readouterr().out


def test_no_arguments_prints_usage_and_a_part_without_its_input_is_named(capsys):
    assert speed.main([]) == 2
    assert "usage: python benchmarks/speed.py" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        speed.main(["--parts", "inference", "tfidf", "--run_dir", "r"])
    assert exc.value.code == 2 and "--parts tfidf needs --tfidf_run_dir" in capsys.readouterr().err
