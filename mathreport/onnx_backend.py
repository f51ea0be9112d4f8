"""Exporting a transformer run to ONNX, verifying every inference backend on it, and choosing the run's backends.

A run's merged (LoRA folded in) float32 model is exported once with `torch.onnx.export` (the TorchScript
exporter, `dynamo=False`: it needs no extra package) to `model.onnx` in the run directory, and quantized with
`onnxruntime.quantization.quantize_dynamic` to `model-int8.onnx`. Both are written atomically; their SHA-256
and what each backend's answers are worth are recorded in run.json under `inference` (`predict.load_onnx`
loads no file whose hash differs).

The choice, made once per batch size (`latency`: one question; `throughput`: the run's batch size), keeps the
reference backend (the one that wrote the run's predictions) unless another is faster beyond the spread of
interleaved timing rounds and its answers are not significantly worse on the same validation questions
(`bench.paired_accuracy`: McNemar's exact test, one-sided); `choose` is the rule. `predict.load_classifier`
then uses the choice for its purpose.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from mathreport import artifacts, bench, environment, files, predict, record
from mathreport.errors import ArtifactError
from mathreport.predict import (
    FOUR_BIT_NO_ONNX,
    TORCH_FLOAT32,
    TORCH_NF4,
    TORCH_TOPK,
    OnnxClassifier,
    TopKClassifier,
    TransformerClassifier,
)

log = logging.getLogger("mathreport")

# The choice's timing (bench.time_calls, every backend round by round): batch size 1 over LATENCY_QUESTIONS
# questions, LATENCY_ROUNDS times; the throughput batch size over THROUGHPUT_BATCHES batches, THROUGHPUT_ROUNDS
# times. Enough rounds that the spread between them is measured; few enough to cost seconds per backend.
LATENCY_QUESTIONS, LATENCY_ROUNDS = 24, 5
THROUGHPUT_BATCHES, THROUGHPUT_ROUNDS = 2, 5
# A round during which other processes (or the hypervisor: steal time) took more than this share of the CPUs is
# timed again, at most as many times as there are rounds: it measured the neighbours, not the backends.
MAX_OTHER_LOAD = 0.1
OPSET = 17
# A protobuf file holds at most 2 GiB; larger models (the 7B decoders) stay on torch.
MAX_EXPORT_BYTES = 1_800_000_000


def export_onnx(model, tokenizer, path: Path) -> Path:
    """Export a float32 sequence-classification model to ONNX at `path` (atomically): ids + mask -> logits."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    # Two rows of different lengths, so that the traced graph takes padding into account.
    sample = tokenizer(
        ["What is the derivative of x squared?", "Solve 2x + 3 = 7."],
        padding=True,
        return_tensors="pt",
    )
    wrapper = Logits(model).eval()
    with files.atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer's warnings are about Python branches on shapes that transformers takes when it builds the
        # attention mask; the exported model's answers are checked against torch's afterwards.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (sample["input_ids"], sample["attention_mask"]),
            str(tmp),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            opset_version=OPSET,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
        )
    return Path(path)


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization of an ONNX model's MatMul weights (activations quantized per call), atomically.

    Only MatMul: the embedding tables (Gather) stay float32, they cost lookups, not arithmetic. One scale per
    output channel rather than per matrix: it changes fewer answers (the variants compared are in
    docs/perf/int8-variants-val.json).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with files.atomic_path(dst) as tmp:
        quantize_dynamic(
            str(src),
            str(tmp),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
        )
    return Path(dst)


def choose(timings: dict[str, dict], checks: dict[str, dict], reference: str) -> tuple[str, str]:
    """The backend to use at one batch size, and why: the reference unless another is faster beyond the spread.

    timings: {backend: bench.spread(...)} of the backends timed (the reference among them); checks: {backend:
    bench.paired_accuracy(...)} (`passes`, `argmax_agreement`). A candidate qualifies when its answers pass and
    its slowest round is faster than the reference's fastest (replacing the reference takes a gain larger than
    the whole spread). Of those, the fastest by median wins over the ones it beat in every interleaved round;
    the others are tied with it, and among tied ones the highest argmax agreement with the reference (then the
    name) decides: a fact of the answers, not of the timing, so that the same run chooses the same backend each
    time.
    """
    if reference not in timings:
        return reference, f"{reference} was not timed; it is the reference"
    floor = timings[reference]["interval_ms"][0]
    faster = [
        name
        for name, t in timings.items()
        if name != reference and checks.get(name, {}).get("passes") and t["interval_ms"][1] < floor
    ]
    if not faster:
        return reference, (
            f"no backend whose answers pass is faster than {reference} beyond the spread (its "
            f"fastest round {floor:.2f} ms per question); the reference is kept"
        )
    fastest = min(faster, key=lambda n: (timings[n]["median_ms"], n))
    tied = [n for n in faster if not _faster_every_round(timings[fastest], timings[n])]
    best = min(tied, key=lambda n: (-checks[n]["argmax_agreement"], n))
    t = timings[best]
    reason = (
        f"slowest round {t['interval_ms'][1]:.2f} ms per question, faster than {reference}'s fastest "
        f"{floor:.2f} ms; answers not significantly worse (McNemar, one-sided)"
    )
    if len(tied) > 1:
        reason += (
            f"; tied with {', '.join(n for n in tied if n != best)} (the fastest by median, "
            f"{fastest}, was not faster in every round): the highest argmax agreement with {reference} "
            f"({checks[best]['argmax_agreement']:.4f}) decides"
        )
    return best, reason


