"""The report notebook, executed with papermill on real runs, and its HTML export."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from mathreport import artifacts, export


@pytest.fixture(scope="module")
def rendered(trained_results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = export.run_report(
        model="minilm",
        results_dir=trained_results,
        output_dir=out,
        figures_dir=out / "figures",
        pdf=False,
    )
    return paths, out


def test_html_embeds_figures_and_turkish_sections(rendered):
    paths, out = rendered
    html = paths["html"].read_text(encoding="utf-8")
    images = re.findall(r'<img[^>]+src="data:image/png;base64,', html)
    assert len(images) >= 6
    assert not re.search(r'<img[^>]+src="(?!data:)', html), "figures must be embedded, not linked"
    for title in (
        "Özet",
        "Gecikme Analizi",
        "Eğitim Dinamikleri",
        "Karışıklık Matrisi",
        "ROC Eğrisi Analizi",
        "Sonuç ve Değerlendirme",
        "Konu Bazında Analiz",
    ):
        assert title in html, title
    assert len(list((out / "figures").glob("*.png"))) >= 6
    # Trained on the demo corpus: the warning banner names both runs.
    banner = re.search(r'<div class="mathreport-banner".*?</div>', html, flags=re.S).group(0)
    assert (
        banner.count("çevrimdışı demo derlemiyle eğitildi") == 2
        and "minilm" in banner
        and "tfidf" in banner
    )


def test_html_shows_each_models_accuracy_from_its_metrics(rendered, trained_results):
    html = rendered[0]["html"].read_text(encoding="utf-8")
    for model in ("tfidf", "minilm"):
        accuracy = json.loads((trained_results / model / "metrics.json").read_text())["Accuracy"]
        assert f"{accuracy:.3f}" in html, model


def test_executed_notebook_has_no_errors(rendered):
    nb = nbformat.read(str(rendered[0]["notebook"]), as_version=4)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors


def test_report_for_model_without_results_fails_naming_it(trained_results, tmp_path):
    import papermill

    # As `papermill notebooks/final_report.ipynb out.ipynb -p model qwen` would run it.
    with pytest.raises(papermill.PapermillExecutionError) as err:
        export.execute(
            export.REPORT_NOTEBOOK,
            tmp_path / "final_report.ipynb",
            {
                "model": "qwen",
                "results_dir": str(trained_results),
                "figures_dir": str(tmp_path / "f"),
            },
        )
    message = str(err.value)
    assert "qwen" in message and "GPU" in message and "results/qwen" in message
    assert (
        not (tmp_path / "final_report.html").exists()
        and not (tmp_path / "final_report.ipynb").exists()
    )
    failed = nbformat.read(str(tmp_path / "final_report.failed.ipynb"), as_version=4)
    shown = [
        o
        for c in failed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type in ("display_data", "execute_result")
    ]
    assert shown == []  # no number, no table, no figure before the error


def test_incomplete_run_is_named_with_missing_file(trained_results, tmp_path):
    import shutil

    from mathreport import summary

    shutil.copytree(trained_results / "tfidf", tmp_path / "tfidf")
    (tmp_path / "tfidf" / artifacts.HISTORY).unlink()
    with pytest.raises(summary.MissingResultsError, match="lacks history.csv"):
        summary.load_runs(tmp_path, "tfidf")


FIXTURE = Path(__file__).parent / "fixtures" / "team_results"


@pytest.mark.slow  # runs the report notebook
@pytest.mark.parametrize("marked", [True, False])
def test_team_results_layout_renders_unchanged(tmp_path, marked):
    """The team's own folders (no latency.json, 7 metric keys; with or without run.json) render as they are.

    The fixture's run.json marks it synthetic: the report then carries a banner saying so; without it, none.
    """
    import shutil

    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    if not marked:
        for manifest in results.glob("*/run.json"):
            manifest.unlink()
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    paths = export.run_report(
        model="qwen_math",
        results_dir=results,
        output_dir=tmp_path / "out",
        figures_dir=tmp_path / "figures",
        pdf=False,
    )
    html = paths["html"].read_text(encoding="utf-8")
    for name in ("qwen_math", "mistral"):
        accuracy = json.loads((results / name / "metrics.json").read_text())["Accuracy"]
        assert f"{accuracy:.3f}" in html
        if marked:
            assert json.loads((results / name / "run.json").read_text())["synthetic"] is True
    assert "McNemar" in html  # same test items: a paired test is made
    assert {
        p: p.read_bytes() for p in results.rglob("*") if p.is_file()
    } == before  # nothing rewritten
    assert ('class="mathreport-banner"' in html) is marked
    assert ("qwen_math (sentetik)" in html) is marked


def test_english_rendering_from_the_same_notebook(trained_results, tmp_path):
    paths = export.run_report(
        model="minilm",
        results_dir=trained_results,
        output_dir=tmp_path,
        figures_dir=tmp_path / "figures",
        lang="en",
        pdf=False,
    )
    assert paths["html"].name == "final_report_en.html"
    html = paths["html"].read_text(encoding="utf-8")
    for title in ("Summary Metrics Table", "Confusion Matrix", "Latency Analysis", "Conclusion"):
        assert title in html
    for title in ("Karışıklık Matrisi", "Gecikme Analizi", "Sonuç ve Değerlendirme"):
        assert title not in html


# Skipped without these tools, a failure in CI (tests/conftest.py).
@pytest.mark.requires_tools("chromium", "pdftotext", "pdfimages")
def test_pdf_keeps_turkish_text_figures_and_page_width(rendered):
    import subprocess

    paths, out = rendered
    pdf = export.export_pdf(paths["html"], out / "final_report.pdf")
    from mathreport import summary

    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    text = " ".join(text.split())
    sections = [
        summary.TEXT["tr"][key] for key in summary.INTRO["tr"]
    ]  # the title and every section heading
    for word in ("Karışıklık", "Sayı Teorisi", "Olasılık", *sections):
        assert word in text, word
    images = subprocess.run(
        ["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert len([line for line in images.splitlines()[2:] if " image " in line]) >= 6
    # No word may run past the right edge of its page (a table cut off at the page edge would).
    bbox = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = re.findall(r'<page width="([\d.]+)" height="[\d.]+">(.*?)</page>', bbox, flags=re.S)
    assert pages
    for width, body in pages:
        right = [float(x) for x in re.findall(r'xMax="([\d.]+)"', body)]
        assert max(right, default=0) <= float(width), "text beyond the page edge"
    # No text below about 8 pt: a word's box is about 1.16 times its font size high (9.9 pt at 8.5 pt).
    heights = {
        word: float(y1) - float(y0)
        for y0, y1, word in re.findall(
            r'yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)<', bbox
        )
    }
    small = {word: round(h / 1.16, 1) for word, h in heights.items() if h / 1.16 < 7.9}
    assert len(heights) > 300 and not small, small


# --- data is never markup; the HTML renders offline --------------------------------------------------------------

LATEX_QUESTIONS = [
    r"Solve $x^2 - 5x + 6 = 0$ for $x$.",
    r"Evaluate $\int_0^1 x\,dx$ and $\frac{1}{2}$.",
    r"Let $G$ be a group with $|G| = p^2$; is $G$ abelian?",
]
HOSTILE_QUESTIONS = [
    """XSSPROBE <img src=x onerror="document.body.setAttribute('data-pwned','img')"> and if x<y then y>z, what is x?""",
    "<script>document.body.setAttribute('data-pwned','script')</script> script probe",
    "x<y>z with a | pipe and `back` ticks, *stars*, _under_ and costs $5 and $10",
    r"$\text{<img src=x onerror=alert(1)>}$ hostile latex",
    "LONG " + "A" * 10_000,
]
HOSTILE_NAMES = {
    "qwen_math": "<script>document.body.setAttribute('data-pwned','name')</script> q|*x*_y_`$5`",
    "mistral": """mistral <img src=x onerror="document.body.setAttribute('data-pwned','n')"> x<y>z""",
}


def hostile_results(tmp_path):
    """The team fixture with hostile display names and questions (LaTeX ones among them) on its top errors."""
    import shutil

    import pandas as pd

    from mathreport import metrics

    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    questions = LATEX_QUESTIONS + HOSTILE_QUESTIONS
    for name, display in HOSTILE_NAMES.items():
        manifest = json.loads((results / name / "run.json").read_text())
        (results / name / "run.json").write_text(json.dumps({**manifest, "display_name": display}))
        preds = pd.read_csv(results / name / "preds_test.csv")
        ids = [str(i) for i in range(len(preds))]
        shown = [
            int(e)
            for c in metrics.top_confusions(preds["y_true"], preds["y_pred"], ids)
            for e in c["examples"]
        ]
        assert len(shown) >= len(questions)
        text = [f"question {i}" for i in range(len(preds))]
        for row, question in zip(shown, questions, strict=False):
            text[row] = question
        preds["text"] = text
        preds.to_csv(results / name / "preds_test.csv", index=False)
    return results


def _chromium() -> str | None:
    import shutil

    return next(
        (
            shutil.which(c)
            for c in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(c)
        ),
        None,
    )


def load_offline(html_path, tmp_path) -> tuple[str, list[str]]:
    """Load a file in headless Chromium with every proxy pointing at a closed port.

    Returns the DOM after load (scripts, if any, have run) and the URLs of every request the page started,
    from Chromium's own network log.
    """
    import subprocess

    profile, netlog = tmp_path / "profile", tmp_path / "netlog.json"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        f"--log-net-log={netlog}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        html_path.resolve().as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    requested = [
        e["params"]["url"]
        for e in log["events"]
        if names.get(e["type"]) == "URL_REQUEST_START_JOB"
        and str(e["params"].get("network_isolation_key", "")).startswith("file://")
    ]
    return dom, requested


class DomText(HTMLParser):
    """Tags with their attributes, and the text of each question item, from an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.questions: list[str] = []
        self.maths: list[int] = []
        self._in_question = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "li" and attrs.get("class") == "mathreport-question":
            self._in_question = 1
            self.questions.append("")
            self.maths.append(0)
        elif self._in_question:
            self._in_question += tag not in (
                "img",
                "br",
                "hr",
                "wbr",
                "input",
            )  # HTML's void elements
            self.maths[-1] += tag == "math"

    def handle_startendtag(self, tag, attrs):  # <x/>: no depth change
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if self._in_question:
            self._in_question -= 1

    def handle_data(self, data):
        if self._in_question:
            self.questions[-1] += data


