"""tools/perf_doc.py: the committed performance docs are exactly what the committed JSON measurements give."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("perf_doc", ROOT / "tools" / "perf_doc.py")
perf_doc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(perf_doc)

WITH_TABLES = [
    doc for doc in perf_doc.DOCS if perf_doc.MARKER.search(doc.read_text(encoding="utf-8"))
]


def _doc_with(name: str) -> Path:
    return next(
        doc for doc in WITH_TABLES if f"<!-- perf:{name} -->" in doc.read_text(encoding="utf-8")
    )


def test_the_docs_with_tables_are_found():
    names = {doc.relative_to(ROOT).as_posix() for doc in WITH_TABLES}
    assert {
        "docs/PERFORMANCE.md",
        "docs/REAL_DATA.md",
        "docs/MODELS.md",
        "docs/perf/cpu-inference.md",
    } <= names


@pytest.mark.parametrize("doc", WITH_TABLES, ids=lambda p: p.name)
def test_committed_doc_equals_what_the_json_gives(doc):
    text = doc.read_text(encoding="utf-8")
    assert perf_doc.fill(text) == text, (
        f"{doc} differs from its JSON measurements: run `make perf-doc`"
    )


def test_every_table_is_used_once_and_every_json_file_is_shown():
    used = [
        m["name"]
        for doc in WITH_TABLES
        for m in perf_doc.MARKER.finditer(doc.read_text(encoding="utf-8"))
    ]
    assert sorted(used) == sorted(perf_doc.TABLES)  # each table in one place only
    shown = {file for _, reads, _ in perf_doc.TABLES.values() for file in reads}
    assert shown == {p.name for p in perf_doc.PERF_DIR.glob("*.json")}


def test_a_hand_edited_number_is_caught_and_the_table_named(tmp_path, capsys):
    source = _doc_with("minilm-bench")
    doc = tmp_path / source.name
    text = source.read_text(encoding="utf-8")
    bench = json.loads((perf_doc.PERF_DIR / "minilm-bench.json").read_text())
    p50 = f"{bench['backends']['torch-float32']['results'][0]['p50_ms']:.2f}"
    assert f"| {p50} |" in text
    doc.write_text(text.replace(f"| {p50} |", "| 4.99 |", 1), encoding="utf-8")
    assert perf_doc.main(["--check", str(doc)]) == 1
    err = capsys.readouterr().err
    assert f"{doc}: minilm-bench differs" in err and "make perf-doc" in err
    assert "targets differs" not in err  # only the stale table is named
    assert perf_doc.main([str(doc)]) == 0  # regenerating restores the measured value
    assert doc.read_text(encoding="utf-8") == text


def test_a_changed_measurement_changes_the_table(tmp_path):
    perf = tmp_path / "perf"
    shutil.copytree(perf_doc.PERF_DIR, perf)
    bench = json.loads((perf / "tfidf-bench.json").read_text())
    bench["results"][0]["p50_ms"] = 2.5
    (perf / "tfidf-bench.json").write_text(json.dumps(bench))
    assert "| 1 | 2.50 |" in perf_doc.render("tfidf-bench", perf)
    assert "| tfidf batch-1 p50 ≤ 2 ms | 2.50 ms | not met |" in perf_doc.render("targets", perf)


def test_the_table_names_the_cpu_its_file_records(tmp_path):
    bench = json.loads((perf_doc.PERF_DIR / "tfidf-bench.json").read_text())
    bench["hardware"].update(cpu="Some CPU", cpu_count=3)
    (tmp_path / "tfidf-bench.json").write_text(json.dumps(bench))
    assert perf_doc.render("tfidf-bench", tmp_path).endswith(
        "<sub>From `docs/perf/tfidf-bench.json` by `make perf-doc`; measured on Some CPU, 3 cores.</sub>\n"
    )
    del bench["hardware"]
    (tmp_path / "tfidf-bench.json").write_text(json.dumps(bench))
    assert perf_doc.render("tfidf-bench", tmp_path).endswith("by `make perf-doc`.</sub>\n")


def test_missing_json_file_names_it_and_the_table(tmp_path):
    with pytest.raises(
        perf_doc.PerfDocError, match=r"table 'minilm-bench': .*minilm-bench\.json is missing"
    ):
        perf_doc.render("minilm-bench", tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- perf:tfidf-bench -->\n<!-- /perf:tfidf-bench -->\n")
    assert perf_doc.main(["--perf-dir", str(tmp_path), str(doc)]) == 2
    assert (
        doc.read_text() == "<!-- perf:tfidf-bench -->\n<!-- /perf:tfidf-bench -->\n"
    )  # nothing written


@pytest.mark.parametrize(
    ("file", "name", "drop", "message"),
    [
        (
            "minilm-bench.json",
            "minilm-bench",
            ("backends", "onnx-int8", "accuracy"),
            r"minilm-bench\.json: backends\.onnx-int8 has no key 'accuracy'",
        ),
        (
            "minilm-bench.json",
            "minilm-bench",
            ("backends", "onnx-int8", "results", 1),
            r"minilm-bench\.json: backends\.onnx-int8 has no result with batch_size 32",
        ),
        (
            "minilm-bench.json",
            "minilm-bench",
            ("backends",),
            r"minilm-bench\.json has no key 'backends'",
        ),
        (
            "training-seeds.json",
            "training-seeds",
            ("arms",),
            r"training-seeds\.json has no key 'arms'",
        ),
        (
            "training-seeds.json",
            "training-seeds",
            ("arms", "float32", "runs", 0, "seed"),
            r"training-seeds\.json: arms\.float32\.runs\[0\] has no key 'seed'",
        ),
    ],
)
def test_missing_key_names_the_table_file_and_key(tmp_path, file, name, drop, message):
    data = json.loads((perf_doc.PERF_DIR / file).read_text())
    parent = data
    for key in drop[:-1]:
        parent = parent[key]
    del parent[drop[-1]]
    (tmp_path / file).write_text(json.dumps(data))
    with pytest.raises(perf_doc.PerfDocError, match=rf"table '{name}': .*{message}"):
        perf_doc.render(name, tmp_path)


def test_unknown_or_unclosed_marker_is_an_error():
    with pytest.raises(perf_doc.PerfDocError, match="no table named 'nope'"):
        perf_doc.fill("<!-- perf:nope -->\n<!-- /perf:nope -->\n")
    with pytest.raises(perf_doc.PerfDocError, match="has no closing"):
        perf_doc.fill("<!-- perf:tfidf-bench -->\ntext\n")


def _perf_with_models(tmp_path, rows):
    perf = tmp_path / "perf"
    shutil.copytree(perf_doc.PERF_DIR, perf, dirs_exist_ok=True)
    (perf / "real-data-models.json").write_text(json.dumps({"kind": "models", "rows": rows}))
    return perf


def _row(run, val_acc, test_acc, test_f1, vs=None):
    return {
        "run": run,
        "val_acc": val_acc,
        "test_acc": test_acc,
        "test_f1": test_f1,
        "vs_best_member": vs,
    }


def test_real_data_targets_judge_the_run_with_the_best_validation_accuracy_not_the_best_test(
    tmp_path,
):
    perf = _perf_with_models(tmp_path, [_row("a", 0.80, 0.90, 0.85), _row("b", 0.86, 0.87, 0.81)])
    table = perf_doc.render("targets", perf)
    assert (
        "(`b`) | 0.8700 | not met |" in table
    )  # b has the best validation accuracy; a's 0.90 is not picked
    assert (
        "test macro-F1 ≥ 0.80, the run with the best validation accuracy (`b`) | 0.8100 | met |"
        in table
    )
    table = perf_doc.render("targets", _perf_with_models(tmp_path, [_row("a", 0.80, 0.90, 0.85)]))
    assert "(`a`) | 0.9000 | met |" in table and "(`a`) | 0.8500 | met |" in table


def test_real_data_ensembles_table_lists_ensembles_only_with_mcnemar_b_as_the_ensembles_wins(
    tmp_path,
):
    vs = {
        "member": "m",
        "accuracy_member": 0.84,
        "accuracy_ensemble": 0.85,
        "b": 12,
        "c": 8,
        "p_value": 0.5034,
    }
    perf = _perf_with_models(tmp_path, [_row("m", 0.8, 0.84, 0.7), _row("e", 0.8, 0.85, 0.7, vs)])
    lines = perf_doc.render("real-data-ensembles", perf).splitlines()
    assert lines[3] == ""  # header, rule, the one ensemble, then the source line
    assert lines[2] == "| `e` | m | 0.8400 | 0.8500 | 12 | 8 | 0.503 |"


def test_real_data_targets_without_runs_say_so(tmp_path):
    with pytest.raises(perf_doc.PerfDocError, match="lists no runs"):
        perf_doc.render("targets", _perf_with_models(tmp_path, []))


def test_a_pipe_in_a_value_is_escaped_and_bold_rows_keep_blank_cells(tmp_path):
    seeds = json.loads((perf_doc.PERF_DIR / "training-seeds.json").read_text())
    arms = seeds["arms"]
    arms["a|b"] = arms.pop(next(iter(arms)))
    (tmp_path / "training-seeds.json").write_text(json.dumps(seeds))
    table = perf_doc.render("training-seeds", tmp_path)
    assert "| **a\\|b** | **mean ± sd** |  |  | **" in table


def test_a_goal_table_without_its_run_names_the_file(tmp_path):
    """targets-21 needs the decoders' runs: a JSON without one is a named error, not a traceback."""
    for path in perf_doc.PERF_DIR.glob("*.json"):
        shutil.copy(path, tmp_path)
    decoders = json.loads((tmp_path / "real-data-decoders.json").read_text(encoding="utf-8"))
    decoders["rows"] = [r for r in decoders["rows"] if not r["run"].endswith("smollm2")]
    (tmp_path / "real-data-decoders.json").write_text(json.dumps(decoders), encoding="utf-8")
    assert "| met |" in perf_doc.render("targets-21")
    with pytest.raises(
        perf_doc.PerfDocError, match=r"real-data-decoders.json: no run named smollm2"
    ):
        perf_doc.render("targets-21", tmp_path)


