"""Causal-LM cross-entropy: `from xtuner_nb.loss import CELossConfig`."""

from .config import CELossConfig

__all__ = ["CELossConfig"]
