"""The `mathreport` command: errors a user can act on are one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

from mathreport import cli


def test_report_without_results_is_one_clear_line(tmp_path, capsys):
    code = cli.main(["report", "--model", "qwen", "--results-dir", str(tmp_path / "results"),
                     "--output-dir", str(tmp_path / "out"), "--no-pdf"])
    err = capsys.readouterr().err
    assert code == 2
    assert "qwen" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "final_report.html").exists()


def test_train_qwen_without_weights_fails_at_once_saying_how(small_data, tmp_path, capsys):
    code = cli.main(["train", "--model", "qwen", "--train_path", str(small_data / "augmented_train.csv"),
                     "--val_path", str(small_data / "val_split.csv"), "--test_path", str(small_data / "test_split.csv"),
                     "--output_dir", str(tmp_path / "qwen")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Qwen/Qwen2.5-Math-7B" in err and "--model_path" in err and "results/qwen" in err
    assert not (tmp_path / "qwen" / "metrics.json").exists()


def test_train_missing_split_file_names_it(tmp_path, capsys):
    code = cli.main(["train", "--model", "tfidf", "--train_path", str(tmp_path / "nope.csv"),
                     "--output_dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.csv" in err and "mathreport prepare" in err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "mathreport.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("train", "prepare", "report", "pipeline", "evaluate"):
        assert command in out.stdout


def test_prepare_prints_class_table_and_refuses_bad_input(tmp_path, capsys):
    from pathlib import Path

    from mathreport import labels

    fixture = Path(__file__).parent / "fixtures" / "raw_kaggle_like.csv"
    assert cli.main(["prepare", "--input", str(fixture), "--out-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    for name in labels.names("tr"):
        assert name in out
    assert {p.name for p in (tmp_path / "data").iterdir()} >= {"augmented_train.csv", "val_split.csv",
                                                               "test_split.csv", "prepare_report.json"}
    bad = tmp_path / "bad.csv"
    bad.write_text("Question;label\nWhat is 2+2?;0\n", encoding="utf-8")
    assert cli.main(["prepare", "--input", str(bad), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "semicolon" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_compare_writes_mcnemar_for_each_pair(tmp_path, capsys):
    import json
    import shutil
    from pathlib import Path

    import pandas as pd

    results = tmp_path / "results"
    shutil.copytree(Path(__file__).parent / "fixtures" / "team_results", results)
    assert cli.main(["compare", "--results-dir", str(results)]) == 0
    pairs = json.loads((results / "comparisons.json").read_text())["pairs"]
    assert len(pairs) == 1
    pair = pairs[0]
    a = pd.read_csv(results / pair["run_a"] / "preds_test.csv")
    b = pd.read_csv(results / pair["run_b"] / "preds_test.csv")
    right_a, right_b = a.y_true == a.y_pred, b.y_true == b.y_pred
    assert pair["b"] == int((right_a & ~right_b).sum()) and pair["c"] == int((~right_a & right_b).sum())
    assert 0 < pair["p_value"] <= 1 and set(pair["ci_overlap"]) == {"Accuracy", "F1_macro"}
