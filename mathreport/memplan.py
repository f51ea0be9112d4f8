"""The GPU memory a training run will need, from the model's config alone, before any weight is loaded.

The parameters are counted by module type on a skeleton built on the `meta` device (no memory, no weights), so any
config.json that transformers knows works (Qwen2, Mistral, Llama, BERT, MPNet). What each part assumes:

- weights: linear layers in 4-bit NF4 take 4 bits per weight plus the double-quantised block constants (QLoRA,
  Dettmers et al. 2023, section 3: 8 bits per 64 weights and 32 bits per 256 blocks); everything else
  (embeddings, norms, biases, the head) stays in its dtype, and `prepare_model_for_kbit_training` upcasts it to
  float32. Without 4-bit every weight is in the compute dtype, as `models.load_base_model` loads on CUDA.
- trained: the LoRA matrices (float32, as peft keeps them), the head's trained copy (peft's modules_to_save), their
  gradients and the optimizer's state (AdamW: two float32 moments per trained parameter).
- activations: what autograd keeps for the backward pass, per layer, after the accounting of Korthikanti et al.
  2022 ("Reducing Activation Recomputation in Large Transformer Models", section 4.1) applied to a frozen base
  with LoRA: a frozen matmul keeps no input (PyTorch and bitsandbytes save only what a gradient needs), so a
  layer keeps its norms' float32 inputs, attention's q, k, v and output and its own additive copy of the padding
  mask (SDPA/flash attention keep no length x length scores; eager attention does), the MLP's activation inputs,
  and each LoRA module's input and dropout mask. In 4-bit the hidden states and the MLP's intermediates are
  float32 (the upcast norms and embedding make them so, and bitsandbytes returns its input's dtype). With
  gradient checkpointing a layer keeps only its input, and one layer is recomputed at a time; without it the
  backward pass adds the gradients of the top layer's widest tensors. tests/test_memplan.py checks these terms
  against the tensors PyTorch saves, and a training step's measured peak, on the tiny models of the same code
  path (4-bit + prepare_model_for_kbit_training + LoRA under bf16 autocast, as Trainer runs it).
- evaluation: Trainer evaluates with a larger batch (train's `per_device_eval_batch_size`, at least 32) without
  gradients; the peak is the larger of the training step and that forward pass.
- overhead, an assumption: the CUDA context (`CUDA_CONTEXT_BYTES`, already taken when torch reports free memory)
  and a margin for the caching allocator's rounding and fragmentation (`ALLOCATOR_MARGIN`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mathreport.errors import MemoryPlanError, ModelUnavailableError
from mathreport.presets import DECODER_MLP_TARGETS, DECODER_TARGETS, HEAD_MODULES, get_preset

GIB = 2**30
CONFIG_DIR = Path(__file__).with_name("model_configs")
# QLoRA's NF4 with double quantisation: 4-bit codes, an 8-bit constant per block of 64 weights, and a float32
# constant per 256 blocks.
NF4_BYTES_PER_WEIGHT = (4 + 8 / 64 + 32 / (64 * 256)) / 8
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Bytes of optimizer state per trained parameter (torch keeps Adam's two moments in the parameter's float32).
OPTIMIZER_STATE_BYTES = {
    "adamw_torch": 8,
    "adamw_torch_fused": 8,
    "adamw_hf": 8,
    "paged_adamw_32bit": 8,
    "adamw_8bit": 2,
    "adamw_bnb_8bit": 2,
    "paged_adamw_8bit": 2,
    "adafactor": 4,
    "sgd": 0,
}
# Assumptions, stated once: the CUDA context (kernels, cuBLAS handles) of a recent CUDA with lazy module loading,
# and what PyTorch's caching allocator reserves beyond the tensors it holds (block rounding, fragmentation).
CUDA_CONTEXT_BYTES = 512 * 2**20
ALLOCATOR_MARGIN = 0.10
# train evaluates with per_device_eval_batch_size = max(batch_size, EVAL_BATCH_MIN).
EVAL_BATCH_MIN = 32
# Memory of common GPUs as nvidia-smi reports it (MiB; the driver keeps a little of it), for `mathreport plan`.
GPUS = (
    ("T4 16 GB", 15360),
    ("L4 24 GB", 23034),
    ("A10G 24 GB", 23028),
    ("A100 40 GB", 40960),
    ("A100 80 GB", 81920),
    ("H100 80 GB", 81559),
)
# The flags of `mathreport train` that change each setting (the Trainer ones pass through train).
TRAIN_FLAGS = {
    "batch_size": "--batch_size",
    "gradient_accumulation_steps": "--gradient_accumulation_steps",
    "eval_batch_size": "--per_device_eval_batch_size",
    "load_in_4bit": "--load_in_4bit",
    "gradient_checkpointing": "--activation_checkpointing",
    "max_length": "--max_length",
}
# The same for `mathreport plan`.
PLAN_FLAGS = {
    **TRAIN_FLAGS,
    "eval_batch_size": "--eval_batch_size",
    "gradient_checkpointing": "--gradient_checkpointing",
}


# --- the model, counted on the meta device ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """What the memory plan needs of a model: its widths and its parameters by kind."""

    name: str
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    head_dim: int
    gated_mlp: bool  # SwiGLU (gate and up projections) rather than one activation
    norms_per_layer: int
    norms_outside: int  # final norm, embedding norm
    attention: (
        str  # transformers' attention implementation: sdpa / flash_attention_2 keep no s x s matrix
    )
    hidden_dropout: float
    attention_dropout: float
    total_params: int
    quantizable_params: int  # weights of the linear layers that 4-bit loading quantises
    other_params: int  # embeddings, norms, biases, head: kept in their dtype
    head_params: int  # of other_params: the classification head, trained in full
    # Every linear layer: (qualified name, in_features, out_features, index of its transformer layer or -1).
    linears: tuple[tuple[str, int, int, int], ...] = ()


def load_config(source: Any, *, num_labels: int | None = None):
    """A transformers config from a config object, a dict, a config.json file, a model folder or a hub id.

    A hub id is read from the configs shipped in mathreport/model_configs/ or from the Hugging Face cache, never
    downloaded. Raises MemoryPlanError naming what was looked for.
    """
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(source, PretrainedConfig):
        config = copy.deepcopy(source)  # num_labels below must not change the caller's config
    else:
        data = source if isinstance(source, dict) else _read_config_json(str(source))
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        if "model_type" not in data:
            raise MemoryPlanError(
                f"{source}: a config without model_type; give a model's config.json"
            )
        kind = data.pop("model_type")
        try:
            config = AutoConfig.for_model(kind, **data)
        except ValueError as exc:
            raise MemoryPlanError(
                f"{source}: transformers does not know model_type {kind!r} ({exc})"
            ) from exc
        if not isinstance(source, dict):
            config._name_or_path = str(source)
    if num_labels is not None:
        config.num_labels = num_labels
    return config


def _read_config_json(source: str) -> dict:
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        shipped = CONFIG_DIR / f"{source.replace('/', '--')}.json"
        if shipped.is_file():
            path = shipped
        else:
            from huggingface_hub import try_to_load_from_cache

            cached = (
                try_to_load_from_cache(source, "config.json") if source.count("/") == 1 else None
            )
            if not isinstance(cached, str):
                raise MemoryPlanError(
                    f"{source}: no config.json there, none shipped in {CONFIG_DIR.name}/ and none in the Hugging "
                    "Face cache; give --model_path a folder holding the model's config.json"
                )
            path = Path(cached)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MemoryPlanError(f"{path}: not a readable config.json ({exc})") from exc


def shape_of(config, *, task: str = "seq_cls") -> ModelShape:
    """The model's shape, counted on a `meta`-device skeleton of AutoModelForSequenceClassification (task
    "seq_cls", as train builds it) or AutoModelForCausalLM ("causal_lm": the published checkpoints)."""
    return _shape_of(
        config.to_json_string(use_diff=False), task, getattr(config, "_name_or_path", "") or ""
    )


@functools.lru_cache(maxsize=16)
def _shape_of(config_json: str, task: str, name: str) -> ModelShape:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    data = json.loads(config_json)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    auto = AutoModelForSequenceClassification if task == "seq_cls" else AutoModelForCausalLM
    try:
        with torch.device("meta"):
            model = auto.from_config(config)
    except (ValueError, KeyError) as exc:
        raise MemoryPlanError(
            f"{name or config.model_type}: transformers cannot build {auto.__name__} from this "
            f"config ({exc})"
        ) from exc
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = text.num_hidden_layers
    layer_lists = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers
    ]
    if not layer_lists:
        raise MemoryPlanError(
            f"{name or config.model_type}: no list of {n_layers} transformer layers in the model"
        )
    prefix, layers = layer_lists[0]
    output = model.get_output_embeddings() if task == "causal_lm" else None
    head_names = (
        {n for n, _ in model.named_children() if n in HEAD_MODULES} if task == "seq_cls" else set()
    )
    quantizable = head = 0
    linears = []
    for qual, module in model.named_modules():
        in_head = qual.split(".", 1)[0] in head_names
        if isinstance(module, torch.nn.Linear) and not in_head and module is not output:
            quantizable += module.weight.numel()
            index = (
                int(qual[len(prefix) + 1 :].split(".", 1)[0])
                if qual.startswith(prefix + ".")
                else -1
            )
            linears.append((qual, module.in_features, module.out_features, index))
    for qual, param in model.named_parameters():
        if qual.split(".", 1)[0] in head_names:
            head += param.numel()
    total = sum(p.numel() for p in model.parameters())
    hidden = text.hidden_size
    widths = [m.out_features for m in layers[0].modules() if isinstance(m, torch.nn.Linear)]
    intermediate = getattr(text, "intermediate_size", None) or max(widths)
    norms_in_layer = sum(_is_norm(m) for m in layers[0].modules())
    norms_all = sum(_is_norm(m) for m in model.modules())
    heads = text.num_attention_heads
    return ModelShape(
        name=name or (config.architectures or [config.model_type])[0],
        model_type=config.model_type,
        hidden=hidden,
        intermediate=intermediate,
        layers=n_layers,
        heads=heads,
        head_dim=getattr(text, "head_dim", None) or hidden // heads,
        gated_mlp=sum(w == intermediate for w in widths) >= 2,
        norms_per_layer=norms_in_layer,
        norms_outside=norms_all - n_layers * norms_in_layer,
        attention=getattr(model.config, "_attn_implementation", None) or "eager",
        hidden_dropout=_first(
            text, "hidden_dropout_prob", "hidden_dropout", "resid_pdrop", "dropout"
        ),
        attention_dropout=_first(
            text, "attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"
        ),
        total_params=total,
        quantizable_params=quantizable,
        other_params=total - quantizable,
        head_params=head,
        linears=tuple(linears),
    )


def _is_norm(module) -> bool:
    return type(module).__name__.lower().endswith("norm")


def _first(config, *names: str) -> float:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0


def lora_matches(name: str, targets) -> bool:
    """Whether peft puts LoRA on the module `name` for a list of target names (peft's rule for a list: the name
    is a target or ends with "." + a target)."""
    return any(name == t or name.endswith("." + t) for t in targets)


# --- the plan ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The training settings that change memory (see `estimate` for each)."""

    batch_size: int
    max_length: int
    load_in_4bit: bool
    gradient_checkpointing: bool
    lora_r: int = 16
    lora_targets: tuple[str, ...] = DECODER_TARGETS
    lora_dropout: float = 0.05
    optimizer: str = "adamw_torch"
    compute_dtype: str = "bfloat16"
    trainable_top_k: int | None = None
    gradient_accumulation_steps: int = 1
    eval_batch_size: int | None = None  # None: max(batch_size, EVAL_BATCH_MIN), as train evaluates
    device: str = "cuda"  # "cpu": dropout keeps its noise tensor instead of CUDA's one-byte mask

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or max(self.batch_size, EVAL_BATCH_MIN)


