"""Regenerate the clean notebooks from the cell sources below (run: python tools/make_notebooks.py).

The notebooks ship inside the package (mathreport/notebooks/, what `mathreport report` and `pipeline` run) and
are copied to notebooks/ for users who open them in JupyterLab or run them with papermill; both copies are
written here, identical, without outputs. Section headings and introductions come from `summary.TEXT` and
`summary.INTRO` (Turkish); the markdown cells carry the tag `lang-tr`, so an export in another language drops
them and shows the translated heading from the code cell instead.
"""

import json
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mathreport import i18n, options  # noqa: E402
from mathreport.summary import INTRO, TEXT  # noqa: E402
from mathreport.train import TrainConfig  # noqa: E402

KERNEL = {"display_name": "Python (mathreport)", "language": "python", "name": "mathreport"}
TURKISH_TAG = "lang-tr"
TARGETS = (ROOT / "mathreport" / "notebooks", ROOT / "notebooks")


def notebook(cells):
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def params(src):
    cell = new_code_cell(src)
    cell.metadata["tags"] = ["parameters"]
    return cell


def turkish(src):
    cell = new_markdown_cell(src)
    cell.metadata["tags"] = [TURKISH_TAG]
    return cell


def section(key, call):
    return [turkish(f"## {TEXT['tr'][key]}\n\n{INTRO['tr'][key]}"),
            new_code_cell(f'ctx.heading("{key}")  # the heading in another language; Turkish: the cell above\n'
                          f"{call}")]


SECTIONS = [
    ("overview", "ctx.overview()"),
    ("data", "ctx.data_section()"),
    ("setup", "ctx.setup_section()"),
    ("lr", "ctx.lr_search_section()"),
    ("runs", "ctx.runs_section()"),
    ("summary", "ctx.summary_section()"),
    ("classic", "ctx.classic_metrics_section()"),
    ("f1", "ctx.f1_section()"),
    ("roc", "ctx.roc_section()"),
    ("confusion", "ctx.confusion_section()"),
    ("per_class", "ctx.per_class_section()"),
    ("training", "ctx.training_section()"),
    ("latency", "ctx.latency_section()"),
    ("latency_vs_acc", "ctx.latency_vs_accuracy_section()"),
    ("calibration", "ctx.calibration_section()"),
    ("errors", "ctx.errors_section()"),
    ("conclusion", "ctx.conclusion_section()"),
]

REPORT = notebook([
    turkish(f"# {TEXT['tr']['title']}\n\n{INTRO['tr']['title']}"),
    params('# papermill final_report.ipynb out.ipynb -p model qwen   (from notebooks/ or the project root)\n'
           'model = "minilm"  # the run folder the report is about: results/<model>/\n'
           'compare = None  # other runs to compare with; None: every complete run in results_dir\n'
           'results_dir = None  # None: results/ under the project root (the folder holding pyproject.toml)\n'
           'figures_dir = None  # None: figures/ under the project root\n'
           'lang = "tr"  # "tr" or "en"'),
    new_code_cell("from mathreport.sections import ReportContext\n\n"
                  "ctx = ReportContext.load(model, compare, results_dir, figures_dir, lang)\n"
                  "ctx.title()"),
    *[cell for key, call in SECTIONS for cell in section(key, call)],
])

# The training notebook's parameters: these options of TrainConfig, with its defaults and help (mathreport/options.py).
# Every other option can be passed too (papermill -p seed 7); papermill warns that it is not listed here, so every
# parameter `mathreport pipeline` passes is (tests/test_pipeline.py checks it).
TRAIN_PARAMETERS = ("model", "num_epochs", "learning_rate", "train_path", "val_path", "test_path", "output_dir",
                    "resume", "force", "model_path", "batch_size", "device", "load_in_4bit", "training_args")


def train_parameters(defaults: dict, notes: dict) -> str:
    """The parameters cell: `name = default  # help` for each of TRAIN_PARAMETERS (paths: None, the flag's default).

    `defaults` and `notes` replace a field's default and help where the notebook needs its own.
    """
    by_name = {f.name: f for f in options.option_fields(TrainConfig)}
    lines = []
    for f in (by_name[name] for name in TRAIN_PARAMETERS):
        opt = f.metadata["option"]
        value = defaults.get(f.name, None if opt.cli_default is not options.NOT_SET else options.flag_default(f))
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


TRAIN = notebook([
    new_markdown_cell(i18n.message("train_notebook.intro", "tr")),
    params(train_parameters(defaults={"model": "minilm"}, notes={
        "model": "a preset, HF id or local path",
        "training_args": 'transformers\' TrainingArguments flags, e.g. ["--gradient_accumulation_steps", "4"]'})),
    new_markdown_cell(i18n.message("train_notebook.training", "tr")),
    new_code_cell("from mathreport import artifacts, options\n"
                  "from mathreport.sections import project_path\n"
                  "from mathreport.train import TrainConfig, train\n\n"
                  "# the options above (and any other given with papermill -p), read as `mathreport train` reads them\n"
                  "cfg = options.from_values(TrainConfig, globals(), path=project_path)\n"
                  "run_dir = train(cfg)"),
    new_markdown_cell(i18n.message("train_notebook.results", "tr")),
    new_code_cell("import pandas as pd\n\n"
                  "metrics = artifacts.read_metrics(run_dir)\n"
                  "display(artifacts.read_history(run_dir))\n"
                  "pd.Series({k: v for k, v in metrics.items() if isinstance(v, float)}, name=model).to_frame()"),
])

NOTEBOOKS = {"final_report.ipynb": REPORT, "train_model.ipynb": TRAIN}

if __name__ == "__main__":
    for name, nb in NOTEBOOKS.items():
        nbformat.validate(nb)
        for folder in TARGETS:
            folder.mkdir(exist_ok=True)
            nbformat.write(nb, str(folder / name))
            print("wrote", folder / name)
