"""Writing so that a reader never sees half a file or folder (`atomic_path`, `build_atomically`), SHA-256 of
files, and the cache folder. Everything the package writes goes through here."""

from __future__ import annotations

import contextlib
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

from mathreport.errors import ArtifactError, WeightSourceError


def cache_dir() -> Path:
    """Where the `tiny-*` presets are built: $MATHREPORT_CACHE, else ~/.cache/mathreport."""
    return Path(os.environ.get("MATHREPORT_CACHE") or Path.home() / ".cache" / "mathreport")


def umask_mode() -> int:
    """The mode a plainly created file gets (0666 less the umask): mkstemp's files are private (0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path, *, suffix: str = ".tmp", failed: Path | None = None):
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed.

    suffix: the temporary file's ending (papermill wants `.ipynb`); failed: where to keep what a failed write left
    (an executed notebook's traceback) instead of removing it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, umask_mode())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if failed is not None and Path(tmp).exists():
            os.replace(tmp, failed)
        else:
            Path(tmp).unlink(missing_ok=True)
        raise


def _write_utf8(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as tmp:
        _write_utf8(tmp, text)
    return Path(path)


def write_texts(files: Mapping[Path, str]) -> None:
    """Write several UTF-8 text files atomically together: a failure on any of them replaces none."""
    with contextlib.ExitStack() as stack:
        temps = {path: stack.enter_context(atomic_path(path)) for path in files}
        for path, tmp in temps.items():
            _write_utf8(tmp, files[path])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ArtifactError(f"refusing to write a non-finite number ({value}) to JSON; report it as null")
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
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    except OSError as exc:  # read-only, a regular file where a folder should be, no space
        raise WeightSourceError(
            f"cannot write into the model cache {target.parent} ({exc.strerror or exc}); set MATHREPORT_CACHE "
            f"to a writable folder (it is now {cache_dir()})"
        ) from None
    try:
        folder = build(tmp)
        try:
            os.replace(folder, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