@dataclass(frozen=True)
class Plan:
    """A training run's estimated GPU memory, part by part, in bytes."""

    shape: ModelShape
    settings: Settings
    quantized_weights: int  # 4-bit linear layers with their quantisation constants
    other_weights: int  # embeddings, norms, biases, head; float32 after prepare_model_for_kbit_training in 4-bit
    upcast: int  # of other_weights: what the float32 upcast adds to them as loaded
    lora: int
    head_copy: int  # the head's trained copy (peft's modules_to_save)
    gradients: int
    optimizer_states: int
    activations: int  # a training step's, as the settings say (checkpointing or not)
    activations_no_checkpointing: int
    activations_checkpointing: int
    eval_forward: int  # an evaluation forward pass's transient tensors
    trainable_params: int
    allocator_margin: int
    cuda_context: int
    total: int

    @property
    def weights_as_loaded(self) -> int:
        """The weights right after from_pretrained, before peft's float32 upcast."""
        return self.quantized_weights + self.other_weights - self.upcast

    @property
    def needed_free(self) -> int:
        """What must be free on a device whose CUDA context exists (as when torch reports free memory)."""
        return self.total - self.cuda_context

    @property
    def training_peak(self) -> int:
        return self.static + self.gradients + self.activations

    @property
    def eval_peak(self) -> int:
        return self.static + self.eval_forward

    @property
    def static(self) -> int:
        return (
            self.quantized_weights
            + self.other_weights
            + self.lora
            + self.head_copy
            + self.optimizer_states
        )

    def with_settings(self, **changes) -> Plan:
        """The plan of the same model with some settings changed (no new skeleton)."""
        return plan_for(self.shape, dataclasses.replace(self.settings, **changes))

    def to_dict(self) -> dict:
        """The plan as JSON-ready data: settings, parts in bytes, the shape's counts."""
        parts = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("shape", "settings")
        }
        shape = {k: v for k, v in dataclasses.asdict(self.shape).items() if k != "linears"}
        return {
            "model": shape,
            "settings": dataclasses.asdict(self.settings),
            "bytes": {
                **parts,
                "needed_free": self.needed_free,
                "weights_as_loaded": self.weights_as_loaded,
                "training_peak": self.training_peak,
                "eval_peak": self.eval_peak,
            },
            "assumptions": {
                "nf4_bytes_per_weight": NF4_BYTES_PER_WEIGHT,
                "cuda_context_bytes": CUDA_CONTEXT_BYTES,
                "allocator_margin": ALLOCATOR_MARGIN,
                "eval_batch_min": EVAL_BATCH_MIN,
            },
        }


