"""ONNX export of a run: same answers as torch, verified files, a safe fallback, the default backend's choice."""

from __future__ import annotations

import hashlib
import logging
import shutil

import numpy as np
import pytest

from mathreport import artifacts, cli, environment, onnx_backend, predict, record, train

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
    return frame["text"].tolist(), frame["y_true"].to_numpy(), frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float)


@pytest.fixture(scope="module")
def torch_probs(run, test_split):
    return predict.load_classifier(run, backend="torch").predict_proba(test_split[0])


def _fresh_copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_train_exported_both_files_and_recorded_their_hashes(run):
    section = artifacts.read_manifest(run).inference
    for dtype, name in predict.ONNX_FILES.items():
        record = section["onnx"][dtype]
        assert record["file"] == name
        assert hashlib.sha256((run / name).read_bytes()).hexdigest() == record["sha256"]
    names = [c["backend"] for c in section["candidates"]]
    assert {"torch-float32", "onnx-float32", "onnx-int8"} <= set(names) and section["default"] in names


def test_onnx_float32_equals_torch_on_the_test_split(run, test_split, torch_probs):
    texts, y_true, _ = test_split
    onnx = predict.load_classifier(run, backend="onnx", dtype="float32")
    assert isinstance(onnx, predict.OnnxClassifier)
    probs = onnx.predict_proba(texts, batch_size=8)
    assert (probs.argmax(1) == torch_probs.argmax(1)).mean() >= 0.99
    np.testing.assert_allclose(probs, torch_probs, atol=FLOAT32_PROB_TOLERANCE)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    # Batch size and order do not change an answer: padding is masked and the order is restored.
    np.testing.assert_allclose(onnx.predict_proba(texts[::-1], batch_size=1)[::-1], probs,
                               atol=FLOAT32_PROB_TOLERANCE)


@pytest.fixture(scope="module")
def val_split(run):
    frame = artifacts.read_val_predictions(run)
    return frame["text"].tolist(), frame["y_true"].to_numpy(), frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float)


def test_onnx_int8_is_close_and_its_recorded_accuracy_is_true(run, test_split, torch_probs, val_split):
    texts, _, _ = test_split
    int8 = predict.load_classifier(run, backend="onnx", dtype="int8")
    assert np.abs(int8.predict_proba(texts) - torch_probs).max() < INT8_PROB_TOLERANCE
    # The backends are checked on the validation split (all of it while it holds at most BACKEND_CHOICE_ITEMS
    # questions), never on the test split: the recorded accuracy is int8's on those questions.
    val_texts, val_y, val_reference = val_split
    assert len(val_y) <= train.BACKEND_CHOICE_ITEMS
    section = artifacts.read_manifest(run).inference
    assert section["reference"]["n"] == len(val_y) and "validation" in section["reference"]["split"]
    recorded = section["onnx"]["int8"]
    if recorded["accuracy"] is None:  # a faster backend reproduced the reference first: int8 was timed, not checked
        default = next(c for c in section["candidates"] if c["backend"] == section["default"])
        assert recorded["batch1_p50_ms"] >= default["batch1_p50_ms"] and section["default"] in recorded["not_checked"]
        return
    measured = predict.agreement(int8.predict_proba(val_texts), val_y, val_reference)
    assert recorded["accuracy"] == pytest.approx(measured["accuracy"])
    assert recorded["argmax_agreement"] == pytest.approx(measured["argmax_agreement"])


def test_the_default_is_the_fastest_backend_that_reproduces_the_reference(run):
    section = artifacts.read_manifest(run).inference
    # The session's minilm run trained its top 2 layers: its reference is itself computing as trained.
    assert section["reference"]["backend"] == predict.TORCH_TOPK.name
    reference = section["reference"]["accuracy"]
    checked = [c for c in section["candidates"] if c["accuracy"] is not None]
    ok = [c for c in checked if abs(c["accuracy"] - reference) <= onnx_backend.ACCURACY_TOLERANCE]
    default = min(ok, key=lambda c: c["batch1_p50_ms"])
    assert section["default"] == default["backend"]
    # Checked fastest first until one reproduces the reference: every faster one was checked and failed, every
    # slower one (the reference among them, or the reference is the default) was only timed.
    assert all(c["batch1_p50_ms"] <= default["batch1_p50_ms"] for c in checked)
    unchecked = [c for c in section["candidates"] if c["accuracy"] is None]
    assert all(c["batch1_p50_ms"] >= default["batch1_p50_ms"] and section["default"] in c["not_checked"]
               for c in unchecked)
    assert {c["backend"] for c in section["candidates"]} >= {"torch-topk", "torch-float32", "onnx-float32",
                                                            "onnx-int8"}
    clf = predict.load_classifier(run)
    engine, dtype = section["default"].split("-")
    assert clf.backend == engine
    if engine == "onnx":
        assert clf.dtype == dtype
    else:
        assert str(next(clf.model.parameters()).dtype) == f"torch.{dtype}"


