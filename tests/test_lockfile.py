"""The one-writer lock file under `artifacts.run_lock` (on run folders: test_artifacts)."""

from __future__ import annotations

import os
import platform

import pytest

from mathreport import artifacts, lockfile
from mathreport.errors import RunLockedError


def test_the_holder_is_recorded_in_the_file_and_named_to_others(tmp_path, hold_lock):
    path = tmp_path / "run" / "writer.lock"
    with lockfile.hold(path, "mathreport test"):
        assert lockfile.holder(path) is None  # this process's own lock blocks nobody here
        with lockfile.hold(path):  # re-entrant
            assert path.is_file()
        assert path.is_file()  # still held after the inner block
    assert not path.exists() and not path.parent.exists()  # made by the lock, left empty: removed
    run = tmp_path / "other"
    with hold_lock(run):  # another process, through artifacts.run_lock
        info = lockfile.holder(run / artifacts.LOCK)
        assert info is not None and info["pid"] != os.getpid()
        with (
            pytest.raises(RunLockedError, match=f"PID {info['pid']} .*mathreport train"),
            lockfile.hold(run / artifacts.LOCK),
        ):
            pass


def test_a_holder_is_described_by_pid_command_and_start_and_its_host_only_when_another():
    here = {"pid": 7, "host": platform.node(), "command": "mathreport bench", "started": "2024"}
    assert lockfile.describe(here) == "PID 7 (mathreport bench, started 2024)"
    assert lockfile.describe({**here, "host": "gpu-box"}).startswith("PID 7 on gpu-box (")
    assert "a moment ago" in lockfile.describe({})
