"""sections: paths resolve against the project root; the notebooks ship in the package and read well."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from mathreport import export, i18n, notebook_build, sections, summary

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "team_results"


def test_project_root_is_found_from_a_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv(sections.ROOT_ENV, raising=False)
    (tmp_path / "proj" / "notebooks" / "deep").mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(tmp_path / "proj" / "notebooks" / "deep")
    assert sections.project_root() == (tmp_path / "proj").resolve()
    assert sections.project_path(None, "results") == (tmp_path / "proj" / "results").resolve()
    assert sections.project_path("mine", "results") == Path(
        "mine"
    )  # an explicit path wins, as given
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
    assert [r.path for r in ctx.runs.values()] == [
        tmp_path.resolve() / "results" / n for n in ("qwen_math", "mistral")
    ]
    assert ctx.figures_dir == tmp_path.resolve() / "figures"
    with pytest.raises(
        summary.MissingResultsError, match=str(tmp_path.resolve() / "results" / "qwen")
    ):
        sections.ReportContext.load("qwen")


@pytest.mark.parametrize("name", ["final_report.ipynb", "train_model.ipynb"])
def test_notebooks_are_the_generated_ones_in_both_places(name):
    generated = notebook_build.notebooks()[name]
    for folder in (export.NOTEBOOKS, ROOT / "notebooks"):
        on_disk = nbformat.read(str(folder / name), as_version=4)
        assert [c.source for c in on_disk.cells] == [c.source for c in generated.cells], folder
        assert on_disk.metadata.kernelspec.name == "mathreport"
        for cell in on_disk.cells:
            if cell.cell_type == "code":
                assert (
                    cell.outputs == [] and cell.execution_count is None
                )  # committed without outputs
                assert len(cell.source.splitlines()) <= 15


def test_every_report_section_has_a_turkish_markdown_cell_then_one_or_two_calls():
    nb = nbformat.read(str(export.REPORT_NOTEBOOK), as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith(
        f"# {summary.TEXT['tr']['title']}"
    )
    headings = [c for c in cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    keys = [k for k in summary.INTRO["tr"] if k != "title"]
    assert [h.source.splitlines()[0] for h in headings] == [
        f"## {summary.TEXT['tr'][k]}" for k in keys
    ]
    for heading in headings:
        assert export.TURKISH_TAG in heading.metadata.tags
        body = heading.source.split("\n", 2)[2]
        assert (
            len(body) > 40
            and body
            == summary.INTRO["tr"][
                [k for k in keys if heading.source.startswith(f"## {summary.TEXT['tr'][k]}\n")][0]
            ]
        )
        following = cells[cells.index(heading) + 1]
        assert following.cell_type == "code"
        calls = [line for line in following.source.splitlines() if line.strip()]
        assert 1 <= len(calls) <= 2 and all(line.startswith("ctx.") for line in calls)
    assert set(summary.INTRO["tr"]) == set(summary.INTRO["en"])


# --- the section registry ------------------------------------------------------------------------


def _section_keys(lang: str) -> set[str]:
    return {key for key in i18n.CATALOG[lang] if key.startswith(sections.SECTION_NAMESPACES)}


@pytest.mark.parametrize("lang", ["tr", "en"])
def test_every_key_a_section_declares_is_in_every_catalog(lang):
    assert sections.SECTIONS, "no section registered"
    assert sections.catalog_keys() - set(i18n.CATALOG[lang]) == set(), i18n.catalog_file(lang)


@pytest.mark.parametrize("lang", ["tr", "en"])
def test_no_catalog_holds_a_section_key_that_no_section_declares(lang):
    orphans = _section_keys(lang) - sections.catalog_keys()
    assert orphans == set(), f"{i18n.catalog_file(lang)}: keys no section in sections.py declares"


@pytest.mark.parametrize("lang", ["tr", "en"])
def test_the_catalogs_introduce_the_sections_in_their_order(lang):
    # summary.INTRO keeps the catalog's order, which tests walk as the report's order.
    order = [sections.TITLE.key, *sections.SECTIONS]
    assert list(summary.INTRO[lang]) == order, i18n.catalog_file(lang)


def test_every_section_is_a_report_context_method_and_every_section_method_is_registered():
    methods = {name for name in vars(sections.ReportContext) if name.endswith("_section")}
    registered = [spec.method for spec in sections.SECTIONS.values()]
    assert len(set(registered)) == len(registered)
    assert methods <= set(registered)
    for name in [*registered, sections.TITLE.method]:
        assert callable(getattr(sections.ReportContext, name)), name


def test_a_section_key_registered_twice_is_refused(monkeypatch):
    monkeypatch.setattr(sections, "SECTIONS", dict(sections.SECTIONS))

    def again(self) -> None:
        pass

    with pytest.raises(ValueError, match=r"'confusion' is registered twice in mathreport/sections"):
        sections.section("confusion")(again)
    with pytest.raises(ValueError, match="'title' is registered twice"):
        sections.section("title")(again)
    assert sections.SECTIONS["confusion"].method == "confusion_section"
