"""Dense decoder models (Qwen3, Qwen2/Qwen2.5, Llama): XTuner-named configs, transformers' own modules, HF-format
load/save, packed attention, and pretrained checkpoints (`model_config_from_hf`, `fetch_pretrained`).

The configs import only pydantic; the functions below import torch/transformers on first use (PEP 562), so that
config forms and `xtuner_nb.config` stay quick to import.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

from ..module.attention.mha import MHAConfig
from ..module.rope.rope import RopeParametersConfig
from .base import DECODER_LINEAR_MODULES, HFSaveCfg, TransformerConfig
from .dense.qwen3 import (Qwen3_8BConfig, Qwen3Dense0P6BConfig, Qwen3Dense1P7BConfig, Qwen3Dense4BConfig,
                          Qwen3Dense8BConfig, Qwen3Dense14BConfig, Qwen3Dense32BConfig, Qwen3DenseConfig,
                          Qwen3DenseTinyConfig, build_qwen3)
from .dense.qwen2 import (Qwen2Dense0P5BConfig, Qwen2Dense1P5BConfig, Qwen2Dense7BConfig, Qwen2DenseConfig,
                          Qwen2DenseTinyConfig)
from .dense.llama import (Llama3P1Dense8BConfig, Llama3P2Dense1BConfig, Llama3P2Dense3BConfig, LlamaDenseConfig,
                          LlamaDenseTinyConfig, SmolLM2Dense135MConfig, SmolLM2Dense360MConfig, TinyLlamaDense1P1BConfig)
from .lora import LoRAConfig
from .registry import (HF_CONFIG_JSON_DIFFS, MODEL_PRESETS, MODEL_TYPES, get_model_config, get_model_config_from_hf,
                       model_config_from_hf)

if TYPE_CHECKING:
    from .attention import VARLEN_IMPL, register_varlen_attention
    from .gguf_export import GGUF_OUTTYPES, GGUFExportError, export_gguf
    from .hf_load import LoadReport, load_hf_weights
    from .hf_save import save_hf
    from .hub import resolve_pretrained
    from .pretrained import fetch_pretrained
    from .tiny import make_tiny_checkpoint
    from .tokenizer import make_tiny_tokenizer

_LAZY = {
    "load_hf_weights": ".hf_load", "save_hf": ".hf_save", "LoadReport": ".hf_load",
    "make_tiny_checkpoint": ".tiny", "make_tiny_tokenizer": ".tokenizer",
    "VARLEN_IMPL": ".attention", "register_varlen_attention": ".attention",
    "fetch_pretrained": ".pretrained", "resolve_pretrained": ".hub",
    "export_gguf": ".gguf_export", "GGUFExportError": ".gguf_export", "GGUF_OUTTYPES": ".gguf_export",
}

__all__ = ["MHAConfig", "TransformerConfig", "Qwen3DenseConfig", "Qwen3Dense0P6BConfig", "Qwen3Dense1P7BConfig",
           "Qwen3Dense4BConfig", "Qwen3Dense8BConfig", "Qwen3Dense14BConfig", "Qwen3Dense32BConfig",
           "Qwen3DenseTinyConfig", "Qwen3_8BConfig", "Qwen2DenseConfig", "Qwen2DenseTinyConfig",
           "Qwen2Dense0P5BConfig", "Qwen2Dense1P5BConfig", "Qwen2Dense7BConfig", "LlamaDenseConfig",
           "LlamaDenseTinyConfig", "SmolLM2Dense135MConfig", "SmolLM2Dense360MConfig", "TinyLlamaDense1P1BConfig",
           "Llama3P2Dense1BConfig", "Llama3P2Dense3BConfig", "Llama3P1Dense8BConfig", "MODEL_PRESETS", "MODEL_TYPES",
           "get_model_config", "model_config_from_hf", "get_model_config_from_hf", "LoRAConfig",
           "DECODER_LINEAR_MODULES", "HFSaveCfg", "RopeParametersConfig",
           "HF_CONFIG_JSON_DIFFS", "build_qwen3", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
