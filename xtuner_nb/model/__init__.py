"""Qwen3 dense models: XTuner-named configs, transformers' Qwen3 module, HF-format load/save, packed attention."""

from .config import (MODEL_PRESETS, MHAConfig, Qwen3_8BConfig, Qwen3Dense0P6BConfig, Qwen3Dense1P7BConfig,
                     Qwen3Dense4BConfig, Qwen3Dense8BConfig, Qwen3Dense14BConfig, Qwen3Dense32BConfig,
                     Qwen3DenseConfig, Qwen3DenseTinyConfig, get_model_config)

__all__ = ["MHAConfig", "Qwen3DenseConfig", "Qwen3Dense0P6BConfig", "Qwen3Dense1P7BConfig", "Qwen3Dense4BConfig",
           "Qwen3Dense8BConfig", "Qwen3Dense14BConfig", "Qwen3Dense32BConfig", "Qwen3DenseTinyConfig",
           "Qwen3_8BConfig", "MODEL_PRESETS", "get_model_config"]
