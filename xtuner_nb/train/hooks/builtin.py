"""Which hooks a run gets, decided once, when the Trainer is built (`resolve_hooks` -> `trainer.hooks`).

In this order: the hooks given to `Trainer(hooks=[...])`; the hooks behind XTuner's TrainerConfig fields
(`profile_step` -> `StepProfiler`, `exp_tracker="tensorboard"` -> `TensorBoardHook`, `hooks_config` ->
`XTunerHooks`); then the default hooks, found by name in the `xtuner_nb.hooks` entry-point group (pyproject.toml),
so that `xtuner_nb.train` never imports the notebook layer:

    curves_png   <log_dir>/curves.png when a fit ends (xtuner_nb.notebook.hooks, needs matplotlib)
    dashboard    the live dashboard in a Jupyter kernel (xtuner_nb.notebook.hooks, needs ipywidgets)

`TrainerConfig.default_hooks=None` picks `curves_png`, plus `dashboard` inside a Jupyter kernel;
`default_hooks=[]` turns them all off; a list of names picks exactly those (an unknown name is an error).
Another package can add a hook the same way: an entry point `name = "module:factory"`, where
`factory(trainer) -> Hook | None`; a default hook is left out when a hook of its class was given. Importing the
package registers nothing.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable

from ..logs import in_notebook_kernel
from .events import Hook

ENTRY_POINT_GROUP = "xtuner_nb.hooks"
HookFactory = Callable[[Any], "Hook | None"]


def resolve_hooks(trainer: Any, given: list[Hook] | None) -> list[Hook]:
    """Every hook of this Trainer's runs on this rank (hooks with `main_process_only` run on rank 0 only)."""
    cfg = trainer.config
    hooks = list(given or [])
    if cfg.profile_step:
        from .profiler import StepProfiler

        hooks.append(StepProfiler(trainer.exp_dir, cfg.profile_step, cfg.profile_time, cfg.profile_memory,
                                  trainer.dist.rank))
    if cfg.exp_tracker == "tensorboard":
        from .tensorboard import TensorBoardHook

        hooks.append(TensorBoardHook(trainer.log_dir / "exp_tracking" / f"rank{trainer.dist.rank}"))
    if cfg.hooks_config.all_hooks():
        from .xtuner import XTunerHooks

        hooks.append(XTunerHooks(trainer, cfg.hooks_config))
    names = default_hook_names(cfg.default_hooks, trainer.show_dashboard)
    for factory in load_hook_factories(names, explicit=cfg.default_hooks is not None):
        hook = factory(trainer)
        if hook is not None and not any(isinstance(h, type(hook)) for h in hooks):  # yours replaces the default
            hooks.append(hook)
    return [h for h in hooks if trainer.dist.is_main or not getattr(h, "main_process_only", True)]


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
