"""run.json as a typed record: `RunRecord`, read (`read`) and written (`write`) only here.

One record per run directory, of every kind of run (a trained transformer, tfidf, an ensemble). A file written by
an older version goes through `migrate` on reading; keys this version does not know are kept in `extra` and
written back as they were, so reading and writing a record never loses anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mathreport import __version__
from mathreport.errors import ArtifactError
from mathreport.files import write_json
from mathreport.presets import Kind
from mathreport.presets import kind as kind_traits

FILE = "run.json"
VERSION = 2


@dataclass
class DataFile:
    """One split a run read: its path as given, SHA-256 and row count."""

    path: str = ""
    sha256: str | None = None
    rows: int | None = None


@dataclass
class RunRecord:
    """Everything a run records about itself. A field a kind of run does not have stays None (or empty)."""

    model: str = ""
    kind: str = ""  # "transformer", "tfidf" or "ensemble"
    status: str | None = (
        None  # "running", "complete", "failed", "interrupted"; None in folders made elsewhere
    )
    description: str = ""
    display_name: str | None = None  # the name a report shows (default: the folder's)
    synthetic: bool = False  # a hand-written fixture, not a training run
    hf_id: str | None = None
    command: str | None = None  # the command that makes the run again
    argv: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # every training option as given
    hyperparameters: dict[str, Any] = field(
        default_factory=dict
    )  # the options that change the model, resolved
    data: dict[str, DataFile] = field(default_factory=dict)  # "train", "val", "test"
    oversampling: dict | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    start_time: str | None = None
    end_time: str | None = None
    error: str | None = None  # why a failed or interrupted run stopped
    resumed_after_training: str | None = None
    # A trained model:
    weights: str | None = None  # the base weights' folder or hub id
    device: str | None = None
    load_in_4bit: bool = False
    quantization: dict | None = None
    dtype: str | None = None
    train_autocast: str | None = None
    # Mixed precision of the training ({"dtype": "bfloat16" | "float16" | None, "reason": why}), the processes
    # that trained it (torchrun / accelerate launch) and the batch one optimizer step saw across all of them.
    precision: dict | None = None
    world_size: int | None = None
    global_batch_size: int | None = None
    lora: dict | None = None
    partial: dict | None = None
    training: dict | None = None  # train_seconds, samples/s, loss, parameters, FLOP
    inference: dict | None = None  # the default backend and what chose it (train, export-onnx)
    # The backend that wrote preds_test.csv and preds_val.csv (torch-topk, torch-nf4); None: float32 torch, as
    # every run before top-k predictions did.
    predictions_backend: str | None = None
    post_training_seconds: dict | None = None
    outputs: dict[str, dict] = field(
        default_factory=dict
    )  # {file name: {"sha256", "bytes"}} of what the run wrote
    # An ensemble:
    method: str | None = None
    method_description: str | None = None
    members: list[dict] = field(default_factory=list)
    member_weights: dict[str, float] = field(default_factory=dict)
    validation: dict | None = None
    vs_best_member: dict | None = None
    latency_note: str | None = None
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # keys this version does not know, kept as they were
    version: int = VERSION

    def split(self, name: str) -> DataFile:
        """The record of split `name` ("train", "val", "test"), empty when the run did not record it."""
        return self.data.get(name) or DataFile()

    @property
    def trained(self) -> bool:
        """Whether the training finished (its statistics are recorded), whatever came after."""
        return isinstance(self.training, dict)

    @property
    def train_seconds(self) -> float | None:
        return (self.training or {}).get("train_seconds")

    @property
    def traits(self) -> Kind:
        """What this kind of run can do (`presets.KINDS`)."""
        return kind_traits(self.kind)

    def stamp(self, status: str) -> None:
        """Set the status, and the end time when the run stopped."""
        self.status = status
        if status != "running":
            self.end_time = now()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to run.json (None and empty fields left out; unknown keys written back)."""
        out: dict[str, Any] = {"version": self.version}
        for f in fields(self):
            if f.name in ("extra", "version"):
                continue
            value = getattr(self, f.name)
            if f.name == "data":
                value = {
                    k: {key: v for key, v in asdict(d).items() if v is not None}
                    for k, d in value.items()
                }
            if (
                value is None
                or value == {}
                or value == []
                or (f.name in _FALSE_IS_ABSENT and value is False)
            ):
                continue
            out[f.name] = value
        if self.traits.neural:
            for (
                name
            ) in _ALWAYS_WRITTEN:  # null is an answer here ("not quantised"), not a missing value
                out.setdefault(name, getattr(self, name))
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: Path | str = FILE) -> RunRecord:
        """A record from a run.json object of this version or an older one (through `migrate`).

        A record of a newer version is refused (ArtifactError): what its fields mean may have changed.
        """
        check_version(raw.get("version", 1), source)
        raw = migrate(dict(raw))
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in known}
        data = values.get("data") or {}
        if not isinstance(data, dict):
            raise ArtifactError(
                f"{source}: 'data' must be an object of splits, found {type(data).__name__}",
                path=source,
            )
        values["data"] = {
            name: DataFile(
                **{k: v for k, v in (info or {}).items() if k in ("path", "sha256", "rows")}
            )
            for name, info in data.items()
            if isinstance(info, dict)
        }
        return cls(**values, extra={k: v for k, v in raw.items() if k not in known})