def estimate(
    config,
    *,
    batch_size: int,
    max_length: int,
    load_in_4bit: bool,
    lora_r: int = 16,
    lora_targets=DECODER_TARGETS,
    gradient_checkpointing: bool | None = None,
    lora_dropout: float = 0.05,
    optimizer: str = "adamw_torch",
    compute_dtype: str = "bfloat16",
    trainable_top_k: int | None = None,
    gradient_accumulation_steps: int = 1,
    eval_batch_size: int | None = None,
    task: str = "seq_cls",
    device: str = "cuda",
) -> Plan:
    """The estimated peak GPU memory of training `config` with LoRA, part by part.

    config: a transformers config, a dict, a config.json path, a model folder or a hub id (`load_config`).
    batch_size, max_length: per-device batch and the padded length (the worst case: every row at max_length).
    gradient_checkpointing: None means as train does it: on in 4-bit, off otherwise.
    trainable_top_k: LoRA on the top k layers only, trained over cached states (activations of k layers).
    eval_batch_size: None means train's max(batch_size, 32).
    """
    from mathreport.labels import NUM_CLASSES

    config = load_config(config, num_labels=NUM_CLASSES if task == "seq_cls" else None)
    if gradient_checkpointing is None:
        gradient_checkpointing = bool(load_in_4bit)
    settings = Settings(
        batch_size=int(batch_size),
        max_length=int(max_length),
        load_in_4bit=bool(load_in_4bit),
        gradient_checkpointing=bool(gradient_checkpointing),
        lora_r=int(lora_r),
        lora_targets=tuple(lora_targets),
        lora_dropout=float(lora_dropout),
        optimizer=optimizer,
        compute_dtype=compute_dtype,
        trainable_top_k=trainable_top_k or None,
        gradient_accumulation_steps=int(gradient_accumulation_steps),
        eval_batch_size=eval_batch_size,
        device=device.split(":", 1)[0],
    )
    return plan_for(shape_of(config, task=task), settings)


