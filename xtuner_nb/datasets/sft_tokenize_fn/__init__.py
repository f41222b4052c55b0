"""XTuner v1's module path `xtuner.v1.datasets.sft_tokenize_fn` (re-exports; the code is in `datasets/tokenize_fn.py`)."""

from .openai import OpenaiTokenizeFunction, OpenaiTokenizeFunctionConfig

__all__ = ["OpenaiTokenizeFunction", "OpenaiTokenizeFunctionConfig"]
