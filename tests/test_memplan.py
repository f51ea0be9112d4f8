"""The GPU memory plan (mathreport.memplan) against published figures, bitsandbytes' own storage, the tensors
PyTorch saves and a measured training step on the tiny models, and its refusal with settings that fit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import torch

from mathreport import memplan
from mathreport.presets import DECODER_TARGETS

QWEN = "Qwen/Qwen2.5-Math-7B"
MISTRAL = "mistralai/Mistral-7B-v0.3"
GIB = 2**30


def _within(value: float, reference: float, tolerance: float) -> bool:
    return abs(value - reference) <= tolerance * reference


# --- the shipped configs against published figures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("hub_id", "published"),
    [
        # The parameter counts on the models' Hugging Face pages ("Model size"), causal LMs as published:
        # https://huggingface.co/Qwen/Qwen2.5-Math-7B (7.62B params), https://huggingface.co/mistralai/Mistral-7B-v0.3
        # (7.25B params).
        (QWEN, 7.62e9),
        (MISTRAL, 7.25e9),
    ],
)
def test_the_meta_device_count_matches_the_published_parameter_count(hub_id, published):
    shape = memplan.shape_of(memplan.load_config(hub_id), task="causal_lm")
    assert _within(shape.total_params, published, 0.01), shape.total_params


def test_qwens_non_embedding_parameters_match_its_technical_report():
    # Qwen2.5 Technical Report (arXiv:2412.15115), Table 1: Qwen2.5-7B has 6.53B non-embedding parameters (the
    # Math model shares its architecture). The plan quantises exactly the layers' linear weights.
    shape = memplan.shape_of(memplan.load_config(QWEN), task="causal_lm")
    assert _within(shape.quantizable_params, 6.53e9, 0.01), shape.quantizable_params


def test_bf16_weights_match_measured_and_published_bytes():
    # Qwen2.5 speed benchmark (https://qwen.readthedocs.io/en/latest/benchmark/speed_benchmark.html; QwenLM/Qwen2.5
    # docs/source/benchmark/speed_benchmark.rst): Qwen2.5-7B-Instruct, same architecture, BF16, transformers, input
    # length 1, batch 1: 14.38 GB of GPU memory measured on an A100 (GiB: weights + the KV cache of 2048 tokens).
    qwen = memplan.estimate(QWEN, task="causal_lm", batch_size=1, max_length=1, load_in_4bit=False)
    assert _within(qwen.weights_as_loaded, 14.38 * GIB, 0.15)
    assert qwen.weights_as_loaded < 14.38 * GIB  # the measurement holds the weights and more
    # Mistral-7B-v0.3's published bfloat16 checkpoint: model-0000{1,2,3}-of-00003.safetensors, 4.95 + 5.00 + 4.55
    # GB (10^9 bytes) on https://huggingface.co/mistralai/Mistral-7B-v0.3/tree/main.
    mistral = memplan.estimate(
        MISTRAL, task="causal_lm", batch_size=1, max_length=1, load_in_4bit=False
    )
    assert _within(mistral.weights_as_loaded, (4.95 + 5.00 + 4.55) * 1e9, 0.15)


def test_4bit_weights_match_a_measured_4bit_7b_load():
    # The same Qwen table: Qwen2.5-7B-Instruct in 4-bit (GPTQ-Int4 5.52 GB, AWQ 5.39 GB, input length 1). Those are
    # group-wise 4-bit formats with their embedding and head in 16 bits, as NF4 loading keeps them.
    plan = memplan.estimate(QWEN, task="causal_lm", batch_size=1, max_length=1, load_in_4bit=True)
    for measured in (5.52, 5.39):
        assert _within(plan.weights_as_loaded, measured * GIB, 0.15)


def test_nf4_bytes_per_weight_match_bitsandbytes_storage():
    """bitsandbytes' own NF4 with double quantisation (as models.quantization_config asks) on a weight matrix:
    packed codes and every constant of its quant state, per weight."""
    bnb = pytest.importorskip("bitsandbytes")
    weight = torch.randn(512, 2048, dtype=torch.bfloat16)
    packed, state = bnb.functional.quantize_4bit(
        weight, blocksize=64, quant_type="nf4", compress_statistics=True
    )
    stored = sum(
        t.numel() * t.element_size()
        for t in (
            packed,
            state.absmax,
            state.code,
            state.offset,
            state.state2.absmax,
            state.state2.code,
        )
    )
    assert _within(stored / weight.numel(), memplan.NF4_BYTES_PER_WEIGHT, 0.01)


# --- the 7B plans ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hub_id", [QWEN, MISTRAL])
def test_the_7b_qlora_plan_fits_a_t4_and_bf16_does_not(hub_id):
    qlora = memplan.estimate(hub_id, batch_size=8, max_length=512, load_in_4bit=True)
    bf16 = memplan.estimate(hub_id, batch_size=8, max_length=512, load_in_4bit=False)
    t4 = dict(memplan.GPUS)["T4 16 GB"] * 2**20
    assert qlora.total < t4 < bf16.total
    assert (
        qlora.settings.gradient_checkpointing and not bf16.settings.gradient_checkpointing
    )  # as train does
    # The parts add up to the total.
    tensors = max(qlora.training_peak, qlora.eval_peak)
    assert qlora.total == tensors + qlora.allocator_margin + qlora.cuda_context


def test_qwens_float32_upcast_is_its_embedding():
    """prepare_model_for_kbit_training upcasts what 4-bit leaves in bfloat16: for Qwen that is mostly the
    152,064 x 3,584 embedding, 2 more bytes per parameter."""
    config = memplan.load_config(QWEN)
    plan = memplan.estimate(config, batch_size=8, max_length=512, load_in_4bit=True)
    embedding = config.vocab_size * config.hidden_size
    assert embedding * 2 <= plan.upcast < embedding * 2 * 1.01
    assert plan.other_weights == 2 * plan.upcast


def test_more_memory_for_a_bigger_batch_longer_rows_more_lora_and_less_with_checkpointing():
    base = dict(batch_size=8, max_length=512, load_in_4bit=True)
    plan = memplan.estimate(QWEN, **base)
    assert memplan.estimate(QWEN, **{**base, "batch_size": 16}).activations > plan.activations
    assert memplan.estimate(QWEN, **{**base, "max_length": 1024}).total > plan.total
    assert plan.activations_checkpointing < plan.activations_no_checkpointing
    assert memplan.estimate(QWEN, **base, gradient_checkpointing=False).total > plan.total
    mlp = memplan.estimate(
        QWEN, **base, lora_targets=(*DECODER_TARGETS, "gate_proj", "up_proj", "down_proj")
    )
    assert mlp.lora > plan.lora and mlp.optimizer_states > plan.optimizer_states
    assert (
        memplan.estimate(QWEN, **{**base, "load_in_4bit": False}).other_weights
        > plan.weights_as_loaded
    )
    assert (
        memplan.estimate(QWEN, **base, optimizer="adamw_8bit").optimizer_states
        < plan.optimizer_states
    )


def test_other_architectures_are_counted_too():
    """Any config transformers knows: a BERT and an MPNet encoder (MPNet has no SDPA: eager attention keeps its
    length x length scores, so the plan grows with the square of max_length)."""
    bert = memplan.estimate(
        {
            "model_type": "bert",
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 12,
            "intermediate_size": 1536,
        },
        batch_size=32,
        max_length=128,
        load_in_4bit=False,
        lora_targets=("query", "key", "value"),
    )
    assert bert.shape.layers == 6 and not bert.shape.gated_mlp and bert.shape.hidden_dropout == 0.1
    assert bert.shape.head_params == 384 * 8 + 8  # the classifier, trained in full
    assert bert.lora == 4 * 6 * 3 * 16 * (384 + 384)
    mpnet = {
        "model_type": "mpnet",
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    }
    short = memplan.estimate(mpnet, batch_size=8, max_length=128, load_in_4bit=False)
    long = memplan.estimate(mpnet, batch_size=8, max_length=512, load_in_4bit=False)
    assert short.shape.attention == "eager"
    assert long.activations_no_checkpointing > 4 * short.activations_no_checkpointing


def test_an_unknown_model_type_is_one_line_and_an_unknown_optimizer_counts_as_adamw():
    with pytest.raises(memplan.MemoryPlanError, match="model_type 'no-such-model'"):
        memplan.estimate(
            {"model_type": "no-such-model"}, batch_size=1, max_length=8, load_in_4bit=False
        )
    lion = memplan.estimate(QWEN, batch_size=1, max_length=8, load_in_4bit=True, optimizer="lion")
    assert (
        lion.optimizer_states
        == memplan.estimate(
            QWEN, batch_size=1, max_length=8, load_in_4bit=True, optimizer="adamw_torch"
        ).optimizer_states
    )


# --- the activation terms against PyTorch, on the tiny models of the same code path -------------------------------

B, S = 8, 256  # tokens enough that the activations dominate the tiny models' own bytes


def _tiny(arch: str, four_bit: bool):
    """A tiny model as train prepares it: 4-bit + prepare_model_for_kbit_training + LoRA, or bfloat16 + LoRA."""
    from transformers import AutoModelForSequenceClassification

    from mathreport import models, tiny
    from mathreport.presets import PRESETS

    if four_bit:
        pytest.importorskip("bitsandbytes")
        try:
            models.check_4bit_possible("cpu")
        except models.FourBitUnavailableError as exc:
            pytest.skip(str(exc))
    weights = str(tiny.ensure_tiny_model(arch))
    tokenizer = models.load_tokenizer(weights)
    if four_bit:
        model = models.load_base_model(weights, tokenizer, device="cpu", load_in_4bit=True)
    else:  # as load_base_model loads on CUDA: bfloat16 weights
        model = AutoModelForSequenceClassification.from_pretrained(
            weights, num_labels=8, dtype=torch.bfloat16
        )
        model.config.pad_token_id = tokenizer.pad_token_id
    model, _ = models.add_lora(model, PRESETS[f"tiny-{arch}"], load_in_4bit=four_bit)
    model.train()
    plan = memplan.plan_preset(
        f"tiny-{arch}", batch_size=B, max_length=S, load_in_4bit=four_bit, device="cpu"
    )
    return model, plan


def _batch():
    ids = torch.randint(5, 500, (B, S), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, S, dtype=torch.long)
    mask[0, S // 2 :] = 0  # padding, as DataCollatorWithPadding makes: SDPA gets a mask
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.arange(B) % 8}


def _saved_bytes(model, layers: int) -> int:
    """Bytes of the tensors autograd saves in a forward pass with the bottom `layers` layers (weights excluded)."""
    from torch.multiprocessing.reductions import StorageWeakRef

    weights = {StorageWeakRef(p.untyped_storage()) for p in model.parameters()}
    inner = model.get_base_model().model
    everything = inner.layers
    inner.layers = everything[:layers]
    seen: dict = {}

    def pack(tensor):
        ref = StorageWeakRef(tensor.untyped_storage())
        if ref not in weights:
            seen[ref] = tensor.untyped_storage().nbytes()
        return tensor

    try:
        with (
            torch.autocast("cpu", dtype=torch.bfloat16),
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        ):
            model(**_batch())
    finally:
        inner.layers = everything
    return sum(seen.values())


def _peak_bytes(step) -> int:
    """The peak of CPU memory allocated during `step` above its start, from torch.profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    current = peak = 0
    for _, change in sorted(
        (e.time_range.start, e.self_cpu_memory_usage)
        for e in prof.events()
        if e.self_cpu_memory_usage
    ):
        current += change
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
@pytest.mark.parametrize("four_bit", [True, False], ids=["nf4", "bf16"])
def test_a_layers_activation_terms_are_the_tensors_pytorch_saves(arch, four_bit):
    model, plan = _tiny(arch, four_bit)
    model.get_base_model().gradient_checkpointing_disable()
    per_layer = _saved_bytes(model, 2) - _saved_bytes(model, 1)
    assert _within(memplan.layer_activation_bytes(plan.shape, plan.settings), per_layer, 0.05)


