"""Causal-LM cross-entropy: `from xtuner_nb.loss import CELossConfig, loss_weights, lm_loss`."""

from .ce import lm_loss, loss_weights
from .config import CELossConfig

__all__ = ["CELossConfig", "loss_weights", "lm_loss"]
