"""notebook_build: the notebooks are made from the section registry and the catalogs, and the
committed copies are what it makes now."""

from __future__ import annotations

import pytest

from mathreport import export, i18n, notebook_build, sections
from mathreport.errors import MissingMessageError


def test_the_committed_notebooks_are_what_the_package_makes_now():
    # A section added, renamed or reworded without `python -m mathreport.notebook_build` fails here.
    assert notebook_build.stale() == []
    assert notebook_build.main(["--check"]) == 0


@pytest.mark.parametrize("lang", ["tr", "en"])
def test_every_training_notebook_key_is_used_and_in_every_catalog(lang):
    train_keys = {key for key in i18n.CATALOG[lang] if key.startswith("train_notebook.")}
    assert train_keys == set(notebook_build.TRAIN_KEYS), i18n.catalog_file(lang)


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry and catalogs that a test may add to."""
    monkeypatch.setattr(sections, "SECTIONS", dict(sections.SECTIONS))
    for lang in list(i18n.CATALOG):
        monkeypatch.setitem(i18n.CATALOG, lang, dict(i18n.CATALOG[lang]))
    return sections.SECTIONS


def _add_section(key: str = "extra"):
    @sections.section(key, keys=("sections.extra_note",))
    def extra_section(self) -> None:
        pass

    return extra_section


def test_a_section_is_one_registered_function_and_its_catalog_keys(registry, tmp_path):
    _add_section()
    for lang in i18n.CATALOG:
        i18n.CATALOG[lang].update(
            {
                "report.extra": f"Extra {lang}",
                "sections.extra_note": "note",
                "intro.extra": f"Why extra, {lang}.",
            }
        )
    assert list(registry)[-1] == "extra" and "sections.extra_note" in sections.catalog_keys()
    cells = notebook_build.notebooks()["final_report.ipynb"].cells
    assert cells[-2].source == "## Extra tr\n\nWhy extra, tr."
    assert export.TURKISH_TAG in cells[-2].metadata.tags
    assert cells[-1].source.splitlines() == [
        'ctx.heading("extra")  # the heading in another language; Turkish: the cell above',
        "ctx.extra_section()",
    ]
    # The committed notebooks lack it until they are regenerated; then they have it, in both copies.
    assert notebook_build.stale() != []
    targets = (tmp_path / "package", tmp_path / "checkout")
    assert len(notebook_build.write(targets)) == 4 and notebook_build.stale(targets) == []


def test_a_section_whose_words_one_catalog_lacks_names_that_file_and_the_keys(registry):
    _add_section()
    i18n.CATALOG["tr"].update(
        {"report.extra": "Ek", "intro.extra": "Neden.", "sections.extra_note": "not"}
    )
    expected = (
        r"^mathreport/locales/en\.toml has no 'report\.extra', 'intro\.extra', "
        r"'sections\.extra_note', which report section 'extra' \(mathreport/sections\.py\) "
        r"shows; add "
    )
    with pytest.raises(MissingMessageError, match=expected) as error:
        notebook_build.notebooks()
    assert "\n" not in str(error.value)