@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing", "no-checkpointing"])
def test_a_training_steps_measured_peak_matches_the_plans_activations(checkpointing):
    """A 4-bit training step of tiny-qwen2 (forward and backward, as Trainer runs it under bf16 autocast): the
    peak memory it allocates, measured, against the plan's activations."""
    model, plan = _tiny("qwen2", True)
    if not checkpointing:
        model.get_base_model().gradient_checkpointing_disable()
    batch = _batch()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()

    step()  # once before measuring: LoRA's gradients and lazy buffers exist from then on, as in training
    model.zero_grad(set_to_none=True)
    measured = _peak_bytes(step)
    planned = plan.activations_checkpointing if checkpointing else plan.activations_no_checkpointing
    assert _within(planned, measured, 0.15), (planned, measured)


def test_an_evaluation_forwards_measured_peak_matches_the_plan():
    model, plan = _tiny("qwen2", True)
    model.eval()
    batch = {k: v for k, v in _batch().items() if k != "labels"}

    def forward():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(**batch)

    forward()
    planned = plan.with_settings(eval_batch_size=B).eval_forward
    assert _within(planned, _peak_bytes(forward), 0.15)


def test_the_weights_counted_are_the_weights_loaded():
    """On the tiny Qwen2 loaded in 4-bit and prepared as train does: every parameter peft and bitsandbytes did not
    quantise is float32, and its bytes, the LoRA matrices and the head's trained copy are the plan's."""
    model, plan = _tiny("qwen2", True)
    base, lora, head_copy = 0, 0, 0
    for name, param in model.named_parameters():
        size = param.numel() * param.element_size()
        if "lora_" in name:
            lora += size
        elif "modules_to_save" in name:
            head_copy += size
        elif type(param).__name__ != "Params4bit":
            assert param.dtype == torch.float32, name
            base += size
    assert (base, lora, head_copy) == (plan.other_weights, plan.lora, plan.head_copy)


