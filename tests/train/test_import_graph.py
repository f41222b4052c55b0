"""`xtuner_nb.train` never imports the notebook layer or UI libraries, not even lazily inside a function; importing
the package has no side effects (nothing is registered, no UI module is loaded). The data layer below it,
`xtuner_nb.datasets`, never imports `xtuner_nb.train`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "xtuner_nb" / "train"
DATASETS = TRAIN.parent / "datasets"
FORBIDDEN = ("xtuner_nb.notebook", "ipywidgets", "matplotlib", "IPython")


def _imports(path: Path, package: str = "xtuner_nb.train", forbidden: tuple[str, ...] = FORBIDDEN
             ) -> list[tuple[int, str]]:
    """Every module name an import statement anywhere in `path` (functions included) refers to, made absolute
    (relative imports from `package`); plus string constants naming a `forbidden` module
    (importlib.import_module("...") is an import too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found += [(node.lineno, f"{base}.{a.name}" if not node.module else base) for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(forbidden):
            found.append((node.lineno, node.value))
    return found


def test_train_never_imports_the_notebook_layer_or_ui_libraries():
    files = sorted(TRAIN.rglob("*.py"))
    assert len(files) > 10
    bad = [f"{p.relative_to(TRAIN.parent.parent)}:{line} imports {name}" for p in files
           for line, name in _imports(p) if name == "xtuner_nb" or name.startswith(FORBIDDEN)
           or name.startswith("xtuner_nb.notebook")]
    assert bad == []


def test_the_checker_sees_a_lazy_relative_import(tmp_path):
    """The check above would fail on the kind of import that Trainer.plot used to hide in a function."""
    probe = tmp_path / "probe.py"
    probe.write_text("def plot():\n    from ..notebook.plots import plot_history\n", encoding="utf-8")
    assert _imports(probe) == [(2, "xtuner_nb.notebook.plots")]


def _package_of(path: Path) -> str:
    """The package a module's relative imports start from (a package's `__init__.py`: the package itself)."""
    return ".".join(path.relative_to(TRAIN.parent.parent).with_suffix("").parts[:-1])


def test_data_never_imports_train():
    """Data is a layer below training (the Trainer builds its loader, never the other way round): no module of
    `xtuner_nb.datasets` imports `xtuner_nb.train`, not even lazily, and neither does anything it imports."""
    from tests.test_import_cycles import import_graph

    files = sorted(DATASETS.rglob("*.py"))
    assert len(files) > 10
    assert _package_of(DATASETS / "sft_tokenize_fn" / "openai.py") == "xtuner_nb.datasets.sft_tokenize_fn"
    assert _package_of(DATASETS / "__init__.py") == "xtuner_nb.datasets"
    bad = [f"{p.relative_to(TRAIN.parent.parent)}:{line} imports {name}" for p in files
           for line, name in _imports(p, _package_of(p), forbidden=("xtuner_nb.train",))
           if name == "xtuner_nb.train" or name.startswith("xtuner_nb.train.")]
    assert bad == []
    graph = import_graph()  # every import counts there too, lazy ones included: also what data imports
    reached, todo = set(), [m for m in graph if m.startswith("xtuner_nb.datasets")]
    while todo:
        for n in graph[todo.pop()] - reached:
            reached.add(n)
            todo.append(n)
    assert sorted(m for m in reached if m.startswith("xtuner_nb.train")) == []


def test_importing_the_package_and_the_trainer_loads_no_ui():
    code = ("import sys, xtuner_nb, xtuner_nb.train, xtuner_nb.train.trainer; "
            "print([m for m in sys.modules if m.startswith(('xtuner_nb.notebook', 'ipywidgets', 'matplotlib', "
            "'IPython'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_one_answer_to_are_we_in_a_notebook_kernel():
    """`train.logs.in_notebook_kernel` decides it for the logs, the interrupt handler, the default hooks, the
    dashboard and the env report; no other module asks ipykernel or IPython's config itself."""
    import xtuner_nb.notebook.dashboard as dashboard
    from xtuner_nb.train import logs

    assert dashboard.in_notebook_kernel is logs.in_notebook_kernel
    package = TRAIN.parent
    asking = sorted(str(p.relative_to(package.parent)) for p in package.rglob("*.py")
                    if p != package / "train" / "logs.py"
                    and any(s in p.read_text(encoding="utf-8") for s in ("IPKernelApp", "ipykernel.kernelapp")))
    assert asking == []
    assert not logs.in_notebook_kernel()  # pytest is not a kernel
