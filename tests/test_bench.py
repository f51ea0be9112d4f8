"""bench: `mathreport bench` and the latency measurement, on the runs trained once per session."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, bench, cli, environment, predict


def _check_entries(results: list[dict], n_items: int) -> None:
    assert [r["batch_size"] for r in results] == [1, 8]
    for r in results:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["n_items"] == n_items and r["items_per_s"] > 0 and r["threads"] >= 1


def test_bench_tfidf_writes_valid_latency(runs, capsys):
    (runs / "tfidf" / artifacts.LATENCY).unlink(missing_ok=True)
    code = cli.main(
        [
            "bench",
            "--run_dir",
            str(runs / "tfidf"),
            "--batch_sizes",
            "1",
            "8",
            "--max_items",
            "16",
            "--repeats",
            "2",
        ]
    )
    assert code == 0 and "wrote" in capsys.readouterr().out
    latency = artifacts.read_latency(runs / "tfidf")
    _check_entries(latency["results"], 16 * 2)
    assert (
        latency["repeats"] == 2
        and latency["warmup_batches"] > 0
        and latency["backend"] == "sklearn"
    )
    assert "torch" in latency["versions"] and latency["device"].startswith("cpu")


def test_bench_compares_every_backend_in_one_json(runs, capsys):
    run = runs / "minilm"
    (run / artifacts.LATENCY).unlink(missing_ok=True)
    code = cli.main(
        [
            "bench",
            "--run_dir",
            str(run),
            "--batch_sizes",
            "1",
            "8",
            "--max_items",
            "16",
            "--repeats",
            "2",
            "--threads",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "wrote" in out
    latency = artifacts.read_latency(run)
    # The session's minilm run trained its top 2 layers: torch-topk (how it was trained) is one more backend.
    assert set(latency["backends"]) == {
        "torch-float32",
        "torch-bfloat16",
        "onnx-float32",
        "onnx-int8",
        "torch-topk",
    }
    assert latency["skipped"] == {}
    manifest = artifacts.read_manifest(run)
    default = manifest.inference["default"]
    # The report reads the top level: it is the run's default backend, the one `predict` uses.
    assert latency["default_backend"] == default
    assert latency["results"] == latency["backends"][default]["results"]
    assert f"{latency['backend']}-{latency['dtype']}" == default
    n_test = len(artifacts.read_predictions(run))
    for name, entry in latency["backends"].items():
        _check_entries(entry["results"], 16 * 2)
        assert all(r["threads"] == 1 for r in entry["results"])
        assert name in out
        assert 0 <= entry["accuracy"] <= 1 and entry["argmax_agreement"] >= 0.9
    # torch-topk wrote preds_test.csv, in batches of the run's batch_size, which bench's 32 is for minilm.
    assert manifest.hyperparameters["batch_size"] == 32
    assert latency["backends"]["torch-topk"]["argmax_agreement"] == 1.0
    assert latency["backends"]["torch-topk"]["max_abs_prob_diff"] < 1e-6
    assert str(n_test) in latency["accuracy_on"]
    # Bench says, per batch size of the run's choice, what the run chose; batch 32 (the throughput choice's
    # batch size) was not timed here (--batch_sizes 1 8), so it is not compared.
    choices = manifest.inference["choices"]
    for purpose, c in latency["choice"].items():
        assert (
            c["chosen"] == choices[purpose]["backend"]
            and c["batch_size"] == choices[purpose]["batch_size"]
        )
    assert latency["choice"]["latency"]["agrees"] in (True, False)
    assert latency["choice"]["throughput"]["agrees"] is None
    assert "no batch of 32" in latency["choice"]["throughput"]["not_compared"]
    assert "the run's latency choice (batch 1)" in out
    # The work per question, from BERT's shape (4 h^2 + 2 h i weights per layer, QK^T and AV) and the token counts.
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(manifest.weights)
    h, layers = config.hidden_size, config.num_hidden_layers
    tokenizer = AutoTokenizer.from_pretrained(artifacts.model_dir(run))
    lengths = np.array(
        [
            len(t)
            for t in tokenizer(
                bench.test_questions(run)[:16],
                truncation=True,
                max_length=manifest.hyperparameters["max_length"],
            )["input_ids"]
        ]
    )
    expected = (
        layers
        * (
            2 * (4 * h * h + 2 * h * config.intermediate_size) * lengths.sum()
            + 4 * h * (lengths**2).sum()
        )
        / len(lengths)
    )
    assert latency["flop_per_item"] == pytest.approx(expected, rel=1e-9)
    for entry in latency["backends"].values():
        for r in entry["results"]:
            assert r["gflop_per_s"] == pytest.approx(expected * r["items_per_s"] / 1e9, rel=1e-9)


def test_bench_one_backend_and_output_elsewhere(runs, tmp_path, capsys):
    run = runs / "minilm"
    before = (run / artifacts.LATENCY).read_bytes() if (run / artifacts.LATENCY).exists() else None
    out = tmp_path / "bench.json"
    code = cli.main(
        [
            "bench",
            "--run_dir",
            str(run),
            "--backend",
            "torch",
            "--dtype",
            "bf16",
            "--batch_sizes",
            "1",
            "8",
            "--max_items",
            "8",
            "--repeats",
            "1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    latency = json.loads(out.read_text())
    assert list(latency["backends"]) == ["torch-bfloat16"] and latency["dtype"] == "bfloat16"
    after = (run / artifacts.LATENCY).read_bytes() if (run / artifacts.LATENCY).exists() else None
    assert after == before  # --output leaves the run's latency.json alone
    capsys.readouterr()
    assert cli.main(["bench", "--run_dir", str(run), "--backend", "torch", "--dtype", "int8"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "onnx" in err


def test_interleaved_timing_alternates_backends():
    calls = []

    class Fake:
        threads = 1

        def __init__(self, name):
            self.name = name

        def predict_proba(self, texts, batch_size=32):
            calls.append((self.name, len(texts)))
            return np.zeros((len(texts), 8))

    texts = [f"q{i}" for i in range(4)]
    out = bench._latency_results({"a": Fake("a"), "b": Fake("b")}, texts, (2,), warmup=1, repeats=2)
    timed = calls[2:]  # one warm-up batch each
    assert calls[:2] == [("a", 2), ("b", 2)]
    assert [name for name, _ in timed] == ["a", "a", "b", "b", "a", "a", "b", "b"]
    (a,), (b,) = out["a"], out["b"]
    assert a["n_items"] == 8 and b["n_batches"] == 4 and a["batch_size"] == 2 and a["threads"] == 1
    assert 0 < a["p50_ms"] <= a["p99_ms"] and a["items_per_s"] == pytest.approx(1000 / a["mean_ms"])


def test_bench_missing_run_is_one_line(tmp_path, capsys):
    code = cli.main(["bench", "--run_dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err


def test_test_questions_fall_back_to_the_manifest_split(runs, small_data, tmp_path):
    run = tmp_path / "tfidf"
    shutil.copytree(runs / "tfidf", run)
    frame = pd.read_csv(run / artifacts.PREDICTIONS).drop(columns="text")
    frame.to_csv(run / artifacts.PREDICTIONS, index=False)
    assert (
        bench.test_questions(run) == pd.read_csv(small_data / "test_split.csv")["Question"].tolist()
    )


def test_cpu_load_counts_this_process_apart_from_the_others():
    wall, cpu = time.perf_counter(), time.process_time()
    with environment.CpuLoad() as load:
        end = time.process_time() + 0.3
        while time.process_time() < end:  # one core busy for 0.3 s of this process's CPU time
            pass
    own = (time.process_time() - cpu) / (time.perf_counter() - wall) / (os.cpu_count() or 1)
    busy, other = load.result["cpu_busy"], load.result["cpu_busy_other"]
    assert 0 <= other <= busy <= 1
    assert busy >= own - 0.05  # the machine was at least as busy as this process made it
    assert other == pytest.approx(max(busy - own, 0.0), abs=0.05)


def test_a_missing_run_folder_is_named_and_not_created_by_the_lock(tmp_path):
    from mathreport import onnx_backend

    for call in (bench.bench_run, onnx_backend.export_run):
        with pytest.raises(
            artifacts.ArtifactError, match=r"nope does not exist\. Make it with: mathreport train"
        ):
            call(tmp_path / "nope")
        assert not (tmp_path / "nope").exists()


class _TimedTorchClassifier(predict.TransformerClassifier):
    """A torch classifier that computes nothing and records torch's thread count at each call."""

    def __init__(self):
        super().__init__(model=None, tokenizer=None, max_length=8)
        self.seen = []

    def predict_proba(self, texts, batch_size=32, progress=False):
        import torch

        self.seen.append(torch.get_num_threads())
        return np.full((len(texts), 8), 1 / 8)


