"""Every error a user can act on, in one family: the command line catches `MathreportError` and prints its message
(which names the file or option at fault and the fix) as one line, exit status 2.

Programming errors (a wrong argument to a pure function, e.g. `metrics`) stay plain ValueError/TypeError.
"""

from __future__ import annotations

from pathlib import Path


class MathreportError(Exception):
    """Base class. `path`: the file or folder at fault, when there is one; `fix`: the command that mends it."""

    def __init__(
        self, message: str = "", *, path: str | Path | None = None, fix: str | None = None
    ):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.fix = fix


class CommandError(MathreportError):
    """A command line that cannot be carried out as given (flags that contradict each other, a missing input)."""


class ConfigError(MathreportError):
    """A training option (flag, or a field of TrainConfig) that is invalid for this model, data or machine."""


class DataError(MathreportError):
    """An input CSV that cannot be used; the message names the file, row and column."""


class LeakageError(DataError):
    """The same question (after normalisation) in two splits."""


class ArtifactError(MathreportError):
    """A run file is missing or does not match the schema."""


class RunLockedError(ArtifactError):
    """Another live process is writing into the run directory."""


class RunExistsError(ArtifactError):
    """The output directory already holds results that only --force may replace (or --resume continue)."""


class EnsembleError(ArtifactError):
    """Members that cannot be pooled: missing files, or validation/test rows that differ."""


class MissingResultsError(ArtifactError):
    """A report asked for a model whose results are missing or unreadable."""


class ModelUnavailableError(MathreportError):
    """The weights of a model cannot be had here; the message says how to get results for it."""


class NeedsCudaError(ModelUnavailableError):
    """What was asked for (the GPU benchmark) needs a CUDA device this machine lacks."""


class FourBitUnavailableError(ModelUnavailableError):
    """4-bit loading was asked for, but the installed bitsandbytes cannot run it on this device."""


class WeightSourceError(ModelUnavailableError):
    """Parts that are missing or do not add up to the recorded file; the message says which and what to do."""


class OnnxUnavailable(MathreportError):
    """An ONNX export or session that cannot be made here (no onnxruntime, a 4-bit run, an ensemble)."""


class EmptyQuestionError(MathreportError):
    """A question to classify that is blank."""


class SearchError(MathreportError):
    """A learning-rate search that cannot run as asked (no rates, a model without a learning rate)."""


class UnknownLanguageError(MathreportError):
    """A language with no table in the catalog."""


class MissingMessageError(MathreportError):
    """A key that a language's table lacks, or a placeholder given no value."""


class WriteError(MathreportError):
    """A file or folder that could not be written (a full disk, a quota, a read-only or forbidden folder).

    `path`: what was being written; `free`: the bytes free on its file system (None where unknown); `needed`: the
    bytes the write needed, where known.
    """

    def __init__(
        self,
        message: str = "",
        *,
        path: str | Path | None = None,
        fix: str | None = None,
        free: int | None = None,
        needed: int | None = None,
    ):
        super().__init__(message, path=path, fix=fix)
        self.free = free
        self.needed = needed


class MemoryPlanError(MathreportError):
    """A training run whose estimated GPU memory exceeds what the device has free; the message names settings that
    fit (mathreport.memplan)."""
