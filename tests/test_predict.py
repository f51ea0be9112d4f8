"""predict: `mathreport predict` and the inference backends, on the runs trained once per session."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from mathreport import artifacts, bench, cli, labels, predict
from mathreport.errors import ConfigError
from mathreport.record import RunRecord

QUESTION = "Find the derivative of f(x) = x^3 sin(x) with respect to x."


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
    base = AutoModelForSequenceClassification.from_pretrained(
        manifest["weights"], num_labels=labels.NUM_CLASSES
    )
    model = PeftModel.from_pretrained(base, run / "model").eval()
    enc = tokenizer(
        [text],
        truncation=True,
        max_length=manifest["hyperparameters"]["max_length"],
        return_tensors="pt",
    )
    with torch.inference_mode():
        return torch.softmax(model(**enc).logits, dim=-1)[0].numpy()


# Printed to 4 decimals; merged vs unmerged LoRA and ONNX float32 differ only in the order of float32 additions,
# int8 by as much as tests/test_onnx_backend.py's INT8_PROB_TOLERANCE.
_PRINT = 5e-5


@pytest.mark.parametrize(
    ("model", "backend"), [("tfidf", "auto"), ("minilm", "torch"), ("minilm", "auto")]
)
def test_predict_prints_turkish_argmax_and_probabilities(runs, model, backend, capsys):
    code = cli.main(["predict", "--run_dir", str(runs / model), "--backend", backend, QUESTION])
    topic, probs = _table(capsys.readouterr().out)
    expected = _direct_probs(runs / model, QUESTION)
    default = (artifacts.read_manifest(runs / model).inference or {}).get("default", "")
    # The default is chosen per run at export: its precision sets how far it may be from float32 (as in
    # test_reduced_precision_weights_stay_close_to_float32; torch-topk reads bfloat16 states).
    reduced = {"int8": 0.1, "bfloat16": 0.05, "topk": 0.05}
    tolerance = (
        reduced.get(default.rsplit("-", 1)[-1], _PRINT + 1e-6)
        if backend == "auto"
        else _PRINT + 1e-6
    )
    assert code == 0
    assert set(probs) == set(labels.names("tr"))
    assert sum(probs.values()) == pytest.approx(1.0, abs=8 * 5e-5)  # 8 values printed to 4 decimals
    assert max(probs, key=probs.get) == topic
    for i, name in enumerate(labels.names("tr")):
        assert probs[name] == pytest.approx(expected[i], abs=tolerance), name
    if tolerance < 1e-3:
        assert topic == labels.name(int(expected.argmax()), "tr")


def test_predict_english_names_and_json(runs, capsys):
    code = cli.main(
        [
            "predict",
            "--run_dir",
            str(runs / "minilm"),
            "--lang",
            "en",
            "--json",
            QUESTION,
            "What is the probability that two dice both show six?",
        ]
    )
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
    code = cli.main(
        [
            "predict",
            "--run_dir",
            str(runs / "tfidf"),
            "--input",
            str(tmp_path / "q.csv"),
            "--output",
            str(tmp_path / "out.csv"),
        ]
    )
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
    code = cli.main(
        ["predict", "--run_dir", str(runs / "tfidf"), "--input", str(tmp_path / "q.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'Question'" in err and "soru" in err


@pytest.mark.parametrize("backend,dtype", [("torch", "bfloat16"), ("onnx", "int8")])
def test_reduced_precision_weights_stay_close_to_float32(runs, backend, dtype):
    import torch

    texts = bench.test_questions(runs / "minilm")[:16]
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
    with pytest.raises(ConfigError, match="onnx"):
        predict.load_classifier(runs / "minilm", backend="torch", dtype="int8")


@pytest.mark.parametrize(
    "backend,dtype,expected",
    [
        ("auto", None, "onnx-int8"),
        ("auto", "int8", "onnx-int8"),
        ("auto", "float32", "torch-float32"),
        ("auto", "bfloat16", "torch-bfloat16"),
        ("torch", None, "torch-float32"),
        ("onnx", None, "onnx-float32"),
        ("onnx", "int8", "onnx-int8"),
    ],
)
def test_resolve_backend(backend, dtype, expected):
    manifest = RunRecord(kind="transformer", inference={"default": "onnx-int8"})
    assert predict.resolve_backend(manifest, backend, dtype).name == expected
    assert (
        predict.resolve_backend(RunRecord(), "auto", None).name == "torch-float32"
    )  # a run never exported


def test_each_purpose_gets_its_choice_and_an_older_run_json_its_one_default():
    choices = {
        "latency": {"backend": "onnx-int8", "batch_size": 1},
        "throughput": {"backend": "torch-bfloat16", "batch_size": 32},
    }
    manifest = RunRecord(kind="transformer", inference={"default": "onnx-int8", "choices": choices})
    assert predict.resolve_backend(manifest).name == "onnx-int8"  # latency unless asked
    assert predict.resolve_backend(manifest, purpose="throughput").name == "torch-bfloat16"
    # A precision asked for still wins over the choice.
    assert (
        predict.resolve_backend(manifest, "auto", "int8", purpose="throughput").name == "onnx-int8"
    )
    # A run.json written before the choice per batch size has only `default`: it serves both.
    older = RunRecord(kind="transformer", inference={"default": "onnx-float32"})
    assert {predict.resolve_backend(older, purpose=p).name for p in predict.PURPOSES} == {
        "onnx-float32"
    }
    assert {
        predict.default_backend(RunRecord(load_in_4bit=True), p).name for p in predict.PURPOSES
    } == {"torch-nf4"}
    with pytest.raises(ValueError, match="purpose must be one of"):
        predict.resolve_backend(manifest, purpose="fast")


def test_topk_backend_is_for_top_k_runs_on_torch_only():
    top_k = RunRecord(
        kind="transformer", partial={"top_k_layers": 2}, inference={"default": "torch-topk"}
    )
    assert predict.resolve_backend(top_k).name == "torch-topk"
    for backend in ("auto", "torch"):
        assert predict.resolve_backend(top_k, backend, "topk") is predict.TORCH_TOPK
    assert predict.resolve_backend(top_k, "auto", "float32").name == "torch-float32"
    with pytest.raises(ConfigError, match="--backend onnx --dtype topk: .*runs on torch"):
        predict.resolve_backend(top_k, "onnx", "topk")
    with pytest.raises(ConfigError, match="--dtype topk: .*this run trained all its layers"):
        predict.resolve_backend(RunRecord(kind="transformer"), "auto", "topk")
    assert predict.backend_named("torch-topk") is predict.TORCH_TOPK


def test_predict_cli_with_dtype_topk_answers_as_the_run_wrote(runs, capsys):
    """The session's minilm run trained its top 2 layers: `--dtype topk` recomputes its test predictions."""
    frame = artifacts.read_predictions(runs / "minilm")
    text = frame["text"].iloc[0]
    assert (
        cli.main(["predict", "--run_dir", str(runs / "minilm"), "--dtype", "topk", "--json", text])
        == 0
    )
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    printed = np.array([answer["probabilities"][name] for name in labels.names("tr")])
    # One question alone is its own batch, for the frozen layers too: bf16 rounding moves the last digits only.
    np.testing.assert_allclose(
        printed, frame[artifacts.PROB_COLUMNS].iloc[0].to_numpy(dtype=float), atol=0.02
    )
    assert cli.main(["predict", "--run_dir", str(runs / "tfidf"), "--dtype", "topk", text]) == 2
    assert "--dtype topk" in capsys.readouterr().err


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_training_defaults_follow_the_cpu(monkeypatch, small_data, fast_bf16):
    from mathreport import environment, train

    monkeypatch.setattr(environment, "cpu_has_fast_bf16", lambda *a: fast_bf16)
    cfg = train.TrainConfig(
        model="minilm",
        train_path=small_data / "augmented_train.csv",
        val_path=small_data / "val_split.csv",
        test_path=small_data / "test_split.csv",
        output_dir=small_data / "unused",
        device="cpu",
    )
    resolved = train.resolve_defaults(cfg)
    assert resolved.bf16 is fast_bf16 and resolved.lora_dropout == train.CPU_LORA_DROPOUT
    command = train.cli_command(resolved)
    assert (
        "--bf16" if fast_bf16 else "--no-bf16"
    ) in command.split() and "--lora_dropout" in command
    # Flags given win; tfidf has neither setting.
    given = train.resolve_defaults(dataclasses.replace(cfg, bf16=False, lora_dropout=0.2))
    assert (given.bf16, given.lora_dropout) == (False, 0.2)
    tfidf = train.resolve_defaults(dataclasses.replace(cfg, model="tfidf"))
    assert tfidf.bf16 is None and "bf16" not in train.cli_command(tfidf)
    # The model's own dropout: mpnet's preset turns it off on the CPU (and says so in the command); minilm's keeps
    # it, and so does any preset on CUDA; a flag given wins.
    assert resolved.model_dropout is None and "--model_dropout" not in command
    mpnet = train.resolve_defaults(dataclasses.replace(cfg, model="mpnet"))
    assert mpnet.model_dropout == 0.0 and "--model_dropout 0" in train.cli_command(mpnet)
    assert (
        train.resolve_defaults(
            dataclasses.replace(cfg, model="mpnet", model_dropout=0.1)
        ).model_dropout
        == 0.1
    )