@pytest.mark.parametrize("device", ["cuda:0", "cpu"])
def test_cpu_threads_are_swept_on_the_cpu_only(device):
    import torch

    clf, before = _TimedTorchClassifier(), torch.get_num_threads()
    latency = bench.benchmark_latency(
        clf,
        [f"q{i}" for i in range(8)],
        batch_sizes=(1, 4),
        warmup=1,
        device=device,
        threads=(1, 2),
    )
    assert torch.get_num_threads() == before
    swept = [r for r in latency["results"] if "threads_p50_ms" in r]
    if device == "cpu":  # the fastest of 1 and 2 threads, per batch size
        assert len(swept) == 2 and {1, 2} <= set(clf.seen)
        assert latency["thread_choice"].startswith("the fastest of 1, 2")
    else:  # the GPU computes: CPU threads are left as they were and the JSON says so
        assert swept == [] and set(clf.seen) == {before}
        assert "not swept" in latency["thread_choice"] and "cuda:0" in latency["thread_choice"]
        assert latency["device"] == "cuda:0" and all(
            r["threads"] == before for r in latency["results"]
        )


def test_spread_is_taken_per_round_of_time_calls():
    ms = np.array([1.0, 2.0, 3.0, 10.0, 11.0, 30.0])  # two rounds of three items, round-major
    got = bench.spread(ms, 2)
    assert got == {"median_ms": 6.5, "interval_ms": [2.0, 11.0], "round_ms": [2.0, 11.0]}
    with pytest.raises(ValueError, match="cannot be 4 rounds"):
        bench.spread(ms, 4)


