"""Configs shared by the training parts: `from xtuner_nb.config import AdamWConfig, LRConfig, FSDPConfig`."""

from .base import XConfig
from .fsdp import FSDPConfig
from .optim import AdamWConfig, LRConfig

__all__ = ["XConfig", "AdamWConfig", "LRConfig", "FSDPConfig"]
