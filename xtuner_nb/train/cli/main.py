"""`xtuner-nb`: the command line. `notebooks` and `env` come before any training (`start.py`), `sft` trains with
XTuner's flags (`sft.py`, also under torchrun), `export-gguf` converts an HF export (`export_gguf.py`)."""

from __future__ import annotations

import argparse

from .export_gguf import add_export_gguf_parser
from .sft import add_sft_parser
from .start import add_commands as add_start_commands


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xtuner-nb", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add_start_commands(sub)
    add_sft_parser(sub)
    add_export_gguf_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)

