"""Batched inference returning class probabilities, loading a saved run, and the latency benchmark."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from mathreport import artifacts, onnx_backend
from mathreport.labels import NUM_CLASSES
from mathreport.onnx_backend import TORCH_FLOAT32, Backend

log = logging.getLogger("mathreport")


class Classifier(Protocol):
    """Anything that maps texts to an (n, 8) array of class probabilities."""

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


def check_questions(texts: list[str]) -> None:
    """Refuse empty or whitespace-only questions (ValueError naming which): a model would still answer a topic."""
    empty = [i for i, text in enumerate(texts, 1) if not str(text).strip()]
    if empty:
        which = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise EmptyQuestionError(f"question {which} of {len(texts)} is empty; give the text of a math question")


class EmptyQuestionError(ValueError):
    """A question to classify has no text."""


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
    # Both on by default; the switches exist so that mathreport.speed can measure what each one buys.
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
_DTYPES_OF = {"torch": ("float32", "bfloat16"), "onnx": tuple(onnx_backend.ONNX_FILES)}


def default_backend(manifest: dict) -> Backend:
    """The backend run.json names as the run's default (chosen when it was exported), else float32 torch."""
    name = (manifest.get(onnx_backend.INFERENCE) or {}).get("default")
    return onnx_backend.backend_named(name) if name else TORCH_FLOAT32


def resolve_backend(manifest: dict, backend: str = "auto", dtype: str | None = None) -> Backend:
    """Which engine and weights to run: `auto` is the run's default unless `dtype` asks for another precision.

    With `auto`, a dtype the default does not have goes to the engine that has it (int8: onnx; bfloat16: torch;
    float32: torch, the reference).
    """
    if dtype is not None and dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype must be one of {INFERENCE_DTYPES}, found {dtype!r}")
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, found {backend!r}")
    if backend == "auto":
        recorded = default_backend(manifest)
        if dtype is None or dtype == recorded.dtype:
            return recorded
        backend = "onnx" if dtype == "int8" else "torch"
    dtype = dtype or "float32"
    if dtype not in _DTYPES_OF[backend]:
        raise ValueError(f"the {backend} backend runs {' or '.join(_DTYPES_OF[backend])} weights, not {dtype}"
                         + ("; int8 runs on ONNX Runtime (backend onnx)" if dtype == "int8" else ""))
    return Backend(backend, dtype)


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
    return _load_torch(run_dir, manifest, device, merge_lora, choice.dtype)


def _load_torch(run_dir: Path, manifest: dict, device: str | None, merge_lora: bool, dtype: str):
    """The run's LoRA adapter on its base model, merged, with float32 or bfloat16 weights."""
    import torch
    from peft import PeftModel

    from mathreport import models

    model_dir = run_dir / "model"
    if not (model_dir / "adapter_config.json").is_file():
        raise artifacts.ArtifactError(
            f"{model_dir}/adapter_config.json is missing. Make it with: {artifacts.make_command(run_dir)}"
        )
    device = models.pick_device(device)
    weights = manifest["weights"]
    tokenizer = models.load_tokenizer(str(model_dir))
    with _quiet_loading():
        # A run trained in 4-bit is reloaded in 4-bit, so its predictions match the ones it wrote.
        load_in_4bit = bool(manifest.get("load_in_4bit")) and device.startswith("cuda")
        base = models.load_base_model(weights, tokenizer, device=device, load_in_4bit=load_in_4bit)
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


def test_questions(run_dir: Path) -> list[str]:
    """The run's test questions: the `text` column of preds_test.csv, else the test split named in run.json."""
    import pandas as pd

    run_dir = Path(run_dir)
    preds = run_dir / artifacts.PREDICTIONS
    if preds.is_file():
        frame = pd.read_csv(preds)
        if "text" in frame.columns and frame["text"].notna().any():
            return frame["text"].dropna().astype(str).tolist()
    manifest = artifacts.read_manifest(run_dir)
    test = (manifest.get("data") or {}).get("test") or {}
    if not test.get("path"):
        raise artifacts.ArtifactError(
            f"{run_dir}: neither {artifacts.PREDICTIONS} has a 'text' column nor {artifacts.MANIFEST} a test path; "
            "latency is measured on real test questions only"
        )
    from mathreport import data

    config = manifest.get("config") or {}
    frame = data.read_split(test["path"], text_col=config.get("text_col", "Question"),
                            label_col=config.get("label_col", "label"))
    return frame["Question"].tolist()