def plan_for(shape: ModelShape, s: Settings) -> Plan:
    """The plan of a counted model under settings `s` (pure arithmetic)."""
    if s.compute_dtype not in DTYPE_BYTES:
        raise MemoryPlanError(
            f"compute dtype {s.compute_dtype!r}: expected one of {', '.join(DTYPE_BYTES)}"
        )
    if s.batch_size < 1 or s.max_length < 1:
        raise MemoryPlanError(
            f"batch size {s.batch_size} and max_length {s.max_length}: both must be >= 1"
        )
    p = DTYPE_BYTES[s.compute_dtype]
    top = shape.layers - s.trainable_top_k if s.trainable_top_k else 0
    # peft's layers_to_transform (top k) leaves out modules outside the layers; full LoRA takes them too (a pooler).
    lora_modules = [
        (fin, fout)
        for name, fin, fout, layer in shape.linears
        if lora_matches(name, s.lora_targets) and (not top or layer >= top)
    ]
    lora_params = sum(s.lora_r * (fin + fout) for fin, fout in lora_modules)
    if s.load_in_4bit:
        quantized = math.ceil(shape.quantizable_params * NF4_BYTES_PER_WEIGHT)
        other, upcast, head_bytes = shape.other_params * 4, shape.other_params * (4 - p), 4
    else:
        quantized, upcast, head_bytes = 0, 0, p
        other = (shape.quantizable_params + shape.other_params) * p
    trainable = lora_params + shape.head_params
    full = activation_bytes(shape, s, checkpointing=False)
    ckpt = activation_bytes(shape, s, checkpointing=True)
    parts = {
        "quantized_weights": quantized,
        "other_weights": other,
        "upcast": upcast,
        "lora": lora_params * 4,
        "head_copy": shape.head_params * head_bytes,
        "gradients": lora_params * 4 + shape.head_params * head_bytes,
        "optimizer_states": trainable * optimizer_state_bytes(s.optimizer),
        "activations": ckpt if s.gradient_checkpointing else full,
        "activations_no_checkpointing": full,
        "activations_checkpointing": ckpt,
        "eval_forward": eval_forward_bytes(shape, s),
    }
    static = quantized + other + parts["lora"] + parts["head_copy"] + parts["optimizer_states"]
    tensors = max(
        static + parts["gradients"] + parts["activations"], static + parts["eval_forward"]
    )
    margin = round(ALLOCATOR_MARGIN * tensors)
    return Plan(
        shape=shape,
        settings=s,
        **parts,
        trainable_params=trainable,
        allocator_margin=margin,
        cuda_context=CUDA_CONTEXT_BYTES,
        total=tensors + margin + CUDA_CONTEXT_BYTES,
    )


