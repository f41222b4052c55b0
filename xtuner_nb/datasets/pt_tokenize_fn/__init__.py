"""XTuner v1's module path `xtuner.v1.datasets.pt_tokenize_fn` (re-exports; the code is in `datasets/tokenize_fn.py`)."""

from .text import PretrainTokenizeFunction, PretrainTokenizeFunctionConfig

__all__ = ["PretrainTokenizeFunction", "PretrainTokenizeFunctionConfig"]
