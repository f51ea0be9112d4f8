"""Inference only: class probabilities for texts from a saved run, for every backend (scikit-learn, torch, ONNX).

`load_classifier` reads a run's model and picks the engine and weights (`resolve_backend`); every classifier
answers `predict_proba(texts) -> (n, 8)`. Timing them is `bench`'s work.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from mathreport import artifacts, onnx_backend
from mathreport.errors import ConfigError, EmptyQuestionError
from mathreport.labels import NUM_CLASSES
from mathreport.onnx_backend import TORCH_FLOAT32, TORCH_NF4, Backend

log = logging.getLogger("mathreport")


class Classifier(Protocol):
    """Anything that maps texts to an (n, 8) array of class probabilities."""

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


def check_questions(texts: list[str]) -> None:
    """Refuse questions a model must not answer (EmptyQuestionError naming which): empty ones, ones of only white
    space or zero-width characters (a model would still answer a topic), and ones holding bytes that are not UTF-8
    (a command-line argument decoded with surrogateescape), which no output could write back."""
    from mathreport import data

    for i, text in enumerate(texts, 1):
        bad = next((ch for ch in str(text) if 0xD800 <= ord(ch) <= 0xDFFF), None)
        if bad is not None:
            byte = f" (byte 0x{ord(bad) - 0xDC00:02x})" if 0xDC80 <= ord(bad) <= 0xDCFF else ""
            raise EmptyQuestionError(f"question {i} of {len(texts)} is not UTF-8 text{byte}; give it in UTF-8")
    empty = [i for i, text in enumerate(texts, 1) if data.blank_text(text)]
    if empty:
        which = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise EmptyQuestionError(f"question {which} of {len(texts)} is empty (or only white space or invisible "
                                 "characters); give the text of a math question")


@dataclass
class SklearnClassifier:
    """A fitted scikit-learn pipeline (the `tfidf` baseline)."""

    pipeline: object
    # scikit-learn re-checks every intermediate array for NaN/inf and re-validates parameters on each call;
    # the TF-IDF features it checks are its own output, and at batch size 1 the checks cost ~0.25 ms of ~1.5.
    skip_checks: bool = True
    backend: ClassVar[str] = "sklearn"
    threads: ClassVar[int] = 1  # scikit-learn's TF-IDF + logistic regression predicts on one thread

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        import sklearn

        with sklearn.config_context(assume_finite=self.skip_checks, skip_parameter_validation=self.skip_checks):
            probs = np.asarray(self.pipeline.predict_proba(list(texts)), dtype=float)
        if probs.shape[1] < NUM_CLASSES:  # trained with --allow_missing_classes: 0 for the classes it never saw
            full = np.zeros((len(probs), NUM_CLASSES))
            full[:, np.asarray(self.pipeline.classes_, dtype=int)] = probs
            return full
        return probs


@dataclass
class TransformerClassifier:
    """A sequence-classification model and its tokenizer, on one device."""

    model: object
    tokenizer: object
    max_length: int
    device: str = "cpu"
    autocast_dtype: object = None  # e.g. torch.bfloat16 for CPU autocast
    # Both on by default; the switches exist so that benchmarks/speed.py can measure what each one buys.
    sort_by_length: bool = True
    padding: str = "longest"  # or "max_length"
    backend: ClassVar[str] = "torch"

    @property
    def threads(self) -> int:
        import torch

        return torch.get_num_threads()

    def predict_proba(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        out = np.empty((len(texts), self.model.config.num_labels), dtype=float)
        self.model.eval()
        batches = length_sorted_batches(texts, batch_size, self.sort_by_length)
        for idx in tqdm(batches, desc="predict", disable=not progress, unit="batch"):
            enc = self.tokenizer(
                [texts[i] for i in idx], padding=self.padding, truncation=True, max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode(), _autocast(self.device, self.autocast_dtype):
                logits = self.model(**enc).logits
            out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out


def length_sorted_batches(texts: list[str], batch_size: int, sort: bool = True) -> list[np.ndarray]:
    """Indices of `texts` in batches of `batch_size`, sorted by length so each batch pads to a similar length.

    The caller writes each batch's answers back at its indices, which restores the input order.
    """
    order = np.argsort([len(t) for t in texts], kind="stable") if sort else np.arange(len(texts))
    return [order[start : start + batch_size] for start in range(0, len(texts), batch_size)]


def _autocast(device: str, dtype):
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


INFERENCE_DTYPES = ("float32", "bfloat16", "int8")
BACKEND_CHOICES = ("auto", "torch", "onnx")
DTYPES_OF = {"torch": ("float32", "bfloat16"), "onnx": tuple(onnx_backend.ONNX_FILES)}


def trained_in_4bit(manifest: dict) -> bool:
    """Whether run.json says the run's base model was loaded in 4-bit (NF4) for training."""
    return bool(manifest.get("load_in_4bit"))


