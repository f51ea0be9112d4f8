"""The latency benchmark behind latency.json: real test questions, warm-up, percentiles, CPU load alongside.

`time_calls` is the one timing loop: every classifier over the same batches, interleaved round by round.
`benchmark_latency` times one classifier (what `train` records); `compare_backends` / `bench_run` time every
inference backend of a run in one process (`mathreport bench`). `CpuLoad` (psutil) records how busy the machine
was while timing, so a number from a loaded machine is seen as one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mathreport import artifacts, data, environment, files, predict
from mathreport.errors import ArtifactError, ConfigError, OnnxUnavailable
from mathreport.predict import Backend, Classifier
from mathreport.record import RunRecord

log = logging.getLogger("mathreport")


def test_questions(run_dir: Path) -> list[str]:
    """The run's test questions: the `text` column of preds_test.csv, else the test split named in run.json."""
    run_dir = Path(run_dir)
    if (run_dir / artifacts.PREDICTIONS).is_file():
        frame = artifacts.read_predictions(run_dir)
        if "text" in frame.columns and frame["text"].notna().any():
            return frame["text"].dropna().astype(str).tolist()
    manifest = artifacts.read_manifest(run_dir)
    test_path = manifest.split("test").path
    if not test_path:
        raise ArtifactError(f"{run_dir}: neither {artifacts.PREDICTIONS} has a 'text' column nor "
                            f"{artifacts.MANIFEST} a test path; latency is measured on real test questions only")
    frame = data.read_split(test_path, text_col=manifest.config.get("text_col", "Question"),
                            label_col=manifest.config.get("label_col", "label"))
    return frame["Question"].tolist()


def batches_of(texts: list[str], batch_size: int) -> list[list[str]]:
    """`texts` in consecutive batches of `batch_size` (the last one may be smaller)."""
    return [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]


def time_calls(classifiers: dict, batches: list[list[str]], batch_size: int, *, rounds: int = 1, warmup: int = 0,
               before: Callable | None = None, desc: str | None = None) -> tuple[dict, dict | None]:
    """Per-item milliseconds of each classifier on every item of `batches`, and how busy the CPUs were (`CpuLoad`).

    One call per batch, its time shared among the batch's items. Round r of every classifier runs before round r+1
    of any (A B C A B C ...), so that load from other processes hits them alike. warmup: batches each classifier
    runs first, untimed; before(name): called before each pass of a classifier (e.g. to set torch's threads);
    desc: a progress bar's label (None: no bar).
    """
    from tqdm.auto import tqdm

    for name, clf in classifiers.items():
        if before is not None:
            before(name)
        for batch in batches[:warmup]:
            clf.predict_proba(batch, batch_size=batch_size)
    ms: dict = {name: [] for name in classifiers}
    bar = tqdm(total=len(batches) * rounds * len(classifiers), desc=desc, disable=desc is None, leave=False,
               unit="batch")
    with CpuLoad() as load, bar:
        for _ in range(rounds):
            for name, clf in classifiers.items():
                if before is not None:
                    before(name)
                for batch in batches:
                    start = time.perf_counter()
                    clf.predict_proba(batch, batch_size=batch_size)
                    ms[name].extend([(time.perf_counter() - start) * 1000 / len(batch)] * len(batch))
                    bar.update(1)
    return {name: np.asarray(t) for name, t in ms.items()}, load.result


def median_ms(classifiers: dict, texts: list[str], batch_size: int = 1, **kwargs) -> dict:
    """The median per-item milliseconds of each classifier on `texts` in batches of `batch_size` (`time_calls`)."""
    times, _ = time_calls(classifiers, batches_of(list(texts), batch_size), batch_size, **kwargs)
    return {name: float(np.median(t)) for name, t in times.items()}


def thread_candidates() -> tuple[int, ...]:
    """The torch thread counts worth measuring: one, and one per CPU core."""
    return tuple(sorted({1, os.cpu_count() or 1}))


