"""docs/ARCHITECTURE.md against the code: the module table lists exactly the package's modules,
in layers (each imports only those above it, so the import graph has no cycle); user-facing errors
form one family; its claims about `metrics`, `cli` and the README hold; every relative link in the
README and docs/ resolves."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mathreport import cli, errors, presets

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mathreport"


def _modules() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def _table_order() -> list[str]:
    """The modules of ARCHITECTURE.md's table, in its order (from the bottom layer up)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text.split("## Which module owns what", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", table, re.M)


def _documented() -> set[str]:
    return set(_table_order())


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] == "mathreport"
        ):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("mathreport.")
            )
    return (found & modules) - {path.stem}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_module_table_lists_every_module_and_no_other():
    modules, documented = _modules(), _documented()
    assert documented, "docs/ARCHITECTURE.md has no module table"
    assert modules - documented == set(), (
        f"modules missing from docs/ARCHITECTURE.md: {sorted(modules - documented)}"
    )
    assert documented - modules == set(), (
        f"docs/ARCHITECTURE.md lists modules that do not exist: {sorted(documented - modules)}"
    )


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {m: imports_of(PACKAGE / f"{m}.py", modules) for m in modules}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_user_errors_are_one_family():
    """Every exception class of the package derives from MathreportError, which alone derives from a builtin."""
    classes = []
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes += [
            (path.stem, node.name) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
        ]
    found = []
    for module, name in classes:
        cls = getattr(__import__(f"mathreport.{module}", fromlist=[name]), name, None)
        if inspect.isclass(cls) and issubclass(cls, BaseException):
            found.append(cls)
    assert errors.MathreportError in found
    straight = [c for c in found if any(b.__module__ == "builtins" for b in c.__bases__)]
    assert straight == [errors.MathreportError]
    assert all(issubclass(c, errors.MathreportError) for c in found)


def _statements(source: str) -> int:
    """Logical lines (Python's NEWLINE tokens): a module's size whatever its formatting, since
    `ruff format` at 100 characters spreads one call over many physical lines."""
    import io
    import tokenize

    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return sum(1 for token in tokens if token.type == tokenize.NEWLINE)


def test_no_module_is_over_500_statements():
    long = {
        p.name: n
        for p in PACKAGE.glob("*.py")
        if (n := _statements(p.read_text(encoding="utf-8"))) > 500
    }
    assert long == {}


def test_statements_count_logical_lines_not_physical_ones():
    assert _statements("x = f(\n    1,\n    2,\n)\n# a comment\n\ny = 3\n") == 2


def test_every_module_has_its_own_test_file():
    """README: tests mirror modules, one file each (tests/test_<module>.py)."""
    tests = Path(__file__).parent
    missing = sorted(
        p.stem
        for p in PACKAGE.glob("*.py")
        if p.stem != "__init__" and not (tests / f"test_{p.stem}.py").is_file()
    )
    assert missing == []


