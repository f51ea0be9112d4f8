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
        if isinstance(module, torch.nn.Linear) and not any(part in name.split(".") for part in ("lora_A", "lora_B")):
            total += module.weight.numel()
    return total


def forward_flop(lengths: Iterable[int], *, weights_per_layer: int, hidden: int, layers: int) -> float:
    """FLOP of a forward pass of `layers` layers over sequences of these lengths (real tokens)."""
    n = np.asarray(list(lengths), dtype=float)
    return float(layers * (2 * weights_per_layer * n.sum() + 4 * hidden * (n**2).sum()))


def training_record(layers: Sequence, hidden: int, *, trained: int, train_lengths: Sequence[int],
                    eval_lengths: Sequence[int], epochs: int, seconds: float | None) -> dict:
    """run.json's `flop`: the work of Trainer's run (training steps on the trained layers, evaluation forwards) and
    the achieved FLOP/s over Trainer's runtime.

    layers: the model's transformer layers (the weights per layer are read from the last one); trained: how many
    of them (from the top) are run in training, all for full LoRA, k for a top-k run over cached states;
    eval_lengths: the rows scored after each epoch (validation and the train sample).
    """
    per_layer = layer_matmul_weights(layers[-1])
    train = forward_flop(train_lengths, weights_per_layer=per_layer, hidden=hidden, layers=trained)
    evaluate = forward_flop(eval_lengths, weights_per_layer=per_layer, hidden=hidden, layers=trained)
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
