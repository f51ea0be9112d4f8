"""The `mathreport` command: errors a user can act on are one line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_args import split_flags

from mathreport import artifacts, cli


def test_report_without_results_is_one_clear_line(tmp_path, capsys):
    code = cli.main(
        [
            "report",
            "--model",
            "qwen",
            "--results-dir",
            str(tmp_path / "results"),
            "--output-dir",
            str(tmp_path / "out"),
            "--no-pdf",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "qwen" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "final_report.html").exists()


def test_train_qwen_without_weights_fails_at_once_saying_how(small_data, tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--model",
            "qwen",
            *split_flags(small_data),
            "--output_dir",
            str(tmp_path / "qwen"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Qwen/Qwen2.5-Math-7B" in err and "--model_path" in err and "results/qwen" in err
    assert not (tmp_path / "qwen" / "metrics.json").exists()


def test_train_missing_split_file_names_it(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--model",
            "tfidf",
            "--train_path",
            str(tmp_path / "nope.csv"),
            "--output_dir",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "nope.csv" in err and "mathreport prepare" in err


def test_console_script_is_installed():
    """The `mathreport` command pip installed beside this Python ([project.scripts]), run as a user runs it."""
    script = Path(sys.executable).parent / ("mathreport.exe" if os.name == "nt" else "mathreport")
    assert script.is_file(), (
        f"no console script at {script}: install the package into this environment with pip install -e '.[dev]' "
        "(make env does it)"
    )
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: mathreport ")
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
    assert {p.name for p in (tmp_path / "data").iterdir()} >= {
        "augmented_train.csv",
        "val_split.csv",
        "test_split.csv",
        "prepare_report.json",
    }
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "Soru;Etiket\nWhat is 2+2?;0\n", encoding="utf-8"
    )  # ';' with columns of other names
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
    a = pd.read_csv(results / pair["dir_a"] / "preds_test.csv")
    b = pd.read_csv(results / pair["dir_b"] / "preds_test.csv")
    right_a, right_b = a.y_true == a.y_pred, b.y_true == b.y_pred
    assert pair["b"] == int((right_a & ~right_b).sum()) and pair["c"] == int(
        (~right_a & right_b).sum()
    )
    assert 0 < pair["p_value"] <= 1 and set(pair["ci_overlap"]) == {"Accuracy", "F1_macro"}


# --- empty questions, hints that work, refusing to mix runs (issue 12) --------------------------------------------


def test_predict_refuses_empty_questions(tmp_path, capsys):
    run = str(tmp_path / "no-run-needed")  # refused before any model is loaded
    assert cli.main(["predict", "--run_dir", run, ""]) == 2
    assert "question 1 of 1 is empty" in capsys.readouterr().err
    assert cli.main(["predict", "--run_dir", run, "What is 2+2?", "  "]) == 2
    assert "question 2 of 2 is empty" in capsys.readouterr().err
    rows = tmp_path / "rows.csv"
    rows.write_text("Question,id\nWhat is 2+2?,1\n   ,2\n", encoding="utf-8")
    assert cli.main(["predict", "--run_dir", run, "--input", str(rows)]) == 2
    err = capsys.readouterr().err
    assert (
        "rows.csv: line 3" in err
        and "'Question' is empty" in err
        and len(err.strip().splitlines()) == 1
    )
    header_only = tmp_path / "header.csv"
    header_only.write_text("Question\n", encoding="utf-8")
    assert cli.main(["predict", "--run_dir", run, "--input", str(header_only)]) == 2
    assert "header (Question) but no questions" in capsys.readouterr().err


def _train_tfidf_argv(data_dir, out):
    return [
        "train",
        "--model",
        "tfidf",
        "--train_path",
        str(data_dir / "augmented_train.csv"),
        "--val_path",
        str(data_dir / "val_split.csv"),
        "--test_path",
        str(data_dir / "test_split.csv"),
        "--output_dir",
        str(out),
        "--no_bench",
    ]


def _hint(err: str) -> list[str]:
    import shlex

    command = err.split("Make them with: ")[1].split(" (or `")[0].strip()
    argv = shlex.split(command)
    assert argv[:2] == ["mathreport", "train"], command
    return argv[1:]


@pytest.mark.slow  # trains a model
def test_hint_for_a_missing_file_is_a_command_that_works(small_data, tmp_path, capsys):
    results = tmp_path / "results"
    run = results / "RUN"  # not named after its model
    assert cli.main(_train_tfidf_argv(small_data, run)) == 0
    (run / "preds_test.csv").unlink()
    report = [
        "report",
        "--model",
        "RUN",
        "--results-dir",
        str(results),
        "--output-dir",
        str(tmp_path / "out"),
        "--no-pdf",
    ]
    capsys.readouterr()
    assert cli.main(report) == 2
    argv = _hint(capsys.readouterr().err)
    assert "--model tfidf" in " ".join(argv) and "--force" in argv
    assert cli.main(argv) == 0
    assert (run / "preds_test.csv").is_file()


@pytest.mark.slow  # trains models
def test_report_and_compare_refuse_a_folder_mixing_two_runs(small_data, tmp_path, capsys):
    results = tmp_path / "results"
    assert cli.main(_train_tfidf_argv(small_data, results / "a")) == 0
    assert (
        cli.main([*_train_tfidf_argv(small_data, results / "b"), "--max_train_samples", "120"]) == 0
    )
    (results / "a" / "run.json").write_bytes((results / "b" / "run.json").read_bytes())
    capsys.readouterr()
    assert cli.main(["compare", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert "mixes files of two runs" in err and len(err.strip().splitlines()) == 1
    assert (
        cli.main(
            [
                "report",
                "--model",
                "a",
                "--results-dir",
                str(results),
                "--output-dir",
                str(tmp_path / "out"),
                "--no-pdf",
            ]
        )
        == 2
    )
    assert "mixes files of two runs" in capsys.readouterr().err
    assert not (tmp_path / "out" / "final_report.html").exists()


def test_prepare_prints_coverage_warnings_and_keeps_earlier_splits(tmp_path, capsys):
    raw = tmp_path / "raw.csv"
    rows = [(f"question {c} number {i}", c) for c in range(7) for i in range(60)] + [
        (f"rare {i}", 7) for i in range(3)
    ]
    raw.write_text("Question,label\n" + "".join(f"{q},{c}\n" for q, c in rows), encoding="utf-8")
    out = tmp_path / "data"
    assert cli.main(["prepare", "--input", str(raw), "--out-dir", str(out)]) == 0
    assert "warning: class 7 (Soyut Cebir)" in capsys.readouterr().err
    before = (out / "augmented_train.csv").read_bytes()
    assert cli.main(["prepare", "--input", str(raw), "--out-dir", str(out), "--seed", "1"]) == 2
    assert (
        "--force" in capsys.readouterr().err
        and (out / "augmented_train.csv").read_bytes() == before
    )
    assert (
        cli.main(["prepare", "--input", str(raw), "--out-dir", str(out), "--seed", "1", "--force"])
        == 0
    )
    backups = list(out.glob("replaced-*"))
    assert len(backups) == 1 and (backups[0] / "augmented_train.csv").read_bytes() == before


# --- issue 20: predict's output and questions, malformed run files, models without config.json ---------------------


@pytest.fixture(scope="module")
def tfidf_run(small_data, tmp_path_factory):
    """A finished tfidf run (trained once for this module's tests; copy it before changing it)."""
    out = tmp_path_factory.mktemp("cli20") / "tfidf"
    assert cli.main(_train_tfidf_argv(small_data, out)) == 0
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.slow  # tfidf_run trains a model
def test_predict_output_is_checked_before_inference(tfidf_run, tmp_path, capsys, monkeypatch):
    """Issue 20, 7: a directory failed after inference; a run's own file was replaced without its lock."""
    from mathreport import predict

    question = "What is the derivative of x^2?"
    preds = tfidf_run / artifacts.PREDICTIONS
    before = preds.read_bytes()
    with monkeypatch.context() as patched:
        patched.setattr(
            predict,
            "load_classifier",
            lambda *a, **k: pytest.fail("inference ran before the check"),
        )
        assert (
            cli.main(["predict", "--run_dir", str(tfidf_run), "--output", str(tmp_path), question])
            == 2
        )
        assert "is a directory" in _one_line_error(capsys)
        assert (
            cli.main(["predict", "--run_dir", str(tfidf_run), "--output", str(preds), question])
            == 2
        )
        assert "a file of the run" in _one_line_error(capsys)
    assert preds.read_bytes() == before
    assert (
        cli.main(
            ["predict", "--run_dir", str(tfidf_run), "--output", str(tmp_path / "p.csv"), question]
        )
        == 0
    )
    assert (tmp_path / "p.csv").is_file()


@pytest.mark.slow  # tfidf_run trains a model
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            b"What is 2\xff+2?".decode("utf-8", "surrogateescape"),
            r"question 1 of 1 is not UTF-8 text \(byte 0xff\)",
        ),
        ("\u200b\u200b", "question 1 of 1 is empty"),
        ("\u00a0\u00a0\u2009", "question 1 of 1 is empty"),
        ("\ufeff\u200d", "question 1 of 1 is empty"),
    ],
)
def test_predict_refuses_invisible_or_undecodable_questions(
    tfidf_run, tmp_path, capsys, question, expected
):
    """Issue 20, 7 and 12: a question of bytes that are not UTF-8 (UnicodeEncodeError on --output), or of only
    zero-width or no-break spaces (answered with a topic)."""
    import re

    argv = ["predict", "--run_dir", str(tfidf_run), "--output", str(tmp_path / "p.csv"), question]
    assert cli.main(argv) == 2
    assert re.search(expected, _one_line_error(capsys))
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow  # tfidf_run trains a model
def test_predict_refuses_a_csv_question_of_zero_width_spaces(tfidf_run, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text("Question\nWhat is 2+2?\n\u200b\u00a0\n", encoding="utf-8")
    assert cli.main(["predict", "--run_dir", str(tfidf_run), "--input", str(rows)]) == 2
    assert "rows.csv: line 3" in _one_line_error(capsys)


@pytest.mark.slow  # tfidf_run trains a model
@pytest.mark.parametrize(
    "content", [b"", b"y_true,y_pred\n\xff\xfe,1\n", b'y_true,text\n1,"cut inside']
)
def test_evaluate_on_a_malformed_preds_test_is_one_line(tfidf_run, tmp_path, capsys, content):
    """Issue 20, 3: EmptyDataError, UnicodeDecodeError, ParserError tracebacks."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tfidf_run, run)
    (run / artifacts.PREDICTIONS).write_bytes(content)
    assert cli.main(["evaluate", "--run_dir", str(run)]) == 2
    assert str(run / artifacts.PREDICTIONS) in _one_line_error(capsys)


@pytest.mark.slow  # tfidf_run trains a model
def test_a_stale_lock_does_not_block_compare(tfidf_run, tmp_path, capsys):
    """Issue 20, 4: `.lock` naming PID 1 on this host, which no process holds, refused every reader for ever."""
    import json
    import platform
    import shutil

    results = tmp_path / "results"
    for name in ("a", "b"):
        shutil.copytree(tfidf_run, results / name)
    (results / "a" / artifacts.LOCK).write_text(json.dumps({"pid": 1, "host": platform.node()}))
    (results / "b" / artifacts.LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    assert cli.main(["compare", "--results-dir", str(results)]) == 0


@pytest.mark.slow  # tfidf_run trains a model
def test_report_says_which_run_folders_it_leaves_out(tfidf_run, tmp_path, capsys, monkeypatch):
    """Issue 20, 12: a run lacking files was left out of a report with no message."""
    import shutil

    from mathreport import export

    results = tmp_path / "results"
    for name in ("main", "other", "broken"):
        shutil.copytree(tfidf_run, results / name)
    (results / "broken" / artifacts.HISTORY).unlink()
    monkeypatch.setattr(export, "execute", lambda notebook, out, params, **k: out)
    monkeypatch.setattr(export, "export_html", lambda executed, out, lang: out)
    export.run_report(model="main", results_dir=results, output_dir=tmp_path / "out", pdf=False)
    err = capsys.readouterr().err
    assert f"{results / 'broken'} is left out of the report: it lacks history.csv" in err
    assert "other" not in err


def test_train_model_folder_without_config_is_refused_before_a_run_is_written(
    tmp_path, small_data, capsys
):
    """Issue 20, 9: a sentencepiece traceback and a "failed" run.json left behind."""
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    argv = _train_tfidf_argv(small_data, tmp_path / "out")
    argv[argv.index("tfidf")] = str(folder)
    assert cli.main(argv) == 2
    assert "config.json" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_trainer_flags_pass_on_train_only_and_a_refused_one_is_one_line(
    small_data, tmp_path, capsys
):
    """train/search hand flags they do not know to transformers' TrainingArguments; other commands refuse them."""
    out = tmp_path / "run"
    splits = [
        *split_flags(small_data),
    ]
    assert (
        cli.main(
            [
                "train",
                "--model",
                "minilm",
                "--output_dir",
                str(out),
                *splits,
                "--logging_strategy",
                "sometimes",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("mathreport train: error: --logging_strategy sometimes")
        and "invalid choice" in err
    )
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    # tfidf has no Trainer: a leftover flag is a typo, refused (not ignored with a warning)
    assert (
        cli.main(
            [
                "train",
                "--model",
                "tfidf",
                "--output_dir",
                str(out),
                *splits,
                "--lerning_rate",
                "0.1",
            ]
        )
        == 2
    )
    assert (
        "--lerning_rate 0.1: not an option of mathreport train for tfidf" in capsys.readouterr().err
    )
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--results-dir", str(tmp_path), "--gradient_accumulation_steps", "2"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --gradient_accumulation_steps 2" in capsys.readouterr().err


# --- issue 28: --version, a full disk, spreadsheet CSVs --------------------------------------------------------------


def test_version_prints_mathreport_and_the_libraries_it_runs_on(capsys):
    """Issue 28, 5: `mathreport --version` was "the following arguments are required: command"."""
    import importlib.metadata as md

    import mathreport

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0] == f"mathreport {mathreport.__version__}"
        and lines[1] == f"python {sys.version.split()[0]}"
    )
    found = dict(line.split(" ", 1) for line in lines)
    for package in ("torch", "transformers", "peft", "bitsandbytes", "onnxruntime"):
        try:
            assert found[package] == md.version(package)
        except md.PackageNotFoundError:
            assert found[package] == "not installed"


def test_a_full_disk_is_one_line_naming_the_file_and_the_free_space(tmp_path, capsys, monkeypatch):
    """Issue 28, 2: `OSError: [Errno 28] No space left on device` came with a whole traceback."""
    import errno

    from mathreport import files

    def full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_write_bytes", full)
    fixture = Path(__file__).parent / "fixtures" / "raw_kaggle_like.csv"
    assert cli.main(["prepare", "--input", str(fixture), "--out-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"cannot write {tmp_path / 'data'}" in err and "No space left on device" in err
    assert "free on its file system" in err and "needed" in err
    assert (
        sorted(p.name for p in (tmp_path / "data").iterdir()) == []
    )  # no split file, no temporary file


def _semicolon_copy(source: Path, target: Path) -> Path:
    """`source` as Excel saves it with a Turkish locale: BOM, CRLF, ';' between fields."""
    import csv

    with open(source, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    with open(target, "w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh, delimiter=";", lineterminator="\r\n").writerows(rows)
    return target


@pytest.mark.slow  # tfidf_run trains a model
def test_predict_reads_a_semicolon_csv_as_the_comma_one(tfidf_run, small_data, tmp_path, capsys):
    """Issue 28, 6: a ';' CSV was refused."""
    excel = _semicolon_copy(small_data / "test_split.csv", tmp_path / "excel.csv")
    assert cli.main(["predict", "--run_dir", str(tfidf_run), "--input", str(excel), "--json"]) == 0
    from_excel = capsys.readouterr().out
    assert (
        cli.main(
            [
                "predict",
                "--run_dir",
                str(tfidf_run),
                "--input",
                str(small_data / "test_split.csv"),
                "--json",
            ]
        )
        == 0
    )
    assert from_excel == capsys.readouterr().out and from_excel.count("\n") > 10


@pytest.mark.slow  # trains tfidf
def test_train_reads_semicolon_split_files_and_says_so(small_data, tmp_path):
    """Issue 28, 6: `train` with split files saved by a Turkish-locale spreadsheet."""
    excel = {
        name: _semicolon_copy(small_data / name, tmp_path / name)
        for name in ("augmented_train.csv", "val_split.csv", "test_split.csv")
    }
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "mathreport.cli", *_train_tfidf_argv(tmp_path, out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    told = [line for line in done.stderr.splitlines() if "';'-separated" in line]
    assert sorted(line.split(":")[0] for line in told) == sorted(
        str(path) for path in excel.values()
    )
    assert artifacts.read_metrics(out)["n_test"] == len(pd.read_csv(small_data / "test_split.csv"))


# --- one spelling per flag (issue 30) ------------------------------------------------------

# Spellings with hyphens that --help showed before every flag took underscores: still parsed,
# no longer shown.
OLDER_SPELLINGS = [
    ("prepare", [], "--out-dir"),
    ("prepare", [], "--text-col"),
    ("prepare", [], "--label-col"),
    ("prepare", [], "--val-size"),
    ("prepare", [], "--test-size"),
    ("demo-data", [], "--out-dir"),
    ("compare", [], "--results-dir"),
    ("report", [], "--results-dir"),
    ("report", [], "--output-dir"),
    ("report", [], "--figures-dir"),
    ("pipeline", [], "--results-dir"),
    ("pipeline", [], "--data-dir"),
    ("pipeline", [], "--report-model"),
    ("ensemble", ["--runs", "a", "b"], "--results-dir"),
    ("ensemble", ["--runs", "a", "b"], "--output-dir"),
]


def _parsers():
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


def test_every_flag_in_every_help_has_one_spelling():
    import argparse
    import re

    for command, parser in _parsers().items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings:  # hidden; positional
                continue
            flags = [o for o in action.option_strings if o.startswith("--")]
            # --pdf and its --no-pdf are one flag (BooleanOptionalAction); others show one spelling
            pair = isinstance(action, argparse.BooleanOptionalAction)
            assert len(flags) == (2 if pair else 1), (command, flags)
        shown = set(re.findall(r"--[\w-]+", parser.format_help()))
        hyphenated = {f for f in shown if "-" in f[2:].removeprefix("no-")}
        assert not hyphenated, f"mathreport {command} --help"


def test_every_hidden_spelling_is_an_older_one_of_a_shown_flag():
    import argparse

    hidden = set()
    for command, parser in _parsers().items():
        shown = {
            o: a.dest
            for a in parser._actions
            if a.help != argparse.SUPPRESS
            for o in a.option_strings
        }
        for action in parser._actions:
            if action.help == argparse.SUPPRESS and action.option_strings:
                (alias,) = action.option_strings
                flag = "--" + alias[2:].replace("-", "_")
                assert shown.get(flag) == action.dest, (command, alias)
                hidden.add((command, alias))
    assert hidden == {(command, alias) for command, _, alias in OLDER_SPELLINGS}


@pytest.mark.parametrize(("command", "required", "older"), OLDER_SPELLINGS)
def test_an_older_spelling_of_a_flag_still_works(command, required, older):
    parser = cli.build_parser()
    flag = "--" + older[2:].replace("-", "_")
    new = parser.parse_args([command, *required, flag, "0.25"])  # a float, a path or a name
    old = parser.parse_args([command, *required, older, "0.25"])
    assert vars(old) == vars(new) and str(getattr(new, flag[2:])) == "0.25"


def test_export_onnx_help_says_it_checks_on_the_validation_split():
    text = " ".join(_parsers()["export-onnx"].format_help().split())
    assert "on the validation split" in text and "test split" not in text
