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