def _faster_every_round(a: dict, b: dict) -> bool:
    # Round r of every backend ran back to back (interleaved): a drift of the machine's speed between rounds
    # moves both alike, and only a backend faster in each of them is told apart from the other by the timing.
    return all(x < y for x, y in zip(a["round_ms"], b["round_ms"], strict=True))


def timing_plan(batch_size: int) -> tuple[int, int]:
    """(rounds, questions) the choice times a batch size over: the latency plan at 1, the throughput plan above."""
    if batch_size == 1:
        return LATENCY_ROUNDS, LATENCY_QUESTIONS
    return THROUGHPUT_ROUNDS, THROUGHPUT_BATCHES * batch_size


def time_backends(
    classifiers: dict, texts: list[str], batch_size: int
) -> tuple[dict[str, dict], dict]:
    """Every classifier timed at `batch_size` on the first questions of `texts`, interleaved round by round.

    Batch size 1: LATENCY_QUESTIONS questions, LATENCY_ROUNDS rounds; larger: THROUGHPUT_BATCHES batches,
    THROUGHPUT_ROUNDS rounds, after one untimed pass over the same batches (every shape seen once). A round
    during which other processes took more than MAX_OTHER_LOAD of the CPUs is timed again (at most `rounds`
    times). Returns {name: bench.spread(...)} (median, [fastest, slowest] round, each round) and the CPU load
    of each kept round and of each round timed again (environment.CpuLoad).
    """
    rounds, take = timing_plan(batch_size)
    batches = bench.batches_of(list(texts)[:take], batch_size)
    kept: dict[str, list] = {name: [] for name in classifiers}
    loads: dict[str, list] = {"kept": [], "timed_again": []}
    while len(loads["kept"]) < rounds:
        times, load = bench.time_calls(
            classifiers,
            batches,
            batch_size,
            warmup=0 if loads["kept"] or loads["timed_again"] else len(batches),
        )
        other = (load or {}).get("cpu_busy_other", 0.0)
        if other > MAX_OTHER_LOAD and len(loads["timed_again"]) < rounds:
            loads["timed_again"].append(load)
            continue
        loads["kept"].append(load)
        for name, ms in times.items():
            kept[name].append(ms)
    return {name: bench.spread(np.concatenate(ms), rounds) for name, ms in kept.items()}, loads


