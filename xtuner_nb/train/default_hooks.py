"""The hooks a Trainer adds by itself, chosen when it is built; importing the package registers nothing.

The hooks live in the packages that own their dependencies and are found by name in the `xtuner_nb.hooks`
entry-point group (declared in pyproject.toml), so `xtuner_nb.train` never imports the notebook layer:

    curves_png   <log_dir>/curves.png when a fit ends (xtuner_nb.notebook.hooks, needs matplotlib)
    dashboard    the live dashboard in a Jupyter kernel (xtuner_nb.notebook.hooks, needs ipywidgets)

`TrainerConfig.default_hooks=None` picks `curves_png`, plus `dashboard` inside a Jupyter kernel;
`default_hooks=[]` turns them all off; a list of names picks exactly those (an unknown name is an error).
Another package can add a hook the same way: an entry point `name = "module:factory"`, where
`factory(trainer) -> Hook | None`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable

from .events import Hook
from .tracker import in_notebook_kernel

ENTRY_POINT_GROUP = "xtuner_nb.hooks"
HookFactory = Callable[[Any], "Hook | None"]


def default_hook_names(chosen: list[str] | None, show_dashboard: bool = True) -> list[str]:
    if chosen is not None:
        return list(chosen)
    names = ["curves_png"]
    if show_dashboard and in_notebook_kernel():
        names.append("dashboard")
    return names


def load_hook_factories(names: list[str], explicit: bool) -> list[HookFactory]:
    """The factories of `names`, in that order. A name that no installed package provides is an error when it was
    asked for explicitly, and skipped when it is a default (e.g. xtuner_nb installed without the notebook extra)."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    missing = [n for n in names if n not in found]
    if missing and explicit:
        raise ValueError(f"default_hooks: {missing} not found in the {ENTRY_POINT_GROUP!r} entry points "
                         f"(installed: {sorted(found)}); reinstall xtuner_nb (pip install -e .) if it is one of ours")
    return [found[n].load() for n in names if n in found]


def plot_history_function() -> Callable[[Any], Any]:
    """`trainer.plot()` draws with the notebook layer's `plot_history`, found as the entry point `plot_history` of
    the `xtuner_nb.views` group (so train code never imports it)."""
    found = {ep.name: ep for ep in entry_points(group="xtuner_nb.views")}
    if "plot_history" not in found:
        raise RuntimeError("trainer.plot() needs xtuner_nb's notebook layer (pip install 'xtuner_nb[notebook]'); "
                           "trainer.history is a pandas DataFrame you can plot yourself")
    return found["plot_history"].load()
