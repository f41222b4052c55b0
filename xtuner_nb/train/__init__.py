"""Training: `from xtuner_nb.train import Trainer, TrainerConfig`.

Imported lazily so that `xtuner_nb.train.events` (which the notebook layer and the package root use) stays light.
"""

from .events import Control, Hook, TrainState

__all__ = ["Trainer", "TrainerConfig", "LoadCheckpointConfig", "Hook", "Control", "TrainState"]


def __getattr__(name: str):
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    if name in ("TrainerConfig", "LoadCheckpointConfig"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'xtuner_nb.train' has no attribute {name!r}")