def export_and_choose(
    run_dir: Path,
    torch_classifier,
    texts: list[str],
    y_true,
    reference_probs,
    *,
    batch_size: int | None = None,
    split: str = "test",
) -> tuple[dict, dict]:
    """Export ONNX (float32 and int8), check and time every backend, choose one per batch size (`choose`).

    torch_classifier: the run's reference: its merged float32 `predict.TransformerClassifier`, a top-k run's
    `predict.TopKClassifier` (then float32 torch is one more candidate), or a 4-bit model with the adapter (then it
    is the only backend, torch-nf4); reference_probs: its probabilities for `texts`; batch_size: the run's
    (the throughput choice is made at `bench.throughput_batch_size` of it); split: which questions `texts` are,
    as run.json says it (`train` passes the validation split, capped: the choice never looks at the test split).
    Every candidate's answers on all of `texts` are compared with the reference's (`bench.paired_accuracy`);
    those that pass, and the reference, are timed at batch size 1 and at the throughput batch size. Writes
    model.onnx and model-int8.onnx into `run_dir` and returns the run.json `inference` section (`choices`, and
    `default`: the latency choice, for older readers) and {purpose: the chosen backend's classifier}; never
    raises for a backend that cannot be made: its reason is recorded and the choice falls back to the reference.
    """
    import torch

    run_dir, y_true = Path(run_dir), np.asarray(y_true)
    texts = list(texts)
    reference_probs = np.asarray(reference_probs, dtype=float)
    reference_accuracy = (
        float((reference_probs.argmax(1) == y_true).mean()) if len(y_true) else None
    )
    model = torch_classifier.model
    four_bit = bool(getattr(model, "is_loaded_in_4bit", False))
    top_k = isinstance(torch_classifier, TopKClassifier)
    reference = TORCH_NF4 if four_bit else TORCH_TOPK if top_k else TORCH_FLOAT32
    section: dict = {
        "reference": {
            "backend": reference.name,
            "accuracy": reference_accuracy,
            "split": split,
            "n": len(y_true),
        },
        "accuracy_test": (
            f"McNemar's exact test, one-sided, on the same {len(y_true)} questions: a backend is "
            f"refused when its answers are worse than {reference.name}'s with p < "
            f"{bench.SIGNIFICANCE:g}"
        ),
        "onnx": {},
        "skipped": {},
        "versions": environment.versions(environment.ONNX_PACKAGES),
        "exported_at": record.now(),
    }
    skipped = section["skipped"]
    classifiers: dict[str, object] = {reference.name: torch_classifier}
    plain = dict(
        tokenizer=torch_classifier.tokenizer,
        max_length=torch_classifier.max_length,
        device=torch_classifier.device,
    )
    if top_k:  # the same merged model, every layer in float32
        classifiers[TORCH_FLOAT32.name] = TransformerClassifier(model, **plain)
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    seconds: dict[str, float] = {}  # where the post-training time goes, recorded in run.json
    clock = time.perf_counter()
    on_cpu = torch_classifier.device.startswith("cpu")
    if four_bit:
        skipped["onnx"] = FOUR_BIT_NO_ONNX
    elif not on_cpu:
        skipped["onnx"] = (
            f"the run predicts with torch on {torch_classifier.device}; the ONNX files are made for "
            f"ONNX Runtime on a CPU: `mathreport export-onnx --run_dir {run_dir}` on a machine without "
            "a GPU exports them"
        )
    elif n_bytes > MAX_EXPORT_BYTES:
        skipped["onnx"] = (
            f"{n_bytes / 1e9:.1f} GB of weights is over a single ONNX file's 2 GB limit"
        )
    elif any(p.dtype != torch.float32 for p in model.parameters()):
        skipped["onnx"] = "the model's weights are not all float32 (a 4-bit or half-precision run)"
    else:
        classifiers.update(_export_onnx_files(run_dir, torch_classifier, section))
    seconds["export_quantize_load_onnx"], clock = time.perf_counter() - clock, time.perf_counter()
    if four_bit:
        # Its matmuls run in the 4-bit layers' compute dtype: bf16, or fp16 on a GPU without native bf16 (a T4).
        skipped["torch-bfloat16"] = (
            "a 4-bit run computes in 16 bits already (NF4 weights, 16-bit matmuls)"
        )
    elif not on_cpu:
        skipped["torch-bfloat16"] = (
            f"the run predicts with torch on {torch_classifier.device}; a bf16 copy is "
            "a CPU backend (for CPUs with AVX-512 BF16 or AMX)"
        )
    elif environment.cpu_has_fast_bf16():
        classifiers["torch-bfloat16"] = TransformerClassifier(
            copy.deepcopy(model).to(torch.bfloat16).eval(), **plain
        )
    else:
        skipped["torch-bfloat16"] = "this CPU has neither AVX-512 BF16 nor AMX"
    seconds["copy_to_bfloat16"], clock = time.perf_counter() - clock, time.perf_counter()

    big = bench.throughput_batch_size(batch_size)
    # Every candidate is checked: each batch size may choose a different one.
    checks: dict[str, dict] = {}
    for name, clf in classifiers.items():
        probs = (
            reference_probs
            if name == reference.name
            else clf.predict_proba(texts, batch_size=big, progress=True)
            if texts
            else reference_probs
        )
        checks[name] = bench.paired_accuracy(probs, y_true, reference_probs)
        seconds[f"check_{name}"], clock = time.perf_counter() - clock, time.perf_counter()
    eligible = {name: clf for name, clf in classifiers.items() if checks[name]["passes"]}
    choices = {}
    for purpose, size in (("latency", 1), ("throughput", big)):
        if (
            len(eligible) < 2 or not texts
        ):  # nothing to compare the reference with: no time spent timing it
            timings, load = {}, {}
            backend, reason = (
                reference.name,
                (
                    f"{reference.name} is the reference and the only backend"
                    if len(classifiers) == 1
                    else f"no other backend's answers pass; {reference.name} is the reference"
                ),
            )
        else:
            timings, load = time_backends(eligible, texts, size)
            backend, reason = choose(timings, checks, reference.name)
        seconds[f"timing_{purpose}"], clock = time.perf_counter() - clock, time.perf_counter()
        rounds, items = timing_plan(size)
        choices[purpose] = {
            "backend": backend,
            "batch_size": size,
            "reason": reason,
            "timing": f"first {min(items, len(texts))} questions of the {split} in batches of "
            f"{size}, {rounds} interleaved rounds"
            if timings
            else "not timed",
            "backends": timings,
            "cpu_load": load,
        }
    candidates = []
    for name in classifiers:
        entry = {"backend": name, **checks[name]}
        if not checks[name]["passes"]:
            entry["not_timed"] = f"its answers are significantly worse than {reference.name}'s"
        candidates.append(entry)
        if name.startswith("onnx-"):
            section["onnx"][name[5:]].update({k: v for k, v in entry.items() if k != "backend"})
    section.update(
        candidates=candidates,
        choices=choices,
        default=choices["latency"]["backend"],
        reason=choices["latency"]["reason"],
        seconds={k: round(v, 2) for k, v in seconds.items()},
    )
    for purpose, choice in choices.items():
        log.info(
            "%s backend (batch size %d): %s (%s)",
            purpose,
            choice["batch_size"],
            choice["backend"],
            choice["reason"],
        )
    return section, {purpose: classifiers[choice["backend"]] for purpose, choice in choices.items()}


