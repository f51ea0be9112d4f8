"""The first run on a GPU: `mathreport train` on the GPU, then the 7B decoders' speed and memory (random weights).

    python benchmarks/gpu_bench.py          # on a CUDA GPU: writes docs/GPU.md's results and docs/gpu_bench.json
    python benchmarks/gpu_bench.py --model_path qwen=~/models/Qwen2.5-Math-7B   # real weights trained as well
    python benchmarks/gpu_bench.py --tiny   # the measuring code on tiny models on a CPU (measures nothing)

First, the product on the GPU (`train_checks`): `mathreport train` as a user runs it, one process per run, on tiny
Qwen2 / Mistral models (full precision, 4-bit, top layers over cached frozen states), on minilm (its preset's top-k
path), and `mathreport pipeline` (notebooks and report); with `--model_path NAME=DIR`, the real model too, on
`--train_samples` questions. Each run's exit status, error line, time and what its run.json says (device,
precision, 4-bit) go into the JSON; one that fails does not stop the others, and the exit status is then 1.

The models have the exact shapes of Qwen2.5-Math-7B and Mistral-7B-v0.3 (from their published configs) but random
weights, so the numbers need no download: speed and memory do not depend on the values of the weights. The model
is built and given LoRA by the same functions as `mathreport train` (models.load_base_model, models.add_lora).
What the training numbers time is a plain PyTorch loop written here, not Trainer: per step, forward under bf16
autocast, backward, `torch.optim.AdamW.step()`, `zero_grad`. Trainer's own work around the step (data loader,
gradient clipping, learning-rate schedule, logging) is not in them. `tiny=True` runs the same code on tiny configs
on a CPU, so the code path is tested without a GPU.

Model FLOPs per token (MFU counts these, never recomputation; Chowdhery et al. 2022, PaLM, appendix B):
  full fine-tuning:  6 N + 12 L d s                 (Kaplan et al. 2020: forward 2N, backward 4N)
  LoRA (this code):  4 N_frozen + 6 N_trainable + 12 L d s
A frozen weight still needs the gradient with respect to its input in the backward pass (2N) but not the gradient
with respect to itself (the other 2N). N counts matmul weights (not embeddings); L layers, d hidden size, s the
padded sequence length (attention scores and the weighted sum, forward and backward).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mathreport import environment, files, models, tiny
from mathreport.labels import NUM_CLASSES

# https://huggingface.co/Qwen/Qwen2.5-Math-7B/blob/main/config.json
QWEN25_MATH_7B = {
    "arch": "qwen2",
    "hidden_size": 3584,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "intermediate_size": 18944,
    "vocab_size": 152064,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
# https://huggingface.co/mistralai/Mistral-7B-v0.3/blob/main/config.json
MISTRAL_7B_V03 = {
    "arch": "mistral",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 32768,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-5,
    "sliding_window": None,
    "tie_word_embeddings": False,
}
SHAPES = {"qwen": QWEN25_MATH_7B, "mistral": MISTRAL_7B_V03}
PRECISIONS = ("bf16", "4bit")

# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's datasheets (the "with sparsity" figures halved); the
# first name contained in torch.cuda.get_device_name() wins, so the PCIe/NVL variants come before "H100".
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,
    "H200": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
}

BEGIN, END = "<!-- gpu-bench:begin -->", "<!-- gpu-bench:end -->"
PAD_ID = 0


@dataclass
class BenchConfig:
    """What to measure; the field names are the command-line flags."""

    models: tuple[str, ...] = ("qwen", "mistral")
    precisions: tuple[str, ...] = PRECISIONS
    batch_size: int | None = None  # training batch; None: the preset's (as `mathreport train`)
    max_length: int | None = None  # None: the preset's
    train_steps: int = 10
    warmup_steps: int = 3
    latency_batches: dict[int, int] = field(
        default_factory=lambda: {1: 100, 32: 20}
    )  # batch size: timed batches
    latency_warmup: int = 3
    lora_mlp: bool = False
    questions: Path | None = Path(
        "data/test_split.csv"
    )  # their lengths; the demo corpus when missing
    work_dir: Path | None = None  # where the random bf16 weights are saved for loading in 4-bit
    tiny: bool = False
    seed: int = 0
    # `mathreport train` / `pipeline` on the GPU first (never in the tiny dry run, which measures on the CPU).
    train_checks: bool = True
    model_paths: dict[str, str] = field(
        default_factory=dict
    )  # {preset: local weights} trained for real too
    data_dir: Path = Path(
        "data"
    )  # the split files real weights train on (the demo corpus when missing)
    train_samples: int = 512


def require_cuda() -> str:
    """The CUDA device name; NeedsCudaError at once when there is none."""
    import torch

    if not torch.cuda.is_available():
        raise models.NeedsCudaError(
            f"benchmarks/gpu_bench.py measures on a CUDA GPU and torch {torch.__version__} sees none here "
            f"(built with CUDA {torch.version.cuda}). Run it on a GPU machine (docs/GPU.md), or pass --tiny for "
            "the CPU dry run of the same code on tiny models."
        )
    return torch.cuda.get_device_name(0)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by name, or None when unknown (MFU is then not reported)."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def question_token_lengths(path: Path | None, max_length: int) -> tuple[np.ndarray, str]:
    """Token lengths of real questions (characters / 4, clipped to [4, max_length]) and where they came from."""
    import pandas as pd

    if path is not None and Path(path).is_file():
        from mathreport import data

        texts = pd.Series(data.read_questions(path))
        source = str(path)
    else:
        from mathreport import demo

        texts = demo.generate_problems(800, seed=0)["Question"]
        source = "demo corpus (800 problems)"
    # ~4 characters per token for English BPE vocabularies; the real tokenizers are not available offline.
    lengths = np.clip(np.round(texts.str.len().to_numpy() / 4), 4, max_length).astype(int)
    return (
        lengths,
        f"{source}: {len(lengths)} questions, tokens = chars/4, median {int(np.median(lengths))}, "
        f"p95 {int(np.percentile(lengths, 95))}, max {lengths.max()}",
    )


def model_config(key: str, tiny_shape: bool):
    """The transformers config of the `key` decoder (or its tiny version) for 8-class classification."""
    shape = dict(SHAPES[key])
    arch = shape.pop("arch")
    if tiny_shape:
        shape.update(tiny.TINY_SHAPE, vocab_size=tiny.VOCAB_SIZE)
    config = tiny.tiny_config(arch, **shape)
    config.num_labels = NUM_CLASSES
    config.pad_token_id = PAD_ID
    return config


def matmul_params(config) -> tuple[int, int]:
    """(weights in the matmuls of all layers, head weights) from a config: embeddings excluded, bias ignored."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
    q_out = config.num_attention_heads * head_dim
    kv_out = config.num_key_value_heads * head_dim
    per_layer = d * q_out + 2 * d * kv_out + q_out * d + 3 * d * ff
    return layers * per_layer, d * NUM_CLASSES


