"""Losses: `from xtuner_nb.loss import CELossConfig, BaseLossConfig, BaseLossContext, loss_weights, lm_loss`.

`config.py`: the configs (pydantic only); `ce.py`: the cross-entropy and its weights; `context.py`: XTuner's loss
contexts, which the configs build; `base_loss_ctx.py` and `ce_loss.py` are XTuner's module paths (re-exports). The
tensor code is imported on first use (PEP 562).
"""

from .._lazy import lazy_attributes
from .config import BaseLossConfig, CELossConfig

_LAZY = {"lm_loss": ".ce", "loss_weights": ".ce", "global_denominator": ".ce", "BaseLossKwargs": ".context", "BaseLossContext": ".context",
         "CELossKwargs": ".context", "CELossContextInputItem": ".context", "LMHeadLossContext": ".context",
         "CELossContext": ".context"}

__all__ = ["BaseLossConfig", "CELossConfig", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
