"""XTuner v1's `xtuner.v1.module.attention`: `MHAConfig`."""

from .mha import MHAConfig

__all__ = ["MHAConfig"]