def _build_random(config, device: str, dtype):
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    # Allocated and initialised on the device itself: a 7B model never exists in CPU memory.
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    model.config.use_cache = False
    return model


def _batches(
    rng: np.random.Generator,
    lengths: np.ndarray,
    batch_size: int,
    n: int,
    vocab: int,
    grouped: bool,
):
    """`n` batches of random token ids with real lengths, right-padded with PAD_ID to the longest in the batch.

    `grouped` mimics Trainer's group_by_length sampler, which sorts by length within mega-batches of 50 batches
    (here all `n` batches form one), then shuffles the batches.
    """
    import torch

    if grouped:
        flat = np.sort(rng.choice(lengths, size=n * batch_size))[::-1]
        drawn = flat.reshape(n, batch_size)[rng.permutation(n)]
    else:
        drawn = rng.choice(lengths, size=(n, batch_size))
    out = []
    for row in drawn:
        width = int(row.max())
        ids = torch.full((batch_size, width), PAD_ID, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for i, length in enumerate(row):
            ids[i, :length] = torch.from_numpy(rng.integers(1, vocab, size=int(length)))
            mask[i, :length] = 1
        labels = torch.from_numpy(rng.integers(0, NUM_CLASSES, size=batch_size))
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    # On CPU: the process's peak resident memory (KiB on Linux), a coarse stand-in for the dry run.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure_training(
    model, config, batches: list[dict], warmup: int, device: str, peak: float | None
) -> dict:
    """Time LoRA training steps of a hand-written loop (not Trainer): forward under bf16 autocast (CUDA), backward,
    AdamW step, zero_grad. No gradient clipping, scheduler or data loader: the step itself."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))

    def step(batch: dict) -> None:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:warmup]:
        step(batch)
    timed = batches[warmup:]
    _sync(device)
    _reset_peak(device)
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    _sync(device)
    seconds = time.perf_counter() - start

    n_trainable = sum(p.numel() for p in params)
    n_matmul, n_head = matmul_params(config)
    real_tokens = int(sum(int(b["attention_mask"].sum()) for b in timed))
    padded = [(b["input_ids"].numel(), b["input_ids"].shape[1]) for b in timed]
    attention = sum(12 * config.num_hidden_layers * config.hidden_size * s * t for t, s in padded)
    tokens = sum(t for t, _ in padded)
    # The head is trained (in n_trainable); LoRA adapters are trainable, the base matmuls frozen.
    lora_flops = (4 * n_matmul + 6 * n_trainable) * tokens + attention
    full_flops = 6 * (n_matmul + n_head) * tokens + attention
    out = {
        "train_steps": len(timed),
        "train_batch_size": int(timed[0]["input_ids"].shape[0]),
        "train_seconds": seconds,
        "train_tokens_per_s": real_tokens / seconds,
        "train_padded_tokens_per_s": tokens / seconds,
        "train_samples_per_s": sum(int(b["input_ids"].shape[0]) for b in timed) / seconds,
        "train_peak_memory_gib": _peak_gib(device),
        "trainable_parameters": n_trainable,
        "matmul_parameters": n_matmul + n_head,
        "train_model_tflops_per_s": lora_flops / seconds / 1e12,
        "mfu": None,
        "mfu_6nt": None,
    }
    if peak:
        out["mfu"] = lora_flops / seconds / (peak * 1e12)
        out["mfu_6nt"] = full_flops / seconds / (peak * 1e12)
    return out


def measure_latency(
    model, batches_by_size: dict[int, list[dict]], warmup: int, device: str
) -> dict:
    """p50/p95 latency of whole batches (random real lengths, padded to the longest) under inference_mode."""
    import torch

    model.eval()
    out: dict = {}
    _reset_peak(device)
    for batch_size, batches in batches_by_size.items():
        times = []
        for i, batch in enumerate(batches):
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            _sync(device)
            start = time.perf_counter()
            with torch.inference_mode():
                model(**batch)
            _sync(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
        arr = np.asarray(times)
        out[f"bs{batch_size}"] = {
            "batch_size": batch_size,
            "n_batches": len(times),
            "p50_ms": float(np.percentile(arr, 50)),
            "p95_ms": float(np.percentile(arr, 95)),
            "items_per_s": float(batch_size * len(arr) / (arr.sum() / 1000)),
        }
    out["inference_peak_memory_gib"] = _peak_gib(device)
    return out


def _measure(
    model, key: str, precision: str, config, lengths, cfg: BenchConfig, device: str, peak
) -> dict:
    """Add LoRA as `mathreport train` does, time training, then inference as train() evaluates."""
    preset = models.PRESETS[key]
    load_in_4bit = precision == "4bit"
    dtype = (
        "nf4+bf16"
        if load_in_4bit
        else str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")
    )
    model, lora = models.add_lora(model, preset, load_in_4bit=load_in_4bit, mlp=cfg.lora_mlp)
    rng = np.random.default_rng(cfg.seed)
    batch_size = cfg.batch_size or preset.batch_size
    train_batches = _batches(
        rng, lengths, batch_size, cfg.warmup_steps + cfg.train_steps, config.vocab_size, True
    )
    result = {
        "model": key,
        "precision": precision,
        "dtype": dtype,
        "gradient_checkpointing": load_in_4bit,
        "lora_targets": sorted(lora.target_modules),
        "modules_to_save": sorted(lora.modules_to_save or []),
    }
    result.update(measure_training(model, config, train_batches, cfg.warmup_steps, device, peak))
    # train() merges LoRA into a bf16 base for inference; a 4-bit base keeps the adapter.
    model = model if load_in_4bit else model.merge_and_unload()
    latency_batches = {
        bs: _batches(rng, lengths, bs, cfg.latency_warmup + n, config.vocab_size, False)
        for bs, n in cfg.latency_batches.items()
    }
    result.update(measure_latency(model, latency_batches, cfg.latency_warmup, device))
    return result


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def versions() -> dict:
    """Versions of the packages the numbers depend on, and the CUDA torch was built with."""
    import torch

    return {
        "torch_cuda": torch.version.cuda,
        **environment.versions(
            ("torch", "transformers", "peft", "accelerate", "bitsandbytes"), missing="not installed"
        ),
    }


# What `train_checks` runs with tiny or offline weights: (name, model, flags). The tiny decoders cover both
# precisions of the 7B presets' code, and a decoder's top layers over cached frozen states (qwen-0.5b's and
# smollm2's default path); minilm's preset trains its top 2 layers the same way on an encoder.
TRAIN_CHECKS = (
    ("tiny-qwen2 full precision", "tiny-qwen2", ["--no-load_in_4bit"]),
    ("tiny-qwen2 4-bit", "tiny-qwen2", ["--load_in_4bit"]),
    ("tiny-mistral 4-bit", "tiny-mistral", ["--load_in_4bit"]),
    ("tiny-qwen2 top-k", "tiny-qwen2", ["--no-load_in_4bit", "--top_k_layers", "1"]),
    ("minilm top-k", "minilm", []),
)


def _split_flags(data_dir: Path) -> list[str]:
    """`--train_path ... --val_path ... --test_path ...` of the split files in `data_dir`."""
    names = {
        "train_path": "augmented_train.csv",
        "val_path": "val_split.csv",
        "test_path": "test_split.csv",
    }
    return [
        part for flag, name in names.items() for part in (f"--{flag}", str(Path(data_dir) / name))
    ]


def _run_command(name: str, argv: list[str], timeout: int) -> dict:
    """Run one `mathreport` command in its own process: exit status, seconds, the last error line, output tail."""
    import subprocess

    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mathreport.cli", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = None, str(exc.stdout or ""), f"timed out after {timeout} s"
    lines = [line for line in err.splitlines() if line.strip()]
    return {
        "check": name,
        "command": "mathreport " + " ".join(argv),
        "exit_status": code,
        "seconds": round(time.perf_counter() - start, 1),
        "ok": code == 0,
        "error": None if code == 0 else (lines[-1] if lines else f"exit status {code}"),
        "output_tail": None if code == 0 else (out + err)[-3000:],
    }


def _run_facts(run_dir: Path) -> dict:
    """What a finished run's own files say about how it ran on this machine."""
    from mathreport import artifacts

    try:
        manifest = artifacts.read_manifest(run_dir)
        accuracy = artifacts.read_metrics(run_dir).get("Accuracy")
    except Exception as exc:  # a failed run may lack them; its error line says why
        return {"run_files": f"{type(exc).__name__}: {exc}"}
    return {
        "status": manifest.status,
        "device": manifest.device,
        "load_in_4bit": manifest.load_in_4bit,
        "precision": manifest.precision,
        "train_autocast": manifest.train_autocast,
        "world_size": manifest.world_size,
        "global_batch_size": manifest.global_batch_size,
        "train_seconds": manifest.train_seconds,
        "predictions_backend": manifest.predictions_backend,
        "default_backend": (manifest.inference or {}).get("default"),
        "skipped_backends": (manifest.inference or {}).get("skipped"),
        "test_accuracy": accuracy,
    }


