"""Writing so that a reader never sees half a file or folder (`atomic_path`, `build_atomically`), SHA-256 of
files, and the cache folder. Everything the package writes goes through here."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mathreport.errors import ArtifactError, WriteError


def cache_dir() -> Path:
    """Where the `tiny-*` presets are built: $MATHREPORT_CACHE, else ~/.cache/mathreport."""
    return Path(os.environ.get("MATHREPORT_CACHE") or Path.home() / ".cache" / "mathreport")


def umask_mode() -> int:
    """The mode a plainly created file gets (0666 less the umask): mkstemp's files are private (0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# What an OSError says when the data cannot be stored, whichever call met it: inside `atomic_path` the caller's own code
# (savefig, papermill, torch.save) writes the temporary file, and only these errors are surely about that file.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _nearest_existing(path: Path) -> Path:
    # `path`, or the nearest of its parents that exists.
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int | None:
    """The bytes free for this user on the file system that holds `path` (or would: its nearest existing folder)."""
    try:
        return shutil.disk_usage(_nearest_existing(path)).free
    except OSError:
        return None


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def write_error(
    path: Path, exc: OSError, needed: int | None = None, fix: str | None = None
) -> WriteError:
    """The one-line WriteError for `exc`, met while writing `path`: the file, why, the free space on its file
    system, the bytes needed (when known) and what to do.

    fix: what to do, instead of the advice that goes with the error number.
    """
    path = Path(path)
    free = free_bytes(path)
    room = "" if free is None else f"; {_size(free)} free on its file system"
    if needed is not None:
        room += f", {_size(needed)} needed"
    if fix is None:
        folder = _nearest_existing(path.parent)
        if exc.errno in (errno.ENOSPC, errno.EFBIG):
            fix = "free some space there (or write elsewhere) and run the command again"
        elif exc.errno == errno.EDQUOT:
            fix = "your disk quota there is used up: free some of it (or write elsewhere) and run the command again"
        elif exc.errno == errno.EROFS:
            fix = "the file system is read-only: write elsewhere"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            fix = f"check the permissions of {folder} (ls -ld {folder}) or write elsewhere"
        elif folder.exists() and not folder.is_dir():
            fix = f"{folder} is a file, not a folder: write elsewhere"
        else:
            fix = f"check {folder} and run the command again"
    return WriteError(
        f"cannot write {path}: {exc.strerror or exc}{room}; {fix}",
        path=path,
        fix=fix,
        free=free,
        needed=needed,
    )


@contextlib.contextmanager
def atomic_path(
    path: Path, *, suffix: str = ".tmp", failed: Path | None = None, size: int | None = None
):
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed.

    suffix: the temporary file's ending (papermill wants `.ipynb`); failed: where to keep what a failed write left
    (an executed notebook's traceback) instead of removing it; size: the bytes to be written, when known (named
    when they do not fit). A full disk, a quota, a read-only or forbidden folder is a `WriteError` naming `path`;
    `path` itself is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc, size) from exc
    try:
        os.chmod(tmp, umask_mode())
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, exc, size) from exc
    try:
        yield Path(tmp)
    except BaseException as exc:
        if failed is not None and Path(tmp).exists():
            os.replace(tmp, failed)
        else:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            raise write_error(path, exc, size) from exc
        raise
    try:
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, exc, size) from exc


@contextlib.contextmanager
def writing(path: Path):
    """For a write that cannot go through `atomic_path` (joblib.dump, save_pretrained into a run's `model/`): a full
    disk, a quota, a read-only or forbidden folder met inside is a `WriteError` naming the file (the OSError's own,
    else `path`); other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRNOS | {errno.EACCES, errno.EPERM}:
            raise
        raise write_error(Path(exc.filename) if exc.filename else Path(path), exc) from exc


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    data = text.encode("utf-8")
    with atomic_path(path, size=len(data)) as tmp:
        _write_bytes(tmp, data)
    return Path(path)


def write_texts(files: Mapping[Path, str]) -> None:
    """Write several UTF-8 text files atomically together: a failure on any of them replaces none."""
    encoded = {path: text.encode("utf-8") for path, text in files.items()}
    with contextlib.ExitStack() as stack:
        temps = {
            path: stack.enter_context(atomic_path(path, size=len(data)))
            for path, data in encoded.items()
        }
        for path, tmp in temps.items():
            _write_bytes(tmp, encoded[path])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ArtifactError(
            f"refusing to write a non-finite number ({value}) to JSON; report it as null"
        )
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> Path:
    """Write a JSON file atomically (UTF-8, no NaN)."""
    text = json.dumps(_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text(path, text)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a CSV file atomically."""
    return write_text(path, frame.to_csv(index=False))


def sha256_bytes(data: bytes) -> str:
    """SHA-256 of bytes already in memory (hex), e.g. of a model file exactly as it is loaded."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (hex), read in blocks: which data a run saw, which file a run wrote."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_atomically(target: Path, build) -> Path:
    """`build(scratch)` makes a folder inside a scratch folder beside `target`, then renamed to `target`.

    A failed build leaves nothing behind; when another process renamed its copy into place first, that one is used.
    A full disk, a read-only or forbidden cache is a `WriteError` naming `target`.
    """
    target = Path(target)
    fix = None
    if cache_dir().resolve() in target.resolve().parents:
        fix = f"set MATHREPORT_CACHE to a writable folder with room (it is now {cache_dir()})"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    except OSError as exc:  # read-only, a regular file where a folder should be, no space
        raise write_error(target, exc, fix=fix) from exc
    try:
        folder = build(tmp)
        try:
            os.replace(folder, target)
        except OSError as exc:
            if not (target / "config.json").is_file():
                raise write_error(target, exc, fix=fix) from exc
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        raise write_error(target, exc, fix=fix) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
