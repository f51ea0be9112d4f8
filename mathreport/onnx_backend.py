"""ONNX Runtime inference for a transformer run: export, int8 quantization, verified loading, backend choice.

A run's merged (LoRA folded in) float32 model is exported once with `torch.onnx.export` (the TorchScript
exporter, `dynamo=False`: it needs no extra package) to `model.onnx` in the run directory, and quantized with
`onnxruntime.quantization.quantize_dynamic` to `model-int8.onnx`. Both are written atomically; their SHA-256
and the test accuracy each reproduces are recorded in run.json under `inference`, and a file whose hash does
not match is never loaded. `choose_default` picks the fastest backend whose test accuracy is within
`ACCURACY_TOLERANCE` of the float32 torch model's; `predict.load_classifier` then uses it by default.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

import numpy as np

from mathreport import artifacts, environment, files
from mathreport.errors import OnnxUnavailable

log = logging.getLogger("mathreport")

ONNX_FILES = {"float32": "model.onnx", "int8": "model-int8.onnx"}
INFERENCE = "inference"  # the run.json section this module writes
# A backend may be the default only if its test accuracy is within this of the float32 torch model's
# (0.005 = half a percentage point).
ACCURACY_TOLERANCE = 0.005
OPSET = 17
# A protobuf file holds at most 2 GiB; larger models (the 7B decoders) stay on torch.
MAX_EXPORT_BYTES = 1_800_000_000


@dataclass(frozen=True)
class Backend:
    """One way to run a transformer run's model: an engine and the precision of its weights."""

    engine: str  # "torch" or "onnx"
    dtype: str  # torch: "float32", "bfloat16"; onnx: "float32", "int8"

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.dtype}"


TORCH_FLOAT32 = Backend("torch", "float32")
ALL_BACKENDS = (TORCH_FLOAT32, Backend("torch", "bfloat16"), Backend("onnx", "float32"), Backend("onnx", "int8"))
# A run trained in 4-bit has this one backend: its NF4 base (bitsandbytes) with the adapter, as it was trained.
TORCH_NF4 = Backend("torch", "nf4")
FOUR_BIT_NO_ONNX = ("a 4-bit run keeps its NF4 base (bitsandbytes' Linear4bit layers), which ONNX cannot hold; it "
                    "runs on torch (torch-nf4). For an ONNX model, train in full precision (--no-load_in_4bit)")


