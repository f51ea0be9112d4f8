"""Regenerate the clean notebooks in notebooks/ from the cell sources below (run: python tools/make_notebooks.py).

The notebooks are the source users open in JupyterLab; this script exists so their cells stay short calls into
the package and diffs of them stay reviewable.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def notebook(cells):
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def params(src):
    cell = new_code_cell(src)
    cell.metadata["tags"] = ["parameters"]
    return cell


def section(key, body):
    return new_code_cell(f'heading("{key}")\n{body}'.rstrip())


REPORT = notebook([
    params('# Run with papermill: papermill notebooks/final_report.ipynb out.ipynb -p model minilm\n'
           '# Every number in the report is read from results_dir/<model>/; nothing is typed in.\n'
           'model = "minilm"  # the model the report is about\n'
           'compare = None  # other runs to compare with; None: every run found in results_dir\n'
           'results_dir = "results"\n'
           'figures_dir = "figures"\n'
           'lang = "tr"  # "tr" or "en"'),
    new_code_cell("from mathreport.notebook import ReportContext\n\n"
                  "ctx = ReportContext.load(model, compare, results_dir, figures_dir, lang)\n"
                  "heading, show = ctx.heading, ctx.show\n"
                  "ctx.title()"),
    section("overview", "ctx.overview()"),
    section("data", "ctx.data_section()"),
    section("setup", "ctx.setup_section()"),
    section("lr", "ctx.lr_search_section()"),
    section("runs", "ctx.runs_section()"),
    section("summary", "ctx.summary_section()"),
    section("classic", "ctx.classic_metrics_section()"),
    section("f1", "ctx.f1_section()"),
    section("roc", "ctx.roc_section()"),
    section("confusion", "ctx.confusion_section()"),
    section("per_class", "ctx.per_class_section()"),
    section("training", "ctx.training_section()"),
    section("latency", "ctx.latency_section()"),
    section("latency_vs_acc", "ctx.latency_vs_accuracy_section()"),
    section("calibration", "ctx.calibration_section()"),
    section("errors", "ctx.errors_section()"),
    section("conclusion", "ctx.conclusion_section()"),
])

TRAIN = notebook([
    new_markdown_cell("# Bir modeli eğit ve değerlendir / Train and evaluate one model\n\n"
                      "`papermill notebooks/train_model.ipynb results/minilm/train_model.ipynb -p model minilm "
                      "[-k GPU_KERNEL]`"),
    params('model = "minilm"\n'
           "num_epochs = 3\n"
           "learning_rate = None  # None: the preset's\n"
           'train_path = "data/augmented_train.csv"\n'
           'val_path = "data/val_split.csv"\n'
           'test_path = "data/test_split.csv"\n'
           "output_dir = None  # None: results/<model>\n"
           "resume = False\n"
           "force = False"),
    new_code_cell("from pathlib import Path\n\n"
                  "from mathreport import artifacts\n"
                  "from mathreport.train import TrainConfig, train\n\n"
                  "cfg = TrainConfig(model=model, train_path=Path(train_path), val_path=Path(val_path),\n"
                  "                  test_path=Path(test_path), output_dir=Path(output_dir or f\"results/{model}\"),\n"
                  "                  num_epochs=num_epochs, learning_rate=learning_rate, resume=resume, force=force)\n"
                  "run_dir = train(cfg)"),
    new_code_cell("import pandas as pd\n\n"
                  "metrics = artifacts.read_metrics(run_dir)\n"
                  "display(artifacts.read_history(run_dir))\n"
                  "pd.Series({k: v for k, v in metrics.items() if isinstance(v, float)}, name=model).to_frame()"),
])

if __name__ == "__main__":
    for name, nb in (("final_report.ipynb", REPORT), ("train_model.ipynb", TRAIN)):
        nbformat.validate(nb)
        nbformat.write(nb, str(ROOT / "notebooks" / name))
        print("wrote", ROOT / "notebooks" / name)