def train_checks(
    device: str,
    work_dir: Path,
    model_paths: dict[str, str] | None = None,
    data_dir: Path | None = None,
    train_samples: int = 512,
    checks: tuple = TRAIN_CHECKS,
    pipeline: bool = True,
    timeout: int = 3600,
) -> list[dict]:
    """`mathreport train` (and `pipeline`) on `device`, each in its own process; one result per run.

    The tiny checks train on a small demo corpus written into `work_dir`; real weights (`model_paths`,
    {preset: folder}) on `data_dir`'s split files when it has them (else that corpus), `train_samples` of them.
    """
    from mathreport import demo

    work_dir = Path(work_dir)
    demo_dir = work_dir / "data"
    if not (demo_dir / "test_split.csv").is_file():
        demo.write_demo_corpus(demo_dir, seed=0, n_total=480)
    common = ["--num_epochs", "1", "--device", device, "--force"]
    out = []
    for name, model, flags in checks:
        run_dir = work_dir / "runs" / name.replace(" ", "-")
        result = _run_command(
            name,
            [
                "train",
                "--model",
                model,
                *_split_flags(demo_dir),
                "--output_dir",
                str(run_dir),
                "--bench_max_items",
                "32",
                *common,
                *flags,
            ],
            timeout,
        )
        out.append({**result, **_run_facts(run_dir)})
    if pipeline:
        results_dir = work_dir / "pipeline-results"
        result = _run_command(
            "pipeline tiny-qwen2 + report",
            [
                "pipeline",
                "--models",
                "tiny-qwen2",
                "--data_dir",
                str(demo_dir),
                "--results_dir",
                str(results_dir),
                "--num_epochs",
                "1",
                "--device",
                device,
                "--force",
                "--no-pdf",
            ],
            timeout,
        )
        out.append({**result, **_run_facts(results_dir / "tiny-qwen2")})
    real_data = (
        data_dir
        if data_dir is not None and (Path(data_dir) / "test_split.csv").is_file()
        else demo_dir
    )
    for key, path in (model_paths or {}).items():
        run_dir = work_dir / "runs" / key
        result = _run_command(
            f"{key} from {path}",
            [
                "train",
                "--model",
                key,
                "--model_path",
                str(path),
                *_split_flags(real_data),
                "--output_dir",
                str(run_dir),
                "--max_train_samples",
                str(train_samples),
                "--bench_max_items",
                "32",
                *common,
            ],
            timeout,
        )
        out.append({**result, **_run_facts(run_dir), "data": str(real_data)})
    return out


