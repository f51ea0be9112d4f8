"""Partial fine-tuning: LoRA (and the head) on the top k transformer layers, trained over cached outputs of the rest.

The frozen layers' output for a question is the same in every epoch, so it is computed once (`frozen_states`) and
kept in bfloat16, in memory and on disk, under a key of everything it depends on (`cache_key`); a file whose
recorded key differs is never read. `add_top_lora` puts peft LoRA on the top k layers only (the head, and BERT's
pooler above the layers, trained in full); `top_model` is a k-layer model of the same class whose modules are the
*same objects* as the whole model's top, fed the cached states as `inputs_embeds`. Trainer trains it; at the end
the whole peft model is saved and merged, so the run looks like any full-LoRA run's. Unlike full LoRA, dropout
below the top k is off and the top layers read the state rounded to bfloat16.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding
from transformers.modeling_outputs import SequenceClassifierOutput

from mathreport import files, flops, models
from mathreport.errors import ConfigError
from mathreport.files import cache_dir

CACHE_FORMAT = 1
CACHE_DTYPE = "bfloat16"
# Files whose bytes decide the frozen layers' output: weights, config, tokenizer.
_IDENTITY_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".gguf")


def states_dir() -> Path:
    """Where cached frozen-layer states are kept: `<cache>/frozen-states` ($MATHREPORT_CACHE or ~/.cache/mathreport)."""
    return cache_dir() / "frozen-states"


# --- where the layers are ----------------------------------------------------------------------------------------


def _layer_owner(hf_model, base=None) -> tuple[Any, Any, str]:
    """(base model, the module holding the layer list, the list's attribute name) of a sequence classifier (or of
    `base`, a bare base model)."""
    base = base if base is not None else getattr(hf_model, hf_model.base_model_prefix, None)
    if hasattr(base, "layers"):  # Qwen2, Llama, Mistral
        return base, base, "layers"
    if hasattr(getattr(base, "encoder", None), "layer"):  # BERT, MPNet, RoBERTa
        return base, base.encoder, "layer"
    raise ConfigError(
        f"--top_k_layers: cannot find the transformer layers of {type(hf_model).__name__}; "
        "supported: BERT/MPNet-style encoders and Qwen2/Llama/Mistral-style decoders (or pass 0)"
    )


def layer_list(model) -> list:
    """The transformer layers of a (peft-wrapped) sequence classifier, bottom first."""
    _, owner, attr = _layer_owner(unwrap(model))
    return list(getattr(owner, attr))


def num_layers(model) -> int:
    """How many transformer layers the model has."""
    return len(layer_list(model))


def check_k(k: int, n: int, where: str = "") -> None:
    """Refuse a k the model cannot take (ConfigError naming the flag)."""
    if not 1 <= k <= n:
        raise ConfigError(
            f"--top_k_layers {k}: must be between 1 and the number of layers, {n}{where} "
            "(0 trains LoRA on every layer)"
        )


def unwrap(model):
    """The transformers model inside a peft model (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class _PassThrough(torch.nn.Module):
    """Stands in for the embeddings of a model fed cached states: returns `inputs_embeds` unchanged."""

    def forward(self, input_ids=None, inputs_embeds=None, **_):
        return inputs_embeds


def _shell(hf_model, n_layers: int, base_only: bool):
    """A model of `hf_model`'s class with `n_layers` layers, built on the meta device (no memory, no init)."""
    config = copy.deepcopy(hf_model.config)
    total = config.num_hidden_layers
    config.num_hidden_layers = n_layers
    if (
        getattr(config, "layer_types", None) is not None
    ):  # per-layer attention kinds (sliding or full)
        config.layer_types = (
            list(config.layer_types[total - n_layers :])
            if not base_only
            else list(config.layer_types[:n_layers])
        )
    base = getattr(hf_model, hf_model.base_model_prefix)
    with torch.device("meta"):
        return (type(base) if base_only else type(hf_model))(config)


def _share_children(src, dst, skip: set[str]) -> None:
    for name, child in src.named_children():
        if name not in skip:
            setattr(dst, name, child)


def _check_no_meta(module, what: str) -> None:
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(
            f"{what}: {left[:3]} were not shared from the whole model (unsupported architecture)"
        )


def top_model(model, k: int):
    """The top `k` layers (and what follows them) of `model` as a model fed cached states; modules are shared."""
    hf = unwrap(model)
    base, owner, attr = _layer_owner(hf)
    top = _shell(hf, k, base_only=False)
    _share_children(hf, top, skip={hf.base_model_prefix})  # the head (peft's trained copy of it)
    top_base, top_owner, _ = _layer_owner(top)
    _share_children(
        base, top_base, skip={"embeddings", "embed_tokens", attr if owner is base else "encoder"}
    )
    if (
        owner is not base
    ):  # encoders: layers inside `encoder`, beside e.g. MPNet's relative position bias
        _share_children(owner, top_owner, skip={attr})
    setattr(top_owner, attr, torch.nn.ModuleList(list(getattr(owner, attr))[-k:]))
    for name in ("embeddings", "embed_tokens"):
        if hasattr(top_base, name):
            setattr(top_base, name, _PassThrough())
    top.config.use_cache = False
    _check_no_meta(top, "top model")
    return TopModel(top, decoder=owner is base, pad_token_id=hf.config.pad_token_id)


def bottom_model(model, k: int):
    """The embeddings and the layers below the top `k` of `model` as a base model (no final norm, no pooler)."""
    hf = unwrap(model)
    base, owner, attr = _layer_owner(hf)
    layers = list(getattr(owner, attr))
    bottom = _shell(hf, len(layers) - k, base_only=True)
    _, bottom_owner, _ = _layer_owner(hf, base=bottom)
    _share_children(base, bottom, skip={attr if owner is base else "encoder", "norm", "pooler"})
    if owner is not base:
        _share_children(owner, bottom_owner, skip={attr})
    setattr(bottom_owner, attr, torch.nn.ModuleList(layers[: len(layers) - k]))
    if hasattr(
        bottom, "norm"
    ):  # decoders normalise after the last layer only; the top model applies it
        bottom.norm = torch.nn.Identity()
    if hasattr(bottom, "pooler"):
        bottom.pooler = None
    bottom.config.use_cache = False
    _check_no_meta(bottom, "bottom model")
    return bottom.eval()


class TopModel(torch.nn.Module):
    """The module Trainer trains: `top` (a k-layer model sharing the whole model's modules) fed cached states;
    decoders pool the last non-padding token."""

    def __init__(self, top, decoder: bool, pad_token_id: int | None):
        super().__init__()
        self.top, self.decoder, self.pad_token_id, self.config = (
            top,
            decoder,
            pad_token_id,
            top.config,
        )

    def forward(self, input_ids, inputs_embeds, attention_mask, labels=None):
        if not self.decoder:
            out = self.top(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels
            )
            return SequenceClassifierOutput(loss=out.loss, logits=out.logits)
        # transformers' decoder classifiers find the last token from input_ids, which a model fed inputs_embeds
        # does not get; the same rule (the rightmost token that is not padding) on the ids.
        base = getattr(self.top, self.top.base_model_prefix)
        hidden = base(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        non_pad = (input_ids != self.pad_token_id).to(torch.int32)
        last = (
            torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32) * non_pad
        ).argmax(-1)
        logits = self.top.score(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        loss = None
        if labels is not None:
            loss = self.top.loss_function(
                logits=logits, labels=labels, pooled_logits=logits, config=self.config
            )
        return SequenceClassifierOutput(loss=loss, logits=logits)


# --- LoRA on the top k layers ----------------------------------------------------------------------------------


def add_top_lora(model, preset: models.Preset, k: int, mlp: bool = False):
    """peft LoRA on the top `k` layers only (`layers_to_transform`), the head (and a pooler) trained in full.

    Returns (peft model, LoraConfig).
    """
    from peft import get_peft_model

    n = num_layers(model)
    check_k(k, n, f" of {preset.key}")
    config = models.lora_config(preset, model, mlp=mlp)
    keep = list(config.modules_to_save or [])
    base = getattr(model, model.base_model_prefix, None)
    if getattr(base, "pooler", None) is not None and getattr(model, "classifier", None) is not None:
        keep.append("pooler")  # BERT classifies the pooled [CLS]; without this it would be frozen
    config = dataclasses.replace(
        config, layers_to_transform=list(range(n - k, n)), modules_to_save=keep or None
    )
    return get_peft_model(model, config), config


# --- the cache ---------------------------------------------------------------------------------------------------

_IDENTITY_MEMO: dict[tuple, str] = {}


def weights_identity(weights: str) -> str:
    """SHA-256 over the model folder's weight, config and tokenizer files (names and bytes); memoised per process."""
    folder = Path(weights)
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(weights, "config.json")
        if not isinstance(cached, str):
            return hashlib.sha256(f"hub:{weights}".encode()).hexdigest()
        folder = Path(cached).parent
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _IDENTITY_SUFFIXES)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _IDENTITY_MEMO:
        from tqdm.auto import tqdm

        digest = hashlib.sha256()
        for path in tqdm(files, desc="hashing model files (cache key)", unit="file", leave=False):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
        _IDENTITY_MEMO[stamp] = digest.hexdigest()
    return _IDENTITY_MEMO[stamp]


def sequences_sha256(sequences: list[tuple[int, ...]]) -> str:
    """SHA-256 of token-id sequences in order."""
    digest = hashlib.sha256()
    for seq in sequences:
        digest.update(np.asarray(seq, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def cache_key(
    *,
    weights_id: str,
    split_sha256: str,
    k: int,
    max_length: int,
    sequences_sha: str,
    autocast: str | None,
) -> dict:
    """Everything the cached states depend on; the file name is a hash of it and the file carries it."""
    return {
        "format": CACHE_FORMAT,
        "weights_sha256": weights_id,
        "split_sha256": split_sha256,
        "top_k_layers": k,
        "max_length": max_length,
        "token_ids_sha256": sequences_sha,
        "autocast": autocast,
        "dtype": CACHE_DTYPE,
    }


def key_name(key: dict) -> str:
    """The cache file's name for a key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32] + ".pt"


def module_device(module) -> torch.device:
    """The device of a module's weights (its first parameter or buffer): where the tensors it consumes must be."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def autocast_for(device, dtype: str | None):
    """Mixed precision for modules on `device` ("cpu", "cuda:1", a torch.device): `torch.autocast` of that device's
    type in `dtype` ("bfloat16", "float16"), or nothing when `dtype` is None (also on devices autocast lacks)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype))


def frozen_states(
    bottom,
    sequences: list[tuple[int, ...]],
    *,
    pad_token_id: int,
    batch_size: int = 32,
    autocast: str | None = None,
    desc: str = "caching frozen layers",
    progress: bool = True,
) -> list:
    """The bottom model's last hidden state for each token-id sequence (bfloat16, one (length, hidden) each).

    The ids go to the bottom model's device and run under that device's autocast; the states come back to the CPU
    (the cache and Trainer's dataset hold them there; Trainer moves each batch to the training device).
    """
    from tqdm.auto import tqdm

    order = np.argsort(
        [len(s) for s in sequences], kind="stable"
    )  # batches of similar length pad little
    out: list = [None] * len(sequences)
    device = module_device(bottom)
    for start in tqdm(
        range(0, len(order), batch_size), desc=desc, unit="batch", disable=not progress
    ):
        idx = order[start : start + batch_size]
        longest = max(len(sequences[i]) for i in idx)
        ids = torch.full((len(idx), longest), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), longest), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
            mask[row, : len(sequences[i])] = 1
        with torch.inference_mode(), autocast_for(device, autocast):
            hidden = bottom(
                input_ids=ids.to(device), attention_mask=mask.to(device)
            ).last_hidden_state
        hidden = hidden.to(torch.bfloat16).cpu()
        for row, i in enumerate(idx):
            out[i] = hidden[row, : len(sequences[i])].clone()
    return out


def load_or_compute(
    bottom,
    sequences: list[tuple[int, ...]],
    key: dict,
    *,
    pad_token_id: int,
    directory: Path | None = None,
    desc: str = "caching frozen layers",
) -> tuple[dict, bool]:
    """{token ids: state} from the disk cache when its recorded key is `key`, else computed and saved (atomically).

    Returns (states, loaded_from_disk).
    """
    path = (directory or states_dir()) / key_name(key)
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged file is recomputed, with a word (never silently used)
            print(
                f"warning: {path}: unreadable cache ({type(exc).__name__}); computing the states again"
            )
            stored = None
        if (
            stored is not None
            and stored.get("key") == key
            and stored.get("ids") == [list(s) for s in sequences]
        ):
            states = torch.split(stored["states"], stored["lengths"].tolist())
            return dict(zip(sequences, states, strict=True)), True
    states = frozen_states(
        bottom, sequences, pad_token_id=pad_token_id, autocast=key["autocast"], desc=desc
    )
    record = {
        "key": key,
        "ids": [list(s) for s in sequences],
        "lengths": torch.tensor([len(s) for s in sequences]),
        "states": torch.cat(states),
    }
    with files.atomic_path(path, suffix=".pt") as tmp:
        torch.save(record, tmp)
    return dict(zip(sequences, states, strict=True)), False


# --- datasets for Trainer ----------------------------------------------------------------------------------------


class CachedDataset:
    """Encoded rows (input_ids, attention_mask, labels) with the cached state of each as `inputs_embeds`."""

    def __init__(self, rows: list[dict], states: dict):
        self.rows, self.states = rows, states

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        return {**row, "inputs_embeds": self.states[tuple(row["input_ids"])]}


def collator(tokenizer):
    """Pads ids and masks (transformers' DataCollatorWithPadding) and the states (zeros), states in float32."""
    pad = DataCollatorWithPadding(tokenizer)

    def collate(features: list[dict]) -> dict:
        batch = pad(
            [{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in features]
        )
        first = features[0]["inputs_embeds"]
        embeds = torch.zeros(
            (len(features), batch["input_ids"].shape[1], first.shape[-1]), dtype=torch.float32
        )
        for row, f in enumerate(features):
            embeds[row, : len(f["inputs_embeds"])] = f["inputs_embeds"].float()
        batch["inputs_embeds"] = embeds
        return batch

    return collate


@dataclass
class PartialSetup:
    """What `fitting.train_transformer` swaps in for a top-k run: the model Trainer trains, its
    datasets and collator."""

    model: Any
    datasets: dict[str, CachedDataset]
    collator: Any
    record: dict  # for run.json: k, the cache keys and files, whether each was loaded


def prepare(
    model,
    tokenizer,
    k: int,
    datasets: dict[str, tuple[Any, Path]],
    *,
    weights: str,
    max_length: int,
    autocast: str | None,
) -> PartialSetup:
    """Cache the frozen layers' states for `datasets` ({name: (encoded rows, their split file)}); build the top model.

    Datasets from the same split file (train and its scored sample) share one cache.
    """
    n = num_layers(model)
    check_k(k, n)
    bottom = bottom_model(model, k)
    per_layer, hidden = (
        flops.layer_matmul_weights(layer_list(model)[0]),
        unwrap(model).config.hidden_size,
    )
    weights_id = weights_identity(weights)
    by_file: dict[Path, list] = {}
    for name, (_, path) in datasets.items():
        by_file.setdefault(Path(path), []).append(name)
    states_of: dict[Path, dict] = {}
    caches = {}
    for path, names in by_file.items():
        # Sorted, so the key and the file do not depend on the row order (oversampling's seed, the sample).
        sequences = sorted({tuple(row["input_ids"]) for name in names for row in datasets[name][0]})
        key = cache_key(
            weights_id=weights_id,
            split_sha256=files.file_sha256(path),
            k=k,
            max_length=max_length,
            sequences_sha=sequences_sha256(sequences),
            autocast=autocast,
        )
        start = time.perf_counter()
        states, loaded = load_or_compute(
            bottom,
            sequences,
            key,
            pad_token_id=tokenizer.pad_token_id,
            desc=f"caching frozen layers ({'/'.join(names)}: {path.name})",
        )
        seconds = time.perf_counter() - start
        states_of[path] = states
        work = flops.forward_flop(
            [len(s) for s in sequences], weights_per_layer=per_layer, hidden=hidden, layers=n - k
        )
        caches[path.name if path.name not in caches else str(path)] = {
            "splits": names,
            "key": key,
            "file": str(states_dir() / key_name(key)),
            "loaded": loaded,
            "questions": len(sequences),
            "seconds": seconds,
            "flop": None if loaded else work,
            "flop_per_s": None if loaded or not seconds else work / seconds,
        }
    cached = {
        name: CachedDataset(rows, states_of[Path(path)]) for name, (rows, path) in datasets.items()
    }
    record = {
        "top_k_layers": k,
        "layers": n,
        "trained_layers": list(range(n - k, n)),
        "caches": caches,
    }
    return PartialSetup(top_model(model, k), cached, collator(tokenizer), record)