def test_paired_accuracy_tests_for_worse_answers_on_the_same_questions():
    y = np.arange(200) % 8
    reference = np.eye(8)[y]
    worse = reference.copy()
    worse[:12] = np.eye(8)[(y[:12] + 1) % 8]  # 12 answers the reference gets right, wrong
    got = bench.paired_accuracy(worse, y, reference)
    assert got["mcnemar"]["b"] == 12 and got["mcnemar"]["c"] == 0 and got["passes"] is False
    assert got["accuracy_difference"] == pytest.approx(-0.06)
    low, high = got["accuracy_difference_ci95"]
    assert low < -0.06 < high < 0 and got["argmax_agreement"] == pytest.approx(0.94)
    # Better answers are never refused by a one-sided test; a few changed answers either way are no evidence.
    assert bench.paired_accuracy(reference, y, worse)["passes"] is True
    mixed = reference.copy()
    mixed[:2] = np.eye(8)[(y[:2] + 1) % 8]
    assert bench.paired_accuracy(mixed, y, reference)["passes"] is True


def test_benchmark_choices_times_each_batch_size_with_its_backend(tmp_path):
    calls = []

    class Fake:
        threads = 1

        def __init__(self, name):
            self.name, self.backend = name, "onnx"

        def predict_proba(self, texts, batch_size=32):
            calls.append((self.name, len(texts)))
            return np.full((len(texts), 8), 1 / 8)

    latency = bench.benchmark_choices(
        {8: ("torch-bfloat16", Fake("b")), 1: ("onnx-int8", Fake("a"))},
        [f"q{i}" for i in range(16)],
        warmup=1,
        max_items=16,
    )
    assert [(r["batch_size"], r["backend"], r["dtype"]) for r in latency["results"]] == [
        (1, "onnx-int8", "int8"),
        (8, "torch-bfloat16", "bfloat16"),
    ]
    assert {n for n, size in calls if size == 1} == {"a"} and {
        n for n, size in calls if size == 8
    } == {"b"}
    assert latency["dtype"] == "int8" and latency["backends_by_batch_size"] == {
        "1": "onnx-int8",
        "8": "torch-bfloat16",
    }
    (tmp_path / artifacts.LATENCY).write_text(json.dumps(latency))
    assert (
        artifacts.read_latency(tmp_path)["results"][0]["backend"] == "onnx-int8"
    )  # the report's reader


def _row(size: int, *rounds: float) -> dict:
    return {
        "batch_size": size,
        "p50_ms": sorted(rounds)[len(rounds) // 2],
        "round_p50_ms": list(rounds),
    }


def test_bench_says_whether_its_fastest_agrees_with_the_runs_choice_within_its_spread():
    from mathreport.record import RunRecord

    choices = {
        "latency": {"backend": "onnx-int8", "batch_size": 1},
        "throughput": {"backend": "torch-bfloat16", "batch_size": 16},
    }
    manifest = RunRecord(
        kind="transformer",
        hyperparameters={"batch_size": 16},
        inference={"default": "onnx-int8", "choices": choices},
    )
    entries = {
        "torch-float32": {"passes": True, "results": [_row(1, 20, 21, 22), _row(16, 9, 10, 11)]},
        "onnx-int8": {"passes": True, "results": [_row(1, 5, 6, 7), _row(16, 4, 4.5, 5)]},
        "torch-bfloat16": {"passes": True, "results": [_row(1, 6.5, 8, 9), _row(16, 3, 3.2, 3.5)]},
        "onnx-float32": {
            "passes": False,
            "results": [_row(1, 1, 1, 1), _row(16, 1, 1, 1)],
        },  # fails: ignored
    }
    got = bench.against_choice(manifest, entries)
    assert got["latency"]["fastest"] == "onnx-int8" and got["latency"]["agrees"] is True
    assert got["throughput"]["fastest"] == "torch-bfloat16" and got["throughput"]["agrees"] is True
    # bench's fastest is another backend, but within bench's spread of the chosen one: they agree.
    entries["torch-bfloat16"]["results"][0] = _row(1, 4, 5.5, 6)
    again = bench.against_choice(manifest, entries)
    assert again["latency"]["fastest"] == "torch-bfloat16" and again["latency"]["agrees"] is True
    # Faster beyond the spread: they disagree.
    entries["torch-bfloat16"]["results"][0] = _row(1, 2, 2.5, 3)
    assert bench.against_choice(manifest, entries)["latency"]["agrees"] is False
    # A run.json with only a default: that backend at batch 1 and at the run's batch size.
    older = RunRecord(
        kind="transformer", hyperparameters={"batch_size": 16}, inference={"default": "onnx-int8"}
    )
    got = bench.against_choice(older, entries)
    assert (got["throughput"]["chosen"], got["throughput"]["batch_size"]) == ("onnx-int8", 16)
    assert got["throughput"]["agrees"] is False  # bf16 is faster beyond the spread at 16
