"""Arithmetic work of transformer training and inference, from the layers' weights and the token counts.

Counted: the matrix multiplications of the transformer layers (2 FLOP per weight per token) and attention's two
products (QK^T and AV, 2 x 2 x length x hidden per token per layer); left out: embeddings, norms, activations,
softmax, the head and LoRA's low-rank products (each small next to the layer matmuls). Real tokens are
counted, not padding: the figure is the useful work, so padding lowers the achieved FLOP/s instead of raising it.
A training step of a layer whose weights are frozen (LoRA) costs its forward plus the backward product for the
input gradient, twice the forward; weight gradients exist only for the small LoRA matrices.

`benchmarks/ceiling.py` measures what this CPU can do; the docs state achieved FLOP/s as a share of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# A training step of a frozen-weight layer: forward + input-gradient backward.
TRAIN_STEP_FORWARDS = 2


def layer_matmul_weights(layer) -> int:
    """Weights of a layer that multiply every token: its Linear weights (a peft LoRA's base layer, not A and B)."""
    import torch

    total = 0
    for name, module in layer.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(
            part in name.split(".") for part in ("lora_A", "lora_B")
        ):
            total += module.weight.numel()
    return total


def forward_flop(
    lengths: Iterable[int], *, weights_per_layer: int, hidden: int, layers: int
) -> float:
    """FLOP of a forward pass of `layers` layers over sequences of these lengths (real tokens)."""
    n = np.asarray(list(lengths), dtype=float)
    return float(layers * (2 * weights_per_layer * n.sum() + 4 * hidden * (n**2).sum()))


def training_record(
    layers: Sequence,
    hidden: int,
    *,
    trained: int,
    train_lengths: Sequence[int],
    eval_lengths: Sequence[int],
    epochs: int,
    seconds: float | None,
) -> dict:
    """run.json's `flop`: the work of Trainer's run (training steps on the trained layers, evaluation forwards) and
    the achieved FLOP/s over Trainer's runtime.

    layers: the model's transformer layers (the weights per layer are read from the last one); trained: how many
    of them (from the top) are run in training, all for full LoRA, k for a top-k run over cached states;
    eval_lengths: the rows scored after each epoch (validation and the train sample).
    """
    per_layer = layer_matmul_weights(layers[-1])
    train = forward_flop(train_lengths, weights_per_layer=per_layer, hidden=hidden, layers=trained)
    evaluate = forward_flop(
        eval_lengths, weights_per_layer=per_layer, hidden=hidden, layers=trained
    )
    total = epochs * (TRAIN_STEP_FORWARDS * train + evaluate)
    return {
        "weights_per_layer": per_layer,
        "layers_run": trained,
        "train_tokens_per_epoch": int(np.sum(train_lengths)),
        "flop": total,
        "seconds": seconds,
        "flop_per_s": total / seconds if seconds else None,
        "counted": "layer matmuls + attention products, real tokens; training step = 2 forwards",
    }


# --- the machine's ceiling -----------------------------------------------------------------------------------------

CEILING_N = 2048  # a square matmul this size reaches the best rate on the CPUs measured (docs/perf/ceiling.json)
# The median over this long: on a shared VM the matmul rate swings between calls (docs/perf/cpu-training.md,
# "The ceiling on this machine"); half a second caught one fast stretch as the ceiling.
CEILING_SECONDS = 3.0
CEILING_MAX_OTHER_LOAD = (
    0.1  # other processes' share of the CPUs above which a measured ceiling is not cached
)


def measure_ceiling(
    dtype: str, device: str = "cpu", n: int = CEILING_N, min_seconds: float = 0.5
) -> float:
    """FLOP/s of an n x n torch matmul in `dtype` on `device`: the median of repeated calls after warm-up."""
    import statistics
    import time

    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(n, n, generator=gen).to(device=device, dtype=getattr(torch, dtype))
        for _ in range(2)
    )
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for _ in range(2):
        torch.mm(a, b)
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def ceiling(dtype: str, device: str = "cpu") -> dict:
    """This machine's matmul ceiling in `dtype` on `device`: measured once (`measure_ceiling`) and cached under the
    cache folder, keyed by the CPU or GPU, its flags, torch's threads and version. Returns {"flop_per_s",
    "measured", "cpu_busy_other", "cache"}; cache is None when other processes were busy during the measurement,
    so it was not kept. Training and inference rates are stated as a share of it."""
    import hashlib
    import json

    import torch

    from mathreport import environment, files, record

    hw = environment.hardware()
    gpu = (
        torch.cuda.get_device_name(torch.device(device)) if str(device).startswith("cuda") else None
    )
    key = {
        "dtype": dtype,
        "device": gpu or hw.get("cpu") or hw.get("processor"),
        "flags": environment.cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "n": CEILING_N,
        "seconds": CEILING_SECONDS,
    }
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = files.cache_dir() / "ceilings" / f"{name}.json"
    measured, cache = _cached_ceiling(path, key), str(path)
    if measured is None:
        with environment.CpuLoad() as load:
            flop_per_s = measure_ceiling(dtype, device, min_seconds=CEILING_SECONDS)
        measured = {
            "key": key,
            "flop_per_s": flop_per_s,
            "measured": record.now(),
            "cpu_busy_other": (load.result or {}).get("cpu_busy_other", 0.0),
        }
        if measured["cpu_busy_other"] > CEILING_MAX_OTHER_LOAD:
            # Other processes took the cores: a low ceiling cached now would inflate every later share.
            cache = None
        else:
            try:
                files.write_json(path, measured)
            except Exception:  # an unwritable cache: measured again next time, nothing lost
                pass
    return {
        **{k: measured[k] for k in ("flop_per_s", "measured", "cpu_busy_other")},
        "cache": cache,
    }


def _cached_ceiling(path, key: dict) -> dict | None:
    """The ceiling cached at `path` for `key`, or None (absent, unreadable, or for another key)."""
    import json

    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    whole = (
        cached.get("key") == key and cached.get("flop_per_s", 0) > 0 and "cpu_busy_other" in cached
    )
    return cached if whole else None


def training_rate(flop_record: dict, dtype: str, device: str = "cpu") -> dict:
    """run.json's `training.gflop_per_s` and `training.ceiling_share` (a fraction of the ceiling of the precision that
    ran, `dtype`), from `training_record`'s achieved FLOP/s; empty when the run has none (a resumed run)."""
    rate = flop_record.get("flop_per_s")
    if not rate:
        return {}
    top = ceiling(dtype, device)
    return {
        "gflop_per_s": rate / 1e9,
        "ceiling_share": rate / top["flop_per_s"],
        "ceiling": {
            "dtype": dtype,
            "device": device,
            "gflop_per_s": top["flop_per_s"] / 1e9,
            "measured": top["measured"],
            # Other processes' share of the CPUs while it was measured.
            "cpu_busy_other": top["cpu_busy_other"],
        },
    }