def backend_named(name: str) -> Backend:
    """The backend called `name` (e.g. "onnx-int8")."""
    for backend in (*ALL_BACKENDS, TORCH_NF4):
        if backend.name == name:
            return backend
    raise ValueError(f"unknown backend {name!r}; expected one of {[b.name for b in (*ALL_BACKENDS, TORCH_NF4)]}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=1, keepdims=True)


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

    def predict_proba(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        from mathreport import predict

        texts = list(texts)
        n_classes = self.session.get_outputs()[0].shape[-1]
        out = np.empty((len(texts), n_classes), dtype=float)
        inputs = [i.name for i in self.session.get_inputs()]
        batches = predict.length_sorted_batches(texts, batch_size, self.sort_by_length)
        for idx in tqdm(batches, desc="predict", disable=not progress, unit="batch"):
            enc = self.tokenizer([texts[i] for i in idx], padding=self.padding, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            feeds = {name: np.asarray(enc[name], dtype=np.int64) for name in inputs}
            out[idx] = _softmax(self.session.run(None, feeds)[0])
        return out


# --- export ----------------------------------------------------------------------------------------


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
        # attention mask; the export is checked against torch's answers on the whole test split afterwards.
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
    output channel: with one per matrix, 5.4% of the real-data minilm's validation answers changed, with one per
    channel 2.3% (docs/perf/int8-variants-val.json).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with files.atomic_path(dst) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         per_channel=True)
    return Path(dst)


# --- loading ---------------------------------------------------------------------------------------


def make_session(model_bytes: bytes, threads: int | None = None):
    """An ONNX Runtime CPU session; threads: intra-op threads (None: one per CPU core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def recorded_file(run_dir: Path, dtype: str, manifest: dict | None = None) -> tuple[Path, str]:
    """The ONNX file of a run for `dtype` and the SHA-256 run.json records for it; OnnxUnavailable if none."""
    run_dir = Path(run_dir)
    manifest = artifacts.read_manifest(run_dir) if manifest is None else manifest
    if dtype not in ONNX_FILES:
        raise ValueError(f"the onnx backend runs {sorted(ONNX_FILES)}, not {dtype!r}")
    record = ((manifest.get(INFERENCE) or {}).get("onnx") or {}).get(dtype) or {}
    path = run_dir / ONNX_FILES[dtype]
    if not record.get("sha256"):
        raise OnnxUnavailable(f"{path} was never exported and verified for this run "
                              f"(make it with: mathreport export-onnx --run_dir {run_dir})")
    return path, record["sha256"]


def load_onnx(run_dir: Path, dtype: str = "float32", manifest: dict | None = None,
              threads: int | None = None) -> OnnxClassifier:
    """The run's ONNX model as a classifier, only if the file is the one whose answers were verified."""
    from mathreport import models

    run_dir = Path(run_dir)
    manifest = artifacts.read_manifest(run_dir) if manifest is None else manifest
    path, expected = recorded_file(run_dir, dtype, manifest)
    try:
        model_bytes = path.read_bytes()
    except OSError as exc:
        raise OnnxUnavailable(f"{path} cannot be read ({exc.strerror or exc})") from exc
    # Hash the bytes that are loaded, not the file before: nothing can change between the check and the load.
    found = files.sha256_bytes(model_bytes)
    if found != expected:
        raise OnnxUnavailable(f"{path} is not the file that was verified (SHA-256 {found[:12]}…, "
                              f"run.json records {expected[:12]}…)")
    try:
        session = make_session(model_bytes, threads)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise OnnxUnavailable(f"{path} cannot be loaded by onnxruntime: {exc}") from exc
    tokenizer = models.load_tokenizer(str(run_dir / "model"))
    max_length = int(manifest["hyperparameters"]["max_length"])
    return OnnxClassifier(session, tokenizer, max_length, dtype, session.get_session_options().intra_op_num_threads)


# --- verification and the default ------------------------------------------------------------------


def agreement(probs: np.ndarray, y_true: np.ndarray, reference: np.ndarray) -> dict:
    """Test accuracy of `probs`, and how close they are to the float32 reference probabilities."""
    probs, reference = np.asarray(probs, dtype=float), np.asarray(reference, dtype=float)
    if probs.shape != reference.shape or len(probs) != len(y_true):
        raise ValueError(f"probabilities {probs.shape}, reference {reference.shape} and {len(y_true)} labels "
                         "must describe the same test questions")
    return {
        "accuracy": float((probs.argmax(1) == y_true).mean()),
        "argmax_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
        "max_abs_prob_diff": float(np.abs(probs - reference).max()) if len(probs) else 0.0,
    }


def batch1_p50_ms(classifiers: dict[str, object], texts: list[str], rounds: int = 3) -> dict[str, float]:
    """Median per-question batch-1 time of each classifier on `texts`, interleaved round by round."""
    from mathreport import bench

    times: dict[str, list[float]] = {name: [] for name in classifiers}
    batches = [[t] for t in texts]
    for clf in classifiers.values():  # one warm-up pass each
        bench.time_batches(clf, batches[:3], 1)
    for _ in range(rounds):
        for name, clf in classifiers.items():
            times[name].extend(bench.time_batches(clf, batches, 1))
    return {name: float(np.median(t)) * 1000 for name, t in times.items()}


def choose_default(candidates: list[dict], reference_accuracy: float,
                   reference: Backend = TORCH_FLOAT32) -> tuple[str, str]:
    """The name of the fastest candidate that reproduces the reference accuracy, and why.

    candidates: dicts with `backend`, `accuracy` and `batch1_p50_ms` (None where not timed). Falls back to
    the reference backend (float32 torch; torch-nf4 for a 4-bit run), with the reason, when no candidate qualifies.
    """
    ok = [c for c in candidates if abs(c["accuracy"] - reference_accuracy) <= ACCURACY_TOLERANCE + 1e-12
          and c.get("batch1_p50_ms") is not None]
    if not ok:
        return reference.name, f"no backend was both verified and timed; {reference.name} is the reference"
    best = min(ok, key=lambda c: c["batch1_p50_ms"])
    others = [c for c in candidates if c is not best]
    rejected = [f"{c['backend']} (accuracy {c['accuracy']:.4f})" for c in others
                if abs(c["accuracy"] - reference_accuracy) > ACCURACY_TOLERANCE + 1e-12]
    reason = (f"fastest at batch size 1 ({best['batch1_p50_ms']:.2f} ms per question) of the backends whose test "
              f"accuracy is within {ACCURACY_TOLERANCE * 100:g} point of {reference.name} ({reference_accuracy:.4f})")
    if rejected:
        reason += "; not reproducing it: " + ", ".join(rejected)
    return best["backend"], reason


def export_and_choose(run_dir: Path, torch_classifier, texts: list[str], y_true, reference_probs,
                      *, timing_items: int = 32, rounds: int = 3, split: str = "test") -> tuple[dict, object]:
    """Export ONNX (float32 and int8), verify every backend on `texts`, time them, pick the default.

    torch_classifier: the run's merged float32 `predict.TransformerClassifier` (or its 4-bit model with the
    adapter: then it is the only backend, torch-nf4); reference_probs: its probabilities for `texts`; split: which
    questions they are, as run.json says it (`train` passes a capped sample of the validation split: the choice
    never looks at the test split). Writes model.onnx and model-int8.onnx into `run_dir` and returns the run.json
    `inference` section and the default backend's classifier; never raises for a backend that cannot be made: its
    reason is recorded and the default falls back to the reference.
    """
    import copy

    import torch

    run_dir = Path(run_dir)
    y_true = np.asarray(y_true)
    reference_probs = np.asarray(reference_probs, dtype=float)
    reference_accuracy = float((reference_probs.argmax(1) == y_true).mean())
    model = torch_classifier.model
    four_bit = bool(getattr(model, "is_loaded_in_4bit", False))
    reference = TORCH_NF4 if four_bit else TORCH_FLOAT32
    section: dict = {
        "reference": {"backend": reference.name, "accuracy": reference_accuracy, "split": split,
                      "n": len(y_true)},
        "accuracy_tolerance": ACCURACY_TOLERANCE,
        "onnx": {},
        "skipped": {},
        "versions": environment.versions(environment.ONNX_PACKAGES),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    classifiers: dict[str, object] = {reference.name: torch_classifier}
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    if four_bit:
        section["skipped"]["onnx"] = FOUR_BIT_NO_ONNX
    elif not torch_classifier.device.startswith("cpu"):
        section["skipped"]["onnx"] = f"the model is on {torch_classifier.device}; ONNX Runtime here runs on the CPU"
    elif n_bytes > MAX_EXPORT_BYTES:
        section["skipped"]["onnx"] = f"{n_bytes / 1e9:.1f} GB of weights is over a single ONNX file's 2 GB limit"
    elif any(p.dtype != torch.float32 for p in model.parameters()):
        section["skipped"]["onnx"] = "the model's weights are not all float32 (a 4-bit or half-precision run)"
    else:
        classifiers.update(_export_onnx_files(run_dir, torch_classifier, section))
    if four_bit:
        section["skipped"]["torch-bfloat16"] = "a 4-bit run computes in bf16 already (NF4 weights, bf16 matmuls)"
    elif environment.cpu_has_fast_bf16() and torch_classifier.device.startswith("cpu"):
        bf16 = copy.deepcopy(model).to(torch.bfloat16).eval()
        classifiers["torch-bfloat16"] = dataclasses.replace(torch_classifier, model=bf16)
    else:
        section["skipped"]["torch-bfloat16"] = "this CPU has neither AVX-512 BF16 nor AMX"

    candidates = []
    from tqdm.auto import tqdm

    for name, clf in tqdm(classifiers.items(), desc=f"checking backends on {split}", unit="backend"):
        probs = reference_probs if name == reference.name else clf.predict_proba(texts, batch_size=32)
        candidates.append({"backend": name, **agreement(probs, y_true, reference_probs)})
    timed = batch1_p50_ms(classifiers, list(texts)[:timing_items], rounds=rounds) if len(texts) else {}
    for c in candidates:
        c["batch1_p50_ms"] = timed.get(c["backend"])
    for name, record in section["onnx"].items():
        record.update({k: v for k, v in next(c for c in candidates if c["backend"] == f"onnx-{name}").items()
                       if k != "backend"})
    default, reason = choose_default(candidates, reference_accuracy, reference)
    section.update(candidates=candidates, timing=f"batch size 1, first {min(timing_items, len(texts))} questions "
                   f"of the {split}, {rounds} interleaved rounds", default=default, reason=reason)
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
            session = make_session(model_bytes)
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
    from mathreport import predict

    run_dir = Path(run_dir)
    manifest = artifacts.read_manifest(run_dir)
    if manifest.get("kind") != "transformer":
        raise artifacts.ArtifactError(f"{run_dir}: only transformer runs are exported to ONNX "
                                      f"(this one is {manifest.get('kind')!r})")
    if manifest.get("load_in_4bit"):
        raise artifacts.ArtifactError(f"{run_dir} was trained in 4-bit and is not exported to ONNX: "
                                      f"{FOUR_BIT_NO_ONNX}")
    # The backend is chosen on the validation questions; a run older than preds_val.csv has only its test ones.
    has_val = (run_dir / artifacts.PREDS_VAL).is_file()
    frame = artifacts.read_val_predictions(run_dir) if has_val else artifacts.read_predictions(run_dir)
    source = artifacts.PREDS_VAL if has_val else artifacts.PREDICTIONS
    if "text" not in frame.columns or frame["text"].isna().any():
        raise artifacts.ArtifactError(f"{run_dir / source}: no 'text' column; the export is verified "
                                      f"on its questions. Make it with: {artifacts.make_command(run_dir)}")
    torch_classifier = predict.load_classifier(run_dir, backend="torch", dtype="float32")
    # LOCK(safety): take `artifacts.run_lock(run_dir)` around everything below (it writes model*.onnx and
    # run.json) once the `safety` branch that adds it is merged.
    section, _ = export_and_choose(run_dir, torch_classifier, frame["text"].astype(str).tolist(),
                                frame["y_true"].to_numpy(), frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float),
                                split=f"{'validation' if has_val else 'test'} split ({source})")
    manifest = artifacts.read_manifest(run_dir)
    manifest[INFERENCE] = section
    files.write_json(run_dir / artifacts.MANIFEST, manifest)
    return section