def _export_onnx_files(run_dir: Path, torch_classifier, section: dict) -> dict[str, OnnxClassifier]:
    """Write model.onnx and model-int8.onnx and load them; what fails is recorded in section["skipped"]."""
    made = {}
    fp32_path = artifacts.onnx_path(run_dir, "float32")
    steps = (
        (
            "float32",
            lambda: export_onnx(torch_classifier.model, torch_classifier.tokenizer, fp32_path),
        ),
        ("int8", lambda: quantize_int8(fp32_path, artifacts.onnx_path(run_dir, "int8"))),
    )
    for dtype, make in steps:
        name = f"onnx-{dtype}"
        if dtype == "int8" and "onnx-float32" not in made:
            section["skipped"][name] = "the float32 export failed"
            continue
        try:
            start = time.perf_counter()
            path = make()
            seconds = time.perf_counter() - start
            model_bytes = path.read_bytes()
            session = predict.make_session(model_bytes)
        except (
            Exception
        ) as exc:  # any exporter or quantizer failure leaves torch as the default, with the reason
            section["skipped"][name] = (
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            log.warning(
                "%s: could not make %s (%s); keeping torch", run_dir, name, section["skipped"][name]
            )
            continue
        section["onnx"][dtype] = {
            "file": path.name,
            "sha256": files.sha256_bytes(model_bytes),
            "bytes": len(model_bytes),
            "seconds_to_make": round(seconds, 2),
        }
        made[name] = OnnxClassifier(
            session,
            torch_classifier.tokenizer,
            torch_classifier.max_length,
            dtype,
            session.get_session_options().intra_op_num_threads,
            sort_by_length=torch_classifier.sort_by_length,
            padding=torch_classifier.padding,
        )
    return made


@artifacts.locked("mathreport export-onnx", "run_dir", existing=True)
def export_run(run_dir: Path) -> dict:
    """`mathreport export-onnx`: export a finished transformer run, verify, choose its default; update run.json."""
    run_dir = Path(run_dir)
    manifest = artifacts.read_manifest(run_dir)
    if not manifest.traits.neural:
        raise ArtifactError(
            f"{run_dir}: only transformer runs are exported to ONNX (this one is {manifest.kind!r})"
        )
    if manifest.load_in_4bit:
        raise ArtifactError(
            f"{run_dir} was trained in 4-bit and is not exported to ONNX: {FOUR_BIT_NO_ONNX}"
        )
    # The backend is chosen on the validation questions; a run older than preds_val.csv has only its test ones.
    has_val = (run_dir / artifacts.PREDS_VAL).is_file()
    frame = (
        artifacts.read_val_predictions(run_dir) if has_val else artifacts.read_predictions(run_dir)
    )
    source = artifacts.PREDS_VAL if has_val else artifacts.PREDICTIONS
    if "text" not in frame.columns or frame["text"].isna().any():
        raise ArtifactError(
            f"{run_dir / source}: no 'text' column; the export is verified "
            f"on its questions. Make it with: {artifacts.make_command(run_dir)}"
        )
    # The reference is the backend that wrote the predictions (run.json says which; float32 torch before top-k).
    torch_classifier = predict.load_torch(
        run_dir, manifest, None, True, predict.reference_backend(manifest).dtype
    )
    section, _ = export_and_choose(
        run_dir,
        torch_classifier,
        frame["text"].astype(str).tolist(),
        frame["y_true"].to_numpy(),
        frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float),
        batch_size=(manifest.hyperparameters or {}).get("batch_size"),
        split=f"{'validation' if has_val else 'test'} split ({source})",
    )
    manifest.inference = section
    artifacts.RunWriter(run_dir).record(manifest)
    return section
