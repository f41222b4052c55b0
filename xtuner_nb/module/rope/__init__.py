"""XTuner v1's `xtuner.v1.module.rope`: `RopeParametersConfig`."""

from .rope import RopeParametersConfig

__all__ = ["RopeParametersConfig"]