def optimizer_state_bytes(optimizer: str) -> int:
    """Bytes of state per trained parameter; an optimizer the table lacks counts as AdamW's (LoRA trains few
    parameters, so this part stays small either way)."""
    return OPTIMIZER_STATE_BYTES.get(
        str(getattr(optimizer, "value", optimizer)), OPTIMIZER_STATE_BYTES["adamw_torch"]
    )


def _dtypes(s: Settings) -> tuple[int, int, int]:
    # (compute, hidden states, norms' saved inputs) in bytes. In 4-bit the hidden states are float32; norms keep a
    # float32 copy of their input either way (RMSNorm upcasts; autocast runs LayerNorm in float32).
    p = DTYPE_BYTES[s.compute_dtype]
    return p, 4 if s.load_in_4bit else p, 4


def layer_activation_bytes(shape: ModelShape, s: Settings, *, batch: int | None = None) -> int:
    """What autograd keeps of one transformer layer with LoRA for the backward pass (the terms: module docstring)."""
    p, ps, pn = _dtypes(s)
    b = batch or s.batch_size
    seq = s.max_length
    t = b * seq
    h, width = shape.hidden, shape.heads * shape.head_dim
    cuda = s.device == "cuda"
    total = shape.norms_per_layer * pn * t * h
    if (
        shape.attention == "eager"
    ):  # q and k for the scores, v, and the softmax output (and its dropout)
        total += 3 * p * t * width + p * shape.heads * seq * t
        if shape.attention_dropout:
            total += ((1 if cuda else p) + p) * shape.heads * seq * t
    else:  # SDPA / flash: q, k, v (k and v repeated to every head when a padding mask is given), output,
        # logsumexp, and the padding mask converted to an additive mask of the compute dtype in each layer
        total += 4 * p * t * width + 4 * shape.heads * t + p * b * seq * seq
    if shape.hidden_dropout:  # dropout masks after attention and after the MLP
        total += 2 * (1 if cuda else ps) * t * h
    total += (
        (3 if shape.gated_mlp else 1) * ps * t * shape.intermediate
    )  # act(gate) * up, or act's input
    top = shape.layers - s.trainable_top_k if s.trainable_top_k else 0
    for name, fin, _fout, layer in shape.linears:
        if layer == top and lora_matches(name, s.lora_targets):
            # lora_A keeps its input (cast to the compute dtype), lora_B lora_A's output; peft runs the dropout
            # on the input cast to float32: CUDA keeps a one-byte mask, the CPU its float32 noise.
            total += p * t * (fin + s.lora_r) + (
                (1 if cuda else 4) * t * fin if s.lora_dropout else 0
            )
    return total


