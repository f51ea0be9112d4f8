"""benchmarks/gpu_bench.py: the 7B shapes and FLOP counts, the CUDA guard, and its CPU dry run on tiny models.

benchmarks/ is not part of the installed package; pytest puts the repository root on sys.path (pyproject's
`pythonpath`), so the programs import as `benchmarks.<name>`.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_bench
from mathreport import models

# Tiny models on a shared CPU: one torch thread (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gpu_bench_fails_at_once_without_cuda(monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(models.NeedsCudaError, match="CUDA GPU"):
        gpu_bench.run_benchmark(gpu_bench.BenchConfig())
    assert gpu_bench.main(["--output", str(tmp_path / "GPU.md")]) == 2
    assert "--tiny" in capsys.readouterr().err
    assert not (tmp_path / "GPU.md").exists()


@pytest.mark.slow  # builds, trains and times tiny models
def test_gpu_bench_tiny_dry_run_qwen2_mistral(small_data, tmp_path):
    cfg = gpu_bench.BenchConfig(
        tiny=True,
        warmup_steps=1,
        train_steps=2,
        latency_batches={1: 3, 32: 2},
        latency_warmup=1,
        questions=small_data / "test_split.csv",
    )
    results = gpu_bench.run_benchmark(cfg)
    assert {"device", "date", "versions", "lengths", "runs", "peak_bf16_tflops"} <= results.keys()
    assert results["lengths"].startswith(str(small_data / "test_split.csv"))
    measured = [r for r in results["runs"] if "skipped" not in r]
    # bitsandbytes (make env) runs NF4 on the CPU too: both precisions of both models go through the code.
    assert {(r["model"], r["precision"]) for r in measured} == {
        ("qwen", "bf16"),
        ("mistral", "bf16"),
        ("qwen", "4bit"),
        ("mistral", "4bit"),
    }
    for run in measured:
        for key in (
            "train_tokens_per_s",
            "train_padded_tokens_per_s",
            "train_samples_per_s",
            "train_model_tflops_per_s",
            "train_peak_memory_gib",
            "inference_peak_memory_gib",
            "trainable_parameters",
            "matmul_parameters",
        ):
            assert run[key] > 0, key
        assert run["train_padded_tokens_per_s"] >= run["train_tokens_per_s"]
        assert "score" in run["modules_to_save"]
        for bs in (1, 32):
            lat = run[f"bs{bs}"]
            assert 0 < lat["p50_ms"] <= lat["p95_ms"] and lat["items_per_s"] > 0
            assert lat["n_batches"] == cfg.latency_batches[bs]

    out = tmp_path / "GPU.md"
    out.write_text(
        "# GPU\n\nprose kept\n\n<!-- gpu-bench:begin -->\nold\n<!-- gpu-bench:end -->\n\ntail kept\n"
    )
    gpu_bench.write_results(results, out)
    text = out.read_text()
    assert (
        "prose kept" in text
        and "tail kept" in text
        and "old" not in text.split("prose kept")[1].split("tail")[0]
    )
    assert text.count(gpu_bench.BEGIN) == 1 and "| qwen | bf16 (float32) |" in text
    assert json.loads((tmp_path / "gpu_bench.json").read_text())["runs"][0]["model"] == "qwen"


def test_matmul_params_match_the_published_7b_sizes():
    # Published totals: Qwen2.5-7B 7.61B parameters with 0.54B input + 0.54B output embeddings and biases;
    # Mistral-7B 7.25B with 2 x 0.13B embeddings. Our count is the matmul weights only.
    import torch
    from transformers import AutoModelForSequenceClassification

    qwen, _ = gpu_bench.matmul_params(gpu_bench.model_config("qwen", tiny_shape=False))
    mistral, _ = gpu_bench.matmul_params(gpu_bench.model_config("mistral", tiny_shape=False))
    assert 6.4e9 < qwen < 6.6e9
    assert 6.9e9 < mistral < 7.0e9
    # The formula counts exactly the Linear weights of the real module tree (built on the meta device: no memory).
    config = gpu_bench.model_config("mistral", tiny_shape=False)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    linear = {
        n: m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    }
    assert (sum(linear.values()) - linear["score"], linear["score"]) == gpu_bench.matmul_params(
        config
    )
    assert gpu_bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_bench.peak_tflops("Tesla T4") is None


def test_model_path_must_name_a_preset_and_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_bench.main(["--model_path", str(tmp_path)])
    assert "NAME=DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_bench.main(["--model_path", f"qwen={tmp_path / 'missing'}"])


@pytest.mark.slow  # trains tiny-qwen2 with `mathreport train` in a subprocess
def test_train_checks_run_the_command_and_record_each_outcome(tmp_path):
    checks = (
        (
            "tiny-qwen2 full precision",
            "tiny-qwen2",
            ["--no-load_in_4bit", "--max_train_samples", "64"],
        ),
        ("refused", "tiny-qwen2", ["--batch_size", "0"]),
    )
    ok, refused = gpu_bench.train_checks(
        "cpu", tmp_path, checks=checks, pipeline=False, timeout=900
    )
    assert ok["ok"] and ok["exit_status"] == 0 and ok["error"] is None
    assert (ok["status"], ok["device"], ok["load_in_4bit"]) == ("complete", "cpu", False)
    assert 0 <= ok["test_accuracy"] <= 1 and ok["command"].startswith(
        "mathreport train --model tiny-qwen2"
    )
    # A failure is recorded with its one-line error; the checks after it still run.
    assert (
        not refused["ok"] and refused["exit_status"] == 2 and "--batch_size 0" in refused["error"]
    )
    text = gpu_bench.results_markdown(
        {
            "device": "cpu",
            "date": "d",
            "versions": {},
            "tiny": True,
            "peak_bf16_tflops": None,
            "config": {"train_steps": 0, "warmup_steps": 0},
            "runs": [],
            "train_runs": [ok, refused],
        }
    )
    assert "| tiny-qwen2 full precision | ok |" in text and "| refused | failed: " in text
