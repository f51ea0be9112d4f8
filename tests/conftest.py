"""Shared fixtures: a small demo-corpus split and runs trained on it once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small, real-shaped split of the offline demo corpus (train/val/test CSVs + prepare_report.json)."""
    from mathreport import demo

    out = tmp_path_factory.mktemp("data")
    demo.write_demo_corpus(out, seed=7, n_total=480)
    return out


@pytest.fixture(scope="session")
def trained_results(tmp_path_factory, small_data) -> Path:
    """results/ with a `tfidf` and a `minilm` run trained end to end on the small split (about 30 s)."""
    from mathreport.train import TrainConfig, train

    results = tmp_path_factory.mktemp("results")
    for model, epochs in (("tfidf", 1), ("minilm", 2)):
        train(TrainConfig(
            model=model, train_path=small_data / "augmented_train.csv", val_path=small_data / "val_split.csv",
            test_path=small_data / "test_split.csv", output_dir=results / model, num_epochs=epochs,
            max_length=64, bench_max_items=40,
        ))
    return results


@pytest.fixture(scope="module")
def runs(trained_results, tmp_path_factory):
    """Copies of the session's runs, so that a test module writing into them leaves the shared ones as they were."""
    import shutil

    out = tmp_path_factory.mktemp("runs")
    for name in ("tfidf", "minilm"):
        shutil.copytree(trained_results / name, out / name)
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared CPU: one thread avoids OpenMP spin-waiting against other processes (2x faster)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
