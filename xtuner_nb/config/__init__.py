"""Configs shared by the training parts: `from xtuner_nb.config import AdamWConfig, LRConfig, FSDPConfig`."""

from .base import XConfig
from .fsdp import FSDPConfig
from .optim import AdamWConfig, LRConfig, MuonConfig, OptimConfig

__all__ = ["XConfig", "OptimConfig", "AdamWConfig", "MuonConfig", "LRConfig", "FSDPConfig"]
