"""Qwen3 dense models: XTuner-named configs, transformers' Qwen3 module, HF-format load/save, packed attention.

The configs import only pydantic; the functions below import torch/transformers on first use (PEP 562), so that
config forms and `xtuner_nb.config` stay quick to import.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from .config import (MODEL_PRESETS, MHAConfig, Qwen3_8BConfig, Qwen3Dense0P6BConfig, Qwen3Dense1P7BConfig,
                     Qwen3Dense4BConfig, Qwen3Dense8BConfig, Qwen3Dense14BConfig, Qwen3Dense32BConfig,
                     Qwen3DenseConfig, Qwen3DenseTinyConfig, get_model_config)
from .lora import QWEN3_LINEAR_MODULES, LoRAConfig

if TYPE_CHECKING:
    from .attention import VARLEN_IMPL, register_varlen_attention
    from .hf_load import LoadReport, load_hf_weights
    from .hf_save import save_hf
    from .qwen3 import build_qwen3
    from .tiny import make_tiny_checkpoint
    from .tokenizer import make_tiny_tokenizer

_LAZY = {
    "build_qwen3": ".qwen3", "load_hf_weights": ".hf_load", "save_hf": ".hf_save", "LoadReport": ".hf_load",
    "make_tiny_checkpoint": ".tiny", "make_tiny_tokenizer": ".tokenizer",
    "VARLEN_IMPL": ".attention", "register_varlen_attention": ".attention",
}

__all__ = ["MHAConfig", "Qwen3DenseConfig", "Qwen3Dense0P6BConfig", "Qwen3Dense1P7BConfig", "Qwen3Dense4BConfig",
           "Qwen3Dense8BConfig", "Qwen3Dense14BConfig", "Qwen3Dense32BConfig", "Qwen3DenseTinyConfig",
           "Qwen3_8BConfig", "MODEL_PRESETS", "get_model_config", "LoRAConfig", "QWEN3_LINEAR_MODULES", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
