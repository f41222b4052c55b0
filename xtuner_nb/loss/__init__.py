"""Losses: `from xtuner_nb.loss import CELossConfig, BaseLossConfig, BaseLossContext, loss_weights, lm_loss`.

The configs import only pydantic; the tensor code is imported on first use (PEP 562).
"""

from .._lazy import lazy_attributes
from .config import BaseLossConfig, CELossConfig

_LAZY = {"lm_loss": ".ce", "loss_weights": ".ce", "BaseLossKwargs": ".base_loss_ctx",
         "BaseLossContext": ".base_loss_ctx", "CELossKwargs": ".ce_loss", "LMHeadLossContext": ".ce_loss",
         "CELossContext": ".ce_loss"}

__all__ = ["BaseLossConfig", "CELossConfig", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
