"""The run-directory schema: atomic writes and validating reads."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, files


def _probs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(8), size=n)


def test_predictions_round_trip_exactly(tmp_path):
    probs = _probs(20)
    y_true = np.arange(20) % 8
    artifacts.write_predictions(tmp_path, y_true, probs, [f"q{i}" for i in range(20)])
    frame = artifacts.read_predictions(tmp_path)
    assert (frame["y_pred"].to_numpy() == probs.argmax(1)).all()
    # Metrics are computed from the file, so the CSV must carry the probabilities bit for bit.
    assert np.array_equal(frame[artifacts.PROB_COLUMNS].to_numpy(), probs)
    assert list(frame["text"]) == [f"q{i}" for i in range(20)]


def test_missing_file_names_file_and_command(tmp_path):
    run = tmp_path / "qwen"
    run.mkdir()
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.read_metrics(run)
    assert str(run / "metrics.json") in str(err.value)
    assert "mathreport train --model qwen" in str(err.value)


def test_probabilities_not_summing_to_one_are_refused(tmp_path):
    probs = _probs(5)
    probs[3] *= 0.5
    files.write_csv(
        tmp_path / "preds_test.csv", artifacts.predictions_frame(np.zeros(5, int), probs)
    )
    with pytest.raises(artifacts.ArtifactError, match=r"line 5: probabilities must .* sum 0\.5"):
        artifacts.read_predictions(tmp_path)


def test_y_pred_not_argmax_is_refused(tmp_path):
    probs = _probs(6)
    frame = artifacts.predictions_frame(np.zeros(6, int), probs)
    frame.loc[2, "y_pred"] = (frame.loc[2, "y_pred"] + 1) % 8
    files.write_csv(tmp_path / "preds_test.csv", frame)
    with pytest.raises(artifacts.ArtifactError, match="line 4: y_pred=.* is not the argmax"):
        artifacts.read_predictions(tmp_path)


def test_label_out_of_range_is_refused(tmp_path):
    frame = artifacts.predictions_frame(np.zeros(3, int), _probs(3))
    frame.loc[1, "y_true"] = 9
    files.write_csv(tmp_path / "preds_test.csv", frame)
    with pytest.raises(artifacts.ArtifactError, match="line 3, column 'y_true'.*found 9"):
        artifacts.read_predictions(tmp_path)


def test_metrics_out_of_range_is_refused(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"Accuracy": 1.5}))
    with pytest.raises(artifacts.ArtifactError, match="'Accuracy' must be a number in"):
        artifacts.read_metrics(tmp_path)


def test_write_json_refuses_nan_and_leaves_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"Accuracy": 0.5})
    with pytest.raises(artifacts.ArtifactError, match="non-finite"):
        files.write_json(path, {"Accuracy": float("nan")})
    assert json.loads(path.read_text()) == {"Accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_atomic_write_keeps_old_content_when_writer_fails(tmp_path):
    path = tmp_path / "history.csv"
    files.write_csv(path, pd.DataFrame({"epoch": [1]}))

    class Boom(pd.DataFrame):
        def to_csv(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.write_csv(path, Boom({"epoch": [2]}))
    assert path.read_text().splitlines() == ["epoch", "1"]


def test_find_runs_lists_only_complete_runs(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metrics.json").write_text("{}")
    full = tmp_path / "full"
    full.mkdir()
    for name in artifacts.REQUIRED:
        (full / name).write_text("x")
    assert artifacts.find_runs(tmp_path) == ["full"]


def test_written_files_get_the_usual_mode_not_private(tmp_path):
    import os
    import stat

    path = files.write_json(tmp_path / "metrics.json", {"Accuracy": 0.5})
    assert stat.S_IMODE(os.stat(path).st_mode) == files.umask_mode()


# --- one writer per run directory, and runs whose files disagree (issue 12) --------------------------------------

_PROBE = """
import sys
from mathreport import artifacts
try:
    with artifacts.run_lock(sys.argv[1], "probe"):
        print("locked", flush=True)
        if len(sys.argv) > 2:  # die holding the lock, as kill -9 would
            import os, signal
            os.kill(os.getpid(), signal.SIGKILL)
except artifacts.RunLockedError as err:
    print(err)
    sys.exit(3)