def activation_bytes(shape: ModelShape, s: Settings, *, checkpointing: bool) -> int:
    """A training step's activation peak: every layer's saved tensors (or only each layer's input, and one layer
    recomputed, with checkpointing), what lies outside the layers, and the backward pass's own gradients."""
    p, ps, pn = _dtypes(s)
    t = s.batch_size * s.max_length
    h = shape.hidden
    layers = s.trainable_top_k or shape.layers
    per_layer = layer_activation_bytes(shape, s)
    # The final (and embedding) norms, the head's input, and the boolean padding mask.
    outside = shape.norms_outside * pn * t * h + p * t * h + s.batch_size * s.max_length**2
    if checkpointing:
        return layers * ps * t * h + per_layer + outside
    # Without checkpointing the top layer's saved tensors are still held while its backward allocates the
    # gradients of its widest activations (measured on the tiny models: tests/test_memplan.py).
    return layers * per_layer + outside + 2 * ps * t * shape.intermediate + ps * t * h


def eval_forward_bytes(shape: ModelShape, s: Settings) -> int:
    """The transient tensors of an evaluation forward pass (no gradients) at the evaluation batch: the boolean
    padding mask and a layer's additive copy, the hidden states and their norm, and the MLP's three widest
    intermediates alive at once (act(gate), up and their product; one for a plain MLP)."""
    p, ps, _ = _dtypes(s)
    b, seq = s.eval_batch, s.max_length
    t = b * seq
    widest = 3 if shape.gated_mlp else 1
    return (
        (1 + p) * b * seq * seq + 2 * ps * t * shape.hidden + widest * ps * t * shape.intermediate
    )


# --- does it fit ---------------------------------------------------------------------------------------------


def suggest(
    plan: Plan, free_bytes: int, flags: dict[str, str] | None = None
) -> list[tuple[str, Plan]]:
    """Settings that fit in `free_bytes`, one per way out, as (flags, plan): a smaller per-device batch with
    gradient accumulation keeping the global batch, 4-bit, gradient checkpointing, a shorter max_length; when no
    single change fits, all of them together. `flags` names each setting's flag (default: train's)."""
    flags = {**TRAIN_FLAGS, **(flags or {})}
    s = plan.settings
    out: list[tuple[str, Plan]] = []

    def fits(candidate: Plan) -> bool:
        return candidate.needed_free <= free_bytes

    def smaller_batch(base: Plan) -> tuple[str, Plan] | None:
        b, steps = base.settings.batch_size, base.settings.gradient_accumulation_steps
        for nb in (d for d in range(b - 1, 0, -1) if b % d == 0):
            for eval_batch in (base.settings.eval_batch_size, nb):
                alt = base.with_settings(
                    batch_size=nb,
                    gradient_accumulation_steps=steps * b // nb,
                    eval_batch_size=eval_batch,
                )
                if fits(alt):
                    text = (
                        f"{flags['batch_size']} {nb} {flags['gradient_accumulation_steps']} {steps * b // nb}"
                        + (f" {flags['eval_batch_size']} {eval_batch}" if eval_batch else "")
                    )
                    return text, alt
        return None

    def shorter(base: Plan) -> tuple[str, Plan] | None:
        length = base.settings.max_length // 2
        while length >= 16:
            alt = base.with_settings(max_length=length)
            if fits(alt):
                return f"{flags['max_length']} {length}", alt
            length //= 2
        return None

    found = smaller_batch(plan)
    if found:
        out.append(found)
    if not s.load_in_4bit and fits(
        alt := plan.with_settings(load_in_4bit=True, gradient_checkpointing=True)
    ):
        out.append((flags["load_in_4bit"], alt))
    if not s.gradient_checkpointing and fits(
        alt := plan.with_settings(gradient_checkpointing=True)
    ):
        out.append((flags["gradient_checkpointing"], alt))
    if found := shorter(plan):
        out.append(found)
    if out:
        return out
    # No single change fits: all of them, the batch first, then the length.
    both = plan.with_settings(load_in_4bit=True, gradient_checkpointing=True)
    prefix = " ".join(
        f
        for f, on in (
            (flags["load_in_4bit"], not s.load_in_4bit),
            (flags["gradient_checkpointing"], not s.gradient_checkpointing),
        )
        if on
    )
    for step in (smaller_batch, shorter):
        if found := step(both):
            return [(" ".join(x for x in (prefix, found[0]) if x), found[1])]
    one = both.with_settings(
        batch_size=1,
        eval_batch_size=1,
        gradient_accumulation_steps=s.gradient_accumulation_steps * s.batch_size,
    )
    if found := shorter(one):
        text = (
            f"{prefix} {flags['batch_size']} 1 {flags['gradient_accumulation_steps']} "
            f"{one.settings.gradient_accumulation_steps} {flags['eval_batch_size']} 1 {found[0]}"
        )
        return [(text.strip(), found[1])]
    return []


