"""Batched inference returning class probabilities, loading a saved run, and the latency benchmark."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from mathreport import artifacts


class Classifier(Protocol):
    """Anything that maps texts to an (n, 8) array of class probabilities."""

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


@dataclass
class SklearnClassifier:
    """A fitted scikit-learn pipeline (the `tfidf` baseline)."""

    pipeline: object

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(list(texts)), dtype=float)


@dataclass
class TransformerClassifier:
    """A sequence-classification model and its tokenizer, on one device."""

    model: object
    tokenizer: object
    max_length: int
    device: str = "cpu"
    autocast_dtype: object = None  # e.g. torch.bfloat16 for CPU autocast

    def predict_proba(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.config.num_labels))
        # Sort by length so each batch pads to a similar length; restore the order at the end.
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.model.config.num_labels), dtype=float)
        self.model.eval()
        batches = range(0, len(texts), batch_size)
        for start in tqdm(batches, desc="predict", disable=not progress, unit="batch"):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode(), _autocast(self.device, self.autocast_dtype):
                logits = self.model(**enc).logits
            out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out


def _autocast(device: str, dtype):
    import contextlib

    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def load_classifier(run_dir: Path, device: str | None = None, merge_lora: bool = True) -> Classifier:
    """Load the saved model of a run (LoRA adapter or scikit-learn pipeline) for inference."""
    run_dir = Path(run_dir)
    manifest = artifacts.read_manifest(run_dir)
    model_dir = run_dir / "model"
    if manifest.get("kind") == "tfidf":
        import joblib

        path = model_dir / "pipeline.joblib"
        if not path.is_file():
            raise artifacts.ArtifactError(f"{path} is missing. Make it with: {artifacts.make_command(run_dir)}")
        return SklearnClassifier(joblib.load(path))

    from peft import PeftModel

    from mathreport import models

    if not (model_dir / "adapter_config.json").is_file():
        raise artifacts.ArtifactError(
            f"{model_dir}/adapter_config.json is missing. Make it with: {artifacts.make_command(run_dir)}"
        )
    device = models.pick_device(device)
    weights = manifest["weights"]
    tokenizer = models.load_tokenizer(str(model_dir))
    base = models.load_base_model(weights, tokenizer, device=device)
    model = PeftModel.from_pretrained(base, str(model_dir))
    if merge_lora:
        # Folding the low-rank update into the weights removes the adapter's extra matmuls at inference.
        model = model.merge_and_unload()
    model.eval()
    return TransformerClassifier(model, tokenizer, int(manifest["hyperparameters"]["max_length"]), device)


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
) -> dict:
    """Per-item latency percentiles and throughput over real questions, after warm-up.

    Each batch of `batch_size` consecutive test questions (real lengths) is timed; per-item latency is
    the batch time divided by its size.
    """
    from tqdm.auto import tqdm

    if not texts:
        raise ValueError("latency needs at least one test question; the test split is empty")
    texts = list(texts)[:max_items]
    results = []
    for batch_size in batch_sizes:
        batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        for batch in batches[:warmup]:
            classifier.predict_proba(batch, batch_size=batch_size)
        per_item_ms: list[float] = []
        items = 0
        total_s = 0.0
        for _ in range(repeats):
            for batch in tqdm(batches, desc=f"latency bs={batch_size}", leave=False, unit="batch"):
                start = time.perf_counter()
                classifier.predict_proba(batch, batch_size=batch_size)
                elapsed = time.perf_counter() - start
                per_item_ms.extend([elapsed * 1000 / len(batch)] * len(batch))
                items += len(batch)
                total_s += elapsed
        arr = np.asarray(per_item_ms)
        results.append({
            "batch_size": batch_size,
            "n_items": items,
            "n_batches": len(batches) * repeats,
            "p50_ms": float(np.percentile(arr, 50)),
            "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean()),
            "items_per_s": float(items / total_s),
        })
    import importlib.metadata as md

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
        "threads": hw.get("torch_threads"),
        "hardware": hw,
        "versions": versions,
        "warmup_batches": warmup,
        "repeats": repeats,
        "inputs": f"first {len(texts)} test questions, real lengths",
        "results": results,
    }
