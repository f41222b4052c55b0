"""The package has no import cycle: a reader can order the modules from leaves to the Trainer.

Every import counts, also one inside a function (a lazy import hides a cycle, it does not remove it) and a package's
lazy attribute table (`_LAZY = {"name": ".module"}`); only `if TYPE_CHECKING:` blocks are left out, they never run.
Importing `a.b.c` also runs the `__init__` of `a` and `a.b`, so those count as well, except the importing module's
own packages (which are already being imported).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "xtuner_nb"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _walk(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            continue
        yield child
        yield from _walk(child)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The xtuner_nb modules `path` imports, anywhere in the file, made absolute."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    names: set[str] = set()

    def absolute(module: str | None, level: int) -> str:
        if not level:
            return module or ""
        base = package.rsplit(".", level - 1)[0] if level > 1 else package
        return f"{base}.{module}" if module else base

    for node in _walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.module, node.level)
            for a in node.names:
                sub = f"{base}.{a.name}"
                names.add(sub if sub in modules else base)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            if isinstance(node.value, ast.Dict):  # lazy attributes: {"name": ".module"}
                names.update(absolute(v.value.lstrip("."), len(v.value) - len(v.value.lstrip(".")))
                             for v in node.value.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    out = set()
    for name in names:
        if not name.startswith("xtuner_nb"):
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way run their __init__ too
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix != me and not me.startswith(prefix + "."):
                out.add(prefix)
    return out


def import_graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imported_modules(p, modules) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50
    assert cycles(graph) == []


def test_the_checker_finds_a_cycle_through_a_lazy_import(tmp_path):
    """A cycle closed by an import inside a function, the kind model/ had, is found."""
    pkg = tmp_path / "xtuner_nb"
    (pkg / "m").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "m" / "__init__.py").write_text("")
    (pkg / "m" / "a.py").write_text("from .b import B\n")
    (pkg / "m" / "b.py").write_text("def f():\n    from .a import A\n")
    (pkg / "m" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n")
    files = sorted(pkg.rglob("*.py"))
    global ROOT
    saved, ROOT = ROOT, pkg
    try:
        modules = {module_name(p) for p in files}
        graph = {module_name(p): imported_modules(p, modules) for p in files}
    finally:
        ROOT = saved
    assert cycles(graph) == [["xtuner_nb.m.a", "xtuner_nb.m.b"]]
    assert graph["xtuner_nb.m.c"] == set()  # TYPE_CHECKING imports never run
