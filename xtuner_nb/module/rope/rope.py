"""XTuner v1's module path `xtuner.v1.module.rope.rope` (a re-export)."""

from ...model.config import RopeParametersConfig

__all__ = ["RopeParametersConfig"]