def run_benchmark(cfg: BenchConfig) -> dict:
    """Measure every model x precision in `cfg`; fails at once without CUDA unless `cfg.tiny`."""
    import torch

    for key in cfg.models:
        if key not in SHAPES:
            raise ValueError(f"unknown model {key!r}; gpu_bench knows {sorted(SHAPES)}")
    for precision in cfg.precisions:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if cfg.tiny:
        device, device_name, dtype = "cpu", "cpu (tiny dry run)", torch.float32
    else:
        device_name, device, dtype = require_cuda(), "cuda", torch.bfloat16
    peak = None if cfg.tiny else peak_tflops(device_name)
    results: dict = {
        "device": device_name,
        # bf16 is native from capability 8.0 (A100, L4); a T4 (7.5) emulates it, slowly.
        "compute_capability": None
        if cfg.tiny
        else ".".join(map(str, torch.cuda.get_device_capability(0))),
        "peak_bf16_tflops": peak,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "tiny": cfg.tiny,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "runs": [],
    }
    work_dir = Path(cfg.work_dir or tempfile.mkdtemp(prefix="mathreport-gpu-bench-"))
    try:
        if cfg.train_checks and not cfg.tiny:
            results["train_runs"] = train_checks(
                device, work_dir / "train-checks", cfg.model_paths, cfg.data_dir, cfg.train_samples
            )
        for key in cfg.models:
            preset = models.PRESETS[key]
            max_length = cfg.max_length or (64 if cfg.tiny else preset.max_length)
            lengths, source = question_token_lengths(cfg.questions, max_length)
            results["lengths"] = source
            out_of_memory = None
            try:
                results["runs"].extend(
                    _bench_model(key, lengths, cfg, device, dtype, peak, work_dir)
                )
            except (
                torch.cuda.OutOfMemoryError
            ) as exc:  # a 16 GB card cannot hold a 7B model in bf16
                out_of_memory = str(exc).splitlines()[0]
            if out_of_memory is not None:  # outside the handler, whose traceback holds the model
                _free(device)
                results["runs"].append(
                    {
                        "model": key,
                        "precision": ", ".join(cfg.precisions),
                        "skipped": f"out of GPU memory: {out_of_memory}",
                    }
                )
    finally:
        if cfg.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    return results


