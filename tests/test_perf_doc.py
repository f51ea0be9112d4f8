"""tools/perf_doc.py: the committed performance docs are exactly what the committed JSON measurements give."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("perf_doc", ROOT / "tools" / "perf_doc.py")
perf_doc = importlib.util.module_from_spec(_spec)
sys.modules["perf_doc"] = perf_doc  # dataclasses look their module up there
_spec.loader.exec_module(perf_doc)


@pytest.mark.parametrize("doc", perf_doc.DOCS, ids=lambda p: p.name)
def test_committed_doc_equals_what_the_json_gives(doc):
    text = doc.read_text(encoding="utf-8")
    assert perf_doc.MARKER.search(text), f"{doc} has no generated table"
    assert perf_doc.fill(text) == text, f"{doc} differs from its JSON measurements: run `make perf-doc`"


def test_every_table_spec_is_used_and_every_json_file_is_shown():
    used = {m["name"] for doc in perf_doc.DOCS for m in perf_doc.MARKER.finditer(doc.read_text(encoding="utf-8"))}
    assert used == set(perf_doc.TABLES)
    shown = {table.file for table in perf_doc.TABLES.values()}
    assert shown == {p.name for p in perf_doc.PERF_DIR.glob("*.json")}


def test_a_hand_edited_number_is_caught(tmp_path, capsys):
    doc = tmp_path / "PERFORMANCE.md"
    text = (ROOT / "docs" / "PERFORMANCE.md").read_text(encoding="utf-8")
    bench = json.loads((perf_doc.PERF_DIR / "minilm-bench.json").read_text())
    p50 = f"{bench['backends']['torch-float32']['results'][0]['p50_ms']:.2f}"
    assert f"| {p50} |" in text
    doc.write_text(text.replace(f"| {p50} |", "| 4.99 |", 1), encoding="utf-8")
    assert perf_doc.main(["--check", str(doc)]) == 1
    assert "make perf-doc" in capsys.readouterr().err
    assert perf_doc.main([str(doc)]) == 0  # regenerating restores the measured value
    assert doc.read_text(encoding="utf-8") == text


def test_a_changed_measurement_changes_the_table(tmp_path):
    perf = tmp_path / "perf"
    shutil.copytree(perf_doc.PERF_DIR, perf)
    bench = json.loads((perf / "tfidf-bench.json").read_text())
    bench["results"][0]["p50_ms"] = 2.5
    (perf / "tfidf-bench.json").write_text(json.dumps(bench))
    table = perf_doc.render("tfidf-bench", perf)
    assert "| 1 | 2.50 |" in table
    assert "| tfidf batch-1 p50 ≤ 2 ms | 2.50 ms | not met |" in perf_doc.render("targets-tfidf", perf)


def test_missing_json_file_names_it_and_the_command(tmp_path):
    with pytest.raises(perf_doc.PerfDocError, match=r"minilm-bench\.json is missing .*mathreport bench"):
        perf_doc.render("minilm-bench", tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- perf:tfidf-bench -->\n<!-- /perf:tfidf-bench -->\n")
    assert perf_doc.main(["--perf-dir", str(tmp_path), str(doc)]) == 2
    assert doc.read_text() == "<!-- perf:tfidf-bench -->\n<!-- /perf:tfidf-bench -->\n"  # nothing written


@pytest.mark.parametrize(("file", "drop", "message"), [
    ("minilm-bench.json", ("backends", "onnx-int8", "accuracy"),
     r"minilm-bench\.json: row 3 of table 'minilm-bench' has no key 'accuracy' \(column 'test accuracy'\)"),
    ("minilm-bench.json", ("backends",), r"minilm-bench\.json has no key 'backends'"),
    ("training-seeds.json", ("arms",), r"training-seeds\.json has no key 'arms'"),
])
def test_missing_key_names_the_file_row_and_key(tmp_path, file, drop, message):
    shutil.copy(perf_doc.PERF_DIR / file, tmp_path / file)
    data = json.loads((tmp_path / file).read_text())
    parent = data
    for key in drop[:-1]:
        parent = parent[key]
    del parent[drop[-1]]
    (tmp_path / file).write_text(json.dumps(data))
    name = "training-seeds" if file.startswith("training") else "minilm-bench"
    with pytest.raises(perf_doc.PerfDocError, match=message):
        perf_doc.render(name, tmp_path)


def test_unknown_or_unclosed_marker_is_an_error():
    with pytest.raises(perf_doc.PerfDocError, match="no table spec named 'nope'"):
        perf_doc.fill("<!-- perf:nope -->\n<!-- /perf:nope -->\n")
    with pytest.raises(perf_doc.PerfDocError, match="has no closing"):
        perf_doc.fill("<!-- perf:tfidf-bench -->\ntext\n")


def _models_json(tmp_path, rows):
    (tmp_path / "real-data-models.json").write_text(json.dumps({"kind": "models", "rows": rows}))
    return tmp_path


def _row(run, val_acc, test_acc, test_f1, vs=None):
    return {"run": run, "val_acc": val_acc, "test_acc": test_acc, "test_f1": test_f1, "vs_best_member": vs}


def test_real_data_targets_judge_the_run_with_the_best_validation_accuracy_not_the_best_test(tmp_path):
    perf = _models_json(tmp_path, [_row("a", 0.80, 0.90, 0.85), _row("b", 0.86, 0.87, 0.81)])
    table = perf_doc.render("targets-real-data", perf)
    assert "(`b`) | 0.8700 | not met |" in table  # b has the best validation accuracy; a's 0.90 is not picked
    assert "test macro-F1 ≥ 0.80, the run with the best validation accuracy (`b`) | 0.8100 | met |" in table
    perf = _models_json(tmp_path, [_row("a", 0.80, 0.90, 0.85)])
    assert perf_doc.render("targets-real-data", perf).count("| met |") == 2


def test_real_data_ensembles_table_lists_ensembles_only_with_mcnemar_b_as_the_ensembles_wins(tmp_path):
    vs = {"member": "m", "accuracy_member": 0.84, "accuracy_ensemble": 0.85, "b": 12, "c": 8, "p_value": 0.5034}
    perf = _models_json(tmp_path, [_row("m", 0.8, 0.84, 0.7), _row("e", 0.8, 0.85, 0.7, vs)])
    lines = perf_doc.render("real-data-ensembles", perf).splitlines()
    assert lines[3] == ""  # header, rule, the one ensemble, then the source line
    assert lines[2] == "| `e` | m | 0.8400 | 0.8500 | 12 | 8 | 0.503 |"


def test_real_data_targets_without_runs_say_so(tmp_path):
    with pytest.raises(perf_doc.PerfDocError, match="lists no runs"):
        perf_doc.render("targets-real-data", _models_json(tmp_path, []))