def parse_dom(dom: str) -> DomText:
    parsed = DomText()
    parsed.feed(dom)
    return parsed


@pytest.mark.requires_tools("chromium")
def test_offline_browser_detects_a_network_request(tmp_path):
    """The check below can fail: a page with a remote script and image is caught by the network log."""
    page = tmp_path / "page.html"
    page.write_text(
        '<html><head><script src="https://cdn.example.org/x.js"></script></head>'
        '<body><img src="http://example.org/a.png"></body></html>'
    )
    _, requested = load_offline(page, tmp_path)
    assert {"https://cdn.example.org/x.js", "http://example.org/a.png"} <= set(requested)


@pytest.mark.slow  # runs the report notebook, then headless Chromium
@pytest.mark.requires_tools("chromium")
def test_html_report_is_self_contained_and_data_stays_text(tmp_path):
    results = hostile_results(tmp_path)
    paths = export.run_report(
        model="qwen_math",
        results_dir=results,
        output_dir=tmp_path / "out",
        figures_dir=tmp_path / "figures",
        pdf=False,
    )
    html = paths["html"].read_text(encoding="utf-8")
    # Nothing to fetch: no script, no remote src/href/url()/@import anywhere in the file.
    static = parse_dom(html)
    assert [t for t, _ in static.tags if t == "script"] == []
    links = [v for _, a in static.tags for k, v in a.items() if k in ("src", "href") and v]
    assert all(v.startswith(("data:image/png;base64,", "#")) for v in links), [
        v[:60] for v in links
    ]
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", html)
    assert not [
        k for _, a in static.tags for k in a if k.startswith("on")
    ]  # no event handler attributes
    assert not [
        a
        for t, a in static.tags
        if t == "img" and not a.get("src", "").startswith("data:image/png")
    ]

    dom, requested = load_offline(paths["html"], tmp_path)
    assert requested == []
    parsed = parse_dom(dom)
    assert not [
        a for _, a in parsed.tags if "data-pwned" in a
    ]  # none of the hostile strings ran as script
    assert "data-pwned" in dom  # ... and they are still there, as text
    by_start = {q.split()[0]: (q, m) for q, m in zip(parsed.questions, parsed.maths, strict=True)}
    for latex in LATEX_QUESTIONS:  # rendered as MathML: no raw $...$ left in the visible text
        shown, maths = by_start[latex.split()[0]]
        assert "$" not in shown and maths == latex.count("$") // 2, shown
    for hostile in HOSTILE_QUESTIONS[:3]:
        assert by_start[hostile.split()[0]][0] == hostile, (
            "the question's text must be kept as it is"
        )
    shown, maths = next(v for v in by_start.values() if "hostile latex" in v[0])
    assert "<img src=x onerror=alert(1)>" in shown.replace("\xa0", " ") and maths == 1
    long = next(q for q, _ in by_start.values() if q.startswith("LONG"))
    assert 100 < len(long) <= 260 and long.endswith("…") and "A" * 10_000 not in html
    visible = unescape(re.sub(r"<[^>]+>", "", dom))
    for (
        display
    ) in HOSTILE_NAMES.values():  # run names: headings, prose and tables show them as text
        assert display in visible