def imports_from_below(order: list[str], graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each module that imports one listed after it in `order`, with those (empty: a layering)."""
    place = {m: i for i, m in enumerate(order)}
    late = {m: sorted(d for d in graph.get(m, set()) if place.get(d, -1) > place[m]) for m in order}
    return {m: found for m, found in late.items() if found}


def test_each_module_imports_only_modules_above_it_in_the_table():
    """ARCHITECTURE.md: the table is in layers from the bottom up, which is why the graph is
    acyclic (a tree it is not: most modules have several importers)."""
    modules, order = _modules(), _table_order()
    graph = {m: imports_of(PACKAGE / f"{m}.py", modules) for m in modules if m in order}
    assert imports_from_below(order, graph) == {}
    importers = {m: sum(m in deps for deps in graph.values()) for m in modules}
    assert max(importers.values()) > 1  # "not a tree" holds too
    assert importers.get("cli", 0) == 0


def test_the_layering_check_finds_an_import_from_below():
    assert imports_from_below(["a", "b", "c"], {"a": {"c"}, "b": {"a"}, "c": set()}) == {"a": ["c"]}


def test_metrics_reads_no_files():
    """ARCHITECTURE.md: `metrics` is pure functions from arrays to numbers; it reads no files."""
    path = PACKAGE / "metrics.py"
    assert imports_of(path, _modules()) <= {"labels", "errors"}
    reading = {"open", "read_csv", "read_json", "read_text", "read_bytes", "load", "loadtxt"}
    calls = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            calls.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    assert calls & reading == set()


def _subcommands() -> dict[str, object]:
    """`mathreport`'s subcommands: name -> the function it runs."""
    parser = cli.build_parser()
    (choices,) = [a.choices for a in parser._actions if isinstance(a.choices, dict)]
    return {name: sub.get_default("func") for name, sub in choices.items()}


def test_each_subcommand_is_one_cmd_function_of_cli():
    """ARCHITECTURE.md: each subcommand is one `cmd_<name>` function of `cli`, and every such
    function is a subcommand."""
    commands = _subcommands()
    assert {name: f.__name__ for name, f in commands.items()} == {
        name: f"cmd_{name.replace('-', '_')}" for name in commands
    }
    assert all(f.__module__ == cli.__name__ for f in commands.values())
    defined = {
        name for name, f in vars(cli).items() if name.startswith("cmd_") and inspect.isfunction(f)
    }
    assert defined == {f.__name__ for f in commands.values()}


def test_the_command_line_loads_no_deep_learning_library_until_a_subcommand_runs():
    """ARCHITECTURE.md: `mathreport --help` loads neither torch nor transformers (the subcommand
    that needs one imports it), so the command answers at once."""
    code = (
        "import sys; from mathreport import cli; cli.build_parser(); "
        "print(' '.join(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _section(markdown: str, heading: str) -> str:
    """The text under a `## heading` up to the next heading of that level."""
    return markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_is_short_and_starts_with_the_commands_a_newcomer_needs():
    """Issue 30: at most 150 lines; the set-up commands, the one CI runs and the developer's
    quick loop come before any usage, and every `make` target it names exists."""
    readme = _readme()
    assert len(readme.splitlines()) <= 150
    first = _section(readme, "Two commands")
    assert "make test " in first and "make report" in first and "make test-fast" in first
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M), ".ci/run must run the README's `make test`"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in sorted(set(re.findall(r"`make ([\w-]+)", readme))):
        pattern = f"{target.split('-')[0]}-%"  # a pattern rule: fetch-% makes fetch-mpnet
        assert re.search(rf"^({re.escape(target)}|{pattern}):", makefile, re.M), target


def test_the_readme_models_table_lists_every_preset():
    """ARCHITECTURE.md: a new preset is one PRESETS entry plus its docs row; this finds a
    missing row (or one of a preset that is gone)."""
    table = _section(_readme(), "Models")
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    listed = {key for cell in rows for key in re.findall(r"`([^`]+)`", cell)}
    assert set(presets.PRESETS) - listed == set()
    assert listed - set(presets.PRESETS) == set()


def slug(heading: str, seen: dict[str, int]) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens, and
    -1, -2 ... on a repeat."""
    base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}-{count}"


def _without_code_blocks(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (those in code blocks are not headings)."""
    seen: dict[str, int] = {}
    text = _without_code_blocks(path.read_text(encoding="utf-8"))
    return {slug(h, seen) for h in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M)}


def broken_links(path: Path) -> list[str]:
    """The relative links of a Markdown file whose file, or `#anchor` heading in it, is missing."""
    text = re.sub(r"`[^`\n]*`", "", _without_code_blocks(path.read_text(encoding="utf-8")))
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: not ours to check offline
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    return broken


MARKDOWN = sorted(
    [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").rglob("*.md")]
)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    """Moving text between pages must not break a link: every relative link names a file that
    exists and, with `#anchor`, one of its headings."""
    assert broken_links(path) == []


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "b.md").write_text("# Its heading\n", encoding="utf-8")
    page = tmp_path / "a.md"
    page.write_text(
        "## Here\n[ok](b.md#its-heading) [self](#here) [web](https://x.org/y)\n"
        "`[code](nope.md)` [gone](c.md) [no heading](b.md#other)\n"
        "```\n[in a block](nope.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["c.md", "b.md#other"]


def test_slug_is_githubs():
    seen: dict[str, int] = {}
    assert slug("The first run on a GPU: `python benchmarks/gpu_bench.py`", seen) == (
        "the-first-run-on-a-gpu-python-benchmarksgpu_benchpy"
    )
    assert slug("The report's words", seen) == "the-reports-words"
    assert [slug("Tests", seen), slug("Tests", seen)] == ["tests", "tests-1"]


def test_every_subcommand_is_shown_in_the_readme_or_usage():
    """A new subcommand gets its line in README.md or docs/USAGE.md, run as `mathreport NAME ...`."""
    shown = _readme() + (ROOT / "docs" / "USAGE.md").read_text(encoding="utf-8")
    assert [n for n in _subcommands() if not re.search(rf"mathreport {n}\b", shown)] == []
