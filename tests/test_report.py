"""The report notebook, executed with papermill on real runs, and its HTML export."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from mathreport import artifacts, report


@pytest.fixture(scope="module")
def rendered(trained_results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = report.run_report(model="minilm", results_dir=trained_results, output_dir=out,
                              figures_dir=out / "figures", pdf=False)
    return paths, out


def test_html_embeds_figures_and_turkish_sections(rendered):
    paths, out = rendered
    html = paths["html"].read_text(encoding="utf-8")
    images = re.findall(r'<img[^>]+src="data:image/png;base64,', html)
    assert len(images) >= 6
    assert not re.search(r'<img[^>]+src="(?!data:)', html), "figures must be embedded, not linked"
    for title in ("Özet", "Gecikme Analizi", "Eğitim Dinamikleri", "Karışıklık Matrisi", "ROC Eğrisi Analizi",
                  "Sonuç ve Değerlendirme", "Konu Bazında Analiz"):
        assert title in html, title
    assert len(list((out / "figures").glob("*.png"))) >= 6


def test_html_shows_each_models_accuracy_from_its_metrics(rendered, trained_results):
    html = rendered[0]["html"].read_text(encoding="utf-8")
    for model in ("tfidf", "minilm"):
        accuracy = json.loads((trained_results / model / "metrics.json").read_text())["Accuracy"]
        assert f"{accuracy:.3f}" in html, model


def test_executed_notebook_has_no_errors(rendered):
    nb = nbformat.read(str(rendered[0]["notebook"]), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_report_for_model_without_results_fails_naming_it(trained_results, tmp_path):
    import papermill

    # As `papermill notebooks/final_report.ipynb out.ipynb -p model qwen` would run it.
    with pytest.raises(papermill.PapermillExecutionError) as err:
        report.execute(report.REPORT_NOTEBOOK, tmp_path / "final_report.ipynb",
                       {"model": "qwen", "results_dir": str(trained_results), "figures_dir": str(tmp_path / "f")})
    message = str(err.value)
    assert "qwen" in message and "GPU" in message and "results/qwen" in message
    assert not (tmp_path / "final_report.html").exists() and not (tmp_path / "final_report.ipynb").exists()
    failed = nbformat.read(str(tmp_path / "final_report.failed.ipynb"), as_version=4)
    shown = [o for c in failed.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if o.output_type in ("display_data", "execute_result")]
    assert shown == []  # no number, no table, no figure before the error


def test_incomplete_run_is_named_with_missing_file(trained_results, tmp_path):
    import shutil

    from mathreport import summary

    shutil.copytree(trained_results / "tfidf", tmp_path / "tfidf")
    (tmp_path / "tfidf" / artifacts.HISTORY).unlink()
    with pytest.raises(summary.MissingResultsError, match="lacks history.csv"):
        summary.load_runs(tmp_path, "tfidf")
