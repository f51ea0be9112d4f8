"""files: atomic files and folders, one WriteError for a disk that refuses a write, SHA-256, the cache folder."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mathreport import files
from mathreport.errors import ArtifactError, MathreportError, WriteError


def _leftovers(folder: Path) -> list[str]:
    """Temporary files a write left beside its target (they start with a dot)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _refuse(code: int):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return refuse


# --- issue 28, 2: a full disk (or a quota, a read-only or forbidden folder) is one WriteError -----------------------


@pytest.mark.parametrize("where", ["replace", "write"])
def test_a_full_disk_names_the_file_the_free_space_and_the_bytes_needed_and_keeps_the_old_file(
    tmp_path, monkeypatch, where
):
    target = tmp_path / "metrics.json"
    files.write_json(target, {"Accuracy": 0.5})
    before = target.read_bytes()
    new = {"Accuracy": 0.75, "note": "ü" * 100}
    needed = len((json.dumps(new, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    if where == "replace":
        monkeypatch.setattr(files.os, "replace", _refuse(errno.ENOSPC))
    else:
        monkeypatch.setattr(
            files.os, "fsync", _refuse(errno.ENOSPC)
        )  # the data did not fit while written
    with pytest.raises(WriteError) as info:
        files.write_json(target, new)
    monkeypatch.undo()
    message = str(info.value)
    free = shutil.disk_usage(tmp_path).free
    assert "\n" not in message and message.startswith(
        f"cannot write {target}: No space left on device"
    )
    assert "free on its file system" in message and files._size(free).split()[1] in message
    assert f"{files._size(needed)} needed" in message and info.value.needed == needed
    assert (
        info.value.path == target and info.value.free is not None and "free some space" in message
    )
    assert target.read_bytes() == before and _leftovers(tmp_path) == []
    assert isinstance(info.value, MathreportError)  # the command line prints it as one line


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EDQUOT, "quota"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permissions"),
        (errno.EFBIG, "free some space"),
    ],
)
def test_each_refusal_of_the_disk_is_a_write_error_saying_what_to_do(
    tmp_path, monkeypatch, code, words
):
    target = tmp_path / "history.csv"
    monkeypatch.setattr(files.tempfile, "mkstemp", _refuse(code))
    with pytest.raises(WriteError) as info:
        files.write_csv(target, pd.DataFrame({"epoch": [1]}))
    assert (
        os.strerror(code) in str(info.value)
        and words in str(info.value)
        and str(target) in str(info.value)
    )
    assert not target.exists()


def test_a_folder_that_is_a_file_is_a_write_error_naming_it(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(WriteError, match="results is a file, not a folder") as info:
        files.write_text(tmp_path / "results" / "run" / "run.json", "{}")
    assert "\n" not in str(info.value)


def test_a_full_disk_inside_a_callers_write_is_a_write_error_but_other_errors_stay_theirs(tmp_path):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    with pytest.raises(WriteError, match="figure.png"), files.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(
            errno.ENOSPC, "No space left on device"
        )  # what savefig or torch.save would raise
    with pytest.raises(FileNotFoundError), files.atomic_path(target):
        raise FileNotFoundError(errno.ENOENT, "an input the caller reads", "missing.ipynb")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_several_files_are_replaced_together_or_none(tmp_path, monkeypatch):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    files.write_texts({a: "1\n", b: "2\n"})
    calls = []
    real = files._write_bytes

    def second_fails(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(files, "_write_bytes", second_fails)
    with pytest.raises(WriteError):
        files.write_texts({a: "new a\n", b: "new b\n"})
    assert a.read_text() == "1\n" and b.read_text() == "2\n" and _leftovers(tmp_path) == []


def test_a_cache_folder_that_cannot_be_built_names_it_and_mathreport_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MATHREPORT_CACHE", str(tmp_path / "cache"))

    def build(scratch: Path) -> Path:
        (scratch / "model").mkdir()
        raise OSError(errno.ENOSPC, "No space left on device")

    target = files.cache_dir() / "model-x"
    with pytest.raises(WriteError) as info:
        files.build_atomically(target, build)
    assert str(target) in str(info.value) and "MATHREPORT_CACHE" in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []  # the scratch folder is gone


# --- what held before: atomic files and folders, SHA-256 --------------------------------------------------------


def test_written_files_get_the_mode_of_a_plainly_created_file(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = files.write_text(
        tmp_path / "x.txt", "x"
    )  # through mkstemp, whose files are private (0600)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert path.stat().st_mode & 0o777 == files.umask_mode()


def test_json_refuses_non_finite_numbers_and_writes_nothing(tmp_path):
    with pytest.raises(ArtifactError, match="non-finite"):
        files.write_json(tmp_path / "m.json", {"loss": float("nan")})
    assert list(tmp_path.iterdir()) == []
    files.write_json(tmp_path / "m.json", {"path": tmp_path, "values": (1, 2)})
    assert json.loads((tmp_path / "m.json").read_text()) == {
        "path": str(tmp_path),
        "values": [1, 2],
    }


def test_a_failed_write_can_keep_what_it_left_where_asked(tmp_path):
    failed = tmp_path / "out.failed.ipynb"
    with (
        pytest.raises(RuntimeError),
        files.atomic_path(tmp_path / "out.ipynb", suffix=".ipynb", failed=failed) as tmp,
    ):
        tmp.write_text("the traceback")
        raise RuntimeError("a cell failed")
    assert failed.read_text() == "the traceback" and not (tmp_path / "out.ipynb").exists()


def test_file_sha256_reads_in_blocks_and_agrees_with_hashlib(tmp_path):
    data = os.urandom((1 << 20) * 2 + 123)  # more than one block
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert files.file_sha256(path) == hashlib.sha256(data).hexdigest() == files.sha256_bytes(data)


def test_build_atomically_uses_a_copy_another_process_put_in_place_first(tmp_path):
    target = tmp_path / "model"

    def build(scratch: Path) -> Path:
        out = scratch / "model"
        out.mkdir()
        (out / "config.json").write_text("{}")
        target.mkdir()  # the other process wins the race
        (target / "config.json").write_text('{"winner": true}')
        return out

    assert files.build_atomically(target, build) == target
    assert json.loads((target / "config.json").read_text()) == {"winner": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_cache_folder_follows_mathreport_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MATHREPORT_CACHE", str(tmp_path / "c"))
    assert files.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MATHREPORT_CACHE")
    assert files.cache_dir() == Path.home() / ".cache" / "mathreport"


def test_free_bytes_of_a_path_not_made_yet_is_its_nearest_folders(tmp_path):
    assert files.free_bytes(tmp_path / "a" / "b" / "c.json") == pytest.approx(
        shutil.disk_usage(tmp_path).free, rel=0.01
    )


def test_a_write_outside_atomic_path_names_the_file_the_disk_refused(tmp_path):
    model = tmp_path / "model" / "pipeline.joblib"
    with (
        pytest.raises(WriteError, match=f"cannot write {model}: No space left on device"),
        files.writing(tmp_path),
    ):
        raise OSError(
            errno.ENOSPC, "No space left on device", str(model)
        )  # as joblib.dump's open() would
    with (
        pytest.raises(
            WriteError, match=f"cannot write {tmp_path / 'model'}: Read-only file system"
        ),
        files.writing(tmp_path / "model"),
    ):
        raise OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(FileNotFoundError), files.writing(tmp_path):
        raise FileNotFoundError(errno.ENOENT, "not a refusal of the disk")