class CpuLoad:
    """How busy the machine's CPUs were over a block, and how much of that was other processes (from psutil).

        with CpuLoad() as load:
            ...  # timed work
        load.result  # {"cpu_busy": ..., "cpu_busy_other": ...} as fractions; None when no CPU time passed
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
        return sum(self._process.cpu_times()[:2])  # user + system

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


def _latency_results(classifiers: dict[str, Classifier], texts: list[str], batch_sizes: tuple[int, ...], warmup: int,
                     repeats: int, thread_choice: tuple[int, ...] = ()) -> dict[str, list[dict]]:
    """latency.json `results` of each classifier, one entry per batch size: every batch of `texts`, `repeats` times.

    thread_choice: torch thread counts to measure on a few batches (one torch classifier); the fastest is taken
    for each batch size and the medians recorded.
    """
    import torch

    out: dict[str, list[dict]] = {name: [] for name in classifiers}
    for batch_size in batch_sizes:
        measured = None
        if thread_choice:
            (clf,) = classifiers.values()
            measured = median_ms({n: clf for n in thread_choice}, texts[: batch_size * max(1, 16 // batch_size)],
                                 batch_size, rounds=3, before=torch.set_num_threads)
            torch.set_num_threads(min(measured, key=measured.get))
        batches = batches_of(texts, batch_size)
        times, load = time_calls(classifiers, batches, batch_size, rounds=repeats, warmup=warmup,
                                 desc=f"latency bs={batch_size}")
        for name, clf in classifiers.items():
            ms = times[name]
            entry = {
                "batch_size": batch_size, "n_items": len(ms), "n_batches": len(batches) * repeats,
                "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
                "items_per_s": float(len(ms) * 1000 / ms.sum()), "threads": getattr(clf, "threads", 1),
            }
            if measured is not None:
                entry["threads_p50_ms"] = {str(n): v for n, v in measured.items()}
            out[name].append({**entry, **(load or {})})
    return out


def _latency_json(device: str, backend: str, dtype: str, threads: int, warmup: int, repeats: int, n_items: int,
                  results: list[dict], **more) -> dict:
    """latency.json: the timed `results` and what they were measured on."""
    hw = environment.hardware()
    return {
        "device": device if device != "cpu" else f"cpu ({hw.get('cpu', hw['processor'])})",
        "backend": backend, "dtype": dtype, "threads": threads, "hardware": hw,
        "versions": environment.versions(environment.LATENCY_PACKAGES), "warmup_batches": warmup, "repeats": repeats,
        "inputs": f"first {n_items} test questions, real lengths", "results": results, **more,
    }


def benchmark_latency(classifier: Classifier, texts: list[str], *, batch_sizes: tuple[int, ...] = (1, 32),
                      warmup: int = 3, max_items: int = 200, repeats: int = 1, device: str = "cpu",
                      dtype: str = "float32", threads: int | tuple[int, ...] | None = None) -> dict:
    """Per-item latency percentiles and throughput over real questions, after warm-up.

    Each batch of `batch_size` consecutive test questions (real lengths) is timed; per-item latency is
    the batch time divided by its size. threads: a torch thread count, or several to measure on a few
    batches and take the fastest for each batch size (None: leave torch's setting). On a device other than
    the CPU (`device="cuda:0"`) several counts are not swept and torch's current one is used: the accelerator
    computes the model, so a sweep over CPU threads would time noise; latency.json's `thread_choice` says
    which was done.
    """
    import torch

    if not texts:
        raise ValueError("latency needs at least one test question; the test split is empty")
    texts = list(texts)[:max_items]
    counts = () if threads is None else threads if isinstance(threads, tuple) else (threads,)
    uses_torch = isinstance(classifier, predict.TransformerClassifier)
    on_cpu = device.startswith("cpu")
    original_threads = torch.get_num_threads()
    try:
        if uses_torch and len(counts) == 1:
            torch.set_num_threads(counts[0])
        choice = counts if uses_torch and on_cpu and len(counts) > 1 else ()
        results = _latency_results({"": classifier}, texts, batch_sizes, warmup, repeats, choice)[""]
    finally:
        torch.set_num_threads(original_threads)  # the choice is for this benchmark, not for the caller
    if choice:
        thread_choice = f"the fastest of {', '.join(map(str, choice))} torch threads, per batch size"
    elif uses_torch and len(counts) > 1:  # a sweep was asked for, on an accelerator
        thread_choice = (f"torch's {original_threads} CPU threads as set, not swept: on {device} the model "
                         "computes on the accelerator")
    else:
        thread_choice = f"{results[0]['threads']} thread(s), as set"
    return _latency_json(device, classifier.backend, dtype, results[0]["threads"], warmup, repeats, len(texts),
                         results, thread_choice=thread_choice)


def backends_to_bench(manifest: RunRecord, backend: str = "all", dtype: str | None = None) -> list[Backend]:
    """The backends `mathreport bench` compares: all of them, one engine's, or the run's default (`auto`).

    A run trained in 4-bit has one, torch-nf4; asking it for another is refused (ConfigError).
    """
    if manifest.load_in_4bit:
        return [predict.resolve_backend(manifest, "torch" if backend == "all" else backend, dtype)]
    if backend == "auto" or (backend in predict.DTYPES_OF and dtype is not None):
        return [predict.resolve_backend(manifest, backend, dtype)]
    pool = (*predict.ALL_BACKENDS, *((predict.TORCH_TOPK,) if manifest.partial else ()))
    chosen = [b for b in pool if backend in ("all", b.engine) and dtype in (None, b.dtype)]
    if not chosen:
        raise ConfigError(f"--backend {backend} --dtype {dtype}: no backend {backend!r} runs {dtype} weights; the "
                          f"backends are {', '.join(b.name for b in pool)}")
    return chosen


def compare_backends(run_dir: Path, backends: list[Backend] | None = None, *, threads: int | None = None,
                     batch_sizes: tuple[int, ...] = (1, 32), max_items: int = 200, repeats: int = 3, warmup: int = 3,
                     device: str | None = None) -> dict:
    """Time several backends of one run in this process, interleaved, on its test questions; the latency.json dict.

    Each backend's test accuracy, and how its answers compare with the run's float32 predictions
    (preds_test.csv), is measured on the whole test split. The top-level `results` are those of the run's
    default backend (what the report shows) when it was measured; `backends` holds every one. A backend that
    cannot be loaded (no verified ONNX file) is listed under `skipped` with the reason, never replaced by another.
    threads: torch threads and ONNX Runtime intra-op threads alike (None: one per CPU core).
    """
    import torch

    from mathreport import models

    run_dir = artifacts.require_run_dir(run_dir)
    manifest = artifacts.read_manifest(run_dir)
    threads = threads or os.cpu_count() or 1
    if manifest.kind == "tfidf":  # one backend: scikit-learn
        latency = benchmark_latency(predict.load_classifier(run_dir), test_questions(run_dir), batch_sizes=batch_sizes,
                                    warmup=warmup, max_items=max_items, repeats=repeats, dtype="float64")
        return {**latency, "command": "bench"}
    classifiers: dict[str, Classifier] = {}
    skipped: dict[str, str] = {}
    for b in backends or backends_to_bench(manifest):
        try:
            classifiers[b.name] = (predict.load_onnx(run_dir, b.dtype, manifest, threads=threads) if b.engine == "onnx"
                                   else predict.load_torch(run_dir, manifest, device, True, b.dtype))
        except OnnxUnavailable as exc:
            skipped[b.name] = str(exc)
            log.warning("not measured: %s", exc)
    if not classifiers:
        raise ArtifactError(f"{run_dir}: none of the backends asked for can be loaded: {skipped}")
    frame = artifacts.read_predictions(run_dir)
    texts = test_questions(run_dir)
    verified = len(texts) == len(frame)
    original_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        entries = {name: {"backend": predict.backend_named(name).engine, "dtype": predict.backend_named(name).dtype}
                   for name in classifiers}
        if verified:
            reference = frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float)
            for name, clf in classifiers.items():
                entries[name].update(predict.agreement(clf.predict_proba(texts, batch_size=32),
                                                       frame["y_true"].to_numpy(), reference))
        timed = texts[:max_items]
        work = inference_flop_per_item(classifiers.values(), timed)
        for name, results in _latency_results(classifiers, timed, batch_sizes, warmup, repeats).items():
            for r in results:  # the useful work done per second: the same questions' FLOP whatever the backend
                r["gflop_per_s"] = None if work is None else work * r["items_per_s"] / 1e9
            entries[name]["results"] = results
    finally:
        torch.set_num_threads(original_threads)
    default = predict.default_backend(manifest).name
    top = entries[default if default in entries else next(iter(entries))]
    return _latency_json(
        models.pick_device(device), top["backend"], top["dtype"], threads, warmup, repeats, len(timed), top["results"],
        command="bench", interleaved="each pass over the questions runs for every backend in turn, repeats times",
        accuracy_on=f"all {len(texts)} test questions, against {artifacts.PREDICTIONS}" if verified else None,
        default_backend=default, backends=entries, skipped=skipped, run=str(run_dir), flop_per_item=work,
        flop_counted="mathreport.flops: layer matmuls + attention products over each timed question's real tokens",
    )


def inference_flop_per_item(classifiers, texts: list[str]) -> float | None:
    """Mean forward FLOP per question of `texts` (mathreport.flops: layer matmuls and attention over real tokens),
    from the layers of the first torch classifier among `classifiers`; None without one (ONNX alone)."""
    from mathreport import flops, partial

    clf = next((c for c in classifiers if isinstance(c, (predict.TransformerClassifier, predict.TopKClassifier))),
               None)
    if clf is None or not texts:
        return None
    layers = partial.layer_list(clf.model)
    lengths = [len(ids) for ids in clf.tokenizer(list(texts), truncation=True, max_length=clf.max_length)["input_ids"]]
    return flops.forward_flop(lengths, weights_per_layer=flops.layer_matmul_weights(layers[-1]),
                              hidden=partial.unwrap(clf.model).config.hidden_size, layers=len(layers)) / len(texts)


def bench_run(run_dir: Path, backends: list[Backend] | None = None, *, output: Path | None = None,
              **kwargs) -> dict:
    """`mathreport bench`: compare_backends, written atomically to `output` (default: the run's latency.json)."""
    artifacts.require_run_dir(run_dir)
    with artifacts.run_lock(run_dir, "mathreport bench"):
        latency = compare_backends(run_dir, backends, **kwargs)
        files.write_json(Path(output) if output else Path(run_dir) / artifacts.LATENCY, latency)
    return latency