def test_tfidf_without_sklearn_checks_gives_the_same_probabilities(runs):
    texts = bench.test_questions(runs / "tfidf")[:20]
    clf = predict.load_classifier(runs / "tfidf")
    assert clf.skip_checks
    np.testing.assert_array_equal(
        clf.predict_proba(texts), dataclasses.replace(clf, skip_checks=False).predict_proba(texts)
    )


def test_unsorted_and_padded_variants_give_the_same_probabilities(runs):
    texts = bench.test_questions(runs / "minilm")[:12]
    clf = predict.load_classifier(runs / "minilm", backend="torch")
    ref = clf.predict_proba(texts, batch_size=4)
    for variant in (
        dataclasses.replace(clf, sort_by_length=False),
        dataclasses.replace(clf, padding="max_length"),
    ):
        np.testing.assert_allclose(variant.predict_proba(texts, batch_size=4), ref, atol=1e-4)


@pytest.mark.parametrize("sort", [True, False])
def test_batched_probs_answers_in_input_order_whatever_the_batches(sort):
    texts = ["a" * n for n in (5, 1, 9, 3, 7, 2, 8)]
    seen = []

    def probs_of(batch):
        seen.append(batch)
        out = np.zeros((len(batch), labels.NUM_CLASSES))
        out[np.arange(len(batch)), [len(t) % labels.NUM_CLASSES for t in batch]] = 1.0
        return out

    probs = predict.batched_probs(texts, 3, probs_of, sort=sort)
    assert probs.argmax(1).tolist() == [len(t) % labels.NUM_CLASSES for t in texts]
    assert [len(b) for b in seen] == [3, 3, 1]
    assert seen[0] == (["a", "aa", "aaa"] if sort else texts[:3])
    assert predict.batched_probs([], 3, probs_of).shape == (0, labels.NUM_CLASSES)


