"""`xtuner-nb notebooks [DIR]` and `xtuner-nb env`: the two commands that come before any training.

`notebooks` copies the tutorials shipped in the package into a folder and says how to open them with this Python's
kernel; `env` prints `xtuner_nb.env_report()`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ...tutorials import LANGS, copy_tutorials


def add_commands(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("notebooks", help="copy the tutorial notebooks into a folder and say how to open them")
    n.add_argument("dir", nargs="?", type=Path, default=Path("xtuner_nb_tutorials"),
                   help="where to put them (default: ./xtuner_nb_tutorials)")
    n.add_argument("--lang", choices=LANGS, default="en", help="en (default) or zh_cn")
    n.add_argument("--force", action="store_true", help="replace notebooks you have edited there")
    n.set_defaults(run=run_notebooks)
    e = sub.add_parser("env", help="what this Python has for training: torch, GPU, precision, attention, widgets")
    e.add_argument("--checkpoint", type=Path, help="also check that this model folder is readable")
    e.set_defaults(run=run_env)


def run_notebooks(args: argparse.Namespace) -> int:
    copied = copy_tutorials(args.dir, args.lang, overwrite=args.force)
    nb_dir = copied.dest / "notebooks" / copied.lang
    print(f"{len(copied.notebooks)} notebooks ({copied.lang}) in {nb_dir}, "
          f"with the {len(copied.pages)} pages they are made from in {copied.dest / 'docs' / copied.lang}")
    for path in copied.kept:
        print(f"  kept your edited {path} (--force replaces it)")
    first = nb_dir / "01_quickstart.ipynb"
    print(f"\nOpen {first.name} first, in a kernel running this Python ({sys.executable}):")
    if importlib.util.find_spec("jupyterlab") is not None:
        print(f"  JupyterLab:  {sys.executable} -m jupyterlab {first}")
    else:
        print("  JupyterLab:  not installed in this Python (pip install jupyterlab), or open the folder in any Jupyter")
    print(f"  VS Code:     code {copied.dest}, open {first.relative_to(copied.dest)}, "
          f"Select Kernel -> {sys.executable}")
    print("  Colab, Kaggle, JupyterHub: upload or open the .ipynb there; its first cell checks that xtuner_nb is "
          "installed in that kernel and prints the %pip line if not")
    return 0


def run_env(args: argparse.Namespace) -> int:
    from ...env import env_report

    report = env_report(args.checkpoint)
    print(report)
    return 1 if report.problems else 0
