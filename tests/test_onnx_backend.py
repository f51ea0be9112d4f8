"""ONNX export of a run: same answers as torch, verified files, a safe fallback, the backends' choice."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time

import numpy as np
import pytest

from mathreport import (
    artifacts,
    bench,
    cli,
    environment,
    metrics,
    onnx_backend,
    predict,
    record,
    train,
)

# float32 ONNX Runtime and torch differ only in the order of float32 additions.
FLOAT32_PROB_TOLERANCE = 1e-4
# Dynamic int8 quantization rounds each weight to 256 levels and each activation per call.
INT8_PROB_TOLERANCE = 0.1


@pytest.fixture(scope="module")
def run(trained_results, tmp_path_factory):
    """A copy of the session's minilm run (trained with `train`, which exported it), to damage safely."""
    out = tmp_path_factory.mktemp("onnx") / "minilm"
    shutil.copytree(trained_results / "minilm", out)
    return out


@pytest.fixture(scope="module")
def test_split(run):
    frame = artifacts.read_predictions(run)
    return (
        frame["text"].tolist(),
        frame["y_true"].to_numpy(),
        frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float),
    )


@pytest.fixture(scope="module")
def torch_probs(run, test_split):
    return predict.load_classifier(run, backend="torch").predict_proba(test_split[0])


def _fresh_copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_train_exported_both_files_and_recorded_their_hashes(run):
    section = artifacts.read_manifest(run).inference
    for dtype, name in artifacts.ONNX_FILES.items():
        record = section["onnx"][dtype]
        assert record["file"] == name
        assert hashlib.sha256((run / name).read_bytes()).hexdigest() == record["sha256"]
    names = [c["backend"] for c in section["candidates"]]
    assert {"torch-float32", "onnx-float32", "onnx-int8"} <= set(names) and section[
        "default"
    ] in names


def test_onnx_float32_equals_torch_on_the_test_split(run, test_split, torch_probs):
    texts, y_true, _ = test_split
    onnx = predict.load_classifier(run, backend="onnx", dtype="float32")
    assert isinstance(onnx, predict.OnnxClassifier)
    probs = onnx.predict_proba(texts, batch_size=8)
    assert (probs.argmax(1) == torch_probs.argmax(1)).mean() >= 0.99
    np.testing.assert_allclose(probs, torch_probs, atol=FLOAT32_PROB_TOLERANCE)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    # Batch size and order do not change an answer: padding is masked and the order is restored.
    np.testing.assert_allclose(
        onnx.predict_proba(texts[::-1], batch_size=1)[::-1], probs, atol=FLOAT32_PROB_TOLERANCE
    )


@pytest.fixture(scope="module")
def val_split(run):
    frame = artifacts.read_val_predictions(run)
    return (
        frame["text"].tolist(),
        frame["y_true"].to_numpy(),
        frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float),
    )


def test_onnx_int8_is_close_and_its_recorded_accuracy_is_true(
    run, test_split, torch_probs, val_split
):
    texts, _, _ = test_split
    int8 = predict.load_classifier(run, backend="onnx", dtype="int8")
    assert np.abs(int8.predict_proba(texts) - torch_probs).max() < INT8_PROB_TOLERANCE
    # The backends are checked on the validation split (all of it while it holds at most BACKEND_CHOICE_ITEMS
    # questions), never on the test split: the recorded accuracy is int8's on those questions, each one checked.
    val_texts, val_y, val_reference = val_split
    assert len(val_y) <= train.BACKEND_CHOICE_ITEMS
    section = artifacts.read_manifest(run).inference
    assert section["reference"]["n"] == len(val_y) and "validation" in section["reference"]["split"]
    recorded = section["onnx"]["int8"]
    measured = predict.agreement(int8.predict_proba(val_texts), val_y, val_reference)
    assert recorded["accuracy"] == pytest.approx(measured["accuracy"])
    assert recorded["argmax_agreement"] == pytest.approx(measured["argmax_agreement"])
    ci = recorded["accuracy_difference_ci95"]
    assert ci[0] <= recorded["accuracy_difference"] <= ci[1]
    assert recorded["accuracy_difference"] == pytest.approx(
        measured["accuracy"] - section["reference"]["accuracy"]
    )


