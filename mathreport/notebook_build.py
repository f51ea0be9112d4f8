"""The two notebooks, made from the package: the report's sections from `sections.SECTIONS`,
the training notebook's parameters from `options.TrainConfig`. Regenerate both copies after
changing either:

    python -m mathreport.notebook_build            # rewrite mathreport/notebooks/ and notebooks/
    python -m mathreport.notebook_build --check    # change nothing; exit 1 naming each stale copy

The notebooks ship inside the package (mathreport/notebooks/, what `mathreport report` and
`pipeline` run) and are copied to notebooks/ for users who open them in JupyterLab or run them
with papermill; both copies are written here, identical, without outputs. Section headings and
introductions come from the Turkish catalog; the markdown cells carry the tag `lang-tr`, so an
export in another language drops them and shows the translated heading from the code cell.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mathreport import artifacts, i18n, options, sections
from mathreport.export import NOTEBOOKS, PACKAGE_DIR, TURKISH_TAG
from mathreport.options import TrainConfig
from mathreport.sections import TITLE, ReportSection

KERNEL = {"display_name": "Python (mathreport)", "language": "python", "name": "mathreport"}
# The package's copy, then the checkout's (in an editable install the package folder's parent).
TARGETS = (NOTEBOOKS, PACKAGE_DIR.parent / "notebooks")
LANG = "tr"  # the markdown cells' language; others come from the code cells at run time

REPORT_PARAMETERS = (
    "# papermill final_report.ipynb out.ipynb -p model qwen   "
    "(from notebooks/ or the project root)\n"
    'model = "minilm"  # the run folder the report is about: results/<model>/\n'
    "compare = None  # other runs to compare with; None: every complete run in results_dir\n"
    "results_dir = None  # None: results/ under the project root "
    "(the folder holding pyproject.toml)\n"
    "figures_dir = None  # None: figures/ under the project root\n"
    'lang = "tr"  # "tr" or "en"'
)
# The training notebook's parameters: these options of TrainConfig, with its defaults and help
# (mathreport/options.py). Every other option can be passed too (papermill -p seed 7); papermill
# warns that it is not listed here, so every parameter `mathreport pipeline` passes is
# (tests/test_pipeline.py checks it).
TRAIN_PARAMETERS = (
    "model",
    "num_epochs",
    "learning_rate",
    "train_path",
    "val_path",
    "test_path",
    "output_dir",
    "resume",
    "force",
    "model_path",
    "batch_size",
    "device",
    "load_in_4bit",
    "training_args",
)
TRAIN_KEYS = ("train_notebook.intro", "train_notebook.training", "train_notebook.results")


def notebook(cells: list[NotebookNode]) -> NotebookNode:
    metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    nb = new_notebook(cells=cells, metadata=metadata)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: a regeneration changes only what changed
    return nb


def params(src: str) -> NotebookNode:
    cell = new_code_cell(src)
    cell.metadata["tags"] = ["parameters"]
    return cell


def turkish(src: str) -> NotebookNode:
    cell = new_markdown_cell(src)
    cell.metadata["tags"] = [TURKISH_TAG]
    return cell


def section_cells(spec: ReportSection) -> list[NotebookNode]:
    """A section's Turkish heading and introduction, then its call (which shows them otherwise)."""
    heading, intro = i18n.message(spec.heading_key, LANG), i18n.message(spec.intro_key, LANG)
    return [
        turkish(f"## {heading}\n\n{intro}"),
        new_code_cell(
            f'ctx.heading("{spec.key}")  '
            "# the heading in another language; Turkish: the cell above\n"
            f"ctx.{spec.method}()"
        ),
    ]


def report_notebook() -> NotebookNode:
    """final_report.ipynb: the title, the parameters, then every registered section in order."""
    for spec in (TITLE, *sections.SECTIONS.values()):
        i18n.require(spec.catalog_keys, f"report section {spec.key!r} (mathreport/sections.py)")
    title, intro = i18n.message(TITLE.heading_key, LANG), i18n.message(TITLE.intro_key, LANG)
    return notebook(
        [
            turkish(f"# {title}\n\n{intro}"),
            params(REPORT_PARAMETERS),
            new_code_cell(
                "from mathreport.sections import ReportContext\n\n"
                "ctx = ReportContext.load(model, compare, results_dir, figures_dir, lang)\n"
                f"ctx.{TITLE.method}()"
            ),
            *[cell for spec in sections.SECTIONS.values() for cell in section_cells(spec)],
        ]
    )


