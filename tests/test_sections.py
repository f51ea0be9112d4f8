"""sections: paths resolve against the project root; the notebooks ship in the package and read well."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

from mathreport import export, sections, summary

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "team_results"


def test_project_root_is_found_from_a_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv(sections.ROOT_ENV, raising=False)
    (tmp_path / "proj" / "notebooks" / "deep").mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(tmp_path / "proj" / "notebooks" / "deep")
    assert sections.project_root() == (tmp_path / "proj").resolve()
    assert sections.project_path(None, "results") == (tmp_path / "proj" / "results").resolve()
    assert sections.project_path("mine", "results") == Path("mine")  # an explicit path wins, as given
    monkeypatch.setenv(sections.ROOT_ENV, str(tmp_path))
    assert sections.project_root() == tmp_path.resolve()


def test_project_root_falls_back_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(sections.ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    if any((p / m).exists() for p in (tmp_path, *tmp_path.parents) for m in sections.ROOT_MARKERS):
        pytest.skip("the temporary folder lies inside a project")
    assert sections.project_root() == tmp_path.resolve()


def test_report_context_loads_default_results_from_notebooks_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(sections.ROOT_ENV, raising=False)
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copytree(FIXTURE, tmp_path / "results")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    ctx = sections.ReportContext.load("qwen_math")
    assert [r.path for r in ctx.runs.values()] == [tmp_path.resolve() / "results" / n for n in ("qwen_math", "mistral")]
    assert ctx.figures_dir == tmp_path.resolve() / "figures"
    with pytest.raises(summary.MissingResultsError, match=str(tmp_path.resolve() / "results" / "qwen")):
        sections.ReportContext.load("qwen")


def _generated():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "tools" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["final_report.ipynb", "train_model.ipynb"])
def test_notebooks_are_the_generated_ones_in_both_places(name):
    generated = _generated().NOTEBOOKS[name]
    for folder in (export.NOTEBOOKS, ROOT / "notebooks"):
        on_disk = nbformat.read(str(folder / name), as_version=4)
        assert [c.source for c in on_disk.cells] == [c.source for c in generated.cells], folder
        assert on_disk.metadata.kernelspec.name == "mathreport"
        for cell in on_disk.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None  # committed without outputs
                assert len(cell.source.splitlines()) <= 15


def test_every_report_section_has_a_turkish_markdown_cell_then_one_or_two_calls():
    nb = nbformat.read(str(export.REPORT_NOTEBOOK), as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith(f"# {summary.TEXT['tr']['title']}")
    headings = [c for c in cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    keys = [k for k in summary.INTRO["tr"] if k != "title"]
    assert [h.source.splitlines()[0] for h in headings] == [f"## {summary.TEXT['tr'][k]}" for k in keys]
    for heading in headings:
        assert export.TURKISH_TAG in heading.metadata.tags
        body = heading.source.split("\n", 2)[2]
        assert len(body) > 40 and body == summary.INTRO["tr"][[k for k in keys if heading.source.startswith(
            f"## {summary.TEXT['tr'][k]}\n")][0]]
        following = cells[cells.index(heading) + 1]
        assert following.cell_type == "code"
        calls = [line for line in following.source.splitlines() if line.strip()]
        assert 1 <= len(calls) <= 2 and all(line.startswith("ctx.") for line in calls)
    assert set(summary.INTRO["tr"]) == set(summary.INTRO["en"])