def test_the_recorded_choices_follow_the_rule_and_predict_uses_them(run):
    section = artifacts.read_manifest(run).inference
    # The session's minilm run trained its top 2 layers: its reference is itself computing as trained.
    assert section["reference"]["backend"] == predict.TORCH_TOPK.name
    checks = {c["backend"]: c for c in section["candidates"]}
    assert set(checks) >= {"torch-topk", "torch-float32", "onnx-float32", "onnx-int8"}
    assert all(
        c["accuracy"] is not None and "mcnemar" in c for c in checks.values()
    )  # every one checked
    choices = section["choices"]
    assert choices["latency"]["batch_size"] == 1
    assert (
        choices["throughput"]["batch_size"]
        == artifacts.read_manifest(run).hyperparameters["batch_size"]
    )
    assert (
        section["default"] == choices["latency"]["backend"]
    )  # what older readers of run.json read
    for purpose, choice in choices.items():
        # Timed: the backends whose answers pass, each with its rounds; the choice is the rule applied to them.
        assert set(choice["backends"]) == {n for n, c in checks.items() if c["passes"]}
        for t in choice["backends"].values():
            assert t["interval_ms"] == [min(t["round_ms"]), max(t["round_ms"])]
        assert onnx_backend.choose(choice["backends"], checks, predict.TORCH_TOPK.name) == (
            choice["backend"],
            choice["reason"],
        )
        clf = predict.load_classifier(run, purpose=purpose)
        engine, dtype = choice["backend"].split("-")
        assert clf.backend == engine
        if engine == "onnx":
            assert clf.dtype == dtype
        elif dtype == "topk":
            assert isinstance(clf, predict.TopKClassifier)
        else:
            assert str(next(clf.model.parameters()).dtype) == f"torch.{dtype}"


def test_latency_json_times_each_batch_size_with_its_choice(run):
    choices = artifacts.read_manifest(run).inference["choices"]
    latency = artifacts.read_latency(run)
    assert {r["batch_size"]: r["backend"] for r in latency["results"]} == {
        c["batch_size"]: c["backend"] for c in choices.values()
    }
    top = predict.backend_named(choices["latency"]["backend"])
    assert latency["dtype"] == top.dtype and latency["results"][0]["batch_size"] == 1


@pytest.mark.parametrize("damage", ["corrupt", "missing", "swapped"])
def test_damaged_onnx_falls_back_to_torch_with_one_warning(
    run, tmp_path, test_split, torch_probs, damage, caplog
):
    copy = _fresh_copy(run, tmp_path)
    for name in artifacts.ONNX_FILES.values():
        path = copy / name
        if damage == "corrupt":
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
            path.write_bytes(bytes(data))
        elif damage == "missing":
            path.unlink()
    if damage == "swapped":  # a valid ONNX model, but not the one verified for this name
        a, b = (copy / n for n in artifacts.ONNX_FILES.values())
        a_bytes = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(a_bytes)
    texts = test_split[0][:12]
    for backend, dtype in (("auto", None), ("onnx", "float32"), ("onnx", "int8")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mathreport"):
            clf = predict.load_classifier(copy, backend=backend, dtype=dtype)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        if backend == "auto" and not artifacts.read_manifest(copy).inference["default"].startswith(
            "onnx"
        ):
            continue  # the default is torch: nothing to fall back from
        assert len(warnings) == 1 and len(warnings[0].getMessage().splitlines()) == 1
        assert "model" in warnings[0].getMessage() and "torch float32" in warnings[0].getMessage()
        assert isinstance(clf, predict.TransformerClassifier)
        np.testing.assert_allclose(clf.predict_proba(texts), torch_probs[:12], atol=1e-6)


def test_unexported_run_uses_torch_and_says_why_only_when_onnx_was_asked(run, tmp_path, caplog):
    copy = _fresh_copy(run, tmp_path)
    manifest = artifacts.read_manifest(copy)
    manifest.inference = None
    record.write(copy, manifest)
    with caplog.at_level(logging.WARNING, logger="mathreport"):
        assert predict.load_classifier(copy).backend == "torch"
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="mathreport"):
        assert predict.load_classifier(copy, backend="onnx").backend == "torch"
    assert len(caplog.records) == 1 and "export-onnx" in caplog.records[0].getMessage()


