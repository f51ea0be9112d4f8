"""Shared fixtures: a small demo-corpus split and runs trained on it once per session.

Also two markers, applied here:
- `requires_tools("chromium", "pdftotext", ...)`: skipped with the reason when a program is missing, except in CI
  (`CI=true`, as `.ci/run` sets), where a missing program fails the test: a broken PDF step must not pass CI.
- `slow`: real training, notebooks, wheels and ONNX exports (pyproject.toml says what). Every test that uses a
  fixture of SLOW_FIXTURES is marked here, the others where they are defined, so `pytest -m "not slow"` is the quick
  loop; `make test` and CI run everything.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# Fixtures that train a transformer for real (tens of seconds to minutes on 2 CPU cores).
SLOW_FIXTURES = frozenset({"trained_results", "searched"})
# A tool name in requires_tools(...) and the executables that provide it.
TOOL_ALTERNATIVES = {
    "chromium": ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
}


def in_ci() -> bool:
    """True on CI machines (GitHub Actions, GitLab and most others set CI=true; .ci/run sets it too)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_runtest_setup(item):
    for marker in item.iter_markers("requires_tools"):
        missing = [
            t
            for t in marker.args
            if not any(shutil.which(x) for x in TOOL_ALTERNATIVES.get(t, (t,)))
        ]
        if not missing:
            continue
        message = (
            f"needs {', '.join(missing)} on PATH (make env installs chromium and poppler-utils)"
        )
        if in_ci():
            pytest.fail(
                f"CI=true: {message}; a missing tool fails in CI instead of skipping", pytrace=False
            )
        pytest.skip(message)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small, real-shaped split of the offline demo corpus (train/val/test CSVs + prepare_report.json)."""
    from mathreport import demo

    out = tmp_path_factory.mktemp("data")
    demo.write_demo_corpus(out, seed=7, n_total=480)
    return out


@pytest.fixture(scope="session")
def trained_results(tmp_path_factory, small_data) -> Path:
    """results/ with a `tfidf` and a `minilm` run trained end to end on the small split (slow: about 30 s to
    3 min on 2 cores; every test using it is marked `slow`)."""
    from mathreport.train import TrainConfig, train

    results = tmp_path_factory.mktemp("results")
    for model, epochs in (("tfidf", 1), ("minilm", 2)):
        train(
            TrainConfig(
                model=model,
                train_path=small_data / "augmented_train.csv",
                val_path=small_data / "val_split.csv",
                test_path=small_data / "test_split.csv",
                output_dir=results / model,
                num_epochs=epochs,
                max_length=64,
                bench_max_items=40,
            )
        )
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


_HOLD_LOCK = """
import sys
from mathreport import artifacts
with artifacts.run_lock(sys.argv[1], "mathreport train --model tfidf"):
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
"""


@pytest.fixture()
def hold_lock():
    """`with hold_lock(run_dir) as proc:` a live process of this checkout holds the run directory's lock."""
    import contextlib
    import subprocess
    import sys

    import mathreport

    @contextlib.contextmanager
    def held(run_dir):
        env = {**os.environ, "PYTHONPATH": str(Path(mathreport.__file__).resolve().parents[1])}
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(run_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout.readline().strip() == "locked"
            yield proc
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)

    return held


# Questions whose label is told by one keyword: a tiny model learns them in seconds (decoder and top-k tests).
KEYWORDS = [
    "equation",
    "triangle",
    "derivative",
    "dice",
    "prime",
    "arrangements",
    "matrix",
    "group",
]
FILLER = "find the value of x in this short problem about numbers and their sum or product please".split()


@pytest.fixture(scope="module")
def keyword_splits(tmp_path_factory):
    """train/val/test CSVs (96/32/32 rows, every class in each) whose label is told by one keyword."""
    out = tmp_path_factory.mktemp("keyword-data")
    rng = random.Random(0)
    for split, per_class in (("train", 12), ("val", 4), ("test", 4)):
        rows = []
        for label, word in enumerate(KEYWORDS):
            for i in range(per_class):
                # Varying lengths, so batches are padded; the split name and index keep every question unique.
                words = rng.sample(FILLER, rng.randint(2, 10))
                words.insert(rng.randint(0, len(words)), word)
                rows.append({"Question": f"{split} {i}: " + " ".join(words), "label": label})
        pd.DataFrame(rows).to_csv(out / f"{split}.csv", index=False)
    return out
