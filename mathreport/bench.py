"""The latency benchmark behind latency.json: real test questions, warm-up, percentiles, CPU load alongside.

`benchmark_latency` times one classifier (what `train` records); `compare_backends` / `bench_run` time every
inference backend of a run interleaved in one process (`mathreport bench`). `CpuLoad` (psutil) records how busy
the machine was while timing, so a number from a loaded machine is seen as one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from mathreport import artifacts, environment, files, onnx_backend, predict
from mathreport.errors import ConfigError
from mathreport.onnx_backend import Backend
from mathreport.predict import Classifier

log = logging.getLogger("mathreport")


def test_questions(run_dir: Path) -> list[str]:
    """The run's test questions: the `text` column of preds_test.csv, else the test split named in run.json."""
    run_dir = Path(run_dir)
    if (run_dir / artifacts.PREDICTIONS).is_file():
        frame = artifacts.read_predictions(run_dir)
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


class CpuLoad:
    """How busy the machine's CPUs were over a block, and how much of that was other processes (from psutil).

        with CpuLoad() as load:
            ...  # timed work
        load.result  # {"cpu_busy": 0.52, "cpu_busy_other": 0.03}; None when no CPU time passed
    """

    def __enter__(self) -> CpuLoad:
        import psutil

        self._process = psutil.Process()
        self._start = psutil.cpu_times()
        self._own = self._own_seconds()
        self._wall = time.perf_counter()
        self.result: dict | None = None
        return self

    def _own_seconds(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def __exit__(self, *exc) -> None:
        import psutil

        end = psutil.cpu_times()
        total = _cpu_total(end) - _cpu_total(self._start)
        if total <= 0:
            return
        busy = min(max(1 - (_cpu_idle(end) - _cpu_idle(self._start)) / total, 0.0), 1.0)
        ncpu = psutil.cpu_count() or 1
        own = (self._own_seconds() - self._own) / max(time.perf_counter() - self._wall, 1e-9) / ncpu
        # What other processes used is the machine's busy share minus this process's own CPU time.
        self.result = {"cpu_busy": round(busy, 3), "cpu_busy_other": round(max(busy - own, 0.0), 3)}


def _cpu_total(times) -> float:
    # On Linux guest time is also counted in user time; psutil.cpu_percent leaves it out once, and so does this.
    return sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _cpu_idle(times) -> float:
    return times.idle + getattr(times, "iowait", 0.0)


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
    uses_torch = isinstance(classifier, predict.TransformerClassifier)
    original_threads = torch.get_num_threads()
    try:
        results = [_bench_batch_size(classifier, texts, batch_size, warmup, repeats, threads, uses_torch)
                   for batch_size in batch_sizes]
    finally:
        torch.set_num_threads(original_threads)  # the choice is for this benchmark, not for the caller
    hw = environment.hardware()
    return {
        "device": device if device != "cpu" else f"cpu ({hw.get('cpu', hw['processor'])})",
        "backend": classifier.backend,
        "dtype": dtype,
        "threads": results[0]["threads"],
        "hardware": hw,
        "versions": environment.versions(environment.LATENCY_PACKAGES),
        "warmup_batches": warmup,
        "repeats": repeats,
        "inputs": f"first {len(texts)} test questions, real lengths",
        "results": results,
    }


def backends_to_bench(manifest: dict, backend: str = "all", dtype: str | None = None) -> list[Backend]:
    """The backends `mathreport bench` compares: all of them, one engine's, or the run's default (`auto`).

    A run trained in 4-bit has one, torch-nf4; asking it for another is refused (ValueError).
    """
    if predict.trained_in_4bit(manifest):
        return [predict.resolve_backend(manifest, "torch" if backend == "all" else backend, dtype)]
    if backend == "auto" or (backend in predict.DTYPES_OF and dtype is not None):
        return [predict.resolve_backend(manifest, backend, dtype)]
    chosen = [b for b in onnx_backend.ALL_BACKENDS
              if backend in ("all", b.engine) and (dtype is None or b.dtype == dtype)]
    if not chosen:
        raise ConfigError(f"--backend {backend} --dtype {dtype}: no backend {backend!r} runs {dtype} weights; the "
                          f"backends are {', '.join(b.name for b in onnx_backend.ALL_BACKENDS)}")
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
        latency = benchmark_latency(predict.load_classifier(run_dir), test_questions(run_dir), batch_sizes=batch_sizes,
                                    warmup=warmup, max_items=max_items, repeats=repeats, dtype="float64")
        latency["command"] = "bench"
        return latency
    backends = backends or backends_to_bench(manifest)
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
            classifiers[b.name] = predict.load_torch(run_dir, manifest, device, True, b.dtype)
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
    default = predict.default_backend(manifest).name
    top = default if default in entries else next(iter(entries))
    hw = environment.hardware()
    torch_device = models.pick_device(device)
    return {
        "command": "bench",
        "device": torch_device if torch_device != "cpu" else f"cpu ({hw.get('cpu', hw['processor'])})",
        "backend": entries[top]["backend"],
        "dtype": entries[top]["dtype"],
        "threads": threads,
        "hardware": hw,
        "versions": environment.versions(environment.LATENCY_PACKAGES),
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
    files.write_json(Path(output) if output else Path(run_dir) / artifacts.LATENCY, latency)
    return latency
