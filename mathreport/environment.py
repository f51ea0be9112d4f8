"""What a run or a measurement ran on: package versions, the hardware, the CPU's instruction flags (the one place
that detects them, for run.json, latency.json, the ONNX export record and benchmarks/)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sys
import time
from collections.abc import Iterable
from pathlib import Path

# The packages whose versions each record lists (what its numbers depend on).
RUN_PACKAGES = (
    "mathreport",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "scikit-learn",
    "numpy",
    "pandas",
    "bitsandbytes",
)
LATENCY_PACKAGES = ("torch", "transformers", "peft", "scikit-learn", "onnxruntime")
ONNX_PACKAGES = ("onnx", "onnxruntime", "torch")

CPUINFO = "/proc/cpuinfo"
BF16_FLAGS = (
    "avx512_bf16",
    "amx_bf16",
)  # /proc/cpuinfo names of the CPU instructions that compute in bfloat16


def versions(packages: Iterable[str], *, python: bool = False, missing: str | None = None) -> dict:
    """{package: installed version}; one not installed is left out, or given `missing` as its value.

    python: put the interpreter's version first, under "python".
    """
    out = {"python": sys.version.split()[0]} if python else {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            if missing is not None:
                out[pkg] = missing
    return out


def _cpuinfo_field(name: str, cpuinfo: str | Path = CPUINFO) -> str | None:
    # The value of the first `name : value` line of /proc/cpuinfo, or None where there is none (not Linux).
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def cpu_model(cpuinfo: str | Path = CPUINFO) -> str | None:
    """The CPU's model name from /proc/cpuinfo (None where it is missing)."""
    return _cpuinfo_field("model name", cpuinfo)


def cpu_flags(cpuinfo: str | Path = CPUINFO) -> list[str]:
    """Every instruction-set flag the CPU reports in /proc/cpuinfo (empty where it is missing: nothing assumed)."""
    return (_cpuinfo_field("flags", cpuinfo) or "").split()


def cpu_bf16_flags(cpuinfo: str | Path = CPUINFO) -> list[str]:
    """Which of BF16_FLAGS the CPU reports (empty where /proc/cpuinfo is missing: not Linux, so not assumed)."""
    flags = set(cpu_flags(cpuinfo))
    return [f for f in BF16_FLAGS if f in flags]


def cpu_has_fast_bf16(cpuinfo: str | Path = CPUINFO) -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool(cpu_bf16_flags(cpuinfo))


def hardware() -> dict:
    """What the numbers were measured on: platform, CPU model and count, torch threads, the CUDA device."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    model = cpu_model()
    if model is not None:
        info["cpu"] = model
    info["cpu_count"] = os.cpu_count()
    info["cpu_bf16_flags"] = cpu_bf16_flags()
    return info


# --- processes and GPUs -----------------------------------------------------------------------------------------


def world_size() -> int:
    """How many processes train together: WORLD_SIZE, which torchrun and `accelerate launch` set (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def process_rank() -> int:
    """This process's rank among them (RANK; 0 for a single process): rank 0 is the one that writes."""
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's rank on its machine (LOCAL_RANK): the GPU it trains on under torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def cuda_capability(device: str) -> tuple[int, int] | None:
    """The compute capability of a CUDA device ("cuda", "cuda:1"), e.g. (7, 5) for a T4; None off CUDA."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return tuple(torch.cuda.get_device_capability(torch.device(device)))


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
