"""The `xtuner-nb` command line (XTuner's `xtuner.v1.train.cli`): `python -m xtuner_nb.train.cli sft ...`."""

from .main import build_parser, main
from .sft import config_from_args

__all__ = ["main", "build_parser", "config_from_args"]