def test_decoder_goals_judge_the_decoder_with_the_best_validation_accuracy_of_both_files(tmp_path):
    """targets-29 reads both decoders' every-layer runs and picks on validation, never on test."""
    for path in perf_doc.PERF_DIR.glob("*.json"):
        shutil.copy(path, tmp_path)
    name = "real-data-smollm2-every-layer.json"
    smollm2 = json.loads((tmp_path / name).read_text(encoding="utf-8"))
    row = smollm2["rows"][0]
    row.update(run="x/best-on-val", val_acc=0.99, test_acc=0.5, wall_s=100.0, ceiling_share=0.31)
    (tmp_path / name).write_text(json.dumps(smollm2), encoding="utf-8")
    table = perf_doc.render("targets-29", tmp_path)
    assert (
        "`best-on-val` (best validation accuracy, 0.9900): test accuracy ≥ 0.85 | 0.5000 | not met"
        in table
    )
    assert "the whole training command ≤ 3600 s | 100.00 s | met" in table
    assert "bf16 ceiling | 31% | met" in table
    for path in (tmp_path / name, tmp_path / "real-data-qwen05b-every-layer.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["rows"] = []
        path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(perf_doc.PerfDocError, match="list no runs"):
        perf_doc.render("targets-29", tmp_path)