def test_export_onnx_command_exports_an_existing_run(
    run, tmp_path, capsys, test_split, torch_probs
):
    copy = _fresh_copy(run, tmp_path)
    manifest = artifacts.read_manifest(copy)
    manifest.inference = None
    record.write(copy, manifest)
    for name in artifacts.ONNX_FILES.values():
        (copy / name).unlink()
    assert cli.main(["export-onnx", "--run_dir", str(copy)]) == 0
    out = capsys.readouterr().out
    section = artifacts.read_manifest(copy).inference
    for purpose, choice in section["choices"].items():
        assert f"{purpose} backend: {choice['backend']} ({choice['reason']})" in out
    assert {c["backend"] for c in section["candidates"]} >= {
        "torch-float32",
        "onnx-float32",
        "onnx-int8",
    }
    assert section["reference"]["n"] == len(
        artifacts.read_val_predictions(copy)
    )  # chosen on validation
    probs = predict.load_classifier(copy, backend="onnx").predict_proba(test_split[0])
    np.testing.assert_allclose(probs, torch_probs, atol=FLOAT32_PROB_TOLERANCE)
    assert not list(copy.glob(".*.tmp"))


def test_export_onnx_refuses_tfidf(trained_results, capsys):
    assert cli.main(["export-onnx", "--run_dir", str(trained_results / "tfidf")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "transformer" in err


def test_failed_export_keeps_the_old_file_and_torch_as_default(
    run, tmp_path, test_split, monkeypatch
):
    import torch

    copy = _fresh_copy(run, tmp_path)
    before = artifacts.onnx_path(copy, "float32").read_bytes()

    def broken_export(model, args, path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"half a model")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    monkeypatch.setattr(environment, "cpu_has_fast_bf16", lambda *a: False)
    torch_clf = predict.load_classifier(copy, backend="torch")
    texts, y_true, reference = test_split
    section, chosen = onnx_backend.export_and_choose(copy, torch_clf, texts, y_true, reference)
    # written atomically: the old file is untouched
    assert artifacts.onnx_path(copy, "float32").read_bytes() == before
    assert not list(copy.glob(".*.tmp"))
    assert (
        "exporter crashed" in section["skipped"]["onnx-float32"]
        and "onnx-int8" in section["skipped"]
    )
    assert section["onnx"] == {} and section["default"] == "torch-float32"
    assert chosen == {"latency": torch_clf, "throughput": torch_clf}


def _timed(*rounds: float) -> dict:
    return {
        "median_ms": sorted(rounds)[len(rounds) // 2],
        "interval_ms": [min(rounds), max(rounds)],
        "round_ms": list(rounds),
    }


def _passing(agreement: float = 1.0, passes: bool = True) -> dict:
    return {"passes": passes, "argmax_agreement": agreement}


def test_choose_keeps_the_reference_unless_a_passing_backend_is_faster_beyond_the_spread():
    ref = "torch-float32"
    checks = {ref: _passing(), "onnx-float32": _passing(), "onnx-int8": _passing(0.97)}
    # Faster by median, but its slowest round is not faster than the reference's fastest: within the noise.
    timings = {ref: _timed(10.0, 11.0, 12.0), "onnx-float32": _timed(8.0, 8.5, 10.5)}
    name, reason = onnx_backend.choose(timings, checks, ref)
    assert name == ref and "beyond the spread" in reason and "10.00 ms" in reason
    # Its slowest round is faster than the reference's fastest: chosen.
    timings["onnx-float32"] = _timed(8.0, 8.5, 9.5)
    name, reason = onnx_backend.choose(timings, checks, ref)
    assert name == "onnx-float32" and "9.50" in reason and "10.00" in reason
    # The fastest by far, but refused by the accuracy test: never chosen.
    timings["onnx-int8"] = _timed(2.0, 2.1, 2.2)
    checks["onnx-int8"] = _passing(0.90, passes=False)
    assert onnx_backend.choose(timings, checks, ref)[0] == "onnx-float32"
    # Without the reference's timing there is nothing to beat.
    assert onnx_backend.choose({}, checks, ref)[0] == ref


def test_choose_breaks_ties_by_agreement_with_the_reference_then_name():
    ref = "torch-topk"
    timings = {
        ref: _timed(20.0, 21.0, 22.0),
        "onnx-int8": _timed(5.0, 7.0, 5.5),
        "torch-bfloat16": _timed(6.0, 6.5, 6.2),
        "onnx-float32": _timed(9.0, 9.5, 10.0),
    }
    checks = {
        ref: _passing(),
        "onnx-int8": _passing(0.98),
        "torch-bfloat16": _passing(0.995),
        "onnx-float32": _passing(1.0),
    }
    # int8 is the fastest by median but bf16 beat it in round 2: the timing does not tell them apart, they are
    # tied and bf16, which changes fewer answers, is chosen. onnx-float32 agrees best, but int8 beat it in
    # every round: not tied.
    name, reason = onnx_backend.choose(timings, checks, ref)
    assert name == "torch-bfloat16" and "tied with onnx-int8" in reason and "0.9950" in reason
    # int8 faster in every interleaved round: told apart, though the [fastest, slowest] intervals overlap.
    timings["onnx-int8"] = _timed(5.0, 5.5, 6.0)
    assert metrics.intervals_overlap(
        timings["onnx-int8"]["interval_ms"], timings["torch-bfloat16"]["interval_ms"]
    )
    assert onnx_backend.choose(timings, checks, ref)[0] == "onnx-int8"
    # Tied, with equal agreement: the name decides.
    timings["onnx-int8"] = _timed(5.0, 7.0, 5.5)
    checks["onnx-int8"] = _passing(0.995)
    assert onnx_backend.choose(timings, checks, ref)[0] == "onnx-int8"


def test_a_round_timed_while_other_processes_were_busy_is_timed_again(monkeypatch):
    loads = iter(
        [0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0]
    )  # other processes' CPU share in each call's round
    calls = []

    def time_calls(classifiers, batches, batch_size, *, warmup=0, **kwargs):
        calls.append(warmup)
        n = len(calls)
        return (
            {name: np.full(sum(map(len, batches)), float(n)) for name in classifiers},
            {"cpu_busy": 1.0, "cpu_busy_other": next(loads)},
        )

    monkeypatch.setattr(bench, "time_calls", time_calls)
    timings, load = onnx_backend.time_backends({"a": None, "b": None}, TEXTS, 1)
    assert len(load["kept"]) == onnx_backend.LATENCY_ROUNDS and len(load["timed_again"]) == 2
    assert timings["a"]["round_ms"] == [2.0, 4.0, 5.0, 6.0, 7.0]  # rounds 1 and 3 were timed again
    assert calls[0] == onnx_backend.LATENCY_QUESTIONS and set(calls[1:]) == {
        0
    }  # one warm-up pass, first
    # A machine that stays busy is timed again at most once per round; then its rounds are kept as they are.
    loads = iter([0.9] * 20)
    calls.clear()
    timings, load = onnx_backend.time_backends({"a": None}, TEXTS, 8)
    rounds = onnx_backend.THROUGHPUT_ROUNDS
    assert (
        len(load["timed_again"]) == rounds
        and len(load["kept"]) == rounds
        and len(calls) == 2 * rounds
    )


class _Sleepy:
    """A classifier whose speed the test sets: each call sleeps `call_ms` plus `item_ms` per question, and
    answers class `answers[text]`."""

    backend, threads = "fake", 1

    def __init__(self, answers: dict, call_ms: float, item_ms: float = 0.0):
        self.answers, self.call_ms, self.item_ms = answers, call_ms, item_ms

    def predict_proba(self, texts, batch_size=32, progress=False):
        for start in range(0, len(texts), batch_size):
            time.sleep(
                (self.call_ms + self.item_ms * len(texts[start : start + batch_size])) / 1000
            )
        return np.eye(8)[[self.answers[t] for t in texts]] * 0.9 + 0.1 / 8


def _choose_among(
    monkeypatch, tmp_path, reference: _Sleepy, candidates: dict, y_true, texts, batch_size=8
):
    """export_and_choose on a float32 torch reference whose timing and answers are `reference`'s, with
    `candidates` ({"onnx-float32": _Sleepy, ...}) in place of the exported ONNX files."""
    import torch

    class Reference(predict.TransformerClassifier):
        def predict_proba(self, texts, batch_size=32, progress=False):
            return reference.predict_proba(texts, batch_size)

    def exported(run_dir, torch_classifier, section):
        for name in candidates:
            section["onnx"][name.removeprefix("onnx-")] = {"file": f"{name}.onnx"}
        return candidates

    monkeypatch.setattr(onnx_backend, "_export_onnx_files", exported)
    monkeypatch.setattr(environment, "cpu_has_fast_bf16", lambda *a: False)
    ref = Reference(model=torch.nn.Linear(2, 8), tokenizer=None, max_length=8, device="cpu")
    ref_probs = reference.predict_proba(texts)
    return onnx_backend.export_and_choose(
        tmp_path, ref, texts, y_true, ref_probs, batch_size=batch_size, split="validation split"
    )


TEXTS = [f"question {i}" for i in range(40)]
Y_TRUE = np.arange(40) % 8
RIGHT = dict(zip(TEXTS, Y_TRUE.tolist(), strict=True))


def test_each_batch_size_chooses_the_backend_faster_beyond_the_spread_there(monkeypatch, tmp_path):
    # Per question at batch 1 / at batch 8: reference 5 / 1.5 ms, int8 2.2 / 2.03 ms, float32 6.1 / 0.85 ms.
    reference = _Sleepy(RIGHT, call_ms=4.0, item_ms=1.0)
    candidates = {
        "onnx-int8": _Sleepy(RIGHT, call_ms=0.2, item_ms=2.0),
        "onnx-float32": _Sleepy(RIGHT, call_ms=6.0, item_ms=0.1),
    }
    section, chosen = _choose_among(monkeypatch, tmp_path, reference, candidates, Y_TRUE, TEXTS)
    latency, throughput = section["choices"]["latency"], section["choices"]["throughput"]
    assert (latency["backend"], latency["batch_size"]) == ("onnx-int8", 1)
    assert (throughput["backend"], throughput["batch_size"]) == ("onnx-float32", 8)
    assert chosen == {"latency": candidates["onnx-int8"], "throughput": candidates["onnx-float32"]}
    assert section["default"] == "onnx-int8"  # older readers get the latency choice
    # Each timed backend's rounds are recorded: 5 at batch 1, 3 at batch 8, interleaved.
    for choice, rounds in (
        (latency, onnx_backend.LATENCY_ROUNDS),
        (throughput, onnx_backend.THROUGHPUT_ROUNDS),
    ):
        assert set(choice["backends"]) == {"torch-float32", "onnx-int8", "onnx-float32"}
        assert all(len(t["round_ms"]) == rounds for t in choice["backends"].values())
    # The accurate backend that is slower at a batch size is not chosen there.
    assert (
        latency["backends"]["onnx-float32"]["interval_ms"][0]
        > latency["backends"]["torch-float32"]["interval_ms"][1]
    )
    # And run.json's choice routes predict: one question the latency choice, batches the throughput choice.
    manifest = record.RunRecord(kind="transformer", inference=section)
    assert predict.resolve_backend(manifest, purpose="latency").name == "onnx-int8"
    assert predict.resolve_backend(manifest, purpose="throughput").name == "onnx-float32"


def test_a_worse_backend_is_refused_by_mcnemar_however_fast(monkeypatch, tmp_path):
    worse = {
        **RIGHT,
        **{t: (RIGHT[t] + 1) % 8 for t in TEXTS[:10]},
    }  # wrong on 10 the reference gets right
    reference = _Sleepy(RIGHT, call_ms=3.0)
    candidates = {
        "onnx-int8": _Sleepy(worse, call_ms=0.1),
        "onnx-float32": _Sleepy(RIGHT, call_ms=4.5),
    }
    section, chosen = _choose_among(monkeypatch, tmp_path, reference, candidates, Y_TRUE, TEXTS)
    int8 = next(c for c in section["candidates"] if c["backend"] == "onnx-int8")
    assert int8["mcnemar"]["b"] == 10 and int8["mcnemar"]["c"] == 0
    assert int8["mcnemar"]["p_value"] == pytest.approx(0.5**10) and int8["passes"] is False
    assert (
        int8["accuracy_difference"] == pytest.approx(-0.25)
        and int8["accuracy_difference_ci95"][1] < 0
    )
    assert section["onnx"]["int8"]["passes"] is False and "not_timed" in int8
    for choice in section[
        "choices"
    ].values():  # refused: not timed, not chosen; float32 is accurate but slower
        assert "onnx-int8" not in choice["backends"] and choice["backend"] == "torch-float32"
    assert chosen["latency"] is chosen["throughput"] and isinstance(
        chosen["latency"], predict.TransformerClassifier
    )
    # One answer off (b = 1) is no evidence of being worse: it passes.
    one_off = {**RIGHT, TEXTS[0]: (RIGHT[TEXTS[0]] + 1) % 8}
    candidates = {"onnx-int8": _Sleepy(one_off, call_ms=0.1)}
    section, _ = _choose_among(monkeypatch, tmp_path, reference, candidates, Y_TRUE, TEXTS)
    int8 = next(c for c in section["candidates"] if c["backend"] == "onnx-int8")
    assert int8["passes"] is True and int8["argmax_agreement"] == pytest.approx(39 / 40)
    assert section["choices"]["latency"]["backend"] == "onnx-int8"


def test_agreement_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="same test questions"):
        predict.agreement(np.zeros((3, 8)), np.zeros(2), np.zeros((3, 8)))


@pytest.mark.parametrize("fast_bf16_cpu", [True, False])
def test_a_run_on_cuda_says_why_it_has_no_onnx_and_no_bf16_copy(
    tmp_path, monkeypatch, fast_bf16_cpu
):
    import torch

    class OnCuda(
        predict.TransformerClassifier
    ):  # the model stays on the CPU; only its device says cuda:0
        def predict_proba(self, texts, batch_size=32, progress=False):
            return np.full((len(texts), 8), 1 / 8)

    monkeypatch.setattr(environment, "cpu_has_fast_bf16", lambda *a: fast_bf16_cpu)
    clf = OnCuda(model=torch.nn.Linear(2, 8), tokenizer=None, max_length=8, device="cuda:0")
    probs = np.eye(8)[[0, 1, 2, 3]] * 0.9 + 0.1 / 8
    section, chosen = onnx_backend.export_and_choose(
        tmp_path, clf, ["a", "b", "c", "d"], np.arange(4), probs
    )
    reasons = section["skipped"]
    assert set(reasons) == {"onnx", "torch-bfloat16"} and chosen == {
        "latency": clf,
        "throughput": clf,
    }
    assert all(
        c["backends"] == {} for c in section["choices"].values()
    )  # one backend: nothing timed
    for reason in reasons.values():  # what is true of a GPU run, not of this machine's CPU
        assert (
            "cuda:0" in reason
            and "predicts with torch" in reason
            and "neither AVX-512" not in reason
        )
    assert "mathreport export-onnx" in reasons["onnx"]
    assert list(tmp_path.iterdir()) == []  # no ONNX file exported