def describe(s: Settings) -> str:
    """The settings in a few words: batch x length, 4-bit, checkpointing."""
    parts = [f"batch {s.batch_size} x {s.max_length} tokens"]
    if s.gradient_accumulation_steps > 1:
        parts.append(f"gradient accumulation {s.gradient_accumulation_steps}")
    parts.append("4-bit NF4" if s.load_in_4bit else s.compute_dtype)
    parts.append(
        "gradient checkpointing" if s.gradient_checkpointing else "no gradient checkpointing"
    )
    return ", ".join(parts)


def check_fits(
    plan: Plan,
    free_bytes: int,
    *,
    device: str = "cuda",
    flags: dict[str, str] | None = None,
    show: str | None = None,
    override: str | None = None,
) -> None:
    """MemoryPlanError (one line, with settings that fit) when the plan needs more than `free_bytes`.

    free_bytes: what torch reports free on the device, its CUDA context already taken. show: the command that
    prints the plan part by part; override: the flag that trains anyway. Both go into the message when given.
    """
    need = plan.needed_free
    if need <= free_bytes:
        return
    found = suggest(plan, free_bytes, flags)
    if found:
        ways = "; ".join(f"{text} (~{alt.needed_free / GIB:.1f} GiB)" for text, alt in found)
        fix = f"settings that fit: {ways}"
    else:
        four = plan.with_settings(load_in_4bit=True)
        weights = four.quantized_weights + four.other_weights
        fix = (
            f"no setting fits: the 4-bit weights alone take {weights / GIB:.1f} GiB in training; use a GPU "
            "with more memory (or several, with torchrun)"
        )
    extra = "".join(
        f"; {text}"
        for text in (
            f"`{show}` shows each part" if show else None,
            f"{override} trains anyway" if override else None,
        )
        if text
    )
    raise MemoryPlanError(
        f"{device}: {plan.shape.name} at {describe(plan.settings)} needs about {need / GIB:.1f} GiB (estimate) but "
        f"{free_bytes / GIB:.1f} GiB is free; {fix}{extra}"
    )


def check_cuda(
    config, device: str, *, show: str | None = None, override: str | None = None, **settings
) -> Plan | None:
    """Before loading weights: estimate the run (`estimate`'s settings) and compare it with what
    `torch.cuda.mem_get_info` says is free on `device`; MemoryPlanError when it does not fit. None off CUDA."""
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    plan = estimate(config, device="cuda", **settings)
    check_fits(plan, free, device=str(device), show=show, override=override)
    return plan


# --- presets and the `plan` command --------------------------------------------------------------------------


def preset_config(model: str, model_path: str | None = None):
    """The config of a preset (or hub id / folder): --model_path, else a config shipped in model_configs/, else
    the preset's local weights (tiny models, minilm, mpnet) or the Hugging Face cache."""
    preset = get_preset(model)
    if (
        not model_path
        and preset.hf_id
        and (CONFIG_DIR / f"{preset.hf_id.replace('/', '--')}.json").is_file()
    ):
        return load_config(preset.hf_id)
    if not preset.traits.neural:
        raise MemoryPlanError(
            f"--model {model}: {preset.description} trains on the CPU; it has no GPU memory plan"
        )
    from mathreport import models

    try:
        weights = models.resolve_weights(preset, model_path)
    except ModelUnavailableError as exc:
        raise MemoryPlanError(
            f"{exc}; for a memory plan the model's config.json is enough: --model_path a folder "
            "holding it"
        ) from exc
    config = load_config(weights)
    if (
        preset.hf_id and not model_path
    ):  # the model's name rather than the folder its weights were found in
        config._name_or_path = preset.hf_id
    return config