# --- issue 28, 4: questions on standard input, streamed ------------------------------------------------------------


class _LengthClassifier:
    """A stand-in model: class = len(text) % 8, probability 1; records the batches it is asked."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def predict_proba(self, texts, batch_size=32):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), labels.NUM_CLASSES))
        out[np.arange(len(texts)), [len(t) % labels.NUM_CLASSES for t in texts]] = 1.0
        return out


def test_stream_answers_reads_lazily_in_batches_and_skips_blank_lines():
    pulled = []

    def lines():  # an endless stream: only a lazy reader gets an answer out of it
        yield "\ufeffwhat is 1+1?\r\n"
        yield "\n"
        yield "   \t\u200b\n"
        yield b"bad \xff byte\n".decode("utf-8", "surrogateescape")
        n = 0
        while True:
            n += 1
            pulled.append(n)
            yield f"question {n}\n"

    model, skipped = _LengthClassifier(), []
    stream = predict.stream_answers(
        model, lines(), batch_size=3, on_skip=lambda line, why: skipped.append((line, why))
    )
    first, second = next(stream), next(stream)
    assert first.lines == [1, 5, 6] and first.texts == ["what is 1+1?", "question 1", "question 2"]
    assert (
        second.lines == [7, 8, 9] and len(pulled) == 5
    )  # read no further than the batch it answers
    assert first.probs.argmax(1).tolist() == [len(t) % labels.NUM_CLASSES for t in first.texts]
    assert skipped == [(2, "empty"), (3, "empty"), (4, "not UTF-8 text (byte 0xff)")]
    assert [len(c) for c in model.calls] == [3, 3]
    # The last, shorter batch comes too.
    tail = list(predict.stream_answers(model, ["a\n", "bb\n", "ccc\n", "dddd"], batch_size=3))
    assert [part.texts for part in tail] == [["a", "bb", "ccc"], ["dddd"]]


@pytest.fixture(scope="module")
def tfidf_alone(small_data, tmp_path_factory):
    """A tfidf run of the small demo split (trained in seconds), without the session's minilm."""
    from mathreport.train import TrainConfig, train

    out = tmp_path_factory.mktemp("stdin") / "tfidf"
    train(
        TrainConfig(
            model="tfidf",
            train_path=small_data / "augmented_train.csv",
            val_path=small_data / "val_split.csv",
            test_path=small_data / "test_split.csv",
            output_dir=out,
            bench=False,
        )
    )
    return out


def _stdin(monkeypatch, content: bytes) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(content), encoding="utf-8"))


