"""The engine: `mathreport predict` and `mathreport bench` on the runs trained once per session."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, cli, labels, predict

QUESTION = "Find the derivative of f(x) = x^3 sin(x) with respect to x."


@pytest.fixture(scope="module")
def runs(trained_results, tmp_path_factory):
    """Copies of the session's runs, so that writing latency.json here leaves the shared ones as they were."""
    out = tmp_path_factory.mktemp("runs")
    for name in ("tfidf", "minilm"):
        shutil.copytree(trained_results / name, out / name)
    return out


def _table(stdout: str) -> tuple[str, dict[str, float]]:
    """The headline topic and the class -> probability lines of `mathreport predict` for one question."""
    lines = stdout.strip().splitlines()
    probs = {}
    for line in lines[1:]:
        name, value = line.strip().rsplit(None, 1)
        probs[name] = float(value)
    return lines[0].rsplit(" (", 1)[0], probs


@pytest.mark.parametrize("model", ["tfidf", "minilm"])
def test_predict_prints_turkish_argmax_and_probabilities(runs, model, capsys):
    code = cli.main(["predict", "--run_dir", str(runs / model), QUESTION])
    topic, probs = _table(capsys.readouterr().out)
    expected = predict.load_classifier(runs / model).predict_proba([QUESTION])[0]
    assert code == 0
    assert topic == labels.name(int(expected.argmax()), "tr")
    assert set(probs) == set(labels.names("tr"))
    assert sum(probs.values()) == pytest.approx(1.0, abs=8 * 5e-5)  # 8 values printed to 4 decimals
    assert max(probs, key=probs.get) == topic
    for i, name in enumerate(labels.names("tr")):
        assert probs[name] == pytest.approx(expected[i], abs=5e-5)


def test_predict_english_names_and_json(runs, capsys):
    code = cli.main(["predict", "--run_dir", str(runs / "minilm"), "--lang", "en", "--json", QUESTION,
                     "What is the probability that two dice both show six?"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(rows) == 2
    for row in rows:
        assert set(row["probabilities"]) == set(labels.names("en"))
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert row["topic"] == labels.name(row["class_id"], "en")
        assert row["topic"] == max(row["probabilities"], key=row["probabilities"].get)


def test_predict_csv_in_and_out(runs, small_data, tmp_path, capsys):
    questions = pd.read_csv(small_data / "test_split.csv").head(12)
    questions.to_csv(tmp_path / "q.csv", index=False)
    code = cli.main(["predict", "--run_dir", str(runs / "tfidf"), "--input", str(tmp_path / "q.csv"),
                     "--output", str(tmp_path / "out.csv")])
    out = pd.read_csv(tmp_path / "out.csv")
    assert code == 0 and len(capsys.readouterr().out.splitlines()) == 12
    probs = out[artifacts.PROB_COLUMNS].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (out["y_pred"] == probs.argmax(axis=1)).all()
    assert out["topic"].tolist() == [labels.name(i) for i in out["y_pred"]]
    assert out["text"].tolist() == questions["Question"].tolist()


def test_predict_missing_run_dir_is_one_line_exit_2(tmp_path, capsys):
    code = cli.main(["predict", "--run_dir", str(tmp_path / "nope"), QUESTION])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "nope" in err and "mathreport train" in err


def test_predict_csv_without_the_column_names_it(runs, tmp_path, capsys):
    pd.DataFrame({"soru": ["x"]}).to_csv(tmp_path / "q.csv", index=False)
    code = cli.main(["predict", "--run_dir", str(runs / "tfidf"), "--input", str(tmp_path / "q.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "'Question'" in err and "soru" in err


@pytest.mark.parametrize("model,dtype", [("tfidf", "float32"), ("minilm", "float32"), ("minilm", "bf16")])
def test_bench_writes_valid_latency(runs, model, dtype, capsys):
    (runs / model / artifacts.LATENCY).unlink(missing_ok=True)
    code = cli.main(["bench", "--run_dir", str(runs / model), "--dtype", dtype, "--batch_sizes", "1", "8",
                     "--max_items", "16", "--repeats", "2"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    latency = artifacts.read_latency(runs / model)
    assert [r["batch_size"] for r in latency["results"]] == [1, 8]
    for r in latency["results"]:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["n_items"] == 16 * 2 and r["items_per_s"] > 0 and r["threads"] >= 1
    assert latency["repeats"] == 2 and latency["warmup_batches"] > 0
    assert "torch" in latency["versions"] and latency["device"].startswith("cpu")
    if model == "minilm":
        assert latency["dtype"] == {"bf16": "bfloat16"}.get(dtype, dtype)
        # Both thread counts were measured and the faster one kept.
        for r in latency["results"]:
            measured = {int(k): v for k, v in r["threads_p50_ms"].items()}
            assert set(measured) == set(predict.thread_candidates())
            assert r["threads"] == min(measured, key=measured.get)


def test_bench_missing_run_is_one_line(tmp_path, capsys):
    code = cli.main(["bench", "--run_dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err


def test_test_questions_fall_back_to_the_manifest_split(runs, small_data, tmp_path):
    run = tmp_path / "tfidf"
    shutil.copytree(runs / "tfidf", run)
    frame = pd.read_csv(run / artifacts.PREDICTIONS).drop(columns="text")
    frame.to_csv(run / artifacts.PREDICTIONS, index=False)
    assert predict.test_questions(run) == pd.read_csv(small_data / "test_split.csv")["Question"].tolist()


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_reduced_precision_weights_stay_close_to_float32(runs, dtype):
    import torch

    texts = predict.test_questions(runs / "minilm")[:16]
    fp32 = predict.load_classifier(runs / "minilm")
    reduced = predict.load_classifier(runs / "minilm", dtype=dtype)
    if dtype == "bfloat16":
        assert next(reduced.model.parameters()).dtype == torch.bfloat16
    else:
        assert not any(type(m) is torch.nn.Linear for m in reduced.model.modules())
    p32, low = fp32.predict_proba(texts), reduced.predict_proba(texts)
    np.testing.assert_allclose(low.sum(axis=1), 1.0, atol=1e-5)
    # int8 rounds each weight row to 256 levels: a coarser approximation than bfloat16's 8-bit mantissa.
    assert np.abs(p32 - low).max() < {"bfloat16": 0.05, "int8": 0.1}[dtype]


def test_tfidf_without_sklearn_checks_gives_the_same_probabilities(runs):
    import dataclasses

    texts = predict.test_questions(runs / "tfidf")[:20]
    clf = predict.load_classifier(runs / "tfidf")
    assert clf.skip_checks
    np.testing.assert_array_equal(clf.predict_proba(texts),
                                  dataclasses.replace(clf, skip_checks=False).predict_proba(texts))


def test_unsorted_and_padded_variants_give_the_same_probabilities(runs):
    import dataclasses

    texts = predict.test_questions(runs / "minilm")[:12]
    clf = predict.load_classifier(runs / "minilm")
    ref = clf.predict_proba(texts, batch_size=4)
    for variant in (dataclasses.replace(clf, sort_by_length=False), dataclasses.replace(clf, padding="max_length")):
        np.testing.assert_allclose(variant.predict_proba(texts, batch_size=4), ref, atol=1e-4)