def _bench_model(
    key: str, lengths, cfg: BenchConfig, device: str, dtype, peak, work_dir: Path
) -> list[dict]:
    config = model_config(key, cfg.tiny)
    runs = []
    want_4bit = "4bit" in cfg.precisions
    skip_4bit = None
    if want_4bit:
        try:
            models.check_4bit_possible(device)
        except models.FourBitUnavailableError as exc:
            skip_4bit = str(exc)
    model = _build_random(config, device, dtype)
    saved = work_dir / key
    if want_4bit and skip_4bit is None:
        # bitsandbytes quantizes while loading: save the random bf16 weights once, load them as `train` would.
        model.save_pretrained(saved)
    if "bf16" in cfg.precisions:
        runs.append(_measure(model, key, "bf16", config, lengths, cfg, device, peak))
    del model
    _free(device)
    if want_4bit:
        if skip_4bit is not None:
            runs.append({"model": key, "precision": "4bit", "skipped": skip_4bit})
        else:
            model = models.load_base_model(
                str(saved), SimpleNamespace(pad_token_id=PAD_ID), device=device, load_in_4bit=True
            )
            shutil.rmtree(saved, ignore_errors=True)
            runs.append(_measure(model, key, "4bit", config, lengths, cfg, device, peak))
            del model
            _free(device)
    return runs


