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
from mathreport.environment import CpuLoad
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
        raise ArtifactError(
            f"{run_dir}: neither {artifacts.PREDICTIONS} has a 'text' column nor "
            f"{artifacts.MANIFEST} a test path; latency is measured on real test questions only"
        )
    frame = data.read_split(
        test_path,
        text_col=manifest.config.get("text_col", "Question"),
        label_col=manifest.config.get("label_col", "label"),
    )
    return frame["Question"].tolist()


def batches_of(texts: list[str], batch_size: int) -> list[list[str]]:
    """`texts` in consecutive batches of `batch_size` (the last one may be smaller)."""
    return [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]


def time_calls(
    classifiers: dict,
    batches: list[list[str]],
    batch_size: int,
    *,
    rounds: int = 1,
    warmup: int = 0,
    before: Callable | None = None,
    desc: str | None = None,
) -> tuple[dict, dict | None]:
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
    bar = tqdm(
        total=len(batches) * rounds * len(classifiers),
        desc=desc,
        disable=desc is None,
        leave=False,
        unit="batch",
    )
    with CpuLoad() as load, bar:
        for _ in range(rounds):
            for name, clf in classifiers.items():
                if before is not None:
                    before(name)
                for batch in batches:
                    start = time.perf_counter()
                    clf.predict_proba(batch, batch_size=batch_size)
                    ms[name].extend(
                        [(time.perf_counter() - start) * 1000 / len(batch)] * len(batch)
                    )
                    bar.update(1)
    return {name: np.asarray(t) for name, t in ms.items()}, load.result


def median_ms(classifiers: dict, texts: list[str], batch_size: int = 1, **kwargs) -> dict:
    """The median per-item milliseconds of each classifier on `texts` in batches of `batch_size` (`time_calls`)."""
    times, _ = time_calls(classifiers, batches_of(list(texts), batch_size), batch_size, **kwargs)
    return {name: float(np.median(t)) for name, t in times.items()}


def spread(ms: np.ndarray, rounds: int) -> dict:
    """The median per-item ms of `time_calls`' output for one classifier, and its spread over the rounds.

    ms: its per-item times, round-major (each round the same items). Returns `median_ms` (over every item),
    `round_ms` (each round's median) and `interval_ms`: [fastest round, slowest round].
    """
    ms = np.asarray(ms, dtype=float)
    if rounds < 1 or not len(ms) or len(ms) % rounds:
        raise ValueError(f"{len(ms)} timed items cannot be {rounds} rounds of the same items")
    per_round = [float(np.median(r)) for r in ms.reshape(rounds, -1)]
    return {
        "median_ms": float(np.median(ms)),
        "interval_ms": [min(per_round), max(per_round)],
        "round_ms": per_round,
    }


# A backend's answers are refused only when they are significantly worse than the reference's on the same
# questions (McNemar's exact test, one-sided): a threshold on a difference of a few answers is noise.
SIGNIFICANCE = 0.05


def paired_accuracy(
    probs: np.ndarray, y_true: np.ndarray, reference: np.ndarray, significance: float = SIGNIFICANCE
) -> dict:
    """A backend's answers against the reference backend's on the same questions.

    Returns predict.agreement's numbers, `accuracy_difference` (this minus the reference), its 95 % paired
    bootstrap interval `accuracy_difference_ci95` (the same resamples for both), `mcnemar` (b: questions only
    the reference gets right, c: only this one; p of "this one is worse", exact and one-sided) and `passes`:
    False only when p < significance.
    """
    from mathreport import metrics

    out = predict.agreement(probs, y_true, reference)
    y_true = np.asarray(y_true)
    ours, theirs = np.asarray(probs).argmax(1), np.asarray(reference).argmax(1)
    if not len(y_true):
        return {
            **out,
            "accuracy_difference": 0.0,
            "accuracy_difference_ci95": None,
            "mcnemar": None,
            "passes": True,
        }
    test = metrics.mcnemar_test(y_true, theirs, ours, alternative="greater")
    difference = (
        metrics.bootstrap_replicates(y_true, ours)["Accuracy"]
        - metrics.bootstrap_replicates(y_true, theirs)["Accuracy"]
    )
    return {
        **out,
        "accuracy_difference": float((ours == y_true).mean() - (theirs == y_true).mean()),
        "accuracy_difference_ci95": [float(v) for v in np.percentile(difference, [2.5, 97.5])],
        "mcnemar": {
            "b": test["b"],
            "c": test["c"],
            "p_value": test["p_value"],
            "alternative": "worse than the reference",
        },
        "passes": bool(test["p_value"] >= significance),
    }