# --- refusing before loading -------------------------------------------------------------------------------------

_TRAIN_FLAG_SETTINGS = {
    "--batch_size": "batch_size",
    "--gradient_accumulation_steps": "gradient_accumulation_steps",
    "--per_device_eval_batch_size": "eval_batch_size",
    "--max_length": "max_length",
}


def _suggested(message: str) -> list[dict]:
    """The settings each suggestion of a refusal names, as estimate() keywords."""
    found = []
    for text in message.split("settings that fit: ", 1)[1].split(";"):
        if "(~" not in text:
            continue
        tokens = text.split("(~")[0].split()
        changes: dict = {}
        for i, token in enumerate(tokens):
            if token in _TRAIN_FLAG_SETTINGS:
                changes[_TRAIN_FLAG_SETTINGS[token]] = int(tokens[i + 1])
            elif token == "--load_in_4bit":  # train checkpoints in 4-bit
                changes.update(load_in_4bit=True, gradient_checkpointing=True)
            elif token == "--activation_checkpointing":
                changes["gradient_checkpointing"] = True
        found.append(changes)
    return found


def _mock_cuda(monkeypatch, free: int):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 16 * GIB))


@pytest.mark.parametrize(
    ("settings", "free_gib"),
    [
        (dict(batch_size=8, max_length=512, load_in_4bit=True), 6.5),
        (dict(batch_size=8, max_length=512, load_in_4bit=False, gradient_checkpointing=False), 30),
    ],
)
def test_too_little_free_memory_is_refused_naming_settings_that_fit(
    monkeypatch, settings, free_gib
):
    free = int(free_gib * GIB)
    _mock_cuda(monkeypatch, free)
    with pytest.raises(memplan.MemoryPlanError) as caught:
        memplan.check_cuda(QWEN, "cuda:0", show="mathreport plan --model qwen", **settings)
    message = str(caught.value)
    assert (
        "\n" not in message
        and message.startswith("cuda:0: ")
        and "mathreport plan --model qwen" in message
    )
    suggestions = _suggested(message)
    assert suggestions
    assert any("batch_size" in s for s in suggestions)
    if not settings["load_in_4bit"]:
        assert {"load_in_4bit": True, "gradient_checkpointing": True} in suggestions
        assert {"gradient_checkpointing": True} in suggestions
    for changes in suggestions:  # each, estimated afresh, fits and keeps the global batch
        again = memplan.estimate(QWEN, **{**settings, **changes})
        assert again.needed_free <= free, changes
        assert (
            again.settings.batch_size * again.settings.gradient_accumulation_steps
            == settings["batch_size"]
        )


