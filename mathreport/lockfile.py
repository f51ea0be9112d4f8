"""A one-writer lock file: an exclusive flock on a file that records its holder (PID, host,
command).

A second process fails at once with RunLockedError naming the holder; the same process re-enters;
the lock of a killed process (the kernel dropped its flock, its file stayed) is taken over with a
warning. `artifacts.run_lock` is this lock on a run folder's lock file, whose name artifacts owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from mathreport.errors import ArtifactError, RunLockedError

# Locks this process holds: resolved directory of the lock file -> [open file descriptor, depth].
_HELD: dict[str, list[int]] = {}


def describe(info: dict) -> str:
    """A holder as messages name it: "PID 123 on host (command, started ...)"."""
    if not info:
        return "another process (it took the lock a moment ago)"
    host = f" on {info['host']}" if info.get("host") and info.get("host") != platform.node() else ""
    return (
        f"PID {info.get('pid', '?')}{host} ({info.get('command') or 'mathreport'}, "
        f"started {info.get('started', '?')})"
    )


def _read_holder(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_held(path: Path) -> bool:
    """Whether a process holds the lock file's flock now: a non-blocking shared lock is refused
    exactly while a writer holds its exclusive one, and granted when the holder died (the kernel
    drops a dead process's flock)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without flock: nothing can hold it
        return False
    finally:
        os.close(fd)  # closing the descriptor releases the shared lock, if it was granted
    return False


def holder(path: Path) -> dict | None:
    """Who holds the lock file at `path` ({"pid", "host", "command", "started"}), or None: nobody,
    or this process. Only probes the lock, so a reader never makes a writer fail."""
    path = Path(path)
    if os.path.realpath(path.parent) in _HELD or not path.is_file() or not _is_held(path):
        return None
    return _read_holder(path)


@contextlib.contextmanager
def hold(path: Path, command: str | None = None):
    """Hold the lock file at `path` while the block runs; its directory is created if needed and
    removed on exit if it stayed empty. command: what the holder does (default: the program and
    its subcommand)."""
    import fcntl

    path = Path(path)
    folder = path.parent
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    created = not folder.exists()
    for _ in range(100):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # not a fallback: a holder releasing it removed the folder
            continue
        except PermissionError:
            raise ArtifactError(f"{folder}: cannot write into it (permission denied)") from None
        # Refused for a moment, the lock may be a reader's probe (`holder`) rather than a writer's;
        # and a writer records its PID just after taking it, so waiting a moment also lets the
        # message name it.
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited, info = time.monotonic() - started, _read_holder(path)
                if waited >= 1.0 or (info and waited >= 0.05):
                    os.close(fd)
                    raise RunLockedError(
                        f"{folder} is being written by {describe(info)}; wait for it to finish, "
                        "or write into another directory (--output_dir / --run_dir)"
                    ) from None
                time.sleep(0.01)
        # The file may have been unlinked by a holder releasing it between our open and flock:
        # then we locked a file nobody else will see, so start again on the one at `path`.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:  # not a fallback: its holder unlinked it; take it anew
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise RunLockedError(
            f"{folder}: could not take the lock {path} (it kept changing under this process)"
        )
    try:
        stale = _read_holder(path)
        if stale:  # released locks leave no file, so its holder died while holding it
            print(
                f"warning: {folder}: taking over the lock of {describe(stale)}, which is no "
                "longer running",
                file=sys.stderr,
            )
        info = {
            "pid": os.getpid(),
            "host": platform.node(),
            "command": command or " ".join(sys.argv[:2]),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        _HELD[key] = [fd, 1]
        yield
    finally:
        _HELD.pop(key, None)
        # Unlinked while still held: a process that opened the old file finds it unlinked and
        # retries.
        with contextlib.suppress(OSError):
            os.unlink(path)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a run that wrote nothing leaves nothing
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
