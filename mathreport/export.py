"""Making the report files: notebooks executed with papermill, HTML exported with nbconvert, PDF printed by Chromium.
The notebooks and the HTML template are package data, so this works from a wheel; notebooks/ holds copies."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from mathreport import artifacts, files
from mathreport.errors import CommandError

PACKAGE_DIR = Path(__file__).resolve().parent
NOTEBOOKS = PACKAGE_DIR / "notebooks"
TEMPLATES = PACKAGE_DIR / "templates"
REPORT_TEMPLATE = "mathreport_report"
REPORT_NOTEBOOK = NOTEBOOKS / "final_report.ipynb"
TRAIN_NOTEBOOK = NOTEBOOKS / "train_model.ipynb"
# ipykernel's spec for the running interpreter; the notebooks themselves name the "mathreport" kernel `make` registers.
DEFAULT_KERNEL = "python3"
# Markdown cells tagged so hold the Turkish section texts; an export in another language drops them.
TURKISH_TAG = "lang-tr"


def _notebook(path: Path) -> Path:
    if not path.is_file():
        raise CommandError(
            f"{path} not found: the notebooks ship inside the mathreport package (mathreport/notebooks/); "
            "reinstall it (`pip install .` or `make env`)"
        )
    return path


def execute(
    notebook: Path, output: Path, parameters: dict, kernel: str | None = None, stream: bool = False
) -> Path:
    """Execute a notebook with papermill into `output`, atomically (a failed run leaves `<stem>.failed.ipynb`).

    stream: pass the kernel's stdout/stderr through (training progress bars) instead of only keeping them.
    """
    import papermill

    output = Path(output)
    from mathreport.train import TEXT_PROGRESS_ENV

    previous = os.environ.get(TEXT_PROGRESS_ENV)
    if stream:
        os.environ[TEXT_PROGRESS_ENV] = (
            "1"  # the kernel inherits it: Trainer shows a text progress bar
        )
    failed = output.with_name(output.stem + ".failed.ipynb")
    try:
        with files.atomic_path(output, suffix=".ipynb", failed=failed) as tmp:
            papermill.execute_notebook(
                str(_notebook(notebook)),
                str(tmp),
                parameters=parameters,
                kernel_name=kernel or DEFAULT_KERNEL,
                cwd=os.getcwd(),
                progress_bar=not stream,
                stdout_file=sys.stdout if stream else None,
                stderr_file=sys.stderr if stream else None,
            )
    finally:
        if stream:
            if previous is None:
                os.environ.pop(TEXT_PROGRESS_ENV, None)
            else:
                os.environ[TEXT_PROGRESS_ENV] = previous
    return output


def export_html(executed: Path, html_path: Path, lang: str = "tr") -> Path:
    """Export an executed notebook to a self-contained HTML file: figures embedded, code hidden, no script.

    lang: other than "tr", the Turkish markdown cells are dropped (the outputs hold their translation).
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(
        template_name=REPORT_TEMPLATE,
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        language_code=lang,
    )
    if lang != "tr":
        exporter.register_preprocessor(
            TagRemovePreprocessor(remove_cell_tags={TURKISH_TAG}), enabled=True
        )
    body, _ = exporter.from_notebook_node(nbformat.read(str(executed), as_version=4))
    files.write_text(html_path, body)
    return Path(html_path)


def find_chromium() -> str:
    """The path of a Chromium/Chrome executable, or an error saying how to install one."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    raise CommandError(
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

    # Fail before starting a kernel on a missing run, or one whose files are of two runs or still being written.
    for run in summary.load_runs(Path(results_dir), model, compare).values():
        artifacts.check_consistency(run.path)
    if compare is None:  # every run found: say which folders were left out, and why
        for name, missing in artifacts.incomplete_runs(Path(results_dir)).items():
            if name != model:
                print(
                    f"warning: {Path(results_dir) / name} is left out of the report: it lacks {', '.join(missing)}; "
                    f"make them with: {artifacts.make_command(Path(results_dir) / name)}",
                    file=sys.stderr,
                )
    output_dir = Path(output_dir)
    suffix = "" if lang == "tr" else f"_{lang}"
    executed = execute(
        REPORT_NOTEBOOK,
        output_dir / f"final_report{suffix}.ipynb",
        {
            "model": model,
            "compare": compare,
            "results_dir": str(Path(results_dir).resolve()),
            "figures_dir": str(Path(figures_dir).resolve()),
            "lang": lang,
        },
        kernel=kernel,
    )
    paths = {
        "notebook": executed,
        "html": export_html(executed, output_dir / f"final_report{suffix}.html", lang),
    }
    if pdf:
        paths["pdf"] = export_pdf(paths["html"], output_dir / f"final_report{suffix}.pdf")
    return paths


def export_pdf(html_path: Path, pdf_path: Path, timeout: int = 180) -> Path:
    """Print the exported HTML report to PDF with headless Chromium, as nbconvert's webpdf does."""
    # Called directly: webpdf's playwright only finds a browser it downloaded itself, not an offline machine's.
    import subprocess

    chromium = find_chromium()
    pdf_path = Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        tmp = Path(profile) / "report.pdf"
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}/user",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
            f"--print-to-pdf={tmp}",
            Path(html_path).resolve().as_uri(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(
                f"Chromium could not print {html_path} to PDF (exit {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
        with files.atomic_path(pdf_path) as target:
            shutil.copyfile(tmp, target)
    return pdf_path
