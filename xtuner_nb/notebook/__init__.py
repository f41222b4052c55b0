"""Everything a notebook shows: config forms, the live dashboard, curves, data/label viewer, chat preview, memory fit.

Names are imported lazily, so `from xtuner_nb.notebook.plots import save_curves_png` (what a script or torchrun
run needs) never pulls in ipywidgets or IPython.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "config_form": "forms", "ConfigForm": "forms", "ConfigFormError": "forms",
    "LiveDashboard": "dashboard", "auto_dashboard": "dashboard",
    "plot_history": "plots", "save_curves_png": "plots", "compare_runs": "plots", "load_tracker": "plots",
    "show_tokens": "viewer", "length_histogram": "viewer", "pack_stats_table": "viewer", "show_dataset": "data_view", "compare_templates": "data_view",
    # the module is not named `chat`: importing it would make `xtuner_nb.notebook.chat` the module, not the function
    "chat": "chat_preview", "answers": "chat_preview", "compare_answers": "chat_preview",
    "clear_chat_cache": "chat_preview",
    "generations_html": "eval_view", "generations_frame": "eval_view", "in_notebook_kernel": "dashboard",
    "show_preflight": "preflight_view",
    "estimate_memory": "memory", "show_fit": "memory", "MemoryEstimate": "memory", "GPUS": "memory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xtuner_nb.notebook' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return __all__