def default_backend(manifest: dict) -> Backend:
    """The backend run.json names as the run's default (chosen when it was exported), else float32 torch.

    A 4-bit run's is always torch-nf4: its model is the 4-bit base with the adapter, as it was trained.
    """
    if trained_in_4bit(manifest):
        return TORCH_NF4
    name = (manifest.get(onnx_backend.INFERENCE) or {}).get("default")
    return onnx_backend.backend_named(name) if name else TORCH_FLOAT32


def resolve_backend(manifest: dict, backend: str = "auto", dtype: str | None = None) -> Backend:
    """Which engine and weights to run: `auto` is the run's default unless `dtype` asks for another precision.

    With `auto`, a dtype the default does not have goes to the engine that has it (int8: onnx; bfloat16: torch;
    float32: torch, the reference). A 4-bit run runs as torch-nf4 only; `auto` with float32 (the reference that
    callers such as ensembles ask for) gives it too, with a warning; any other choice is refused.
    """
    if dtype is not None and dtype not in (*INFERENCE_DTYPES, TORCH_NF4.dtype):
        raise ConfigError(f"--dtype {dtype}: dtype must be one of {INFERENCE_DTYPES}, found {dtype!r}")
    if backend not in BACKEND_CHOICES:
        raise ConfigError(f"--backend {backend}: backend must be one of {BACKEND_CHOICES}, found {backend!r}")
    if trained_in_4bit(manifest):
        return _resolve_4bit(backend, dtype)
    if dtype == TORCH_NF4.dtype:
        raise ConfigError("--dtype nf4: nf4 is the precision of runs trained with --load_in_4bit; this run was not")
    if backend == "auto":
        recorded = default_backend(manifest)
        if dtype is None or dtype == recorded.dtype:
            return recorded
        backend = "onnx" if dtype == "int8" else "torch"
    dtype = dtype or "float32"
    if dtype not in DTYPES_OF[backend]:
        raise ConfigError(f"--backend {backend} --dtype {dtype}: the {backend} backend runs "
                          f"{' or '.join(DTYPES_OF[backend])} weights, not {dtype}"
                         + ("; int8 runs on ONNX Runtime (backend onnx)" if dtype == "int8" else ""))
    return Backend(backend, dtype)


def _resolve_4bit(backend: str, dtype: str | None) -> Backend:
    if backend in ("auto", "torch") and dtype in (None, TORCH_NF4.dtype):
        return TORCH_NF4
    if backend == "auto" and dtype == TORCH_FLOAT32.dtype:
        log.warning("the run was trained in 4-bit: it has no float32 weights and runs as %s", TORCH_NF4.name)
        return TORCH_NF4
    raise ConfigError(f"--backend {backend} --dtype {dtype}: the run was trained in 4-bit and runs only as "
                      f"{TORCH_NF4.name} (backend torch, its NF4 weights), not as {backend} {dtype or ''}".rstrip()
                     + ("; " + onnx_backend.FOUR_BIT_NO_ONNX if backend == "onnx" or dtype == "int8" else ""))


