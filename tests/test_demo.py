"""Tests for mathreport.demo: a deterministic, imbalanced, learnable-but-not-trivial offline corpus."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from mathreport import data, demo, labels

FILES = [demo.RAW_FILE, data.TRAIN_FILE, data.VAL_FILE, data.TEST_FILE]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, demo.write_demo_corpus(out)


def test_same_seed_gives_byte_identical_files(corpus, tmp_path):
    out, report = corpus
    random.seed(
        12345
    )  # whatever the caller's global random state, the corpus must not depend on it
    again = demo.write_demo_corpus(tmp_path)
    for file in FILES:
        assert (out / file).read_bytes() == (tmp_path / file).read_bytes(), file
    assert {k: v for k, v in again.items() if k != "input"} == {
        k: v for k, v in report.items() if k != "input"
    }


def test_other_seed_gives_other_problems(tmp_path):
    a = demo.generate_problems(400, seed=1)
    b = demo.generate_problems(400, seed=2)
    assert a["label"].tolist() == b["label"].tolist()
    assert len(set(a["Question"]) & set(b["Question"])) < 0.2 * len(a)


def test_global_random_state_is_left_alone():
    random.seed(7)
    expected = random.random()
    random.seed(7)
    demo.generate_problems(200, seed=3)
    assert random.random() == expected


def test_corpus_size_classes_and_imbalance(corpus):
    out, report = corpus
    assert report["rows_kept"] >= 3000
    total = {
        c: sum(report["class_counts"][s][str(c)] for s in ("train", "val", "test"))
        for c in labels.CLASS_IDS
    }
    assert all(total[c] > 0 for c in labels.CLASS_IDS)
    for split in ("val", "test"):
        assert all(n > 0 for n in report["class_counts"][split].values()), split
    share = {c: n / sum(total.values()) for c, n in total.items()}
    assert all(share[c] > 0.10 for c in (0, 1, 2, 4))  # four large classes
    assert (
        0.02 <= share[6] <= 0.05 and 0.008 <= share[7] <= 0.025
    )  # two small ones, like the real data
    assert max(total.values()) / min(total.values()) > 10
    raw = data.read_split(out / demo.RAW_FILE)
    assert (
        raw["Question"].str.contains(r"\$", regex=True).mean() > 0.5
    )  # LaTeX-styled, as the real data


def test_report_says_demo_and_accounts_for_every_row(corpus):
    out, report = corpus
    assert report["source"] == "demo"
    assert (
        report["source_info"]["raw_file"] == demo.RAW_FILE and report["source_info"]["seed"] == 42
    )
    raw_rows = len(data.read_split(out / demo.RAW_FILE))
    dropped = report["cleaning"]["rows_dropped"]
    assert report["rows_in"] == raw_rows == report["rows_kept"] + sum(dropped.values())
    # the injected defects are found and counted
    defects = report["source_info"]["injected_defects"]
    assert dropped["label_conflict_minority"] == defects["conflicting_labels_majority"]
    assert dropped["label_conflict_unresolved"] == 2 * defects["conflicting_labels_tie"]
    assert (
        dropped["duplicate_exact"]
        == defects["exact_duplicates"] + defects["conflicting_labels_majority"]
    )
    assert dropped["duplicate_normalized"] == defects["case_or_whitespace_variants"]
    assert report["cleaning"]["rows_changed"]["unwrapped_bytes_literal"] > 50
    assert all(pair["overlap"] == 0 for pair in report["leakage"].values())


def test_tfidf_baseline_learns_but_does_not_solve_it(corpus):
    out, _ = corpus
    train, test = data.read_split(out / data.TRAIN_FILE), data.read_split(out / data.TEST_FILE)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    # One BLAS thread: on a small shared machine lbfgs with several threads oversubscribes (0.1 s vs 9 s).
    with threadpool_limits(1):
        model.fit(train["Question"], train["label"])
    accuracy = accuracy_score(test["label"], model.predict(test["Question"]))
    assert 0.8 <= accuracy <= 0.96, accuracy


def test_small_corpus_for_fast_tests(tmp_path):
    report = demo.write_demo_corpus(tmp_path, seed=7, n_total=480)
    assert report["rows_kept"] >= 470
    assert all(report["class_counts"]["test"][str(c)] > 0 for c in labels.CLASS_IDS)
    with pytest.raises(ValueError, match="at least 200"):
        demo.generate_problems(100)
