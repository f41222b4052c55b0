"""XTuner v1's `xtuner.v1.module.rope`: `RopeParametersConfig` (a re-export from `xtuner_nb.model.config`)."""

from ...model.config import RopeParametersConfig

__all__ = ["RopeParametersConfig"]