def _fmt(value, spec: str = ".0f") -> str:
    return "n/a" if value is None else format(value, spec)


def results_markdown(results: dict) -> str:
    """The results as a markdown section (between the gpu-bench markers)."""
    v = results["versions"]
    lines = [
        BEGIN,
        f"Measured by `python benchmarks/gpu_bench.py` on **{results['device']}**, {results['date']}. "
        f"torch {v.get('torch')} (CUDA {v.get('torch_cuda')}), transformers {v.get('transformers')}, "
        f"peft {v.get('peft')}, bitsandbytes {v.get('bitsandbytes')}. Random weights with "
        f"{'tiny shapes (a dry run of the code, not a measurement)' if results['tiny'] else 'the published shapes'}; "
        f"input lengths from {results.get('lengths', 'n/a')}. MFU against {_fmt(results['peak_bf16_tflops'])} "
        "TFLOP/s dense bf16.",
        "",
        "| model | precision | train tokens/s | MFU (LoRA FLOPs) | MFU (6NT) | train peak GiB | "
        "bs=1 p50 / p95 ms | bs=32 p50 / p95 ms | inference peak GiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in results["runs"]:
        if "skipped" in run:
            lines.append(
                f"| {run['model']} | {run['precision']} | skipped: {run['skipped']} | | | | | | |"
            )
            continue
        lat = [run.get(f"bs{bs}") for bs in (1, 32)]
        cells = [f"{x['p50_ms']:.1f} / {x['p95_ms']:.1f}" if x else "n/a" for x in lat]
        lines.append(
            f"| {run['model']} | {run['precision']} ({run['dtype']}) | {_fmt(run['train_tokens_per_s'])} | "
            f"{_fmt(run['mfu'], '.1%')} | {_fmt(run['mfu_6nt'], '.1%')} | {run['train_peak_memory_gib']:.1f} | "
            f"{cells[0]} | {cells[1]} | {run['inference_peak_memory_gib']:.1f} |"
        )
    lines += [
        "",
        f"Training: batch {results['runs'][0].get('train_batch_size', 'n/a') if results['runs'] else 'n/a'}, "
        f"{results['config']['train_steps']} timed steps after {results['config']['warmup_steps']} warm-up, "
        "a hand-written loop (forward, backward, AdamW step; not Trainer), bf16 autocast; 4-bit with gradient "
        "checkpointing. Tokens/s counts real (non-padding) tokens.",
    ]
    if results.get("train_runs"):
        lines += [
            "",
            "`mathreport train` / `pipeline` on this GPU, one process each, one epoch:",
            "",
            "| check | result | seconds | device | precision | 4-bit | test accuracy |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for run in results["train_runs"]:
            outcome = "ok" if run["ok"] else f"failed: {run['error']}".replace("|", "\\|")
            precision = (
                (run.get("precision") or {}).get("dtype") or run.get("train_autocast") or "n/a"
            )
            lines.append(
                f"| {run['check']} | {outcome} | {run['seconds']:.0f} | {run.get('device') or 'n/a'} | "
                f"{precision} | {run.get('load_in_4bit', 'n/a')} | {_fmt(run.get('test_accuracy'), '.3f')} |"
            )
    return "\n".join([*lines, END]) + "\n"


def write_results(results: dict, output: Path) -> Path:
    """Put the results section into `output` (replacing an earlier one between the markers), atomically.

    A JSON copy of the full results goes next to it (`<stem>.json`, or `gpu_bench.json` for GPU.md).
    """
    output = Path(output)
    section = results_markdown(results)
    old = output.read_text(encoding="utf-8") if output.is_file() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = (old.rstrip("\n") + "\n\n" if old else "") + section
    files.write_text(output, text)
    json_name = "gpu_bench.json" if output.name == "GPU.md" else f"{output.stem}.json"
    files.write_json(output.parent / json_name, results)
    return output


def main(argv: list[str] | None = None) -> int:
    """Measure what the flags ask for, print the markdown table and write it (docs/GPU.md by default)."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/gpu_bench.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", nargs="+", choices=sorted(SHAPES), default=["qwen", "mistral"])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file for the results section (default docs/GPU.md; with --tiny: none)",
    )
    parser.add_argument(
        "--questions",
        type=Path,
        default=Path("data/test_split.csv"),
        help="split CSV whose question lengths the inputs follow (default: the demo corpus if missing)",
    )
    parser.add_argument(
        "--batch-size",
        "--batch_size",
        dest="batch_size",
        type=int,
        default=None,
        help="training batch (default: the preset's)",
    )
    parser.add_argument("--train-steps", "--train_steps", dest="train_steps", type=int, default=10)
    parser.add_argument(
        "--lora-mlp",
        "--lora_mlp",
        dest="lora_mlp",
        action="store_true",
        help="LoRA on the MLP projections too",
    )
    parser.add_argument(
        "--work-dir",
        "--work_dir",
        dest="work_dir",
        type=Path,
        default=None,
        help="where the random weights are saved for 4-bit loading (default: a temporary folder)",
    )
    parser.add_argument(
        "--tiny",
        "--dry-run",
        dest="tiny",
        action="store_true",
        help="the same code on tiny models on the CPU (checks the code path, measures nothing real)",
    )
    parser.add_argument(
        "--model_path",
        "--model-path",
        dest="model_path",
        nargs="+",
        default=[],
        metavar="NAME=DIR",
        help="real weights to train with `mathreport train` too (qwen=DIR ...)",
    )
    parser.add_argument(
        "--data-dir",
        "--data_dir",
        dest="data_dir",
        type=Path,
        default=Path("data"),
        help="split files the real weights train on (default: the demo corpus if missing)",
    )
    parser.add_argument(
        "--train-samples",
        "--train_samples",
        dest="train_samples",
        type=int,
        default=512,
        help="training questions for the real weights (one epoch)",
    )
    parser.add_argument(
        "--no-train-checks",
        "--no_train_checks",
        dest="train_checks",
        action="store_false",
        help="skip `mathreport train` / `pipeline` on the GPU; measure the 7B shapes only",
    )
    args = parser.parse_args(argv)
    model_paths = {}
    for value in args.model_path:
        name, sep, path = value.partition("=")
        if not sep or name not in models.PRESETS or not Path(path).expanduser().is_dir():
            parser.error(
                f"--model_path {value}: expected NAME=DIR with NAME a preset ({', '.join(SHAPES)}, ...) "
                "and DIR the folder `hf download REPO --local-dir DIR` wrote"
            )
        model_paths[name] = str(Path(path).expanduser().resolve())
    cfg = BenchConfig(
        models=tuple(args.models),
        precisions=tuple(args.precisions),
        batch_size=args.batch_size,
        train_steps=args.train_steps,
        lora_mlp=args.lora_mlp,
        questions=args.questions,
        work_dir=args.work_dir,
        tiny=args.tiny,
        train_checks=args.train_checks,
        model_paths=model_paths,
        data_dir=args.data_dir,
        train_samples=args.train_samples,
    )
    if args.tiny:  # a few batches are enough to run every line of the code path
        cfg.warmup_steps, cfg.train_steps, cfg.latency_batches, cfg.latency_warmup = (
            1,
            3,
            {1: 4, 32: 2},
            1,
        )
    # The dry run's CPU numbers must never land in docs/GPU.md: it writes only where --output says.
    output = args.output or (None if args.tiny else Path("docs/GPU.md"))
    try:
        results = run_benchmark(cfg)
    except models.NeedsCudaError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(results_markdown(results))
    if output is not None:
        print(f"wrote {write_results(results, output)}")
    failed = [run["check"] for run in results.get("train_runs", []) if not run["ok"]]
    if failed:  # the measurements are written all the same; the failures are what to fix first
        print(
            f"{parser.prog}: failed on this GPU: {', '.join(failed)} (their errors are in the JSON)",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