def hardware() -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu_count"] = os.cpu_count()
    info["cpu_bf16_flags"] = cpu_bf16_flags()
    return info


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of the CPU instructions that compute in bfloat16


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """Which of BF16_FLAGS the CPU reports (empty where /proc/cpuinfo is missing: not Linux, so not assumed)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [f for f in BF16_FLAGS if f in flags]
    return []


def cpu_has_fast_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool(cpu_bf16_flags(cpuinfo))


def time_batches(classifier: Classifier, batches: list[list[str]], batch_size: int) -> list[float]:
    """Seconds per item of each batch, one call per batch."""
    out = []
    for batch in batches:
        start = time.perf_counter()
        classifier.predict_proba(batch, batch_size=batch_size)
        out.append((time.perf_counter() - start) / len(batch))
    return out


def thread_candidates() -> tuple[int, ...]:
    """The torch thread counts worth measuring: one, and one per CPU core."""
    return tuple(sorted({1, os.cpu_count() or 1}))


def choose_threads(
    classifier: Classifier, batches: list[list[str]], batch_size: int, candidates: tuple[int, ...], rounds: int = 3
) -> tuple[int, dict[int, float]]:
    """The torch thread count with the lowest median per-item time on `batches`, and each one's median in ms.

    Candidates are interleaved round by round so that a burst of load from other processes hits all of them.
    """
    import torch

    times: dict[int, list[float]] = {n: [] for n in candidates}
    for _ in range(rounds):
        for n in candidates:
            torch.set_num_threads(n)
            times[n].extend(time_batches(classifier, batches, batch_size))
    medians = {n: float(np.median(t)) * 1000 for n, t in times.items()}
    return min(medians, key=medians.get), medians


def _busy_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU jiffies of the whole machine from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values[:8]) - idle, sum(values[:8])


class CpuLoad:
    """Measures how busy the machine's CPUs were, and how much of that was other processes, over a block."""

    def __enter__(self) -> CpuLoad:
        self._start = _busy_jiffies()
        self._own = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        end = _busy_jiffies()
        self.result: dict | None = None
        if self._start is None or end is None or end[1] == self._start[1]:
            return
        busy = (end[0] - self._start[0]) / (end[1] - self._start[1])
        ncpu = os.cpu_count() or 1
        own = (time.process_time() - self._own) / max(time.perf_counter() - self._wall, 1e-9) / ncpu
        # What other processes used is the machine's busy share minus this process's own CPU time.
        self.result = {"cpu_busy": round(busy, 3), "cpu_busy_other": round(max(busy - own, 0.0), 3)}


