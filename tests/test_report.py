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


FIXTURE = __import__("pathlib").Path(__file__).parent / "fixtures" / "team_results"


def test_team_results_layout_renders_unchanged(tmp_path):
    """The team's own folders (no run.json, no latency.json, 7 metric keys) load and render as they are."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    paths = report.run_report(model="qwen_math", results_dir=results, output_dir=tmp_path / "out",
                              figures_dir=tmp_path / "figures", pdf=False)
    html = paths["html"].read_text(encoding="utf-8")
    for name in ("qwen_math", "mistral"):
        accuracy = json.loads((results / name / "metrics.json").read_text())["Accuracy"]
        assert f"{accuracy:.3f}" in html
    assert "McNemar" in html  # same test items: a paired test is made
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before  # nothing rewritten


def test_english_rendering_from_the_same_notebook(trained_results, tmp_path):
    paths = report.run_report(model="minilm", results_dir=trained_results, output_dir=tmp_path,
                              figures_dir=tmp_path / "figures", lang="en", pdf=False)
    assert paths["html"].name == "final_report_en.html"
    html = paths["html"].read_text(encoding="utf-8")
    for title in ("Summary Metrics Table", "Confusion Matrix", "Latency Analysis", "Conclusion"):
        assert title in html
    for title in ("Karışıklık Matrisi", "Gecikme Analizi", "Sonuç ve Değerlendirme"):
        assert title not in html


def _has_pdf_tools() -> bool:
    import shutil

    return all(shutil.which(t) for t in ("pdftotext", "pdfimages")) and any(
        shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome"))


@pytest.mark.skipif(not _has_pdf_tools(), reason="needs chromium and poppler-utils (make env installs them)")
def test_pdf_keeps_turkish_text_figures_and_page_width(rendered):
    import subprocess

    paths, out = rendered
    pdf = report.export_pdf(paths["html"], out / "final_report.pdf")
    from mathreport import summary

    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    text = " ".join(text.split())
    sections = [v for k, v in summary.TEXT["tr"].items() if k not in ("model", "demo", "pr")]
    for word in ("Karışıklık", "Sayı Teorisi", "Olasılık", *sections):
        assert word in text, word
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert len([line for line in images.splitlines()[2:] if " image " in line]) >= 6
    # No word may run past the right edge of its page (a table cut off at the page edge would).
    bbox = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = re.findall(r'<page width="([\d.]+)" height="[\d.]+">(.*?)</page>', bbox, flags=re.S)
    assert pages
    for width, body in pages:
        right = [float(x) for x in re.findall(r'xMax="([\d.]+)"', body)]
        assert max(right, default=0) <= float(width), "text beyond the page edge"
