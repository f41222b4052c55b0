"""XTuner v1's module path `xtuner.v1.module.attention.mha` (a re-export)."""

from ...model.config import MHAConfig

__all__ = ["MHAConfig"]