def _bench_batch_size(classifier: Classifier, texts: list[str], batch_size: int, warmup: int, repeats: int,
                      threads, uses_torch: bool) -> dict:
    """One entry of latency.json's `results`: every batch of `texts` at one batch size, timed `repeats` times."""
    import torch
    from tqdm.auto import tqdm

    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    measured = None
    if uses_torch and isinstance(threads, tuple) and len(threads) > 1:
        probe = batches[: max(1, 16 // batch_size)]
        chosen, measured = choose_threads(classifier, probe, batch_size, threads)
        torch.set_num_threads(chosen)
    elif uses_torch and threads is not None:
        torch.set_num_threads(threads[0] if isinstance(threads, tuple) else threads)
    for batch in batches[:warmup]:
        classifier.predict_proba(batch, batch_size=batch_size)
    per_item_ms: list[float] = []
    items = 0
    total_s = 0.0
    bar = tqdm(total=len(batches) * repeats, desc=f"latency bs={batch_size}", leave=False, unit="batch")
    with CpuLoad() as load, bar:
        for _ in range(repeats):
            for batch in batches:
                start = time.perf_counter()
                classifier.predict_proba(batch, batch_size=batch_size)
                elapsed = time.perf_counter() - start
                per_item_ms.extend([elapsed * 1000 / len(batch)] * len(batch))
                items += len(batch)
                total_s += elapsed
                bar.update(1)
    arr = np.asarray(per_item_ms)
    entry = {
        "batch_size": batch_size,
        "n_items": items,
        "n_batches": len(batches) * repeats,
        "p50_ms": float(np.percentile(arr, 50)),
        "p95_ms": float(np.percentile(arr, 95)),
        "p99_ms": float(np.percentile(arr, 99)),
        "mean_ms": float(arr.mean()),
        "items_per_s": float(items / total_s),
        # scikit-learn predicts on one thread, ONNX Runtime on its session's; torch's setting is theirs to ignore.
        "threads": torch.get_num_threads() if uses_torch else getattr(classifier, "threads", 1),
    }
    if measured is not None:
        entry["threads_p50_ms"] = {str(n): ms for n, ms in measured.items()}
    if load.result:
        entry.update(load.result)
    return entry


def benchmark_latency(
    classifier: Classifier,
    texts: list[str],
    *,
    batch_sizes: tuple[int, ...] = (1, 32),
    warmup: int = 3,
    max_items: int = 200,
    repeats: int = 1,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | tuple[int, ...] | None = None,
) -> dict:
    """Per-item latency percentiles and throughput over real questions, after warm-up.

    Each batch of `batch_size` consecutive test questions (real lengths) is timed; per-item latency is
    the batch time divided by its size. threads: a torch thread count, or several to measure on a few
    batches and take the fastest for each batch size (None: leave torch's setting).
    """
    import torch

    if not texts:
        raise ValueError("latency needs at least one test question; the test split is empty")
    texts = list(texts)[:max_items]
    uses_torch = isinstance(classifier, TransformerClassifier)
    original_threads = torch.get_num_threads()
    try:
        results = [_bench_batch_size(classifier, texts, batch_size, warmup, repeats, threads, uses_torch)
                   for batch_size in batch_sizes]
    finally:
        torch.set_num_threads(original_threads)  # the choice is for this benchmark, not for the caller
    hw = hardware()
    return {
        "device": device if device != "cpu" else f"cpu ({hw.get('cpu', hw['processor'])})",
        "backend": classifier.backend,
        "dtype": dtype,
        "threads": results[0]["threads"],
        "hardware": hw,
        "versions": _versions(),
        "warmup_batches": warmup,
        "repeats": repeats,
        "inputs": f"first {len(texts)} test questions, real lengths",
        "results": results,
    }


def _versions() -> dict:
    versions = {}
    for pkg in ("torch", "transformers", "peft", "scikit-learn", "onnxruntime"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions


def backends_to_bench(manifest: dict, backend: str = "all", dtype: str | None = None) -> list[Backend]:
    """The backends `mathreport bench` compares: all of them, one engine's, or the run's default (`auto`)."""
    if backend == "auto" or (backend in _DTYPES_OF and dtype is not None):
        return [resolve_backend(manifest, backend, dtype)]
    chosen = [b for b in onnx_backend.ALL_BACKENDS
              if backend in ("all", b.engine) and (dtype is None or b.dtype == dtype)]
    if not chosen:
        raise ValueError(f"no backend {backend!r} runs {dtype} weights; the backends are "
                         f"{', '.join(b.name for b in onnx_backend.ALL_BACKENDS)}")
    return chosen


def _interleaved_batch_size(classifiers: dict[str, Classifier], texts: list[str], batch_size: int, warmup: int,
                            repeats: int) -> dict[str, dict]:
    """latency.json `results` entries at one batch size for several classifiers, timed pass by pass in turn.

    Pass r of every classifier runs before pass r+1 of any (A B C A B C ...), so load from other processes hits
    them alike.
    """
    from tqdm.auto import tqdm

    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    for clf in classifiers.values():
        for batch in batches[:warmup]:
            clf.predict_proba(batch, batch_size=batch_size)
    per_item: dict[str, list[float]] = {name: [] for name in classifiers}
    total_s = dict.fromkeys(classifiers, 0.0)
    bar = tqdm(total=len(batches) * repeats * len(classifiers), desc=f"latency bs={batch_size}", leave=False,
               unit="batch")
    with CpuLoad() as load, bar:
        for _ in range(repeats):
            for name, clf in classifiers.items():
                for batch in batches:
                    start = time.perf_counter()
                    clf.predict_proba(batch, batch_size=batch_size)
                    elapsed = time.perf_counter() - start
                    per_item[name].extend([elapsed * 1000 / len(batch)] * len(batch))
                    total_s[name] += elapsed
                    bar.update(1)
    out = {}
    for name, clf in classifiers.items():
        arr = np.asarray(per_item[name])
        out[name] = {
            "batch_size": batch_size, "n_items": len(arr), "n_batches": len(batches) * repeats,
            "p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)), "mean_ms": float(arr.mean()),
            "items_per_s": float(len(arr) / total_s[name]), "threads": clf.threads,
            **(load.result or {}),
        }
    return out


def compare_backends(
    run_dir: Path,
    backends: list[Backend] | None = None,
    *,
    threads: int | None = None,
    batch_sizes: tuple[int, ...] = (1, 32),
    max_items: int = 200,
    repeats: int = 3,
    warmup: int = 3,
    device: str | None = None,
) -> dict:
    """Time several backends of one run in this process, interleaved, on its test questions; the latency.json dict.

    Each backend's test accuracy, and how its answers compare with the run's float32 predictions
    (preds_test.csv), is measured on the whole test split. The top-level `results` are those of the run's
    default backend (what the report shows) when it was measured; `backends` holds every one. A backend that
    cannot be loaded (no verified ONNX file) is listed under `skipped` with the reason, never replaced by another.
    threads: torch threads and ONNX Runtime intra-op threads alike (None: one per CPU core).
    """
    import torch

    from mathreport import models

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise artifacts.ArtifactError(
            f"run directory {run_dir} does not exist. Make it with: {artifacts.make_command(run_dir)}"
        )
    manifest = artifacts.read_manifest(run_dir)
    threads = threads or os.cpu_count() or 1
    if manifest.get("kind") == "tfidf":  # one backend: scikit-learn
        latency = benchmark_latency(load_classifier(run_dir), test_questions(run_dir), batch_sizes=batch_sizes,
                                    warmup=warmup, max_items=max_items, repeats=repeats, dtype="float64")
        latency["command"] = "bench"
        return latency
    backends = backends or list(onnx_backend.ALL_BACKENDS)
    classifiers: dict[str, Classifier] = {}
    skipped: dict[str, str] = {}
    for b in backends:
        if b.engine == "onnx":
            try:
                classifiers[b.name] = onnx_backend.load_onnx(run_dir, b.dtype, manifest, threads=threads)
            except onnx_backend.OnnxUnavailable as exc:
                skipped[b.name] = str(exc)
                log.warning("not measured: %s", exc)
        else:
            classifiers[b.name] = _load_torch(run_dir, manifest, device, True, b.dtype)
    if not classifiers:
        raise artifacts.ArtifactError(f"{run_dir}: none of the backends asked for can be loaded: {skipped}")
    frame = artifacts.read_predictions(run_dir)
    texts = test_questions(run_dir)
    verified = len(texts) == len(frame)
    original_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        entries = {name: {"backend": onnx_backend.backend_named(name).engine,
                          "dtype": onnx_backend.backend_named(name).dtype, "results": []}
                   for name in classifiers}
        if verified:
            reference = frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float)
            for name, clf in classifiers.items():
                entries[name].update(onnx_backend.agreement(clf.predict_proba(texts, batch_size=32),
                                                            frame["y_true"].to_numpy(), reference))
        timed = list(texts)[:max_items]
        for batch_size in batch_sizes:
            for name, entry in _interleaved_batch_size(classifiers, timed, batch_size, warmup, repeats).items():
                entries[name]["results"].append(entry)
    finally:
        torch.set_num_threads(original_threads)
    default = default_backend(manifest).name
    top = default if default in entries else next(iter(entries))
    hw = hardware()
    torch_device = models.pick_device(device)
    return {
        "command": "bench",
        "device": torch_device if torch_device != "cpu" else f"cpu ({hw.get('cpu', hw['processor'])})",
        "backend": entries[top]["backend"],
        "dtype": entries[top]["dtype"],
        "threads": threads,
        "hardware": hw,
        "versions": _versions(),
        "warmup_batches": warmup,
        "repeats": repeats,
        "inputs": f"first {len(timed)} test questions, real lengths",
        "interleaved": "each pass over the questions runs for every backend in turn, repeats times",
        "accuracy_on": f"all {len(texts)} test questions, against {artifacts.PREDICTIONS}" if verified else None,
        "default_backend": default,
        "results": entries[top]["results"],
        "backends": entries,
        "skipped": skipped,
    }


def bench_run(run_dir: Path, backends: list[Backend] | None = None, *, output: Path | None = None,
              **kwargs) -> dict:
    """`mathreport bench`: compare_backends, written atomically to `output` (default: the run's latency.json)."""
    latency = compare_backends(run_dir, backends, **kwargs)
    artifacts.write_json(Path(output) if output else Path(run_dir) / artifacts.LATENCY, latency)
    return latency
