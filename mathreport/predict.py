"""Batched inference returning class probabilities, loading a saved run, and the latency benchmark."""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from mathreport import artifacts
from mathreport.labels import NUM_CLASSES


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

    def predict_proba(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.config.num_labels))
        # Sort by length so each batch pads to a similar length; restore the order at the end.
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable") if self.sort_by_length else np.arange(len(texts))
        out = np.empty((len(texts), self.model.config.num_labels), dtype=float)
        self.model.eval()
        batches = range(0, len(texts), batch_size)
        for start in tqdm(batches, desc="predict", disable=not progress, unit="batch"):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx], padding=self.padding, truncation=True, max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode(), _autocast(self.device, self.autocast_dtype):
                logits = self.model(**enc).logits
            out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out


def _autocast(device: str, dtype):
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


INFERENCE_DTYPES = ("float32", "bfloat16", "int8")


def load_classifier(
    run_dir: Path, device: str | None = None, merge_lora: bool = True, dtype: str = "float32"
) -> Classifier:
    """Load the saved model of a run (LoRA adapter or scikit-learn pipeline) for inference.

    dtype: `float32`; `bfloat16` casts a transformer's weights; `int8` quantizes its Linear layers (CPU only).
    What each costs and buys is measured in docs/PERFORMANCE.md.
    """
    run_dir = Path(run_dir)
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype must be one of {INFERENCE_DTYPES}, found {dtype!r}")
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

    import torch
    from peft import PeftModel

    from mathreport import models

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
    elif dtype == "int8":
        model = quantize_int8(model, device)
    model.eval()
    return TransformerClassifier(model, tokenizer, int(manifest["hyperparameters"]["max_length"]), device)


def quantize_int8(model, device: str = "cpu"):
    """The model with its Linear layers in int8, activations quantized per call (dynamic quantization).

    At batch size 1 the Linear layers are bound by reading their weights; int8 halves the bytes of bfloat16.
    This uses torch.ao.quantization, which PyTorch deprecates in favour of torchao; where it is gone this fails.
    """
    import warnings

    import torch

    if not device.startswith("cpu"):
        raise ValueError(f"int8 dynamic quantization runs on the CPU only; the model is on {device}")
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:
        raise RuntimeError("dtype int8 needs torch.ao.quantization, which this torch lacks; use bfloat16") from exc
    with warnings.catch_warnings():
        # The deprecation is stated in the docstring and docs/PERFORMANCE.md; repeating it on each load is noise.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


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
    import os

    info["cpu_count"] = os.cpu_count()
    return info


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
    import os

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
        import os

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
        # scikit-learn's TF-IDF + logistic regression predicts on one thread; torch's setting is unused.
        "threads": torch.get_num_threads() if uses_torch else 1,
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
    import importlib.metadata as md

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
    versions = {}
    for pkg in ("torch", "transformers", "peft", "scikit-learn"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    hw = hardware()
    return {
        "device": device if device != "cpu" else f"cpu ({hw.get('cpu', hw['processor'])})",
        "dtype": dtype,
        "threads": results[0]["threads"],
        "hardware": hw,
        "versions": versions,
        "warmup_batches": warmup,
        "repeats": repeats,
        "inputs": f"first {len(texts)} test questions, real lengths",
        "results": results,
    }


def bench_run(
    run_dir: Path,
    *,
    dtype: str = "float32",
    threads: int | tuple[int, ...] | None = None,
    batch_sizes: tuple[int, ...] = (1, 32),
    max_items: int = 200,
    repeats: int = 3,
    warmup: int = 3,
    device: str | None = None,
) -> dict:
    """Load a run's model, time it on the run's test questions and write `latency.json` (atomically).

    threads None: measure 1 and all cores and keep the faster for each batch size.
    """
    run_dir = Path(run_dir)
    classifier = load_classifier(run_dir, device=device, dtype=dtype)
    texts = test_questions(run_dir)
    if threads is None:
        threads = thread_candidates()
    kind = "cpu" if isinstance(classifier, SklearnClassifier) else classifier.device
    latency = benchmark_latency(
        classifier, texts, batch_sizes=batch_sizes, warmup=warmup, max_items=max_items, repeats=repeats,
        device=kind, dtype="float64" if isinstance(classifier, SklearnClassifier) else dtype, threads=threads,
    )
    latency["command"] = "bench"
    artifacts.write_json(run_dir / artifacts.LATENCY, latency)
    return latency