_FALSE_IS_ABSENT = ("synthetic",)
_ALWAYS_WRITTEN = ("load_in_4bit", "quantization", "train_autocast", "partial")


def check_version(version: Any, source: Path | str = FILE) -> None:
    """ArtifactError unless `version` (run.json's "version") is one this code reads: 1 up to VERSION."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ArtifactError(
            f"{source}: 'version' must be a whole number >= 1, found {version!r}", path=source
        )
    if version > VERSION:
        raise ArtifactError(
            f"{source}: written by a newer mathreport (run.json version {version}); this mathreport "
            f"{__version__} reads run.json up to version {VERSION}: upgrade it (pip install -U mathreport, or git "
            "pull in a checkout) to read this run",
            path=source,
            fix="pip install -U mathreport",
        )


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """A run.json object of an older version, as this version writes it.

    Version 1 (no "version" key) wrote an ensemble's member weights under "weights", which a trained run uses for
    its base weights' folder: a "weights" object is always member weights.
    """
    raw.pop("version", None)
    if isinstance(raw.get("weights"), dict):
        raw["member_weights"] = raw.pop("weights")
    return raw


def now() -> str:
    """The current UTC time as run.json records it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def path(run_dir: Path) -> Path:
    return Path(run_dir) / FILE


def exists(run_dir: Path) -> bool:
    return path(run_dir).is_file()


def read(run_dir: Path) -> RunRecord:
    """The record of a run directory; a missing or unreadable run.json is an ArtifactError naming it."""
    file = path(run_dir)
    if not file.is_file():
        raise ArtifactError(
            f"{file} is missing: the folder holds no run made by mathreport (train, ensemble)",
            path=file,
        )
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{file} is not valid JSON: {exc}", path=file) from exc
    if not isinstance(raw, dict):
        raise ArtifactError(
            f"{file}: expected a JSON object at the top, found {type(raw).__name__}", path=file
        )
    try:
        return RunRecord.from_dict(raw, file)
    except TypeError as exc:
        raise ArtifactError(f"{file}: not a run record ({exc})", path=file) from None


def read_if_present(run_dir: Path) -> RunRecord | None:
    """The record, or None for a folder without run.json (results made elsewhere)."""
    return read(run_dir) if exists(run_dir) else None


def write(run_dir: Path, record: RunRecord) -> Path:
    """Write run.json atomically."""
    return write_json(path(run_dir), record.to_dict())
