"""Running the notebooks with papermill and exporting the report with nbconvert.

The notebooks and the HTML template are package data (mathreport/notebooks/, mathreport/templates/), so this
works from a wheel as from a checkout; notebooks/ in the repository holds copies for JupyterLab users.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from mathreport import artifacts

PACKAGE_DIR = Path(__file__).resolve().parent
NOTEBOOKS = PACKAGE_DIR / "notebooks"
TEMPLATES = PACKAGE_DIR / "templates"
REPORT_TEMPLATE = "mathreport_report"
REPORT_NOTEBOOK = NOTEBOOKS / "final_report.ipynb"
TRAIN_NOTEBOOK = NOTEBOOKS / "train_model.ipynb"
DATA_FILES = ("augmented_train.csv", "val_split.csv", "test_split.csv")
# The kernel `mathreport report` / `pipeline` run the notebooks in: ipykernel's own spec for the running
# interpreter, the one that imported this package. The notebooks name the "mathreport" kernel that `make`
# registers, for JupyterLab and for plain `papermill` calls.
DEFAULT_KERNEL = "python3"
# Markdown cells tagged so hold the Turkish section texts; an export in another language drops them.
TURKISH_TAG = "lang-tr"


def _notebook(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the notebooks ship inside the mathreport package (mathreport/notebooks/); "
            "reinstall it (`pip install .` or `make env`)"
        )
    return path


def execute(notebook: Path, output: Path, parameters: dict, kernel: str | None = None, stream: bool = False) -> Path:
    """Execute a notebook with papermill into `output` (written atomically: a failed run leaves no file).

    stream: pass the kernel's stdout/stderr through (training progress bars) instead of only keeping them.
    """
    import papermill

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}.", suffix=".ipynb")
    os.close(fd)
    os.chmod(tmp, artifacts.umask_mode())
    from mathreport.train import TEXT_PROGRESS_ENV

    previous = os.environ.get(TEXT_PROGRESS_ENV)
    if stream:
        os.environ[TEXT_PROGRESS_ENV] = "1"  # the kernel inherits it: Trainer shows a text progress bar
    try:
        papermill.execute_notebook(
            str(_notebook(notebook)), tmp, parameters=parameters, kernel_name=kernel or DEFAULT_KERNEL,
            cwd=os.getcwd(),
            progress_bar=not stream, stdout_file=sys.stdout if stream else None,
            stderr_file=sys.stderr if stream else None,
        )
        os.replace(tmp, output)
    except BaseException:
        # Keep the executed notebook of a failed run for the traceback, beside the output, not over it.
        failed = output.with_name(output.stem + ".failed.ipynb")
        if Path(tmp).exists():
            os.replace(tmp, failed)
        raise
    finally:
        if stream:
            if previous is None:
                os.environ.pop(TEXT_PROGRESS_ENV, None)
            else:
                os.environ[TEXT_PROGRESS_ENV] = previous
    return output


def export_html(executed: Path, html_path: Path, lang: str = "tr") -> Path:
    """Export an executed notebook to a self-contained HTML file: figures embedded, code hidden, no script.

    The template (mathreport/templates/mathreport_report) is JupyterLab's without the scripts it loads from a
    CDN; math is already MathML in the outputs. For a language other than Turkish the Turkish markdown cells
    are dropped (their translation is in the outputs).
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(template_name=REPORT_TEMPLATE, extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            language_code=lang)
    if lang != "tr":
        exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={TURKISH_TAG}), enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(executed), as_version=4))
    artifacts.write_text(html_path, body)
    return Path(html_path)