@pytest.mark.slow  # trains tfidf
def test_predict_answers_standard_input_line_by_line_as_predict_proba_does(
    tfidf_alone, small_data, tmp_path, capsys, monkeypatch
):
    questions = pd.read_csv(small_data / "test_split.csv")["Question"].tolist()
    assert len(questions) > 40
    expected = predict.load_classifier(tfidf_alone).predict_proba(questions)
    content = ("\n".join(questions[:40]) + "\n\n  \n" + "\r\n".join(questions[40:]) + "\n").encode(
        "utf-8"
    )
    names = labels.names("en")

    _stdin(monkeypatch, content)  # no question given, standard input not a terminal: read it
    code = cli.main(
        [
            "predict",
            "--run_dir",
            str(tfidf_alone),
            "--json",
            "--lang",
            "en",
            "--batch_size",
            "16",
            "--output",
            str(tmp_path / "answers.csv"),
        ]
    )
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 0 and [row["text"] for row in rows] == questions
    assert [row["line"] for row in rows] == [
        *range(1, 41),
        *range(43, len(questions) + 3),
    ]  # 41, 42: blank
    got = np.array([[row["probabilities"][name] for name in names] for row in rows])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert [row["class_id"] for row in rows] == expected.argmax(1).tolist()
    assert "2 line(s) got no answer (empty: lines 41, 42)" in captured.err
    written = pd.read_csv(tmp_path / "answers.csv")  # --output as the answers came, in one piece
    assert written["text"].tolist() == questions
    np.testing.assert_allclose(
        written[artifacts.PROB_COLUMNS].to_numpy(), expected, rtol=0, atol=1e-12
    )

    _stdin(
        monkeypatch, "\n".join(questions[:5]).encode("utf-8")
    )  # `-` asks for it; one answer line each
    assert cli.main(["predict", "--run_dir", str(tfidf_alone), "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == [
        labels.name(int(i)) for i in expected[:5].argmax(1)
    ]
    assert [float(line.split("\t")[1]) for line in out] == pytest.approx(
        expected[:5].max(1), abs=5e-5
    )

    _stdin(monkeypatch, b"\n \n")  # nothing to answer: one line, exit 2, --output left as it was
    before = (tmp_path / "answers.csv").read_bytes()
    assert (
        cli.main(
            ["predict", "--run_dir", str(tfidf_alone), "--output", str(tmp_path / "answers.csv")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        "standard input held no question (empty: lines 1, 2)" in err and len(err.splitlines()) == 1
    )
    assert (tmp_path / "answers.csv").read_bytes() == before


@pytest.mark.slow  # trains tfidf
def test_predict_reads_a_real_pipe_and_stops_quietly_when_its_reader_leaves(tfidf_alone):
    import contextlib
    import subprocess
    import sys
    import threading

    lines = "".join(f"what is the probability of {i} heads in a row?\n" for i in range(5000))
    cmd = [sys.executable, "-m", "mathreport.cli", "predict", "--run_dir", str(tfidf_alone)]
    done = subprocess.run(cmd, input=lines, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 5000, done.stderr
    # `| head -1`: the reader closes the pipe; no traceback, the exit status a shell gives a writer it cut off.
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def feed():  # from a thread: the pipes hold less than the whole input and output
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(lines * 4)
            proc.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    assert proc.stdout.readline().startswith(labels.name(3))
    proc.stdout.close()
    assert proc.wait(timeout=300) == 141
    writer.join()
    assert "Traceback" not in proc.stderr.read()


@pytest.mark.slow  # trains tfidf
def test_questions_as_arguments_use_the_latency_choice_files_and_streams_the_throughput_one(
    tfidf_alone, tmp_path, monkeypatch, capsys
):
    seen, load = [], predict.load_classifier

    def recording(*args, purpose="latency", **kwargs):
        seen.append(purpose)
        return load(*args, purpose=purpose, **kwargs)

    monkeypatch.setattr(predict, "load_classifier", recording)
    assert cli.main(["predict", "--run_dir", str(tfidf_alone), QUESTION, "Solve 2x + 3 = 7."]) == 0
    questions = tmp_path / "questions.csv"
    pd.DataFrame({"Question": [QUESTION, "Solve 2x + 3 = 7."]}).to_csv(questions, index=False)
    assert cli.main(["predict", "--run_dir", str(tfidf_alone), "--input", str(questions)]) == 0
    _stdin(monkeypatch, f"{QUESTION}\nSolve 2x + 3 = 7.\n".encode())
    assert cli.main(["predict", "--run_dir", str(tfidf_alone)]) == 0
    assert seen == ["latency", "throughput", "throughput"]
    capsys.readouterr()