def plan_preset(
    model: str,
    *,
    model_path: str | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    load_in_4bit: bool | None = None,
    gradient_checkpointing: bool | None = None,
    lora_mlp: bool = False,
    **settings,
) -> Plan:
    """The plan of training preset `model` on CUDA with its defaults (4-bit and checkpointing for decoders, as
    train does there), any given setting replacing the preset's."""
    preset = get_preset(model)
    load = preset.decoder if load_in_4bit is None else load_in_4bit
    targets = list(preset.target_modules or DECODER_TARGETS)
    if lora_mlp:
        targets += [t for t in DECODER_MLP_TARGETS if t not in targets]
    settings.setdefault("trainable_top_k", None if load else preset.top_k_layers or None)
    return estimate(
        preset_config(model, model_path),
        batch_size=batch_size or preset.batch_size,
        max_length=max_length or preset.max_length,
        load_in_4bit=load,
        gradient_checkpointing=load if gradient_checkpointing is None else gradient_checkpointing,
        lora_r=preset.lora_r,
        lora_targets=targets,
        lora_dropout=preset.lora_dropout,
        **settings,
    )


def gpu_table(plan: Plan, gpu_memory_gib: float | None = None) -> list[dict]:
    """Whether the plan fits each common GPU (and a given size): name, memory, fits, bytes left."""
    rows = [(name, mib * 2**20) for name, mib in GPUS]
    if gpu_memory_gib:
        rows.append((f"--gpu_memory {gpu_memory_gib:g}", int(gpu_memory_gib * GIB)))
    return [
        {
            "gpu": name,
            "memory_bytes": size,
            "fits": plan.total <= size,
            "left_bytes": size - plan.total,
        }
        for name, size in rows
    ]


def format_plan(plan: Plan, gpu_memory_gib: float | None = None) -> str:
    """The plan as `mathreport plan` prints it: each part in GiB, then the GPU table."""
    s, shape = plan.settings, plan.shape
    four = s.load_in_4bit
    lora_n = plan.lora // 4
    where = f"top {s.trainable_top_k} layers" if s.trainable_top_k else "every layer"
    lines = [
        f"Memory plan (estimate) for training {shape.name} ({shape.model_type}, "
        f"{shape.total_params / 1e9:.2f} B parameters) on one CUDA GPU, in GiB",
        f"  {describe(s)}; LoRA r={s.lora_r} on {', '.join(s.lora_targets)} ({where}); {s.optimizer}; "
        f"{s.compute_dtype} compute; evaluation batch {s.eval_batch}",
    ]
    rows = []
    if four:
        rows.append(
            (
                f"4-bit NF4 linear weights ({shape.quantizable_params / 1e9:.2f} B, with their constants)",
                plan.quantized_weights,
            )
        )
        rows.append(
            (
                f"embeddings, norms, biases, head in float32 (the upcast adds {plan.upcast / GIB:.2f})",
                plan.other_weights,
            )
        )
    else:
        rows.append(
            (f"weights in {s.compute_dtype} ({shape.total_params / 1e9:.2f} B)", plan.other_weights)
        )
    other, other_bytes = (
        ("off", plan.activations_no_checkpointing)
        if s.gradient_checkpointing
        else ("on", plan.activations_checkpointing)
    )
    rows += [
        (f"LoRA adapter, float32 ({lora_n / 1e6:.1f} M)", plan.lora),
        (f"head's trained copy ({shape.head_params:,})", plan.head_copy),
        (f"optimizer state ({s.optimizer})", plan.optimizer_states),
        ("gradients", plan.gradients),
        (
            f"activations, checkpointing {'on' if s.gradient_checkpointing else 'off'} ({other}: "
            f"{other_bytes / GIB:.2f})",
            plan.activations,
        ),
        (
            f"evaluation forward, batch {s.eval_batch} (in place of the two above)",
            plan.eval_forward,
        ),
        (f"allocator margin ({ALLOCATOR_MARGIN:.0%}, assumed)", plan.allocator_margin),
        ("CUDA context (assumed)", plan.cuda_context),
    ]
    width = max(len(label) for label, _ in rows)
    lines += [f"  {label:<{width}}  {value / GIB:6.2f}" for label, value in rows]
    phase = "training step" if plan.training_peak >= plan.eval_peak else "evaluation"
    lines.append(f"  {'peak (' + phase + ')':<{width}}  {plan.total / GIB:6.2f}")
    lines.append("")
    lines.append(f"  {'GPU':<16}{'memory':>8}  fits")
    for row in gpu_table(plan, gpu_memory_gib):
        verdict = (
            f"yes, {row['left_bytes'] / GIB:.1f} GiB left"
            if row["fits"]
            else f"no, {-row['left_bytes'] / GIB:.1f} GiB short"
        )
        lines.append(f"  {row['gpu']:<16}{row['memory_bytes'] / GIB:8.1f}  {verdict}")
    return "\n".join(lines)