def find_chromium() -> str:
    """The path of a Chromium/Chrome executable, or an error saying how to install one."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(
        "PDF export needs Chromium (headless): `apt-get install chromium` (Debian/Ubuntu; `make report` does "
        "this when run as root), or pass --no-pdf to write only the HTML report"
    )


def run_report(
    model: str = "minilm",
    compare: list[str] | None = None,
    results_dir: Path = Path("results"),
    output_dir: Path = Path("results"),
    figures_dir: Path = Path("figures"),
    lang: str = "tr",
    pdf: bool = False,
    kernel: str | None = None,
) -> dict[str, Path]:
    """Execute `final_report.ipynb` for `model` and export it; returns the written paths."""
    from mathreport import summary

    # Fail before starting a kernel when a run is missing; the notebook makes the same check itself.
    for run in summary.load_runs(Path(results_dir), model, compare).values():
        artifacts.check_consistency(run.path)  # nor a run whose files are of two runs, or still being written
    output_dir = Path(output_dir)
    suffix = "" if lang == "tr" else f"_{lang}"
    executed = execute(
        REPORT_NOTEBOOK,
        output_dir / f"final_report{suffix}.ipynb",
        {"model": model, "compare": compare, "results_dir": str(Path(results_dir).resolve()),
         "figures_dir": str(Path(figures_dir).resolve()), "lang": lang},
        kernel=kernel,
    )
    paths = {"notebook": executed,
             "html": export_html(executed, output_dir / f"final_report{suffix}.html", lang)}
    if pdf:
        paths["pdf"] = export_pdf(paths["html"], output_dir / f"final_report{suffix}.pdf")
    return paths


def export_pdf(html_path: Path, pdf_path: Path, timeout: int = 180) -> Path:
    """Print the exported HTML report to PDF with headless Chromium (what nbconvert's webpdf does).

    nbconvert's webpdf drives Chromium through playwright, which only finds a browser it downloaded itself;
    offline machines have Debian's chromium, so it is called directly with the same print settings.
    """
    import subprocess

    chromium = find_chromium()
    pdf_path = Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        tmp = Path(profile) / "report.pdf"
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}/user", "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
               f"--print-to-pdf={tmp}", Path(html_path).resolve().as_uri()]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"Chromium could not print {html_path} to PDF (exit {result.returncode}): "
                               f"{result.stderr.strip()[-500:]}")
        with artifacts.atomic_path(pdf_path) as target:
            shutil.copyfile(tmp, target)
    return pdf_path


def ensure_data(data_dir: Path) -> str:
    """Use the split files in `data_dir`, or write the offline demo corpus there when it has none."""
    data_dir = Path(data_dir)
    present = [name for name in DATA_FILES if (data_dir / name).is_file()]
    if len(present) == len(DATA_FILES):
        print(f"using the split files in {data_dir}/ as they are")
        return "existing"
    if present:
        missing = sorted(set(DATA_FILES) - set(present))
        raise FileNotFoundError(
            f"{data_dir}/ has {', '.join(present)} but not {', '.join(missing)}; refusing to mix them with demo "
            f"data. Make all three with `mathreport prepare --input RAW.csv --out-dir {data_dir}`, or move them away."
        )
    from mathreport import demo

    print(f"{data_dir}/ has no split files: writing the offline demo corpus there (not the real Kaggle data)")
    demo.write_demo_corpus(data_dir)
    return "demo"


def run_pipeline(
    models: list[str],
    data_dir: Path = Path("data"),
    results_dir: Path = Path("results"),
    kernel: str | None = None,
    force: bool = False,
    num_epochs: int = 3,
    report_model: str | None = None,
    pdf: bool = False,
    lang: str = "tr",
) -> dict[str, Path]:
    """Train (through `train_model.ipynb`) each model whose results are missing or incomplete, then report."""
    ensure_data(data_dir)
    results_dir = Path(results_dir)
    members = [name for name in models if name != "ensemble"]
    for name in members:
        run_dir = results_dir / name
        if artifacts.is_complete(run_dir) and not force:
            print(f"{run_dir}: complete results found, not retraining (use --force to retrain)")
            continue
        resume = any((run_dir / "checkpoints").glob("checkpoint-*"))
        # An incomplete run directory is the pipeline's own unfinished output: continue or redo it.
        redo = force or (run_dir.is_dir() and not resume)
        print(f"{run_dir}: training {name} via notebooks/train_model.ipynb"
              + (" (resuming)" if resume else ""))
        if run_dir.is_dir() and redo:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        execute(
            TRAIN_NOTEBOOK,
            run_dir / "train_model.ipynb",
            {"model": name, "num_epochs": num_epochs, "learning_rate": None,
             "train_path": str(Path(data_dir) / DATA_FILES[0]), "val_path": str(Path(data_dir) / DATA_FILES[1]),
             "test_path": str(Path(data_dir) / DATA_FILES[2]), "output_dir": str(run_dir),
             "resume": resume, "force": redo},
            kernel=kernel,
            stream=True,
        )
    if "ensemble" in models:  # built after its members, from every other model named
        from mathreport import ensemble

        run_dir = results_dir / "ensemble"
        if ensemble.is_current(run_dir) and not force:
            print(f"{run_dir}: an ensemble of the current member results exists, not refitting it")
        else:
            print(f"{run_dir}: fitting the ensemble of {', '.join(members)} on the validation split")
            ensemble.build_ensemble([results_dir / name for name in members], run_dir, force=True)
            print(ensemble.summary_line(run_dir))
    paths = run_report(model=report_model or models[-1], results_dir=results_dir, output_dir=results_dir,
                       lang=lang, pdf=pdf)
    if len(models) > 1:
        paths["comparisons"] = write_comparisons(results_dir, models)
    return paths


def write_comparisons(results_dir: Path, names: list[str]) -> Path:
    """Write `results_dir/comparisons.json`: McNemar's exact test and CI overlap for each pair of runs."""
    from mathreport import summary

    runs = summary.load_runs(Path(results_dir), names[0], names[1:])
    return artifacts.write_json(Path(results_dir) / "comparisons.json", {"pairs": summary.comparisons(runs)})
