"""Where and how a training run computes: its mixed precision by the device's capability, one GPU per process, the
processes of torchrun / accelerate launch (rank 0 decides and writes), FSDP / DeepSpeed. Trainer and accelerate do
the distributing; this module only chooses their settings and keeps our own steps correct under them."""

from __future__ import annotations

import contextlib
import os
import sys

from mathreport import environment
from mathreport.errors import ConfigError, MathreportError

# GPUs compute bfloat16 natively from compute capability 8.0 (Ampere: A100, A10, L4, RTX 30xx); a T4 (7.5) or V100
# (7.0) emulates it, slower than float16, which they compute natively with Trainer's loss scaling.
NATIVE_BF16_CAPABILITY = (8, 0)


def native_bf16(device: str) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU of capability >= 8.0, or a CPU with AVX-512 BF16/AMX."""
    capability = environment.cuda_capability(device)
    if capability is not None:
        return capability >= NATIVE_BF16_CAPABILITY
    return str(device).startswith("cpu") and environment.cpu_has_fast_bf16()


def choose_precision(device: str, bf16: bool | None, fp16: bool | None) -> tuple[str | None, str]:
    """The mixed precision a training run uses on `device`, and why: ("bfloat16" | "float16" | None, reason).

    bf16, fp16: the flags as given (None: not given). A flag given is honoured on every device. Left open: bfloat16
    where the device computes it natively, else float16 on CUDA (loss-scaled by Trainer), else float32.
    """
    if bf16 and fp16:
        raise ConfigError(
            "--bf16 and --fp16: choose one mixed precision (or --no-bf16 --no-fp16 for float32)"
        )
    if fp16 and not str(device).startswith("cuda"):
        # accelerate runs float16 autocast and loss scaling on GPUs only: elsewhere the flag would do nothing.
        raise ConfigError(
            f"--fp16 on {device}: float16 mixed precision is for CUDA GPUs (accelerate runs no float16 "
            "autocast on the CPU); use --bf16 (native where the CPU has AVX-512 BF16 or AMX) or "
            "leave it out"
        )
    capability = environment.cuda_capability(device)
    where = (
        f"{device} (compute capability {capability[0]}.{capability[1]})"
        if capability is not None
        else f"{device} ({'AVX-512 BF16/AMX' if environment.cpu_has_fast_bf16() else 'no AVX-512 BF16 or AMX'})"
    )
    native = native_bf16(device)
    if bf16:
        return "bfloat16", f"--bf16 on {where}" + (
            "" if native else ", which emulates bfloat16 (slow)"
        )
    if fp16:
        return "float16", f"--fp16 on {where}"
    if bf16 is None and native:
        return "bfloat16", f"default: {where} computes bfloat16 natively"
    if fp16 is None and capability is not None and not native:
        return "float16", f"default: {where} has no native bfloat16; float16 with loss scaling"
    if bf16 is False or fp16 is False:
        return None, f"float32: {'--no-bf16' if bf16 is False else '--no-fp16'} on {where}"
    return None, f"default: float32 on {where}, which has no native bfloat16"


def processes(device: str, transformer: bool):
    """accelerate's PartialState of the processes training together (torchrun, accelerate launch), or None for one.

    Made before anything is read or written, so rank 0's checks can be shared with the others (`from_main`);
    TrainingArguments later finds the same process group.
    """
    if environment.world_size() <= 1:
        return None
    if not transformer:
        raise ConfigError(
            f"{environment.world_size()} processes (WORLD_SIZE): tfidf trains in one process; run "
            "it without torchrun / accelerate launch"
        )
    from accelerate import PartialState

    return PartialState(cpu=not device.startswith("cuda"))


def from_main(state, compute):
    """`compute()` on the main process, and its value on every process; a MathreportError it raises is raised on
    every process (so all stop with the same one line, rather than the others waiting for a rank that is gone)."""
    value, error = None, None
    if state is None or state.is_main_process:
        try:
            value = compute()
        except MathreportError as exc:
            if state is None:
                raise
            error = exc
    if state is not None:
        from accelerate.utils import broadcast_object_list

        box = [value, error]
        broadcast_object_list(box, from_process=0)
        value, error = box
    if error is not None:
        raise error
    return value


def global_batch_size(args) -> int:
    """The questions one optimizer step sees: per-device batch x accumulation x processes x GPUs of one process."""
    return (
        args.per_device_train_batch_size
        * args.gradient_accumulation_steps
        * args.world_size
        * max(1, args.n_gpu)
    )


def one_device(args, device: str) -> str:
    """Train one process on one device: the one asked for (`--device cuda:1`) or cuda:0, never all of them.

    Trainer puts a single process that sees several GPUs on cuda:0 and wraps the model in nn.DataParallel
    (multiplying the batch; a 4-bit model stays on one GPU with the multiplied batch). Several GPUs are for
    torchrun, one process each; this says so in one line. Returns the device the process trains on.
    """
    import torch

    if args.world_size > 1 or not device.startswith("cuda"):
        return str(args.device)
    index = torch.device(device).index or 0
    if args.n_gpu > 1:
        print(
            f"note: {args.n_gpu} GPUs are visible to this one process; it trains on cuda:{index} only. To train on "
            f"all of them: torchrun --nproc_per_node {args.n_gpu} -m mathreport.cli train ...",
            file=sys.stderr,
        )
        args._n_gpu = 1
    if args.device != torch.device("cuda", index):
        # TrainingArguments caches its device here; Trainer and accelerate then move the model to it.
        torch.cuda.set_device(index)
        args.__dict__["_setup_devices"] = torch.device("cuda", index)
    return f"cuda:{index}"


def sharded(overrides: dict) -> str | None:
    """The flag that shards the model across processes (FSDP or DeepSpeed), given to Trainer or by accelerate's
    config, or None."""
    if overrides.get("fsdp"):
        return "--fsdp"
    if overrides.get("deepspeed"):
        return "--deepspeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "accelerate's FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return "accelerate's DeepSpeed"
    return None


def compute_dtype(mixed: str | None, on_cuda: bool) -> str:
    """The dtype 4-bit layers compute in: the mixed precision's; bfloat16 on the CPU (bitsandbytes' CPU kernels),
    float32 on a GPU told to train without mixed precision."""
    return mixed or ("float32" if on_cuda else "bfloat16")


def weights_dtype(load_in_4bit: bool, on_cuda: bool, mixed: str | None) -> str:
    """What run.json says the trained weights were held in."""
    if load_in_4bit:
        return {"bfloat16": "nf4+bf16", "float16": "nf4+fp16", "float32": "nf4+fp32"}[
            compute_dtype(mixed, on_cuda)
        ]
    return mixed if on_cuda and mixed else "float32"


@contextlib.contextmanager
def frozen_linears_in(model, dtype: str | None):
    """Hold the frozen nn.Linear weights and biases of `model` in `dtype` while the block runs; the float32 originals
    come back after it (merging LoRA, saving and exporting see them unchanged).

    Under CPU autocast each linear layer casts its float32 weight to bfloat16 on every call, forward and backward.
    A weight already held in bfloat16 is not copied, and its values are the ones the cast makes, so training
    computes bit for bit the same (tests/test_gpu_paths.py). Trainable weights (LoRA, the head) stay float32: they
    are the optimizer's master weights. dtype None (no mixed precision): nothing changes.
    """
    import torch

    if dtype is None:
        yield
        return
    target, kept = getattr(torch, dtype), []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            for param in (module.weight, module.bias):
                if param is not None and not param.requires_grad and param.dtype == torch.float32:
                    kept.append((param, param.data))
                    param.data = param.data.to(target)
    try:
        yield
    finally:
        for param, data in kept:
            param.data = data
