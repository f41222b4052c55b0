"""XTuner v1's `xtuner.v1.module.attention`: `MHAConfig` (a re-export of `xtuner_nb.model.config.MHAConfig`)."""

from ...model.config import MHAConfig

__all__ = ["MHAConfig"]
