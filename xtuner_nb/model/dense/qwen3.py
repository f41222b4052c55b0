"""XTuner v1's module path `xtuner.v1.model.dense.qwen3` (a re-export; the configs are in `model/config.py`)."""

from ..config import Qwen3Dense0P6BConfig, Qwen3Dense4BConfig, Qwen3Dense8BConfig, Qwen3DenseConfig

__all__ = ["Qwen3DenseConfig", "Qwen3Dense0P6BConfig", "Qwen3Dense4BConfig", "Qwen3Dense8BConfig"]
