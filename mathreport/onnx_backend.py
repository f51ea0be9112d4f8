"""Exporting a transformer run to ONNX, verifying every inference backend on it, and choosing the run's default.

A run's merged (LoRA folded in) float32 model is exported once with `torch.onnx.export` (the TorchScript
exporter, `dynamo=False`: it needs no extra package) to `model.onnx` in the run directory, and quantized with
`onnxruntime.quantization.quantize_dynamic` to `model-int8.onnx`. Both are written atomically; their SHA-256
and the accuracy each reproduces are recorded in run.json under `inference` (`predict.load_onnx` loads no file
whose hash differs). `choose_default` picks the fastest backend (timed by `bench`) whose accuracy is within
`ACCURACY_TOLERANCE` of the reference model's (backends slower than the first that qualifies are timed, not
checked); `predict.load_classifier` then uses it by default.
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
    ONNX_FILES,
    TORCH_FLOAT32,
    TORCH_NF4,
    TORCH_TOPK,
    Backend,
    OnnxClassifier,
    TopKClassifier,
    TransformerClassifier,
)

log = logging.getLogger("mathreport")

# A backend may be the default only if its accuracy is within this of the reference's (half a percentage point).
ACCURACY_TOLERANCE = 0.005
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
    sample = tokenizer(["What is the derivative of x squared?", "Solve 2x + 3 = 7."], padding=True,
                       return_tensors="pt")
    wrapper = Logits(model).eval()
    with files.atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer's warnings are about Python branches on shapes that transformers takes when it builds the
        # attention mask; the exported model's answers are checked against torch's afterwards.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (sample["input_ids"], sample["attention_mask"]), str(tmp), dynamo=False,
            input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=OPSET,
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "logits": {0: "batch"}},
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
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         per_channel=True)
    return Path(dst)


def reproduces(accuracy: float | None, reference_accuracy: float) -> bool:
    """Whether a checked backend's accuracy is within ACCURACY_TOLERANCE of the reference's (None: not checked)."""
    return accuracy is not None and abs(accuracy - reference_accuracy) <= ACCURACY_TOLERANCE + 1e-12


def choose_default(candidates: list[dict], reference_accuracy: float,
                   reference: Backend = TORCH_FLOAT32) -> tuple[str, str]:
    """The name of the fastest candidate that reproduces the reference accuracy, and why.

    candidates: dicts with `backend`, `accuracy` (None where it was not checked) and `batch1_p50_ms` (None where
    not timed). Falls back to the reference backend (float32 torch; torch-nf4 for a 4-bit run, torch-topk for a
    top-k run), with the reason, when no candidate qualifies.
    """
    ok = [c for c in candidates if reproduces(c["accuracy"], reference_accuracy) and c.get("batch1_p50_ms") is not None]
    if not ok:
        return reference.name, f"no backend was both verified and timed; {reference.name} is the reference"
    best = min(ok, key=lambda c: c["batch1_p50_ms"])
    rejected = [f"{c['backend']} (accuracy {c['accuracy']:.4f})" for c in candidates
                if c["accuracy"] is not None and not reproduces(c["accuracy"], reference_accuracy)]
    reason = (f"fastest at batch size 1 ({best['batch1_p50_ms']:.2f} ms per question) of the backends whose "
              f"accuracy is within {ACCURACY_TOLERANCE * 100:g} point of {reference.name} ({reference_accuracy:.4f})")
    if rejected:
        reason += "; not reproducing it: " + ", ".join(rejected)
    return best["backend"], reason


def export_and_choose(run_dir: Path, torch_classifier, texts: list[str], y_true, reference_probs,
                      *, timing_items: int = 10, rounds: int = 2, split: str = "test") -> tuple[dict, object]:
    """Export ONNX (float32 and int8), time every backend, verify them fastest first, pick the default.

    torch_classifier: the run's reference: its merged float32 `predict.TransformerClassifier`, a top-k run's
    `predict.TopKClassifier` (then float32 torch is one more candidate), or a 4-bit model with the adapter (then it
    is the only backend, torch-nf4); reference_probs: its probabilities for `texts`; split: which questions they
    are, as run.json says it (`train` passes a capped sample of the validation split: the choice never looks at
    the test split). Every backend is timed at batch size 1 on the first `timing_items` questions; then, from the
    fastest, each one's accuracy on `texts` is checked until one reproduces the reference: that one is the
    default, and the slower ones, which could not be chosen, are recorded as timed but not checked. Writes
    model.onnx and model-int8.onnx into `run_dir` and returns the run.json `inference` section and the default
    backend's classifier; never raises for a backend that cannot be made: its reason is recorded and the default
    falls back to the reference.
    """
    import torch

    run_dir, y_true = Path(run_dir), np.asarray(y_true)
    reference_probs = np.asarray(reference_probs, dtype=float)
    reference_accuracy = float((reference_probs.argmax(1) == y_true).mean())
    model = torch_classifier.model
    four_bit = bool(getattr(model, "is_loaded_in_4bit", False))
    top_k = isinstance(torch_classifier, TopKClassifier)
    reference = TORCH_NF4 if four_bit else TORCH_TOPK if top_k else TORCH_FLOAT32
    section: dict = {
        "reference": {"backend": reference.name, "accuracy": reference_accuracy, "split": split, "n": len(y_true)},
        "accuracy_tolerance": ACCURACY_TOLERANCE, "onnx": {}, "skipped": {},
        "versions": environment.versions(environment.ONNX_PACKAGES),
        "exported_at": record.now(),
    }
    skipped = section["skipped"]
    classifiers: dict[str, object] = {reference.name: torch_classifier}
    plain = dict(tokenizer=torch_classifier.tokenizer, max_length=torch_classifier.max_length,
                 device=torch_classifier.device)
    if top_k:  # the same merged model, every layer in float32
        classifiers[TORCH_FLOAT32.name] = TransformerClassifier(model, **plain)
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    seconds: dict[str, float] = {}  # where the post-training time goes, recorded in run.json
    clock = time.perf_counter()
    on_cpu = torch_classifier.device.startswith("cpu")
    if four_bit:
        skipped["onnx"] = FOUR_BIT_NO_ONNX
    elif not on_cpu:
        skipped["onnx"] = (f"the run predicts with torch on {torch_classifier.device}; the ONNX files are made for "
                           f"ONNX Runtime on a CPU: `mathreport export-onnx --run_dir {run_dir}` on a machine without "
                           "a GPU exports them")
    elif n_bytes > MAX_EXPORT_BYTES:
        skipped["onnx"] = f"{n_bytes / 1e9:.1f} GB of weights is over a single ONNX file's 2 GB limit"
    elif any(p.dtype != torch.float32 for p in model.parameters()):
        skipped["onnx"] = "the model's weights are not all float32 (a 4-bit or half-precision run)"
    else:
        classifiers.update(_export_onnx_files(run_dir, torch_classifier, section))
    seconds["export_quantize_load_onnx"], clock = time.perf_counter() - clock, time.perf_counter()
    if four_bit:
        # Its matmuls run in the 4-bit layers' compute dtype: bf16, or fp16 on a GPU without native bf16 (a T4).
        skipped["torch-bfloat16"] = "a 4-bit run computes in 16 bits already (NF4 weights, 16-bit matmuls)"
    elif not on_cpu:
        skipped["torch-bfloat16"] = (f"the run predicts with torch on {torch_classifier.device}; a bf16 copy is "
                                     "a CPU backend (for CPUs with AVX-512 BF16 or AMX)")
    elif environment.cpu_has_fast_bf16():
        classifiers["torch-bfloat16"] = TransformerClassifier(copy.deepcopy(model).to(torch.bfloat16).eval(), **plain)
    else:
        skipped["torch-bfloat16"] = "this CPU has neither AVX-512 BF16 nor AMX"

    seconds["copy_to_bfloat16"], clock = time.perf_counter() - clock, time.perf_counter()
    timed = bench.median_ms(classifiers, list(texts)[:timing_items], 1, rounds=rounds, warmup=3) if len(texts) else {}
    seconds["timing"], clock = time.perf_counter() - clock, time.perf_counter()
    candidates, found = [], None
    for name in sorted(classifiers, key=lambda n: (timed.get(n) is None, timed.get(n) or 0.0)):
        entry = {"backend": name, "batch1_p50_ms": timed.get(name)}
        if found is not None:
            entry.update(accuracy=None, not_checked=f"slower at batch size 1 than {found}, which reproduces "
                                                    f"{reference.name}")
        else:
            probs = (reference_probs if name == reference.name
                     else classifiers[name].predict_proba(texts, batch_size=32, progress=True))
            entry.update(predict.agreement(probs, y_true, reference_probs))
            if reproduces(entry["accuracy"], reference_accuracy) and timed.get(name):
                found = name
            seconds[f"check_{name}"], clock = time.perf_counter() - clock, time.perf_counter()
        candidates.append(entry)
        if name.startswith("onnx-"):
            section["onnx"][name[5:]].update({k: v for k, v in entry.items() if k != "backend"})
    default, reason = choose_default(candidates, reference_accuracy, reference)
    section.update(candidates=candidates, timing=f"batch size 1, first {min(timing_items, len(texts))} questions "
                   f"of the {split}, {rounds} interleaved rounds", default=default, reason=reason,
                   seconds={k: round(v, 2) for k, v in seconds.items()})
    log.info("default inference backend: %s (%s)", default, reason)
    return section, classifiers[default]


def _export_onnx_files(run_dir: Path, torch_classifier, section: dict) -> dict[str, OnnxClassifier]:
    """Write model.onnx and model-int8.onnx and load them; what fails is recorded in section["skipped"]."""
    made = {}
    fp32_path = run_dir / ONNX_FILES["float32"]
    steps = (("float32", lambda: export_onnx(torch_classifier.model, torch_classifier.tokenizer, fp32_path)),
             ("int8", lambda: quantize_int8(fp32_path, run_dir / ONNX_FILES["int8"])))
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
        except Exception as exc:  # any exporter or quantizer failure leaves torch as the default, with the reason
            section["skipped"][name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning("%s: could not make %s (%s); keeping torch", run_dir, name, section["skipped"][name])
            continue
        section["onnx"][dtype] = {"file": path.name, "sha256": files.sha256_bytes(model_bytes),
                                  "bytes": len(model_bytes), "seconds_to_make": round(seconds, 2)}
        made[name] = OnnxClassifier(session, torch_classifier.tokenizer, torch_classifier.max_length, dtype,
                                    session.get_session_options().intra_op_num_threads,
                                    sort_by_length=torch_classifier.sort_by_length,
                                    padding=torch_classifier.padding)
    return made


def export_run(run_dir: Path) -> dict:
    """`mathreport export-onnx`: export a finished transformer run, verify, choose its default; update run.json."""
    artifacts.require_run_dir(run_dir)
    with artifacts.run_lock(run_dir, "mathreport export-onnx"):
        return _export_run(Path(run_dir))


def _export_run(run_dir: Path) -> dict:
    manifest = artifacts.read_manifest(run_dir)
    if manifest.kind != "transformer":
        raise ArtifactError(f"{run_dir}: only transformer runs are exported to ONNX (this one is {manifest.kind!r})")
    if manifest.load_in_4bit:
        raise ArtifactError(f"{run_dir} was trained in 4-bit and is not exported to ONNX: {FOUR_BIT_NO_ONNX}")
    # The backend is chosen on the validation questions; a run older than preds_val.csv has only its test ones.
    has_val = (run_dir / artifacts.PREDS_VAL).is_file()
    frame = artifacts.read_val_predictions(run_dir) if has_val else artifacts.read_predictions(run_dir)
    source = artifacts.PREDS_VAL if has_val else artifacts.PREDICTIONS
    if "text" not in frame.columns or frame["text"].isna().any():
        raise ArtifactError(f"{run_dir / source}: no 'text' column; the export is verified "
                            f"on its questions. Make it with: {artifacts.make_command(run_dir)}")
    # The reference is the backend that wrote the predictions (run.json says which; float32 torch before top-k).
    torch_classifier = predict.load_torch(run_dir, manifest, None, True, predict.reference_backend(manifest).dtype)
    section, _ = export_and_choose(run_dir, torch_classifier, frame["text"].astype(str).tolist(),
                                   frame["y_true"].to_numpy(), frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float),
                                   split=f"{'validation' if has_val else 'test'} split ({source})")
    manifest.inference = section
    record.write(run_dir, manifest)
    return section
