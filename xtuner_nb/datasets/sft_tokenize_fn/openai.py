"""XTuner v1's module path `xtuner.v1.datasets.sft_tokenize_fn.openai` (a re-export)."""

from ..tokenize_fn import OpenaiTokenizeFunction, OpenaiTokenizeFunctionConfig

__all__ = ["OpenaiTokenizeFunction", "OpenaiTokenizeFunctionConfig"]
