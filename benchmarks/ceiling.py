"""The machine's ceiling: how fast this CPU multiplies matrices in float32 and bfloat16 (torch) and int8 (ONNX Runtime).

Training and inference throughputs are stated as a share of these numbers (`tools/perf_doc.py` divides achieved
FLOP/s from run.json by them), so they are measured, never taken from a datasheet: each kind is timed at a few
square sizes, with warm-up, and the best median over sizes is the ceiling. The CPU's instruction flags that
decide which kernels run (AMX, AVX-512 BF16/VNNI) are read from /proc/cpuinfo and recorded, not assumed.

    python benchmarks/ceiling.py --out docs/perf/ceiling.json [--lock /tmp/cpu-heavy.lock] [--threads 2]

With --lock FILE, the program holds an exclusive flock on FILE for the whole timing (the convention of machines
where heavy jobs take that lock) and records so; the load average before and after is recorded either way.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mathreport import environment, files

TORCH_SIZES = (1024, 2048, 4096)
INT8_SIZES = (1024, 2048)
# Flags in /proc/cpuinfo that decide the matmul kernels oneDNN / MLAS pick.
KERNEL_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "avx512_fp16",
)


def _time(fn, *, warmup: int, repeats: int, min_seconds: float) -> list[float]:
    """Seconds per call of `fn`, `repeats` times at least, until `min_seconds` have passed, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def torch_matmul(
    n: int, dtype: str, *, warmup: int = 3, repeats: int = 10, min_seconds: float = 2.0
) -> dict:
    """An n x n @ n x n torch matmul in `dtype` (float32 or bfloat16): 2 n^3 FLOP per call."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
    b = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
    times = _time(lambda: torch.mm(a, b), warmup=warmup, repeats=repeats, min_seconds=min_seconds)
    return _result("torch.mm", dtype, n, times)


def ort_matmul_integer(
    n: int, threads: int, *, warmup: int = 3, repeats: int = 10, min_seconds: float = 2.0
) -> dict:
    """An n x n uint8 @ n x n int8 ONNX Runtime MatMulInteger (int32 out, the op dynamic quantization emits)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, size=(n, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
        "matmul_integer",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
        [numpy_helper.from_array(weight, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "matmul_integer.onnx"
        onnx.save(model, path)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, size=(n, n), dtype=np.uint8)
    times = _time(
        lambda: session.run(None, {"A": a}), warmup=warmup, repeats=repeats, min_seconds=min_seconds
    )
    return _result("onnxruntime MatMulInteger", "int8", n, times)


def _result(op: str, dtype: str, n: int, times: list[float]) -> dict:
    median = statistics.median(times)
    return {
        "op": op,
        "dtype": dtype,
        "n": n,
        "calls": len(times),
        "median_s": median,
        "best_s": min(times),
        "flop_per_call": 2 * n**3,
        "median_flop_per_s": 2 * n**3 / median,
        "best_flop_per_s": 2 * n**3 / min(times),
    }


@contextlib.contextmanager
def _held(lock: Path | None):
    if lock is None:
        yield False
        return
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def measure(
    threads: int,
    lock: Path | None = None,
    torch_sizes=TORCH_SIZES,
    int8_sizes=INT8_SIZES,
    min_seconds: float = 2.0,
) -> dict:
    """Time every kind at every size; the ceiling of a kind is its best median FLOP/s over sizes."""
    import torch

    torch.set_num_threads(threads)
    flags = set(environment.cpu_flags())
    with _held(lock) as held:
        load_before = os.getloadavg()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results = []
        cases = [(torch_matmul, n, dtype) for dtype in ("float32", "bfloat16") for n in torch_sizes]
        cases += [(ort_matmul_integer, n, "int8") for n in int8_sizes]
        for fn, n, dtype in cases:
            # Other processes' share of the CPUs during each case: a busy neighbour halves a 2-core ceiling.
            with environment.CpuLoad() as load:
                result = (
                    fn(n, dtype, min_seconds=min_seconds)
                    if fn is torch_matmul
                    else fn(n, threads, min_seconds=min_seconds)
                )
            results.append({**result, **(load.result or {})})
        load_after = os.getloadavg()
    ceilings = {}
    for dtype in ("float32", "bfloat16", "int8"):
        best = max(
            (r for r in results if r["dtype"] == dtype), key=lambda r: r["median_flop_per_s"]
        )
        ceilings[dtype] = {
            "flop_per_s": best["median_flop_per_s"],
            "n": best["n"],
            "op": best["op"],
        }
    return {
        "what": "square matmul throughput, the ceiling training and inference are compared with",
        "command": "python benchmarks/ceiling.py " + " ".join(sys.argv[1:]),
        "started": started,
        "threads": threads,
        "ceilings": ceilings,
        "results": results,
        "cpu_kernel_flags": {f: f in flags for f in KERNEL_FLAGS},
        "machine": {
            "lock": str(lock) if lock else None,
            "lock_held_throughout": held,
            "loadavg_1_5_15_before": list(load_before),
            "loadavg_1_5_15_after": list(load_after),
        },
        "hardware": environment.hardware(),
        "versions": environment.versions(("torch", "onnx", "onnxruntime", "numpy"), python=True),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON file to write (kept unless --force)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch and ONNX Runtime threads"
    )
    parser.add_argument(
        "--lock", type=Path, default=None, help="hold an exclusive flock on this file while timing"
    )
    parser.add_argument(
        "--min_seconds", type=float, default=2.0, help="time each case at least this long"
    )
    parser.add_argument("--force", action="store_true", help="replace --out")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: must be an integer >= 1")
    if args.out.exists() and not args.force:
        parser.error(f"--out {args.out}: exists; pass --force to replace it")
    record = measure(args.threads, args.lock, min_seconds=args.min_seconds)
    files.write_json(args.out, record)
    for dtype, c in record["ceilings"].items():
        print(f"{dtype}: {c['flop_per_s'] / 1e9:.0f} GFLOP/s ({c['op']}, n={c['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
