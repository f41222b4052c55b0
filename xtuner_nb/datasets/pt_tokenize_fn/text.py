"""XTuner v1's module path `xtuner.v1.datasets.pt_tokenize_fn.text` (a re-export)."""

from ..tokenize_fn import PretrainTokenizeFunction, PretrainTokenizeFunctionConfig

__all__ = ["PretrainTokenizeFunction", "PretrainTokenizeFunctionConfig"]