@pytest.mark.parametrize("damage", ["corrupt", "missing", "swapped"])
def test_damaged_onnx_falls_back_to_torch_with_one_warning(run, tmp_path, test_split, torch_probs, damage, caplog):
    copy = _fresh_copy(run, tmp_path)
    for name in predict.ONNX_FILES.values():
        path = copy / name
        if damage == "corrupt":
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
            path.write_bytes(bytes(data))
        elif damage == "missing":
            path.unlink()
    if damage == "swapped":  # a valid ONNX model, but not the one verified for this name
        a, b = (copy / n for n in predict.ONNX_FILES.values())
        a_bytes = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(a_bytes)
    texts = test_split[0][:12]
    for backend, dtype in (("auto", None), ("onnx", "float32"), ("onnx", "int8")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mathreport"):
            clf = predict.load_classifier(copy, backend=backend, dtype=dtype)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        if backend == "auto" and not artifacts.read_manifest(copy).inference["default"].startswith("onnx"):
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


def test_export_onnx_command_exports_an_existing_run(run, tmp_path, capsys, test_split, torch_probs):
    copy = _fresh_copy(run, tmp_path)
    manifest = artifacts.read_manifest(copy)
    manifest.inference = None
    record.write(copy, manifest)
    for name in predict.ONNX_FILES.values():
        (copy / name).unlink()
    assert cli.main(["export-onnx", "--run_dir", str(copy)]) == 0
    out = capsys.readouterr().out
    section = artifacts.read_manifest(copy).inference
    assert f"default backend: {section['default']}" in out
    assert {c["backend"] for c in section["candidates"]} >= {"torch-float32", "onnx-float32", "onnx-int8"}
    assert section["reference"]["n"] == len(artifacts.read_val_predictions(copy))  # chosen on validation
    probs = predict.load_classifier(copy, backend="onnx").predict_proba(test_split[0])
    np.testing.assert_allclose(probs, torch_probs, atol=FLOAT32_PROB_TOLERANCE)
    assert not list(copy.glob(".*.tmp"))


def test_export_onnx_refuses_tfidf(trained_results, capsys):
    assert cli.main(["export-onnx", "--run_dir", str(trained_results / "tfidf")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "transformer" in err


def test_failed_export_keeps_the_old_file_and_torch_as_default(run, tmp_path, test_split, monkeypatch):
    import torch

    copy = _fresh_copy(run, tmp_path)
    before = (copy / "model.onnx").read_bytes()

    def broken_export(model, args, path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"half a model")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    monkeypatch.setattr(environment, "cpu_has_fast_bf16", lambda *a: False)
    torch_clf = predict.load_classifier(copy, backend="torch")
    texts, y_true, reference = test_split
    section, default = onnx_backend.export_and_choose(copy, torch_clf, texts, y_true, reference, timing_items=4,
                                                      rounds=1)
    assert (copy / "model.onnx").read_bytes() == before  # written atomically: the old file is untouched
    assert not list(copy.glob(".*.tmp"))
    assert "exporter crashed" in section["skipped"]["onnx-float32"] and "onnx-int8" in section["skipped"]
    assert section["onnx"] == {} and section["default"] == "torch-float32" and default is torch_clf


def test_choose_default_rules():
    cands = [{"backend": "torch-float32", "accuracy": 0.90, "batch1_p50_ms": 15.0},
             {"backend": "onnx-float32", "accuracy": 0.90, "batch1_p50_ms": 6.0},
             {"backend": "onnx-int8", "accuracy": 0.894, "batch1_p50_ms": 3.0}]
    assert onnx_backend.choose_default(cands, 0.90)[0] == "onnx-float32"  # int8 is 0.6 point off
    cands[2]["accuracy"] = 0.896
    name, reason = onnx_backend.choose_default(cands, 0.90)
    assert name == "onnx-int8" and "3.00 ms" in reason
    assert onnx_backend.choose_default([], 0.90)[0] == "torch-float32"


def test_agreement_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="same test questions"):
        predict.agreement(np.zeros((3, 8)), np.zeros(2), np.zeros((3, 8)))


@pytest.mark.parametrize("fast_bf16_cpu", [True, False])
def test_a_run_on_cuda_says_why_it_has_no_onnx_and_no_bf16_copy(tmp_path, monkeypatch, fast_bf16_cpu):
    import torch

    class OnCuda(predict.TransformerClassifier):  # the model stays on the CPU; only its device says cuda:0
        def predict_proba(self, texts, batch_size=32, progress=False):
            return np.full((len(texts), 8), 1 / 8)

    monkeypatch.setattr(environment, "cpu_has_fast_bf16", lambda *a: fast_bf16_cpu)
    clf = OnCuda(model=torch.nn.Linear(2, 8), tokenizer=None, max_length=8, device="cuda:0")
    probs = np.eye(8)[[0, 1, 2, 3]] * 0.9 + 0.1 / 8
    section, default = onnx_backend.export_and_choose(tmp_path, clf, ["a", "b", "c", "d"], np.arange(4), probs)
    reasons = section["skipped"]
    assert set(reasons) == {"onnx", "torch-bfloat16"} and default is clf
    for reason in reasons.values():  # what is true of a GPU run, not of this machine's CPU
        assert "cuda:0" in reason and "predicts with torch" in reason and "neither AVX-512" not in reason
    assert "mathreport export-onnx" in reasons["onnx"]
    assert list(tmp_path.iterdir()) == []  # no ONNX file exported
