"""devices: GPU code paths proven on the CPU (precision by compute capability, one GPU per process, the top-k
path on the model's own device, FSDP's 4-bit storage) and the frozen weights held in bf16. CUDA is simulated (mocked
capability and device count, the `meta` device); the two-process runs are in tests/test_distributed.py."""

from __future__ import annotations

import types

import pytest
import torch

from mathreport import devices, fitting, models, partial, train
from mathreport.errors import ConfigError


@pytest.fixture()
def gpu(monkeypatch):
    """A CUDA machine as torch would describe it: `set(capability, count)` chooses the GPU."""
    calls = []

    def set_gpu(capability=(8, 0), count=1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(device))
        return calls

    return set_gpu


@pytest.mark.parametrize(
    "capability, expected", [((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16")]
)
def test_precision_by_compute_capability(gpu, capability, expected):
    gpu(capability)
    mixed, why = devices.choose_precision("cuda:0", None, None)
    assert (
        mixed == expected
        and f"{capability[0]}.{capability[1]}" in why
        and why.startswith("default")
    )


def test_precision_flags_are_honoured_on_cuda(gpu):
    gpu((8, 0))
    assert devices.choose_precision("cuda", False, None)[0] is None  # --no-bf16 on an A100: float32
    assert devices.choose_precision("cuda", None, True)[0] == "float16"  # --fp16 accepted
    assert devices.choose_precision("cuda", False, False)[0] is None
    gpu((7, 5))
    assert (
        devices.choose_precision("cuda", False, None)[0] == "float16"
    )  # --no-bf16 on a T4: its fp16 default
    assert devices.choose_precision("cuda", False, False)[0] is None  # --no-bf16 --no-fp16: float32
    mixed, why = devices.choose_precision(
        "cuda", True, None
    )  # --bf16 on a T4 runs, and says it is emulated
    assert mixed == "bfloat16" and "emulates" in why
    with pytest.raises(ConfigError, match="choose one"):
        devices.choose_precision("cuda", True, True)


def test_fp16_on_the_cpu_is_refused_rather_than_ignored():
    # accelerate turns no float16 autocast on for the CPU: the flag would silently train in float32.
    with pytest.raises(ConfigError, match="--fp16 on cpu"):
        devices.choose_precision("cpu", None, True)


def test_resolved_config_and_trainer_flags_follow_the_capability(gpu, monkeypatch):
    cfg = train.TrainConfig(
        model="minilm", train_path="t", val_path="v", test_path="s", output_dir="o", device="cuda:0"
    )
    gpu((7, 5))
    t4 = train.resolve_defaults(cfg)
    assert (t4.bf16, t4.fp16) == (False, True)
    gpu((8, 6))
    l4 = train.resolve_defaults(cfg)
    assert (l4.bf16, l4.fp16) == (True, False)
    # The resolved flags go into the run's command, which TrainingArguments' "at most one" check accepts.
    command = train.cli_command(t4)
    assert "--fp16" in command.split() and "--no-bf16" in command.split()


class _Args(types.SimpleNamespace):
    @property
    def n_gpu(self):
        return self._n_gpu


def test_one_process_seeing_two_gpus_trains_on_one_and_says_how_to_use_both(gpu, capsys):
    calls = gpu((7, 5), count=2)
    args = _Args(
        _n_gpu=2,
        world_size=1,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        device=torch.device("cuda", 0),
    )
    assert (
        devices.global_batch_size(args) == 32
    )  # what Trainer would run: the batch times two GPUs (DataParallel)
    assert devices.one_device(args, "cuda") == "cuda:0"
    assert (
        args.n_gpu == 1 and devices.global_batch_size(args) == 16
    )  # run.json's batch is the one that runs
    hint = capsys.readouterr().err.strip()
    assert hint.count("\n") == 0 and "torchrun --nproc_per_node 2" in hint
    # --device cuda:1: the process trains there (Trainer would have taken cuda:0), and predictions follow the model.
    args = _Args(
        _n_gpu=2,
        world_size=1,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        device=torch.device("cuda", 0),
    )
    assert devices.one_device(args, "cuda:1") == "cuda:1"
    assert args.__dict__["_setup_devices"] == torch.device("cuda", 1) and calls[-1] == 1


def test_under_torchrun_each_process_keeps_its_own_gpu(gpu, monkeypatch, capsys):
    gpu((8, 0), count=4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert models.pick_device(None) == "cuda:3" and models.pick_device("cuda") == "cuda:3"
    args = _Args(
        _n_gpu=1,
        world_size=4,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        device=torch.device("cuda", 3),
    )
    assert devices.one_device(args, "cuda:3") == "cuda:3" and devices.global_batch_size(args) == 32
    assert capsys.readouterr().err == ""


def test_a_cuda_device_torch_cannot_see_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="--device cuda:1: torch sees no CUDA device"):
        models.pick_device("cuda:1")


class _OnItsDevice(torch.nn.Module):
    """A bottom model whose weights sit on the `meta` device, as a model on a GPU sits on cuda: it records the
    device of what it is given and answers with real (CPU) states of the right shape."""

    def __init__(self, hidden=4):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(hidden, hidden, device="meta"))
        self.seen = []

    def forward(self, input_ids, attention_mask):
        self.seen.append((input_ids.device.type, attention_mask.device.type))
        shape = (*input_ids.shape, self.weight.shape[0])
        return types.SimpleNamespace(last_hidden_state=torch.ones(shape, dtype=torch.float32))


def test_frozen_states_feed_the_bottom_model_on_its_own_device():
    bottom = _OnItsDevice()
    states = partial.frozen_states(
        bottom, [(1, 2, 3), (4, 5)], pad_token_id=0, batch_size=2, progress=False
    )
    assert bottom.seen == [("meta", "meta")]  # the ids went to the model's device, not the CPU's
    assert [tuple(s.shape) for s in states] == [(3, 4), (2, 4)]
    assert all(
        s.device.type == "cpu" and s.dtype == torch.bfloat16 for s in states
    )  # the cache lives on the CPU


def test_autocast_takes_its_device_type_from_the_device(monkeypatch):
    seen = []

    class Recorder:
        def __init__(self, device_type, dtype):
            seen.append((device_type, dtype))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch, "autocast", Recorder)
    with partial.autocast_for("cuda:1", "float16"):
        pass
    with partial.autocast_for(torch.device("cpu"), "bfloat16"):
        pass
    with partial.autocast_for(
        "meta", None
    ):  # no mixed precision: no autocast at all, on any device
        pass
    assert seen == [("cuda", torch.float16), ("cpu", torch.bfloat16)]


def test_fsdp_stores_4bit_weights_in_the_compute_dtype(monkeypatch):
    monkeypatch.setattr(models, "check_4bit_possible", lambda device: None)
    plain = models.quantization_config(True, "cuda", "float16")
    assert (
        plain.bnb_4bit_compute_dtype == torch.float16
        and plain.bnb_4bit_quant_storage == torch.uint8
    )
    sharded = models.quantization_config(True, "cuda", "bfloat16", quant_storage=True)
    assert sharded.bnb_4bit_quant_storage == torch.bfloat16 == sharded.bnb_4bit_compute_dtype
    assert devices.sharded({"fsdp": "full_shard auto_wrap"}) == "--fsdp"
    assert devices.sharded({"deepspeed": "ds.json"}) == "--deepspeed"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert devices.sharded({}) == "accelerate's FSDP"
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    assert devices.sharded({}) is None


def test_trainable_weights_are_float32_for_loss_scaling():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)).to(torch.float16)
    model[0].weight.requires_grad_(False)
    model[0].bias.requires_grad_(False)
    assert models.upcast_trainable(model) == 2
    assert model[1].weight.dtype == torch.float32 and model[0].weight.dtype == torch.float16


