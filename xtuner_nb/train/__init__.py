"""Training: `from xtuner_nb.train import Trainer, TrainerConfig`.

Imported lazily so that `xtuner_nb.train.hooks.events` (which the notebook layer uses) stays light.
"""

from importlib import import_module

from .hooks.events import Control, Hook, TrainState

__all__ = ["Trainer", "TrainerConfig", "LoadCheckpointConfig", "ResumeConfig", "HooksConfig", "UTF8ByteTokenizer",
           "Hook", "Control", "TrainState", "launch", "alaunch", "Launch", "LaunchError"]

_LAZY = {"Trainer": ".trainer", "TrainerConfig": ".config", "LoadCheckpointConfig": ".config",
         "ResumeConfig": ".config", "HooksConfig": ".config", "UTF8ByteTokenizer": ".toy_tokenizer",
         "launch": ".launcher", "alaunch": ".launcher", "Launch": ".launcher", "LaunchError": ".launch_failure"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'xtuner_nb.train' has no attribute {name!r}")