"""


def _probe(run_dir, *extra):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import mathreport

    env = {**os.environ, "PYTHONPATH": str(Path(mathreport.__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-c", _PROBE, str(run_dir), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    import os

    run = tmp_path / "run"
    with artifacts.run_lock(run, "mathreport train --model tfidf"):
        with artifacts.run_lock(run):  # re-entrant within one process (train calls evaluate_run)
            pass
        other = _probe(run)
        assert other.returncode == 3, other.stderr
        assert (
            f"PID {os.getpid()}" in other.stdout
            and "mathreport train --model tfidf" in other.stdout
        )
        assert "started 20" in other.stdout
    assert not run.exists()  # created by the lock and nothing written: nothing left
    assert _probe(run).returncode == 0  # released: the next writer gets it


def test_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, capsys):
    import json

    run = tmp_path / "run"
    run.mkdir()
    dead = _probe(run, "die")
    assert dead.returncode == -9 and "locked" in dead.stdout
    pid = json.loads((run / artifacts.LOCK).read_text())["pid"]
    assert artifacts.lock_holder(run) is None  # a dead holder holds nothing
    with artifacts.run_lock(run, "test"):
        pass
    err = capsys.readouterr().err
    assert f"PID {pid}" in err and "no longer running" in err
    assert not (run / artifacts.LOCK).exists()


def _consistent_run(run, seed=0, n=40):
    from mathreport import train

    rng = np.random.default_rng(seed)
    artifacts.write_predictions(run, rng.integers(0, 8, n), _probs(n, seed))
    files.write_csv(
        run / artifacts.HISTORY,
        pd.DataFrame(
            [
                {
                    "epoch": 1,
                    "train_loss": 1.0,
                    "val_loss": 1.0,
                    "train_accuracy": 0.5,
                    "val_accuracy": 0.5,
                }
            ]
        ),
    )
    train.evaluate_run(run, n_bootstrap=10)
    files.write_json(
        run / artifacts.MANIFEST,
        {
            "command": "mathreport train --model tfidf --output_dir x",
            "status": "complete",
            "data": {"test": {"rows": n}},
            "outputs": artifacts.outputs_record(run),
        },
    )


def test_consistency_check_refuses_a_folder_mixing_two_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _consistent_run(a, seed=0)
    _consistent_run(b, seed=1)
    artifacts.check_consistency(a)
    # run.json of one run, everything else of another: same row count, different files.
    (a / artifacts.MANIFEST).write_bytes((b / artifacts.MANIFEST).read_bytes())
    with pytest.raises(artifacts.ArtifactError, match="mixes files of two runs"):
        artifacts.check_consistency(a)
    # Without the files' hashes (older run.json), metrics of one run beside predictions of another.
    manifest = json.loads((b / artifacts.MANIFEST).read_text())
    del manifest["outputs"]
    files.write_json(a / artifacts.MANIFEST, manifest)
    artifacts.check_consistency(a)
    (a / artifacts.METRICS).write_bytes((b / artifacts.METRICS).read_bytes())
    with pytest.raises(
        artifacts.ArtifactError, match=r"metrics.json says Accuracy .* preds_test.csv gives"
    ):
        artifacts.check_consistency(a)
    manifest["data"]["test"]["rows"] = 41
    files.write_json(b / artifacts.MANIFEST, manifest)
    with pytest.raises(
        artifacts.ArtifactError, match="records 41 test rows but preds_test.csv has 40"
    ):
        artifacts.check_consistency(b)


def test_consistency_check_refuses_unfinished_or_busy_runs(tmp_path, hold_lock):

    run = tmp_path / "run"
    _consistent_run(run)
    manifest = json.loads((run / artifacts.MANIFEST).read_text())
    files.write_json(run / artifacts.MANIFEST, {**manifest, "status": "running"})
    with pytest.raises(
        artifacts.ArtifactError, match="incomplete: the process that wrote it is gone"
    ):
        artifacts.check_consistency(run)
    files.write_json(run / artifacts.MANIFEST, manifest)
    with hold_lock(run) as holder:
        with pytest.raises(artifacts.RunLockedError, match=f"PID {holder.pid}"):
            artifacts.check_consistency(run)
    artifacts.check_consistency(run)


@pytest.mark.parametrize("host", ["this", "another.example"])
def test_a_lock_file_no_process_holds_blocks_nobody(tmp_path, host):
    """Issue 20, 4: a stale lock naming PID 1 (alive, but not holding it) on this host or another is no writer."""
    import platform

    run = tmp_path / "run"
    _consistent_run(run)
    (run / artifacts.LOCK).write_text(
        json.dumps(
            {
                "pid": 1,
                "host": platform.node() if host == "this" else host,
                "command": "mathreport train",
                "started": "then",
            }
        )
    )
    assert artifacts.lock_holder(run) is None
    artifacts.check_consistency(run)
    with artifacts.run_lock(run, "mathreport evaluate"):  # and a writer takes it over
        pass


def test_make_command_is_a_command_that_works(tmp_path):
    run = tmp_path / "RUN"
    run.mkdir()
    assert "--model MODEL" in artifacts.make_command(
        run
    ) and "--model RUN" not in artifacts.make_command(run)
    files.write_json(
        run / artifacts.MANIFEST,
        {"command": "mathreport train --model tfidf --output_dir RUN", "status": "complete"},
    )
    # A finished run is only replaced with --force; an unfinished one is continued with --resume.
    assert (
        artifacts.make_command(run) == f"mathreport train --model tfidf --output_dir {run} --force"
    )
    files.write_json(
        run / artifacts.MANIFEST,
        {"command": "mathreport train --model tfidf --output_dir RUN", "status": "running"},
    )
    (run / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    assert (
        artifacts.make_command(run) == f"mathreport train --model tfidf --output_dir {run} --resume"
    )


def test_a_holder_that_has_not_written_its_pid_yet_is_waited_for(tmp_path):
    """The holder writes its PID just after taking the lock; a second writer in that gap still names it."""
    import fcntl
    import os
    import platform
    import threading

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / artifacts.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(
        fd, fcntl.LOCK_EX
    )  # another open file: conflicts with run_lock's flock even in this process
    try:
        info = {"pid": 4242, "host": platform.node(), "command": "late writer", "started": "now"}
        timer = threading.Timer(0.2, lambda: os.pwrite(fd, json.dumps(info).encode("utf-8"), 0))
        timer.start()
        with (
            pytest.raises(artifacts.RunLockedError, match=r"PID 4242 \(late writer"),
            artifacts.run_lock(run),
        ):
            pass
        timer.join()
        os.ftruncate(fd, 0)  # a holder that never writes: the message says so after the wait
        with (
            pytest.raises(artifacts.RunLockedError, match="took the lock a moment ago"),
            artifacts.run_lock(run),
        ):
            pass
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --- issue 20: malformed run CSVs, hints for the folder in question -------------------------------------------------


def _cut_in_quoted_field(text: str) -> bytes:
    return text.encode("utf-8")[: text.index('"a, quoted') + 5]


@pytest.mark.parametrize(
    ("case", "make", "expected"),
    [
        ("empty", lambda text: b"", "the file is empty"),
        (
            "not utf-8",
            lambda text: text.encode("utf-8").replace(b"q3", b"q\xff"),
            r"line 5: byte b'\\xff' is not UTF-8",
        ),
        ("cut", _cut_in_quoted_field, "line 4: unexpected end of data"),
    ],
)
@pytest.mark.parametrize("filename", [artifacts.PREDICTIONS, artifacts.PREDS_VAL])
def test_malformed_prediction_csv_is_a_one_line_error_naming_file_and_line(
    tmp_path, case, make, expected, filename
):
    """Issue 20, 3: not EmptyDataError, UnicodeDecodeError or ParserError."""
    texts = ["q0", "q1", 'a, quoted "question"', "q3"]
    artifacts.write_predictions(tmp_path, np.arange(4), _probs(4), texts)
    text = (tmp_path / artifacts.PREDICTIONS).read_text(encoding="utf-8")
    (tmp_path / filename).write_bytes(make(text))
    reader = (
        artifacts.read_predictions
        if filename == artifacts.PREDICTIONS
        else artifacts.read_val_predictions
    )
    with pytest.raises(artifacts.ArtifactError, match=expected) as err:
        reader(tmp_path)
    assert str(tmp_path / filename) in str(err.value) and "\n" not in str(err.value)


def test_hint_for_a_copied_folder_names_the_copy_not_the_original(tmp_path):
    """Issue 20, 5: the recorded command names the original folder; the hint must name the one in question."""
    import shutil

    original, copy = tmp_path / "runs" / "b", tmp_path / "runs" / "copy"
    _consistent_run(original)
    manifest = json.loads((original / artifacts.MANIFEST).read_text())
    manifest["command"] = f"mathreport train --model tfidf --seed 2 --output_dir {original}"
    files.write_json(original / artifacts.MANIFEST, manifest)
    shutil.copytree(original, copy)
    (copy / artifacts.METRICS).unlink()
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.read_metrics(copy)
    assert str(original) not in str(err.value)
    assert f"mathreport evaluate --run_dir {copy}" in str(
        err.value
    )  # recomputes it, trains nothing
    (copy / artifacts.PREDICTIONS).unlink()
    hint = artifacts.make_command(copy)
    assert hint == f"mathreport train --model tfidf --seed 2 --output_dir {copy} --force"


def test_a_damaged_model_file_is_one_line_naming_it(keyword_splits, tmp_path, capsys):
    """run.json records the SHA-256 of the model's files; a cut pipeline.joblib is refused by the consistency check,
    and a load that fails anyway (the check bypassed) names the file and the command that remakes it."""
    from mathreport import cli, predict, record
    from mathreport.train import TrainConfig, train

    run_dir = train(
        TrainConfig(
            model="tfidf",
            train_path=keyword_splits / "train.csv",
            val_path=keyword_splits / "val.csv",
            test_path=keyword_splits / "test.csv",
            output_dir=tmp_path / "tfidf",
            bench=False,
        )
    )
    model = run_dir / "model" / "pipeline.joblib"
    assert record.read(run_dir).outputs["model/pipeline.joblib"]["sha256"] == files.file_sha256(
        model
    )
    artifacts.check_consistency(run_dir)
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    assert cli.main(["predict", "--run_dir", str(run_dir), "Solve x^2 = 4."]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pipeline.joblib" in err and "SHA-256 differs" in err
    assert "Traceback" not in err
    with pytest.raises(
        artifacts.ArtifactError,
        match=r"pipeline\.joblib cannot be loaded .*mathreport train --model tfidf",
    ):
        predict.load_classifier(run_dir)
    model.unlink()
    with pytest.raises(artifacts.ArtifactError, match=r"pipeline\.joblib is missing"):
        artifacts.check_consistency(run_dir)


# --- every run-folder name in artifacts (issue 30) ------------------------------------------

# Spelled outside artifacts for a reason that stays: run.json's name is record's (artifacts
# imports record), and weights/tiny build a cache folder's own model/, not a run's.
_NOT_RUN_NAMES = {("record.py", "run.json"), ("weights.py", "model"), ("tiny.py", "model")}
# Still spelled in modules that other changes of issue 30 move to artifacts' names; an entry
# whose literal is gone fails below, so this list only shrinks. Each says what replaces it.
_PENDING: dict = {}  # (module, name) -> its replacement, while a module still spells a name itself


def _docstrings(tree) -> set[int]:
    import ast

    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, owners)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _run_folder_names_spelled(source: str) -> list[tuple[int, str]]:
    """(line, name) of each run-folder name that `source` spells itself: in a string (docstrings
    aside), or, for names that are ordinary words ("model"), as a path part (`run_dir / "model"`)
    or a constant's whole value."""
    import ast
    import re

    worded = {artifacts.MODEL_DIR, artifacts.CHECKPOINTS, artifacts.MODEL_CARD}
    spelled = sorted(set(artifacts.RUN_FOLDER_NAMES) - worded, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, spelled)) + r")(?![\w-])")
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            found += [(node.lineno, match) for match in pattern.findall(node.value)]
        parts = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts = [node.right]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            parts = [node.value]
        found += [
            (part.lineno, part.value)
            for part in parts
            if isinstance(part, ast.Constant) and part.value in worded
        ]
    return found


