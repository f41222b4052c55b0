"""xtuner_nb: the XTuner v1 SFT Trainer API, runnable inside a Jupyter kernel (GPU bf16 or CPU) and under torchrun.

Public layout mirrors `xtuner.v1.*`: `xtuner_nb.model`, `xtuner_nb.config`, `xtuner_nb.datasets`, `xtuner_nb.loss`,
`xtuner_nb.train`; `xtuner_nb.notebook` holds every widget and plot.
"""

__version__ = "0.1.0"


def _notebook_dashboard_factory(trainer):
    """Give every fit() inside a Jupyter kernel a live dashboard, without `xtuner_nb.train` importing UI code."""
    import sys

    if "ipykernel" not in sys.modules or not getattr(trainer, "show_dashboard", True):
        return None
    try:
        from IPython import get_ipython

        if get_ipython() is None or "IPKernelApp" not in get_ipython().config:
            return None
        from .notebook.dashboard import auto_dashboard
    except ImportError:  # notebook extras not installed: plain log lines only
        return None
    return auto_dashboard(trainer)


def _curves_png_factory(trainer):
    """Outside a notebook too: write `<log_dir>/curves.png` when a fit ends (needs matplotlib, else nothing)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from .train.events import Hook

    class CurvesPng(Hook):
        def on_fit_end(self, state, reason, control):
            if state.history:
                from .notebook.plots import save_curves_png

                save_curves_png(trainer.history, trainer.log_dir / "curves.png")

    return CurvesPng()


def _register_default_hooks() -> None:
    from .train.events import DEFAULT_HOOK_FACTORIES

    for factory in (_notebook_dashboard_factory, _curves_png_factory):
        if factory not in DEFAULT_HOOK_FACTORIES:
            DEFAULT_HOOK_FACTORIES.append(factory)


_register_default_hooks()