def test_enough_free_memory_passes_and_no_cuda_is_not_checked(monkeypatch):
    _mock_cuda(monkeypatch, 70 * GIB)
    plan = memplan.check_cuda(QWEN, "cuda", batch_size=8, max_length=512, load_in_4bit=True)
    assert plan is not None and plan.needed_free < 70 * GIB
    assert memplan.check_cuda(QWEN, "cpu", batch_size=8, max_length=512, load_in_4bit=True) is None


def test_no_setting_fits_says_so(monkeypatch):
    _mock_cuda(monkeypatch, 2 * GIB)
    with pytest.raises(
        memplan.MemoryPlanError, match="no setting fits: the 4-bit weights alone take"
    ) as caught:
        memplan.check_cuda(QWEN, "cuda:0", batch_size=8, max_length=512, load_in_4bit=True)
    plan = memplan.estimate(QWEN, batch_size=8, max_length=512, load_in_4bit=True)
    said = float(re.search(r"weights alone take ([0-9.]+) GiB", str(caught.value)).group(1))
    assert said == round((plan.quantized_weights + plan.other_weights) / GIB, 1)


# --- the command -------------------------------------------------------------------------------------------------


def test_plan_prints_both_7b_models_within_10_seconds_without_weights(tmp_path):
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
    }  # an empty cache: no weights
    code = (
        "from mathreport.cli import main\n"
        "assert main(['plan', '--model', 'qwen']) == 0\n"
        "assert main(['plan', '--model', 'mistral']) == 0\n"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert seconds < 10, seconds
    for name in (QWEN, MISTRAL):
        assert f"training {name} " in done.stdout
    assert done.stdout.count("T4 16 GB") == 2 and done.stdout.count("peak (") == 2
    assert "4-bit NF4 linear weights" in done.stdout


def test_plan_compares_with_gpu_memory_and_exits_2_with_what_fits(capsys):
    from mathreport.cli import main

    assert main(["plan", "--model", "qwen", "--gpu_memory", "8"]) == 2
    out, err = capsys.readouterr()
    assert "--gpu_memory 8" in out and "GiB short" in out
    assert "settings that fit: " in err and ("--batch_size" in err or "--max_length" in err)
    assert main(["plan", "--model", "mistral", "--no-load_in_4bit", "--json"]) == 0
    data = __import__("json").loads(capsys.readouterr().out)
    assert data["settings"]["load_in_4bit"] is False and data["bytes"]["quantized_weights"] == 0
    assert {row["gpu"]: row["fits"] for row in data["gpus"]}["A100 80 GB"]


def test_a_model_without_a_config_here_says_what_is_enough():
    with pytest.raises(memplan.MemoryPlanError, match="config.json is enough: --model_path"):
        memplan.plan_preset("nobody-here/no-such-model-xyz")


def test_plan_reads_a_presets_local_config():
    plan = memplan.plan_preset("tiny-qwen2")
    assert plan.shape.model_type == "qwen2" and plan.shape.hidden == 64
    assert re.search(r"peak \(", memplan.format_plan(plan))
