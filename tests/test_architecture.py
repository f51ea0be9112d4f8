"""docs/ARCHITECTURE.md against the code: the module table lists exactly the package's modules, the import graph
inside the package has no cycle, and user-facing errors form one family."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from mathreport import errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mathreport"


def _modules() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def _documented() -> set[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text.split("## Which module owns what", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", table, re.M))


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mathreport":
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mathreport."))
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
    assert modules - documented == set(), f"modules missing from docs/ARCHITECTURE.md: {sorted(modules - documented)}"
    assert documented - modules == set(), f"docs/ARCHITECTURE.md lists modules that do not exist: " \
                                          f"{sorted(documented - modules)}"


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
        classes += [(path.stem, node.name) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    found = []
    for module, name in classes:
        cls = getattr(__import__(f"mathreport.{module}", fromlist=[name]), name, None)
        if inspect.isclass(cls) and issubclass(cls, BaseException):
            found.append(cls)
    assert errors.MathreportError in found
    straight = [c for c in found if any(b.__module__ == "builtins" for b in c.__bases__)]
    assert straight == [errors.MathreportError]
    assert all(issubclass(c, errors.MathreportError) for c in found)


def test_no_module_is_over_700_lines():
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > 700}
    assert long == {}


def test_every_module_has_its_own_test_file():
    """README: tests mirror modules, one file each (tests/test_<module>.py)."""
    tests = Path(__file__).parent
    missing = sorted(p.stem for p in PACKAGE.glob("*.py")
                     if p.stem != "__init__" and not (tests / f"test_{p.stem}.py").is_file())
    assert missing == []