def load_classifier(
    run_dir: Path, device: str | None = None, merge_lora: bool = True, dtype: str | None = None,
    backend: str = "auto", threads: int | None = None,
) -> Classifier:
    """Load the saved model of a run (scikit-learn pipeline, ONNX model or LoRA adapter) for inference.

    backend: `auto` (the run's default, recorded in run.json when it was exported to ONNX; float32 torch for a
    run without one, or on CUDA), `torch` (float32 or bfloat16 weights) or `onnx` (ONNX Runtime, float32 or
    int8, CPU). An ONNX model that is missing or is not the file that was verified is never used: a one-line
    warning, then float32 torch. threads: ONNX Runtime's intra-op threads (torch's are set by the caller).
    What each costs and buys is measured in docs/PERFORMANCE.md.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise artifacts.ArtifactError(
            f"run directory {run_dir} does not exist. Make it with: {artifacts.make_command(run_dir)}"
        )
    manifest = artifacts.read_manifest(run_dir)
    model_dir = run_dir / "model"
    if manifest.get("kind") == "tfidf":
        import joblib

        path = model_dir / "pipeline.joblib"
        if not path.is_file():
            raise artifacts.ArtifactError(f"{path} is missing. Make it with: {artifacts.make_command(run_dir)}")
        return SklearnClassifier(joblib.load(path))

    from mathreport import models

    choice = resolve_backend(manifest, backend, dtype)
    if choice.engine == "onnx" and backend == "auto" and models.pick_device(device).startswith("cuda"):
        choice = TORCH_FLOAT32  # the default was chosen among CPU backends; on a GPU torch runs it
    if choice.engine == "onnx":
        try:
            return onnx_backend.load_onnx(run_dir, choice.dtype, manifest, threads=threads)
        except onnx_backend.OnnxUnavailable as exc:
            log.warning("%s; using torch float32 instead", exc)
            choice = TORCH_FLOAT32
    return load_torch(run_dir, manifest, device, merge_lora, choice.dtype)


def load_torch(run_dir: Path, manifest: dict, device: str | None, merge_lora: bool, dtype: str):
    """The run's LoRA adapter on its base model: merged, with float32 or bfloat16 weights; or, for a run trained
    in 4-bit (dtype "nf4"), on its base loaded in 4-bit again, wherever bitsandbytes runs it."""
    import torch
    from peft import PeftModel

    from mathreport import models

    model_dir = run_dir / "model"
    if not (model_dir / "adapter_config.json").is_file():
        raise artifacts.ArtifactError(
            f"{model_dir}/adapter_config.json is missing. Make it with: {artifacts.make_command(run_dir)}"
        )
    load_in_4bit = trained_in_4bit(manifest)
    if load_in_4bit != (dtype == TORCH_NF4.dtype):
        raise ConfigError(f"{run_dir}: a run {'trained' if load_in_4bit else 'not trained'} in 4-bit cannot run "
                         f"as torch {dtype}; {resolve_backend(manifest).name} is its backend")
    device = models.pick_device(device)
    weights = manifest["weights"]
    tokenizer = models.load_tokenizer(str(model_dir))
    with _quiet_loading():
        # A run trained in 4-bit is reloaded in 4-bit, on every device, so its predictions match the ones it wrote;
        # where bitsandbytes cannot run 4-bit, loading stops with the reason (models.check_4bit_possible).
        base = models.load_base_model(weights, tokenizer, device=device, load_in_4bit=load_in_4bit)
        if load_in_4bit:
            base = models.prepare_4bit_for_inference(base)
        model = PeftModel.from_pretrained(base, str(model_dir))
    if merge_lora and not load_in_4bit:
        # Folding the low-rank update into the weights removes the adapter's extra matmuls at inference
        # (a 4-bit base cannot take the merge without dequantising, so it keeps the adapter, as in train).
        model = model.merge_and_unload()
    if dtype == "bfloat16":
        # Cast once here rather than autocast per call: autocast re-casts every weight on each forward,
        # which at batch size 1 costs more than the bf16 matmuls save.
        model = model.to(torch.bfloat16)
    model.eval()
    return TransformerClassifier(model, tokenizer, int(manifest["hyperparameters"]["max_length"]), device)


@contextlib.contextmanager
def _quiet_loading():
    """Silence the load report that calls the classification head missing: the adapter loaded next holds it."""
    import warnings

    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
