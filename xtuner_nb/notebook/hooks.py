"""The notebook layer's hooks for the Trainer, found through the `xtuner_nb.hooks` entry points (pyproject.toml).

`xtuner_nb.train.hooks.builtin` picks them by name when a Trainer is built; this module is imported only then.
Each factory takes the Trainer and returns a `Hook`, or None when it has nothing to do in this process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..train.hooks.events import Hook


def dashboard(trainer: Any):
    """The live dashboard of every fit() inside a Jupyter kernel (None elsewhere, or without ipywidgets)."""
    try:
        from .dashboard import auto_dashboard

        return auto_dashboard(trainer)  # imports ipywidgets when it makes a dashboard
    except ImportError:  # notebook extras not installed: plain log lines only
        return None


class CurvesPng(Hook):
    """`<log_dir>/curves.png` when a fit ends, outside a notebook too, drawn from the run's metrics rows.

    The figure is made and drawn once when the hook is, before the Trainer's fit check measures the process, so the
    one-off costs of matplotlib (its import, fonts, text layout) are counted there and not paid at the end of a run.
    """

    def __init__(self, log_dir: Path):
        from .plots import CurvesFigure

        self.path = Path(log_dir) / "curves.png"
        self.figure = CurvesFigure(dpi=100).warm_up()

    def on_fit_end(self, state, reason, control):
        if state.history:
            from .plots import save_curves_png

            save_curves_png(state.history, self.path, figure=self.figure)


def curves_png(trainer: Any):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    return CurvesPng(trainer.log_dir)