def test_the_scan_finds_run_folder_names_spelled_by_hand():
    source = (
        '"""Reads preds_test.csv."""\n'
        'A = run_dir / "model" / "adapter_config.json"\n'
        'CARD = "README.md"\n'
        'B = f"{run_dir}/metrics.json was cut"\n'
        'C = {"model": 1, "text": "see README.md"}\n'
        'D = run_dir.glob(".lr_search-*")\n'
    )
    assert sorted(_run_folder_names_spelled(source)) == [
        (2, "adapter_config.json"),
        (2, "model"),
        (3, "README.md"),
        (4, "metrics.json"),
        (6, ".lr_search-"),
    ]


def test_no_module_but_artifacts_spells_a_run_folder_name():
    """Renaming a file of a run folder is an edit of artifacts.py only."""
    from pathlib import Path

    import mathreport

    package = Path(mathreport.__file__).parent
    spelled: dict[tuple[str, str], list[int]] = {}
    for path in sorted(package.rglob("*.py")):
        if path.name == "artifacts.py":
            continue
        module = path.relative_to(package).as_posix()
        for line, name in _run_folder_names_spelled(path.read_text(encoding="utf-8")):
            spelled.setdefault((module, name), []).append(line)
    allowed = _NOT_RUN_NAMES | set(_PENDING)
    unexpected = sorted(
        f"mathreport/{module}:{lines}: {name!r}"
        for (module, name), lines in spelled.items()
        if (module, name) not in allowed
    )
    assert not unexpected, f"use artifacts' constants for these run-folder names: {unexpected}"
    gone = [key for key in _PENDING if key not in spelled]
    assert not gone, f"no longer spelled by hand: remove them from _PENDING: {gone}"


