"""Every named model: `MODEL_PRESETS` (name -> preset class), `get_model_config(name)` (XTuner's name matching),
`model_config_from_hf(path)` (the class `config.json`'s `model_type` names), `MODEL_TYPES` and `presets_for(cls)`.

The classes live at XTuner's module paths, one file per architecture (`model/dense/qwen3.py`, `qwen2.py`,
`llama.py`); this module only names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import TransformerConfig, architectures
# Qwen3 first, then Qwen2, then Llama: the order of MODEL_TYPES (see base.architectures)
from .dense.qwen3 import (Qwen3Dense0P6BConfig, Qwen3Dense1P7BConfig, Qwen3Dense4BConfig, Qwen3Dense8BConfig,
                          Qwen3Dense14BConfig, Qwen3Dense32BConfig, Qwen3DenseTinyConfig)
from .dense.qwen2 import Qwen2Dense0P5BConfig, Qwen2Dense1P5BConfig, Qwen2Dense7BConfig, Qwen2DenseTinyConfig
from .dense.llama import (Llama3P1Dense8BConfig, Llama3P2Dense1BConfig, Llama3P2Dense3BConfig, LlamaDenseTinyConfig,
                          SmolLM2Dense135MConfig, SmolLM2Dense360MConfig, TinyLlamaDense1P1BConfig)

# every named preset, by architecture (the order of a form's preset menu)
MODEL_PRESETS: dict[str, type[TransformerConfig]] = {
    "qwen3-tiny": Qwen3DenseTinyConfig,
    "qwen3-0.6B": Qwen3Dense0P6BConfig,
    "qwen3-1.7B": Qwen3Dense1P7BConfig,
    "qwen3-4B": Qwen3Dense4BConfig,
    "qwen3-8B": Qwen3Dense8BConfig,
    "qwen3-14B": Qwen3Dense14BConfig,
    "qwen3-32B": Qwen3Dense32BConfig,
    "qwen2-tiny": Qwen2DenseTinyConfig,
    "qwen2.5-0.5B": Qwen2Dense0P5BConfig,
    "qwen2.5-1.5B": Qwen2Dense1P5BConfig,
    "qwen2.5-7B": Qwen2Dense7BConfig,
    "llama-tiny": LlamaDenseTinyConfig,
    "smollm2-135M": SmolLM2Dense135MConfig,
    "smollm2-360M": SmolLM2Dense360MConfig,
    "tinyllama-1.1B": TinyLlamaDense1P1BConfig,
    "llama3.2-1B": Llama3P2Dense1BConfig,
    "llama3.2-3B": Llama3P2Dense3BConfig,
    "llama3.1-8B": Llama3P1Dense8BConfig,
}

# Where XTuner's preset differs from the model's own HF config.json: the HF values (the comments above each preset
# in model/dense/qwen3.py say why).
HF_CONFIG_JSON_DIFFS: dict[str, dict[str, Any]] = {
    "qwen3-0.6B": {"tie_word_embeddings": True},
    "qwen3-4B": {"max_position_embeddings": 40960, "rope_theta": 1e6},
    "qwen3-8B": {"attention.sliding_window": None},
}

# config.json's model_type -> our config class
MODEL_TYPES: dict[str, type[TransformerConfig]] = architectures()

# XTuner's get_model_config names that are not dense models here (MoE, vision-language, GPT-OSS, GLM)
XTUNER_ONLY_PRESETS = ("qwen3-moe-30BA3", "intern-s1", "intern-s1-mini", "gpt-oss-20b", "gpt-oss-120b",
                       "internvl-3.5-8b-hf", "internvl-3.5-1b-hf", "internvl-3.5-30b-a3b-hf", "qwen3.5-vl-4b", "glm-5.2")


def _alias_key(name: str) -> str:
    return name.lower().replace("-", "_")  # XTuner's matching: case-insensitive, '-' and '_' alike


def get_model_config(name: str, **overrides: Any) -> TransformerConfig:
    """A preset by name, matched as XTuner does (`qwen3-8B`, `Qwen3_8b`, ...); keyword overrides go to the preset."""
    presets = {_alias_key(k): v for k, v in MODEL_PRESETS.items()}
    if _alias_key(name) in presets:
        return presets[_alias_key(name)](**overrides)
    if _alias_key(name) in {_alias_key(k) for k in XTUNER_ONLY_PRESETS}:
        raise ValueError(f"model preset {name!r} exists in XTuner but is not a dense model supported here (MoE, "
                         f"vision-language and other architectures are not supported by xtuner_nb); "
                         f"choose one of {sorted(MODEL_PRESETS)}")
    raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(MODEL_PRESETS)}")


def model_config_from_hf(path: str | Path, **overrides: Any) -> TransformerConfig:
    """The config of an HF checkpoint (a local folder, or a hub id such as "Qwen/Qwen3-0.6B" when a hub is
    reachable or cached), as the class its `config.json` `model_type` names: Qwen3/Qwen2/Llama dense."""
    return TransformerConfig.from_hf(path, **overrides)


get_model_config_from_hf = model_config_from_hf  # XTuner v1's name


def presets_for(cls: type) -> dict[str, type[TransformerConfig]]:
    """The presets of the architecture `cls` belongs to (what a form's preset menu may swap to)."""
    family = next((c for c in MODEL_TYPES.values() if isinstance(cls, type) and issubclass(cls, c)), None)
    return {n: c for n, c in MODEL_PRESETS.items() if family is not None and issubclass(c, family)}