def thread_candidates() -> tuple[int, ...]:
    """The torch thread counts worth measuring: one, and one per CPU core."""
    return tuple(sorted({1, os.cpu_count() or 1}))


def _latency_results(
    classifiers: dict[str, Classifier],
    texts: list[str],
    batch_sizes: tuple[int, ...],
    warmup: int,
    repeats: int,
    thread_choice: tuple[int, ...] = (),
) -> dict[str, list[dict]]:
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
            measured = median_ms(
                {n: clf for n in thread_choice},
                texts[: batch_size * max(1, 16 // batch_size)],
                batch_size,
                rounds=3,
                before=torch.set_num_threads,
            )
            torch.set_num_threads(min(measured, key=measured.get))
        batches = batches_of(texts, batch_size)
        times, load = time_calls(
            classifiers,
            batches,
            batch_size,
            rounds=repeats,
            warmup=warmup,
            desc=f"latency bs={batch_size}",
        )
        for name, clf in classifiers.items():
            ms = times[name]
            entry = {
                "batch_size": batch_size,
                "n_items": len(ms),
                "n_batches": len(batches) * repeats,
                "p50_ms": float(np.percentile(ms, 50)),
                "p95_ms": float(np.percentile(ms, 95)),
                "p99_ms": float(np.percentile(ms, 99)),
                "mean_ms": float(ms.mean()),
                "items_per_s": float(len(ms) * 1000 / ms.sum()),
                "threads": getattr(clf, "threads", 1),
                "round_p50_ms": spread(ms, repeats)[
                    "round_ms"
                ],  # the spread a comparison must beat
            }
            if measured is not None:
                entry["threads_p50_ms"] = {str(n): v for n, v in measured.items()}
            out[name].append({**entry, **(load or {})})
    return out


def _latency_json(
    device: str,
    backend: str,
    dtype: str,
    threads: int,
    warmup: int,
    repeats: int,
    n_items: int,
    results: list[dict],
    **more,
) -> dict:
    """latency.json: the timed `results` and what they were measured on."""
    hw = environment.hardware()
    return {
        "device": device if device != "cpu" else f"cpu ({hw.get('cpu', hw['processor'])})",
        "backend": backend,
        "dtype": dtype,
        "threads": threads,
        "hardware": hw,
        "versions": environment.versions(environment.LATENCY_PACKAGES),
        "warmup_batches": warmup,
        "repeats": repeats,
        "inputs": f"first {n_items} test questions, real lengths",
        "results": results,
        **more,
    }


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
        results = _latency_results({"": classifier}, texts, batch_sizes, warmup, repeats, choice)[
            ""
        ]
    finally:
        torch.set_num_threads(
            original_threads
        )  # the choice is for this benchmark, not for the caller
    if choice:
        thread_choice = (
            f"the fastest of {', '.join(map(str, choice))} torch threads, per batch size"
        )
    elif uses_torch and len(counts) > 1:  # a sweep was asked for, on an accelerator
        thread_choice = (
            f"torch's {original_threads} CPU threads as set, not swept: on {device} the model "
            "computes on the accelerator"
        )
    else:
        thread_choice = f"{results[0]['threads']} thread(s), as set"
    return _latency_json(
        device,
        classifier.backend,
        dtype,
        results[0]["threads"],
        warmup,
        repeats,
        len(texts),
        results,
        thread_choice=thread_choice,
    )


def benchmark_choices(
    chosen: dict[int, tuple[str, Classifier]], texts: list[str], **kwargs
) -> dict:
    """latency.json of the backends a run chose: each batch size timed with the backend chosen for it.

    chosen: {batch size: (backend name, classifier)}, e.g. {1: the latency choice, 32: the throughput choice};
    kwargs: benchmark_latency's. Each result row names its `backend` and `dtype`; the top level is the smallest
    batch size's (the latency choice's: what the report quotes as the run's latency).
    """
    parts = []
    for size, (name, clf) in sorted(chosen.items()):
        part = benchmark_latency(
            clf, texts, batch_sizes=(size,), dtype=predict.backend_named(name).dtype, **kwargs
        )
        parts.append((size, name, part))
    top = parts[0][2]
    notes = dict.fromkeys(part["thread_choice"] for _, _, part in parts)
    return {
        **top,
        "results": [
            {**part["results"][0], "backend": name, "dtype": part["dtype"]}
            for _, name, part in parts
        ],
        "thread_choice": next(iter(notes))
        if len(notes) == 1
        else "; ".join(f"batch {size}: {part['thread_choice']}" for size, _, part in parts),
        "backends_by_batch_size": {str(size): name for size, name, _ in parts},
    }


def backends_to_bench(
    manifest: RunRecord, backend: str = "all", dtype: str | None = None
) -> list[Backend]:
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
        raise ConfigError(
            f"--backend {backend} --dtype {dtype}: no backend {backend!r} runs {dtype} weights; the "
            f"backends are {', '.join(b.name for b in pool)}"
        )
    return chosen


def compare_backends(
    run_dir: Path,
    backends: list[Backend] | None = None,
    *,
    threads: int | None = None,
    batch_sizes: tuple[int, ...] | None = None,
    max_items: int = 200,
    repeats: int = 3,
    warmup: int = 3,
    device: str | None = None,
) -> dict:
    """Time several backends of one run in this process, interleaved, on its test questions; the latency.json dict.

    Each backend's test accuracy, and how its answers compare with the run's reference predictions
    (preds_test.csv: `paired_accuracy`), is measured on the whole test split. The top-level `results` are those
    of the run's default backend (its latency choice, what the report shows) when it was measured; `backends`
    holds every one; `choice` says, per batch size of the run's choice, whether bench's fastest agrees with it
    (`against_choice`). A backend that cannot be loaded (no verified ONNX file) is listed under `skipped` with
    the reason, never replaced by another. threads: torch threads and ONNX Runtime intra-op threads alike (None:
    one per CPU core). batch_sizes: None for 1, 32 and the batch size of the run's throughput choice.
    """
    import torch

    from mathreport import models

    run_dir = artifacts.require_run_dir(run_dir)
    manifest = artifacts.read_manifest(run_dir)
    threads = threads or os.cpu_count() or 1
    if batch_sizes is None:
        batch_sizes = tuple(sorted({1, 32, *(size for _, size in run_choices(manifest).values())}))
    if not manifest.traits.neural:  # one backend: scikit-learn
        latency = benchmark_latency(
            predict.load_classifier(run_dir),
            test_questions(run_dir),
            batch_sizes=batch_sizes,
            warmup=warmup,
            max_items=max_items,
            repeats=repeats,
            dtype="float64",
        )
        return {**latency, "command": "bench"}
    classifiers: dict[str, Classifier] = {}
    skipped: dict[str, str] = {}
    for b in backends or backends_to_bench(manifest):
        try:
            classifiers[b.name] = (
                predict.load_onnx(run_dir, b.dtype, manifest, threads=threads)
                if b.engine == "onnx"
                else predict.load_torch(run_dir, manifest, device, True, b.dtype)
            )
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
        entries = {
            name: {
                "backend": predict.backend_named(name).engine,
                "dtype": predict.backend_named(name).dtype,
            }
            for name in classifiers
        }
        if verified:
            reference = frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float)
            for name, clf in classifiers.items():
                entries[name].update(
                    paired_accuracy(
                        clf.predict_proba(texts, batch_size=32),
                        frame["y_true"].to_numpy(),
                        reference,
                    )
                )
        timed = texts[:max_items]
        work = inference_flop_per_item(classifiers.values(), timed)
        for name, results in _latency_results(
            classifiers, timed, batch_sizes, warmup, repeats
        ).items():
            for r in (
                results
            ):  # the useful work done per second: the same questions' FLOP whatever the backend
                r["gflop_per_s"] = None if work is None else work * r["items_per_s"] / 1e9
            entries[name]["results"] = results
    finally:
        torch.set_num_threads(original_threads)
    default = predict.default_backend(manifest).name
    top = entries[default if default in entries else next(iter(entries))]
    return _latency_json(
        models.pick_device(device),
        top["backend"],
        top["dtype"],
        threads,
        warmup,
        repeats,
        len(timed),
        top["results"],
        command="bench",
        interleaved="each pass over the questions runs for every backend in turn, repeats times",
        accuracy_on=f"all {len(texts)} test questions, against {artifacts.PREDICTIONS}"
        if verified
        else None,
        default_backend=default,
        backends=entries,
        skipped=skipped,
        run=str(run_dir),
        flop_per_item=work,
        flop_counted="mathreport.flops: layer matmuls + attention products over each timed question's real tokens",
        choice=against_choice(manifest, entries),
    )


def run_choices(manifest: RunRecord) -> dict[str, tuple[str, int]]:
    """{purpose: (backend, batch size)} the run chose (run.json `inference.choices`); an older run.json, with one
    `default`, has it for both: at batch size 1 and at the run's throughput batch size."""
    recorded = (manifest.inference or {}).get("choices") or {}
    batch = throughput_batch_size((manifest.hyperparameters or {}).get("batch_size"))
    return {
        purpose: (
            predict.default_backend(manifest, purpose).name,
            int((recorded.get(purpose) or {}).get("batch_size") or size),
        )
        for purpose, size in (("latency", 1), ("throughput", batch))
    }


# The smallest batch the throughput choice is timed at: smaller runs' batches would time per-call overhead.
MIN_THROUGHPUT_BATCH = 8


def throughput_batch_size(run_batch_size: int | None) -> int:
    """The batch size of a run's throughput choice: its training batch size (32 where unknown), at least 8."""
    return max(MIN_THROUGHPUT_BATCH, int(run_batch_size or 32))


def against_choice(manifest: RunRecord, entries: dict) -> dict:
    """For each purpose, whether bench agrees with the run's choice.

    entries: compare_backends' backends. Each purpose gets the backend the run chose and bench's fastest (by
    p50) among the backends whose answers pass the paired test on the test split (`paired_accuracy`), each with
    its p50 and [fastest, slowest] repeat; `agrees`: the same backend, or their intervals overlap (the difference
    is within bench's own spread); None when bench did not time the chosen backend at that batch size.
    """
    from mathreport import metrics

    out = {}
    for purpose, (chosen, size) in run_choices(manifest).items():
        timed = {}
        for name, e in entries.items():
            row = next(
                (
                    r
                    for r in e.get("results", [])
                    if r["batch_size"] == size and r.get("round_p50_ms")
                ),
                None,
            )
            if row is not None:
                timed[name] = {
                    "p50_ms": row["p50_ms"],
                    "interval_ms": [min(row["round_p50_ms"]), max(row["round_p50_ms"])],
                }
        passing = [name for name in timed if entries[name].get("passes", True)]
        entry: dict = {
            "batch_size": size,
            "chosen": chosen,
            "chosen_timing": timed.get(chosen),
            "agrees": None,
        }
        if passing:
            fastest = min(passing, key=lambda n: (timed[n]["p50_ms"], n))
            entry.update(fastest=fastest, fastest_timing=timed[fastest])
            if chosen in timed:
                entry["agrees"] = fastest == chosen or metrics.intervals_overlap(
                    timed[chosen]["interval_ms"], timed[fastest]["interval_ms"]
                )
        if chosen in entries and not entries[chosen].get("passes", True):
            entry["chosen_fails_here"] = (
                "its answers are significantly worse than the reference's on this split"
            )
        if entry["agrees"] is None:
            entry["not_compared"] = (
                f"bench timed no batch of {size}"
                if not timed
                else f"bench did not time {chosen}"
                if chosen not in timed
                else "no backend's answers passed the paired test here"
            )
        out[purpose] = entry
    return out


def inference_flop_per_item(classifiers, texts: list[str]) -> float | None:
    """Mean forward FLOP per question of `texts` (mathreport.flops: layer matmuls and attention over real tokens),
    from the layers of the first torch classifier among `classifiers`; None without one (ONNX alone)."""
    from mathreport import flops, partial

    clf = next(
        (
            c
            for c in classifiers
            if isinstance(c, (predict.TransformerClassifier, predict.TopKClassifier))
        ),
        None,
    )
    if clf is None or not texts:
        return None
    layers = partial.layer_list(clf.model)
    lengths = [
        len(ids)
        for ids in clf.tokenizer(list(texts), truncation=True, max_length=clf.max_length)[
            "input_ids"
        ]
    ]
    return flops.forward_flop(
        lengths,
        weights_per_layer=flops.layer_matmul_weights(layers[-1]),
        hidden=partial.unwrap(clf.model).config.hidden_size,
        layers=len(layers),
    ) / len(texts)


@artifacts.locked("mathreport bench", "run_dir", existing=True)
def bench_run(
    run_dir: Path, backends: list[Backend] | None = None, *, output: Path | None = None, **kwargs
) -> dict:
    """`mathreport bench`: compare_backends, written atomically to `output` (default: the run's latency.json)."""
    latency = compare_backends(run_dir, backends, **kwargs)
    if output:
        files.write_json(Path(output), latency)
    else:
        artifacts.RunWriter(run_dir).latency(latency)
    return latency
