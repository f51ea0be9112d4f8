"""Several processes training one run (torchrun, gloo on the CPU): one writer, and the losses of one process.

Each case trains the same run twice from the command line: two processes of per-device batch 2 under
`torchrun --nproc_per_node 2`, and one process of batch 4. With sequential sampling, accelerate gives the two
processes the two halves of the one process's batch, and DDP averages their gradients, so the two runs take the same
optimizer steps: their per-epoch losses must agree to rounding. The two-process run must also leave one whole run
folder, written by rank 0 alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mathreport import artifacts, record

pytestmark = pytest.mark.slow  # trains models in subprocesses

# (preset, extra flags): a full-precision decoder, the same in 4-bit NF4, and a top-k encoder over cached states.
CASES = {
    "tiny-qwen2-full": ("tiny-qwen2", ["--no-load_in_4bit", "--top_k_layers", "0", "--no-bf16"]),
    "tiny-qwen2-nf4": ("tiny-qwen2", ["--load_in_4bit", "--top_k_layers", "0"]),
    "minilm-topk": ("minilm", ["--top_k_layers", "2", "--model_dropout", "0", "--no-bf16"]),
}


def _train(
    data: Path,
    out: Path,
    preset: str,
    flags: list[str],
    *,
    processes: int,
    batch_size: int,
    cache: Path,
    launcher: str = "torchrun",
) -> subprocess.CompletedProcess:
    launch = (
        {
            "torchrun": [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={processes}",
            ],
            # accelerate's multi-process launcher (torchrun underneath); on a machine without GPUs it runs gloo on the
            # CPU. (Its --cpu mode runs several processes only through MPI.)
            "accelerate": [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--multi_gpu",
                f"--num_processes={processes}",
                "--num_machines=1",
                "--mixed_precision=no",
                "--dynamo_backend=no",
            ],
        }[launcher]
        if processes > 1
        else [sys.executable]
    )
    command = [
        *launch,
        "-m",
        "mathreport.cli",
        "train",
        "--model",
        preset,
        "--device",
        "cpu",
        "--train_path",
        str(data / "train.csv"),
        "--val_path",
        str(data / "val.csv"),
        "--test_path",
        str(data / "test.csv"),
        "--output_dir",
        str(out),
        "--num_epochs",
        "2",
        "--batch_size",
        str(batch_size),
        "--max_length",
        "32",
        "--learning_rate",
        "5e-3",
        "--train_eval_samples",
        "32",
        "--imbalance",
        "none",
        "--no_bench",
        *flags,
        # Trainer's own flag: the batches in order, so both runs see the same questions in each step.
        "--train_sampling_strategy",
        "sequential",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MATHREPORT_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_write_one_run_with_the_losses_of_one_process(
    case, keyword_splits, cache, tmp_path
):
    preset, flags = CASES[case]
    two = _train(
        keyword_splits, tmp_path / "two", preset, flags, processes=2, batch_size=2, cache=cache
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "is being written by" not in two.stderr  # no process was refused the run's lock
    one = _train(
        keyword_splits, tmp_path / "one", preset, flags, processes=1, batch_size=4, cache=cache
    )
    assert one.returncode == 0, one.stderr[-3000:]

    run_dir = tmp_path / "two"
    rec = record.read(run_dir)
    assert rec.status == "complete" and rec.world_size == 2 and rec.global_batch_size == 4
    single = record.read(tmp_path / "one")
    assert single.global_batch_size == 4 and single.world_size == 1
    # Every run states its achieved FLOP/s as a share of this machine's ceiling in the precision that ran.
    assert single.training["gflop_per_s"] > 0 and 0 < single.training["ceiling_share"] < 1
    assert (
        single.training["ceiling"]["dtype"] == (single.precision["dtype"] or "float32")
        or single.load_in_4bit
    )
    artifacts.check_consistency(
        run_dir
    )  # the files run.json recorded are those on disk, and no lock is held
    # Rank 0 alone wrote: no file or temporary left anywhere but the run's own, and the model card written once.
    names = sorted(p.name for p in run_dir.iterdir())
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")], names
    assert not (run_dir / artifacts.CHECKPOINTS).exists()
    assert (run_dir / "model" / "README.md").is_file()
    assert (
        len(artifacts.read_predictions(run_dir)) == 32
        and len(artifacts.read_val_predictions(run_dir)) == 32
    )

    two_history, one_history = (
        artifacts.read_history(run_dir),
        artifacts.read_history(tmp_path / "one"),
    )
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(
            two_history[column], one_history[column], rtol=2e-3, err_msg=column
        )
    # Training moved the model between the epochs: equal losses of two models that never changed would prove nothing.
    assert abs(two_history["val_loss"].iloc[-1] - two_history["val_loss"].iloc[0]) > 0.01


def test_rank0s_refusal_stops_every_process_with_its_one_line(keyword_splits, cache, tmp_path):
    """A finished run in --output_dir: rank 0 refuses (no --force) and the other process stops with it, at once."""
    preset, flags = CASES["tiny-qwen2-full"]
    first = _train(
        keyword_splits, tmp_path / "run", preset, flags, processes=1, batch_size=4, cache=cache
    )
    assert first.returncode == 0, first.stderr[-3000:]
    before = (tmp_path / "run" / record.FILE).read_bytes()
    again = _train(
        keyword_splits, tmp_path / "run", preset, flags, processes=2, batch_size=2, cache=cache
    )
    assert again.returncode != 0
    assert (
        again.stderr.count("already holds a finished run") == 1
    )  # rank 0 says it, once; rank 1 stops with it
    assert "is being written by" not in again.stderr
    assert (
        tmp_path / "run" / record.FILE
    ).read_bytes() == before  # nothing of the finished run was touched


def test_accelerate_launch_two_processes_write_one_run_with_the_losses_of_one_process(
    keyword_splits, cache, tmp_path
):
    preset, flags = CASES["tiny-qwen2-full"]
    two = _train(
        keyword_splits,
        tmp_path / "two",
        preset,
        flags,
        processes=2,
        batch_size=2,
        cache=cache,
        launcher="accelerate",
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = _train(
        keyword_splits, tmp_path / "one", preset, flags, processes=1, batch_size=4, cache=cache
    )
    assert one.returncode == 0, one.stderr[-3000:]
    rec = record.read(tmp_path / "two")
    assert rec.status == "complete" and rec.world_size == 2 and rec.global_batch_size == 4
    artifacts.check_consistency(tmp_path / "two")
    np.testing.assert_allclose(
        artifacts.read_history(tmp_path / "two")["train_loss"],
        artifacts.read_history(tmp_path / "one")["train_loss"],
        rtol=2e-3,
    )
