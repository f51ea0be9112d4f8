"""The adapter's model card (model/README.md): which base it names, its Hub header, and data kept as text.

A whole card written by training is checked on real 4-bit runs in tests/test_decoders.py; here the card is made
from a run directory whose run.json and metrics.json are written by the package's own writers, with metrics
computed from predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mathreport import artifacts, files, metrics, modelcard
from mathreport.labels import NUM_CLASSES
from mathreport.record import RunRecord


def _run(tmp_path: Path, **manifest) -> Path:
    """A finished run's files as train writes them: run.json, metrics.json from predictions, an adapter config."""
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(NUM_CLASSES), 5)
    probs = rng.dirichlet(np.ones(NUM_CLASSES), size=len(y_true))
    probs[np.arange(len(y_true))[::2], y_true[::2]] += 2  # half of them right
    probs /= probs.sum(1, keepdims=True)
    files.write_json(
        run_dir / artifacts.METRICS, metrics.compute_metrics(y_true, probs, n_bootstrap=50)
    )
    base = {
        "model": "qwen",
        "kind": "transformer",
        "hf_id": "Qwen/Qwen2.5-Math-7B",
        "status": "complete",
        "weights": str(tmp_path),
        "load_in_4bit": False,
        "dtype": "float32",
        "lora": {
            "r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.0,
            "target_modules": ["q_proj", "v_proj"],
            "task_type": "SEQ_CLS",
            "modules_to_save": ["score"],
        },
        "hyperparameters": {"learning_rate": 1e-4},
        "command": "mathreport train --model qwen",
        "data": {
            "test": {"path": "/data/test_split.csv", "sha256": "ab" * 32, "rows": len(y_true)}
        },
    }
    files.write_json(run_dir / artifacts.MANIFEST, {**base, **manifest})
    (run_dir / "model" / "adapter_config.json").write_text("{}")
    return run_dir


def test_card_names_the_presets_hub_id_and_holds_the_metrics(tmp_path):
    from huggingface_hub import ModelCard

    run_dir = _run(tmp_path)
    card = ModelCard.load(modelcard.write_model_card(run_dir))
    assert (
        card.data.base_model == "Qwen/Qwen2.5-Math-7B"
    )  # not the local folder the weights were read from
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-classification"
    saved = artifacts.read_metrics(run_dir)
    by_name = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert by_name["Accuracy"] == saved["Accuracy"] and by_name["F1 (macro)"] == saved["F1_macro"]
    low, high = saved["ci95"]["Accuracy"]
    assert f"| Accuracy | {saved['Accuracy']:.4f} | {low:.4f} – {high:.4f} |" in card.text
    assert "[More Information Needed]" not in str(card) and "None: the base was loaded" in card.text


@pytest.mark.parametrize(
    ("hf_id", "expected"),
    [
        ("mistralai/Mistral-7B-v0.3", "mistralai/Mistral-7B-v0.3"),
        (None, None),  # the tiny test models
        ("not a hub id", None),
    ],
)
def test_base_model_hub_id(tmp_path, monkeypatch, hf_id, expected):
    assert modelcard.base_model(RunRecord(hf_id=hf_id, weights=str(tmp_path)))["hub_id"] == expected
    assert modelcard.hub_id("org/model") == "org/model"
    (tmp_path / "org" / "model").mkdir(
        parents=True
    )  # a local folder shaped like an id is a folder, not a Hub id
    monkeypatch.chdir(tmp_path)
    assert modelcard.hub_id("org/model") is None


@pytest.mark.parametrize("url", ["https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct", None])
def test_gguf_base_is_named_from_the_files_metadata_never_from_the_preset(tmp_path, url):
    import gguf

    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("Qwen2.5 Coder 0.5B Instruct")
    if url:
        writer.add_string("general.base_model.0.repo_url", url)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    weights = tmp_path / "converted"
    weights.mkdir()
    (weights / "mathreport_source.json").write_text(
        json.dumps({"source": str(path), "sha256": "cd" * 32})
    )
    base = modelcard.base_model(RunRecord(hf_id="Qwen/Qwen2.5-0.5B", weights=str(weights)))
    assert base["hub_id"] == ("Qwen/Qwen2.5-Coder-0.5B-Instruct" if url else None)
    assert base["gguf"]["metadata"]["general.name"] == "Qwen2.5 Coder 0.5B Instruct"


def test_data_in_the_card_stays_text(tmp_path):
    from huggingface_hub import ModelCard

    hostile = tmp_path / "w|eird `path` <b>"
    hostile.mkdir()
    run_dir = _run(tmp_path, weights=str(hostile), hf_id=None, model="my|model")
    card = ModelCard.load(modelcard.write_model_card(run_dir))
    row = next(line for line in card.text.splitlines() if line.startswith("| weights read from |"))
    assert (
        row.count(" | ") == 1 and "\\|" in row
    )  # the pipe in the path does not split the table row
    assert card.data.base_model is None and "```python" in card.text
    assert card.data.model_name == "mathreport-my-model-math-topics"