def test_locked_holds_the_run_lock_for_the_call_only(tmp_path):
    import types

    from mathreport import lockfile

    seen = []

    @artifacts.locked("mathreport test", "cfg.output_dir")
    def write(cfg, text="x"):
        seen.append(lockfile._HELD.get(os.path.realpath(cfg.output_dir)))
        (cfg.output_dir / "file").write_text(text)
        return text

    run = tmp_path / "run"
    assert write(types.SimpleNamespace(output_dir=run), text="y") == "y"
    assert seen[0] is not None and (run / "file").read_text() == "y"
    assert not (run / artifacts.LOCK).exists()  # released
    assert write.__name__ == "write" and write.__doc__ is None


def test_locked_refuses_a_second_writer_and_a_missing_folder(tmp_path, hold_lock):
    @artifacts.locked("mathreport test", "run_dir", existing=True)
    def touch(run_dir):
        (run_dir / "touched").write_text("x")

    with pytest.raises(
        artifacts.ArtifactError, match=r"nope does not exist\. Make it with: mathreport train"
    ):
        touch(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()  # refused before the lock, which would have made it
    run = tmp_path / "run"
    run.mkdir()
    with (
        hold_lock(run),
        pytest.raises(artifacts.RunLockedError, match="mathreport train --model tfidf"),
    ):
        touch(run_dir=run)
    assert not (run / "touched").exists()


def test_locked_names_a_parameter_the_function_lacks_when_it_is_applied():
    with pytest.raises(TypeError, match="has no parameter 'output_dir'"):
        artifacts.locked("mathreport test", "output_dir.path")(lambda run_dir: run_dir)


def test_the_writer_removes_what_a_replacing_run_does_not_make(tmp_path):
    run = tmp_path / "run"
    artifacts.model_dir(run).mkdir(parents=True)
    (artifacts.model_dir(run) / artifacts.ADAPTER_CONFIG).write_text("{}")
    artifacts.onnx_path(run, "int8").write_bytes(b"onnx")
    (run / artifacts.PREDICTIONS).write_text("kept")
    artifacts.RunWriter(run).remove(*artifacts.TRAINED_ONLY)
    assert sorted(p.name for p in run.iterdir()) == [artifacts.PREDICTIONS]
    # not the main process: it writes (and removes) nothing
    artifacts.RunWriter(run, is_main=False).remove(artifacts.PREDICTIONS)
    assert (run / artifacts.PREDICTIONS).is_file()


def test_the_writer_writes_the_search_table_and_the_card_where_readers_look(tmp_path):
    table = pd.DataFrame({"learning_rate": [1e-4], "val_accuracy": [0.5], "val_macro_f1": [0.4]})
    writer = artifacts.RunWriter(tmp_path)
    writer.lr_search(table, {"best_learning_rate": 1e-4})
    assert artifacts.read_lr_search(tmp_path)["val_macro_f1"].tolist() == [0.4]
    assert artifacts.read_json(tmp_path / artifacts.LR_SEARCH_JSON)["best_learning_rate"] == 1e-4
    card = writer.model_card("# card\n")
    assert card == artifacts.model_dir(tmp_path) / artifacts.MODEL_CARD
    assert card.read_text() == "# card\n"
    assert artifacts.model_files(tmp_path) == []  # made from run.json, so not recorded in it


def test_the_writing_commands_take_the_lock_themselves():
    """No private twin exists only to take the lock: the public function is `locked`."""
    from mathreport import bench, ensemble, onnx_backend, search

    for module, name in (
        (ensemble, "build_ensemble"),
        (search, "search"),
        (onnx_backend, "export_run"),
        (bench, "bench_run"),
    ):
        qualified = f"{module.__name__}.{name}"
        assert hasattr(getattr(module, name), "__wrapped__"), f"{qualified} is not artifacts.locked"
        assert not hasattr(module, f"_{name}"), f"{qualified} has a private twin"


def test_the_train_hint_names_the_presets_that_need_a_gpu_from_the_registry(tmp_path, monkeypatch):
    from mathreport import presets

    hint = artifacts.make_command(tmp_path / "qwen")
    assert f"for {' or '.join(presets.gpu_presets())} train on a GPU machine" in hint
    monkeypatch.setattr(artifacts, "gpu_presets", lambda: [])  # no preset needs one: no such clause
    assert artifacts.make_command(tmp_path / "qwen").endswith("--models qwen`)")