def _fake_project(tmp_path):
    """A project folder as a user has it: pyproject.toml, notebooks/ and results/ (the team fixture)."""
    import shutil

    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'my-analysis'\n")
    shutil.copy(export.REPORT_NOTEBOOK, project / "notebooks" / "final_report.ipynb")
    shutil.copytree(FIXTURE, project / "results")
    return project


def _kernel_env(tmp_path) -> dict:
    """The environment with a "mathreport" kernel (this interpreter) registered, as `make` registers it."""
    import os
    import sys

    spec = tmp_path / "jupyter" / "kernels" / "mathreport"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python (mathreport)",
                "language": "python",
            }
        )
    )
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter")}
    env.pop("MATHREPORT_ROOT", None)
    return env


@pytest.mark.slow  # runs the report notebook through papermill
@pytest.mark.parametrize("where", ["notebooks", "root"])
def test_papermill_command_works_from_notebooks_folder_and_root(tmp_path, where):
    """`papermill final_report.ipynb out.ipynb -p model qwen_math` as the README says, from either folder."""
    import subprocess
    import sys

    project = _fake_project(tmp_path)
    cwd, notebook = (
        (project / "notebooks", "final_report.ipynb")
        if where == "notebooks"
        else (project, "notebooks/final_report.ipynb")
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            notebook,
            str(tmp_path / "out.ipynb"),
            "-p",
            "model",
            "qwen_math",
            "--no-progress-bar",
        ],
        cwd=cwd,
        env=_kernel_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    executed = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    assert executed.metadata.kernelspec.name == "mathreport"
    assert not [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert (
        len(list((project / "figures").glob("qwen_math_*.png"))) >= 8
    )  # figures/ at the project root
    assert (
        not (project / "notebooks" / "figures").exists()
        and not (project / "notebooks" / "results").exists()
    )


@pytest.mark.slow  # builds a wheel, installs it into a venv, runs the report
def test_report_runs_from_a_wheel_install(tmp_path):
    """Build the wheel, install it into a fresh venv and run `mathreport report` outside any checkout.

    The fresh venv gets the wheel only; its dependencies come from this interpreter's site-packages through a
    .pth path entry (no network), their data files through JUPYTER_PATH. The checkout is not on the path: the
    notebook and template must come from the installed package.
    """
    import os
    import subprocess
    import sys
    import sysconfig
    import zipfile

    root = FIXTURE.parents[2]
    source = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in tracked:
        if (root / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((root / name).read_bytes())
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("mathreport-*.whl")
    shipped = zipfile.ZipFile(wheel).namelist()
    for data in (
        "mathreport/notebooks/final_report.ipynb",
        "mathreport/notebooks/train_model.ipynb",
        "mathreport/templates/mathreport_report/index.html.j2",
        "mathreport/templates/mathreport_report/conf.json",
    ):
        assert data in shipped, data

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )

    work = tmp_path / "elsewhere"
    (work / "results").mkdir(parents=True)
    import shutil

    shutil.copytree(FIXTURE / "qwen_math", work / "results" / "qwen_math")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MATHREPORT_ROOT")}
    # The dependencies' data files (nbconvert's templates) lie beside them, under this interpreter's prefix.
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    run = subprocess.run(
        [str(venv / "bin" / "mathreport"), "report", "--model", "qwen_math", "--no-pdf"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    html = (work / "results" / "final_report.html").read_text(encoding="utf-8")
    accuracy = json.loads((work / "results" / "qwen_math" / "metrics.json").read_text())["Accuracy"]
    assert f"{accuracy:.3f}" in html and "Karışıklık Matrisi" in html
    where = subprocess.run(
        [str(python), "-c", "import mathreport; print(mathreport.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(site), where  # the wheel's copy ran, not the checkout


def test_run_report_runs_the_kernel_it_is_given_with_declared_parameters(tmp_path, monkeypatch):
    import papermill

    from mathreport import summary

    monkeypatch.setattr(
        summary, "load_runs", lambda *a, **k: {}
    )  # no runs needed: nothing is executed
    calls = []
    monkeypatch.setattr(
        export,
        "execute",
        lambda nb, out, params, kernel=None, **k: calls.append((params, kernel)) or out,
    )
    monkeypatch.setattr(export, "export_html", lambda executed, html, lang="tr": html)
    export.run_report(
        model="qwen", compare=[], results_dir=tmp_path, output_dir=tmp_path, kernel="gpu-env"
    )
    ((params, kernel),) = calls
    assert kernel == "gpu-env"
    assert set(params) <= set(papermill.inspect_notebook(str(export.REPORT_NOTEBOOK)))
