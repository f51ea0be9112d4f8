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