def train_parameters(defaults: dict, notes: dict) -> str:
    """The parameters cell: `name = default  # help` for each of TRAIN_PARAMETERS (paths: None,
    the flag's default).

    `defaults` and `notes` replace a field's default and help where the notebook needs its own.
    """
    by_name = {f.name: f for f in options.option_fields(TrainConfig)}
    lines = []
    for f in (by_name[name] for name in TRAIN_PARAMETERS):
        opt = f.metadata["option"]
        fallback = None if opt.cli_default is not options.NOT_SET else options.flag_default(f)
        value = defaults.get(f.name, fallback)
        if f.name in notes:
            note = notes[f.name]
        elif opt.fallback is not None:
            note = f"None: {opt.fallback({'model': '<model>'})} under the project root"
        elif opt.cli_default not in (options.NOT_SET, None):
            note = f"None: {opt.cli_default} under the project root"
        else:
            note = opt.help
        text = json.dumps(value) if isinstance(value, str) else repr(value)
        lines.append(f"{f.name} = {text}" + (f"  # {note}" if note else ""))
    return "\n".join(lines)


def train_notebook() -> NotebookNode:
    """train_model.ipynb: the parameters, one training call, the metrics it wrote."""
    i18n.require(TRAIN_KEYS, "the training notebook (mathreport/notebook_build.py)")
    # File names come from artifacts, so renaming a run-folder file is an edit of artifacts only.
    names = {"history": artifacts.HISTORY, "metrics": artifacts.METRICS}
    intro, training, results = (i18n.message(key, LANG, **names) for key in TRAIN_KEYS)
    return notebook(
        [
            new_markdown_cell(intro),
            params(
                train_parameters(
                    defaults={"model": "minilm"},
                    notes={
                        "model": "a preset, HF id or local path",
                        "training_args": "transformers' TrainingArguments flags, "
                        'e.g. ["--gradient_accumulation_steps", "4"]',
                    },
                )
            ),
            new_markdown_cell(training),
            new_code_cell(
                "from mathreport import artifacts, options\n"
                "from mathreport.sections import project_path\n"
                "from mathreport.train import TrainConfig, train\n\n"
                "# the options above (and any other given with papermill -p), "
                "read as `mathreport train` reads them\n"
                "cfg = options.from_values(TrainConfig, globals(), path=project_path)\n"
                "run_dir = train(cfg)"
            ),
            new_markdown_cell(results),
            new_code_cell(
                "import pandas as pd\n\n"
                "metrics = artifacts.read_metrics(run_dir)\n"
                "display(artifacts.read_history(run_dir))\n"
                "pd.Series({k: v for k, v in metrics.items() if isinstance(v, float)}, "
                "name=model).to_frame()"
            ),
        ]
    )


def notebooks() -> dict[str, NotebookNode]:
    """Every notebook by file name, as the package makes it now."""
    built = {"final_report.ipynb": report_notebook(), "train_model.ipynb": train_notebook()}
    for nb in built.values():
        nbformat.validate(nb)
    return built


def stale(targets: tuple[Path, ...] = TARGETS) -> list[Path]:
    """The copies under `targets` that differ from what `notebooks()` makes, or are missing."""
    out = []
    for name, nb in notebooks().items():
        want = json.loads(nbformat.writes(nb))
        for path in (folder / name for folder in targets):
            if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != want:
                out.append(path)
    return out


def write(targets: tuple[Path, ...] = TARGETS) -> list[Path]:
    """Write every notebook into each of `targets`; the paths written."""
    written = []
    for name, nb in notebooks().items():
        for folder in targets:
            folder.mkdir(exist_ok=True)
            nbformat.write(nb, str(folder / name))
            written.append(folder / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mathreport.notebook_build",
        description="Write both notebook copies from the package.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 naming each stale notebook"
    )
    if parser.parse_args(argv).check:
        behind = stale()
        for path in behind:
            print(
                f"{path} differs from what the package makes: "
                "run python -m mathreport.notebook_build",
                file=sys.stderr,
            )
        return 1 if behind else 0
    for path in write():
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
