"""flops: the counted work of a forward pass against torch's own FLOP counter."""

from __future__ import annotations

import pytest

from mathreport import flops, models, partial

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("key", ["minilm", "tiny-qwen2"])
def test_forward_flop_matches_torchs_flop_counter(key, tmp_path, monkeypatch):
    """torch.utils.flop_counter counts every mm/bmm/attention product it runs; ours counts the layers' share."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setenv("MATHREPORT_CACHE", str(tmp_path))
    weights = models.resolve_weights(models.PRESETS[key])
    tokenizer = models.load_tokenizer(weights)
    model = models.load_base_model(weights, tokenizer, device="cpu").eval()
    model.set_attn_implementation(
        "eager"
    )  # the counter sees attention's two products as bmm; CPU sdpa it misses
    # one question at a time: no padding, so real tokens are all the tokens torch counts
    texts = [
        "Solve 3x + 5 = 20 for x.",
        "Find the area of the triangle with sides 3, 4 and 5 in the plane.",
    ]
    layers = partial.layer_list(model)
    bottom = partial.bottom_model(model, 0)  # every layer, no head: what flops counts
    counted = 0
    lengths = []
    for text in texts:
        batch = tokenizer([text], return_tensors="pt")
        lengths.append(batch["input_ids"].shape[1])
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            bottom(**batch)
        counted += counter.get_total_flops()
    ours = flops.forward_flop(
        lengths,
        weights_per_layer=flops.layer_matmul_weights(layers[-1]),
        hidden=model.config.hidden_size,
        layers=len(layers),
    )
    assert ours == pytest.approx(counted, rel=1e-6)


def test_training_record_counts_two_forwards_per_step_and_evaluation():
    import torch

    layer = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 4))
    assert flops.layer_matmul_weights(layer) == 64
    rec = flops.training_record(
        [layer, layer], 4, trained=1, train_lengths=[3], eval_lengths=[2], epochs=2, seconds=10.0
    )
    forward_3 = 2 * 64 * 3 + 4 * 4 * 9
    forward_2 = 2 * 64 * 2 + 4 * 4 * 4
    assert rec["flop"] == 2 * (2 * forward_3 + forward_2)
    assert rec["flop_per_s"] == rec["flop"] / 10.0
    assert (
        flops.training_record(
            [layer], 4, trained=1, train_lengths=[3], eval_lengths=[], epochs=1, seconds=None
        )["flop_per_s"]
        is None
    )


def _cpu_load(state: dict):
    """environment.CpuLoad reading other processes' share from `state["other"]`, whatever the real CPUs do (a
    parallel test run loads them)."""
    from mathreport import environment

    class Fixed(environment.CpuLoad):
        def __exit__(self, *exc):
            self.result = {"cpu_busy": 1.0, "cpu_busy_other": state["other"]}

    return Fixed


def test_training_rate_is_a_share_of_the_cached_ceiling(tmp_path, monkeypatch):
    from mathreport import environment, flops

    monkeypatch.setenv("MATHREPORT_CACHE", str(tmp_path))
    calls = []
    real = flops.measure_ceiling

    def counted(dtype, device="cpu", n=flops.CEILING_N, min_seconds=0.5):
        calls.append(dtype)
        return real(dtype, device, n=256, min_seconds=0.05)

    monkeypatch.setattr(flops, "measure_ceiling", counted)
    monkeypatch.setattr(environment, "CpuLoad", _cpu_load({"other": 0.0}))
    rate = flops.training_rate({"flop_per_s": 5e9}, "float32")
    assert calls == ["float32"] and rate["gflop_per_s"] == 5.0
    assert rate["ceiling_share"] == pytest.approx(5e9 / (rate["ceiling"]["gflop_per_s"] * 1e9))
    again = flops.training_rate({"flop_per_s": 1e9}, "float32")
    assert calls == ["float32"]  # measured once per machine, then read from the cache
    assert again["ceiling"] == rate["ceiling"] and again["ceiling_share"] == pytest.approx(
        rate["ceiling_share"] / 5
    )
    assert flops.training_rate({"flop_per_s": None}, "float32") == {}  # a resumed run has no rate
    flops.training_rate({"flop_per_s": 1e9}, "bfloat16")
    assert calls == ["float32", "bfloat16"]  # each precision has its own ceiling


def test_a_ceiling_measured_under_load_is_not_cached(tmp_path, monkeypatch):
    """Other processes on the cores make a low ceiling; cached, it would inflate every later run's share."""
    from mathreport import environment, flops

    monkeypatch.setenv("MATHREPORT_CACHE", str(tmp_path))
    busy = {"other": 0.5}
    calls = []

    def counted(dtype, device="cpu", n=flops.CEILING_N, min_seconds=0.5):
        calls.append(min_seconds)
        return 1e11

    monkeypatch.setattr(flops, "measure_ceiling", counted)
    monkeypatch.setattr(environment, "CpuLoad", _cpu_load(busy))
    first = flops.ceiling("float32")
    assert first["cache"] is None and first["cpu_busy_other"] == 0.5
    assert calls == [flops.CEILING_SECONDS]  # the long median, not half a second
    busy["other"] = 0.0
    quiet = flops.ceiling("float32")
    assert len(calls) == 2 and quiet["cache"] is not None  # measured again, now quiet, and cached
    assert flops.ceiling("float32")["cache"] == quiet["cache"] and len(calls) == 2
    rate = flops.training_rate({"flop_per_s": 1e10}, "float32")
    assert rate["ceiling"]["cpu_busy_other"] == 0.0 and rate["ceiling_share"] == pytest.approx(0.1)
