"""xtuner_nb: the XTuner v1 SFT Trainer API, runnable inside a Jupyter kernel (GPU bf16 or CPU) and under torchrun.

Public layout mirrors `xtuner.v1.*`: `xtuner_nb.model`, `xtuner_nb.config`, `xtuner_nb.datasets`, `xtuner_nb.loss`,
`xtuner_nb.train`; `xtuner_nb.notebook` holds every widget and plot. Importing the package has no side effects: the
hooks a Trainer adds by itself (the notebook dashboard, curves.png) are chosen when it is built
(`xtuner_nb.train.hooks.builtin`). `xtuner_nb.env_report()` says what this kernel has for training (torch, GPU,
precision, attention kernel, widgets) and how to fix what is missing.
"""

# The one version: pyproject reads it, and every tutorial notebook's first cell checks it (tools/build_notebooks.py).
__version__ = "0.1.0"

from .env import env_report  # noqa: E402  (a plain function: torch is imported when it is called)