@pytest.mark.slow  # trains a model twice
@pytest.mark.parametrize(
    "model, extra", [("tiny-qwen2", {"top_k_layers": 0}), ("minilm", {"top_k_layers": 2})]
)
def test_frozen_weights_held_in_bf16_train_bit_for_bit_like_autocasts_copies(
    model, extra, keyword_splits, tmp_path, monkeypatch
):
    import contextlib

    import numpy as np

    from mathreport import files

    monkeypatch.setenv("MATHREPORT_CACHE", str(tmp_path / "cache"))
    histories = {}
    for arm in ("copies", "held"):
        if arm == "copies":
            monkeypatch.setattr(
                devices, "frozen_linears_in", lambda model, dtype: contextlib.nullcontext()
            )
        else:
            monkeypatch.undo()
            monkeypatch.setenv(
                "MATHREPORT_CACHE", str(tmp_path / f"cache-{arm}")
            )  # the cache is computed again
        files.cache_dir().mkdir(parents=True, exist_ok=True)
        cfg = train.TrainConfig(
            model=model,
            train_path=keyword_splits / "train.csv",
            val_path=keyword_splits / "val.csv",
            test_path=keyword_splits / "test.csv",
            output_dir=tmp_path / arm,
            device="cpu",
            bf16=True,
            num_epochs=2,
            batch_size=8,
            max_length=32,
            train_eval_samples=16,
            **extra,
        )
        cfg = train.resolve_defaults(cfg)
        splits = train.load_splits(cfg)
        classifier, history, _ = train.fit_transformer(cfg, splits, tmp_path / arm)
        histories[arm] = (history, classifier.predict_proba(splits["test"]["Question"].tolist()))
        # After training the float32 weights are back: the merged model and what export sees are float32.
        linears = [m for m in classifier.model.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(m.weight.dtype == torch.float32 for m in linears)
    (copies, copies_probs), (held, held_probs) = histories["copies"], histories["held"]
    for column in ("train_loss", "val_loss"):
        assert copies[column].tolist() == held[column].tolist(), column  # equal, not close
    np.testing.assert_array_equal(copies_probs, held_probs)


def test_frozen_linears_in_holds_only_frozen_float32_weights_and_gives_them_back():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    original = model[0].weight.data_ptr()
    with devices.frozen_linears_in(model, "bfloat16"):
        assert model[0].weight.dtype == torch.bfloat16 and model[0].bias.dtype == torch.bfloat16
        assert (
            model[2].weight.dtype == torch.float32
        )  # trainable: the optimizer's float32 master weights
        assert model[1].weight.dtype == torch.float32  # not a matmul weight
    assert model[0].weight.data_ptr() == original and model[0].weight.dtype == torch.float32
    with devices.frozen_linears_in(model, None):
        assert model[0].weight.dtype == torch.float32


def test_train_refuses_before_loading_a_run_the_gpu_cannot_hold(gpu, monkeypatch, tmp_path):
    """train's memory check (memplan) with CUDA simulated: too little free memory is one line with settings that fit."""
    import peft  # noqa: F401  (imported before CUDA is simulated: bitsandbytes would load its CUDA kernels)

    from mathreport import memplan, tiny

    gpu((7, 5))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 2**20, 16 * 2**30))
    weights = str(tiny.build_tiny_model("qwen2", tmp_path / "tiny"))
    cfg = train.TrainConfig(
        model="tiny-qwen2", train_path="t", val_path="v", test_path="s", output_dir="o"
    )
    preset = models.get_preset("tiny-qwen2")
    args = types.SimpleNamespace(
        activation_checkpointing=False,
        gradient_checkpointing=False,
        gradient_accumulation_steps=1,
        per_device_eval_batch_size=32,
        optim="adamw_torch",
    )
    with pytest.raises(memplan.MemoryPlanError) as refused:
        fitting.check_memory(
            weights,
            "cuda:0",
            cfg,
            preset,
            {"batch_size": 16, "max_length": 64},
            False,
            args,
            "float16",
            0,
        )
    message = str(refused.value)
    assert (
        "\n" not in message
        and "cuda:0" in message
        and "mathreport plan --model tiny-qwen2" in message
    )
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (15 * 2**30, 16 * 2**30))
    fitting.check_memory(
        weights,
        "cuda:0",
        cfg,
        preset,
        {"batch_size": 16, "max_length": 64},
        False,
        args,
        "float16",
        0,
    )  # a tiny model fits a T4: no error


def test_the_memory_check_plans_the_dtype_the_weights_load_in(monkeypatch):
    """--no-bf16 --no-fp16 on a GPU loads float32 weights (devices.compute_dtype): the plan must count 4 bytes each."""
    from mathreport import memplan

    seen = {}
    monkeypatch.setattr(
        memplan, "check_cuda", lambda weights, device, **settings: seen.update(settings)
    )
    cfg = train.TrainConfig(
        model="tiny-qwen2", train_path="t", val_path="v", test_path="s", output_dir="o"
    )
    args = types.SimpleNamespace(
        activation_checkpointing=False,
        gradient_checkpointing=False,
        gradient_accumulation_steps=1,
        per_device_eval_batch_size=32,
        optim="adamw_torch",
    )
    hyper = {"batch_size": 8, "max_length": 64}
    for mixed, planned in ((None, "float32"), ("float16", "float16"), ("bfloat16", "bfloat16")):
        fitting.check_memory(
            "w", "cuda:0", cfg, models.get_preset("tiny-qwen2"), hyper, False, args, mixed, 0
        )
        assert seen["compute_dtype"] == planned
