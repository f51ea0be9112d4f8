"""The engine: `mathreport predict` and `mathreport bench` on the runs trained once per session."""

from __future__ import annotations

import dataclasses
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


def _direct_probs(run, text: str) -> np.ndarray:
    """The run's saved model run directly by its library, without mathreport's loaders: the independent answer.

    tfidf: scikit-learn's pipeline from model/pipeline.joblib. Transformers: the base weights named in run.json
    with the LoRA adapter of model/ on top (peft, not merged), tokenized and soft-maxed here.
    """
    if (run / "model" / "pipeline.joblib").is_file():
        import joblib

        return joblib.load(run / "model" / "pipeline.joblib").predict_proba([text])[0]
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    manifest = json.loads((run / "run.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    base = AutoModelForSequenceClassification.from_pretrained(manifest["weights"], num_labels=labels.NUM_CLASSES)
    model = PeftModel.from_pretrained(base, run / "model").eval()
    enc = tokenizer([text], truncation=True, max_length=manifest["hyperparameters"]["max_length"], return_tensors="pt")
    with torch.inference_mode():
        return torch.softmax(model(**enc).logits, dim=-1)[0].numpy()


# Printed to 4 decimals (5e-5); merged vs unmerged LoRA and ONNX float32 differ by ~1e-7; int8 by up to 0.1
# (tests/test_onnx_backend.py's INT8_PROB_TOLERANCE).
_PRINT = 5e-5


@pytest.mark.parametrize(("model", "backend"), [("tfidf", "auto"), ("minilm", "torch"), ("minilm", "auto")])
def test_predict_prints_turkish_argmax_and_probabilities(runs, model, backend, capsys):
    code = cli.main(["predict", "--run_dir", str(runs / model), "--backend", backend, QUESTION])
    topic, probs = _table(capsys.readouterr().out)
    expected = _direct_probs(runs / model, QUESTION)
    default = (artifacts.read_manifest(runs / model).get("inference") or {}).get("default", "")
    tolerance = 0.1 if backend == "auto" and default.endswith("int8") else _PRINT + 1e-6
    assert code == 0
    assert set(probs) == set(labels.names("tr"))
    assert sum(probs.values()) == pytest.approx(1.0, abs=8 * 5e-5)  # 8 values printed to 4 decimals
    assert max(probs, key=probs.get) == topic
    for i, name in enumerate(labels.names("tr")):
        assert probs[name] == pytest.approx(expected[i], abs=tolerance), name
    if tolerance < 1e-3:
        assert topic == labels.name(int(expected.argmax()), "tr")


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


def _check_entries(results: list[dict], n_items: int) -> None:
    assert [r["batch_size"] for r in results] == [1, 8]
    for r in results:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["n_items"] == n_items and r["items_per_s"] > 0 and r["threads"] >= 1


def test_bench_tfidf_writes_valid_latency(runs, capsys):
    (runs / "tfidf" / artifacts.LATENCY).unlink(missing_ok=True)
    code = cli.main(["bench", "--run_dir", str(runs / "tfidf"), "--batch_sizes", "1", "8", "--max_items", "16",
                     "--repeats", "2"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    latency = artifacts.read_latency(runs / "tfidf")
    _check_entries(latency["results"], 16 * 2)
    assert latency["repeats"] == 2 and latency["warmup_batches"] > 0 and latency["backend"] == "sklearn"
    assert "torch" in latency["versions"] and latency["device"].startswith("cpu")


def test_bench_compares_every_backend_in_one_json(runs, capsys):
    run = runs / "minilm"
    (run / artifacts.LATENCY).unlink(missing_ok=True)
    code = cli.main(["bench", "--run_dir", str(run), "--batch_sizes", "1", "8", "--max_items", "16",
                     "--repeats", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "wrote" in out
    latency = artifacts.read_latency(run)
    assert set(latency["backends"]) == {"torch-float32", "torch-bfloat16", "onnx-float32", "onnx-int8"}
    assert latency["skipped"] == {}
    manifest = artifacts.read_manifest(run)
    default = manifest["inference"]["default"]
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
    assert latency["backends"]["torch-float32"]["argmax_agreement"] == 1.0
    assert str(n_test) in latency["accuracy_on"]


def test_bench_one_backend_and_output_elsewhere(runs, tmp_path, capsys):
    run = runs / "minilm"
    before = (run / artifacts.LATENCY).read_bytes() if (run / artifacts.LATENCY).exists() else None
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "--run_dir", str(run), "--backend", "torch", "--dtype", "bf16", "--batch_sizes", "1",
                     "8", "--max_items", "8", "--repeats", "1", "--output", str(out)])
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
    out = predict._interleaved_batch_size({"a": Fake("a"), "b": Fake("b")}, texts, 2, warmup=1, repeats=2)
    timed = calls[2:]  # one warm-up batch each
    assert calls[:2] == [("a", 2), ("b", 2)]
    assert [name for name, _ in timed] == ["a", "a", "b", "b", "a", "a", "b", "b"]
    assert out["a"]["n_items"] == 8 and out["b"]["n_batches"] == 4


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


@pytest.mark.parametrize("backend,dtype", [("torch", "bfloat16"), ("onnx", "int8")])
def test_reduced_precision_weights_stay_close_to_float32(runs, backend, dtype):
    import torch

    texts = predict.test_questions(runs / "minilm")[:16]
    fp32 = predict.load_classifier(runs / "minilm", backend="torch")
    reduced = predict.load_classifier(runs / "minilm", backend=backend, dtype=dtype)
    assert reduced.backend == backend
    if dtype == "bfloat16":
        assert next(reduced.model.parameters()).dtype == torch.bfloat16
    else:
        assert reduced.dtype == "int8"
    p32, low = fp32.predict_proba(texts), reduced.predict_proba(texts)
    np.testing.assert_allclose(low.sum(axis=1), 1.0, atol=1e-5)
    # int8 rounds each weight row to 256 levels: a coarser approximation than bfloat16's 8-bit mantissa.
    assert np.abs(p32 - low).max() < {"bfloat16": 0.05, "int8": 0.1}[dtype]


def test_torch_int8_is_refused_with_the_way_to_int8(runs):
    with pytest.raises(ValueError, match="onnx"):
        predict.load_classifier(runs / "minilm", backend="torch", dtype="int8")


@pytest.mark.parametrize("backend,dtype,expected", [
    ("auto", None, "onnx-int8"), ("auto", "int8", "onnx-int8"), ("auto", "float32", "torch-float32"),
    ("auto", "bfloat16", "torch-bfloat16"), ("torch", None, "torch-float32"), ("onnx", None, "onnx-float32"),
    ("onnx", "int8", "onnx-int8"),
])
def test_resolve_backend(backend, dtype, expected):
    manifest = {"inference": {"default": "onnx-int8"}}
    assert predict.resolve_backend(manifest, backend, dtype).name == expected
    assert predict.resolve_backend({}, "auto", None).name == "torch-float32"  # a run never exported


def test_cpu_bf16_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert predict.cpu_bf16_flags(cpuinfo) == [] and not predict.cpu_has_fast_bf16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert predict.cpu_bf16_flags(cpuinfo) == ["avx512_bf16", "amx_bf16"] and predict.cpu_has_fast_bf16(cpuinfo)
    assert predict.cpu_bf16_flags(tmp_path / "missing") == []  # not Linux: bf16 is not assumed


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_training_defaults_follow_the_cpu(monkeypatch, small_data, fast_bf16):
    from mathreport import train

    monkeypatch.setattr(predict, "cpu_has_fast_bf16", lambda *a: fast_bf16)
    cfg = train.TrainConfig(model="minilm", train_path=small_data / "augmented_train.csv",
                            val_path=small_data / "val_split.csv", test_path=small_data / "test_split.csv",
                            output_dir=small_data / "unused", device="cpu")
    resolved = train.resolve_defaults(cfg)
    assert resolved.bf16 is fast_bf16 and resolved.lora_dropout == train.CPU_LORA_DROPOUT
    command = train.cli_command(resolved)
    assert ("--bf16" if fast_bf16 else "--no-bf16") in command.split() and "--lora_dropout" in command
    # Flags given win; tfidf has neither setting.
    given = train.resolve_defaults(dataclasses.replace(cfg, bf16=False, lora_dropout=0.2))
    assert (given.bf16, given.lora_dropout) == (False, 0.2)
    tfidf = train.resolve_defaults(dataclasses.replace(cfg, model="tfidf"))
    assert tfidf.bf16 is None and "bf16" not in train.cli_command(tfidf)


def test_tfidf_without_sklearn_checks_gives_the_same_probabilities(runs):
    texts = predict.test_questions(runs / "tfidf")[:20]
    clf = predict.load_classifier(runs / "tfidf")
    assert clf.skip_checks
    np.testing.assert_array_equal(clf.predict_proba(texts),
                                  dataclasses.replace(clf, skip_checks=False).predict_proba(texts))


def test_unsorted_and_padded_variants_give_the_same_probabilities(runs):
    texts = predict.test_questions(runs / "minilm")[:12]
    clf = predict.load_classifier(runs / "minilm", backend="torch")
    ref = clf.predict_proba(texts, batch_size=4)
    for variant in (dataclasses.replace(clf, sort_by_length=False), dataclasses.replace(clf, padding="max_length")):
        np.testing.assert_allclose(variant.predict_proba(texts, batch_size=4), ref, atol=1e-4)
