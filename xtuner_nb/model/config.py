"""Qwen3 dense model configs with XTuner v1 names and size presets copied from the published HF `config.json`s, and
the registry of every architecture: `MODEL_PRESETS`, `get_model_config(name)`, `model_config_from_hf(path)`.

A preset is a subclass that only changes defaults, so any field stays overridable:
`Qwen3Dense8BConfig(num_hidden_layers=16)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from .base import MHAConfig, RopeParametersConfig, TinyShape, TransformerConfig, mha as _mha
from .llama import LLAMA_PRESETS, LlamaDenseConfig
from .qwen2 import QWEN2_PRESETS, Qwen2DenseConfig

if TYPE_CHECKING:
    from transformers import PretrainedConfig


class Qwen3DenseConfig(TransformerConfig):
    """transformers' `Qwen3ForCausalLM`: q/k RMSNorm per head, one `attention_bias` for q/k/v/o."""

    model_type = "qwen3"
    hf_config_class = "Qwen3Config"
    hf_model_class = "Qwen3ForCausalLM"
    extra_eos_is_bos = True  # Qwen3's own generation_config stops at <|endoftext|> too

    def _hf_fields(self) -> dict[str, Any]:
        a = self.attention
        return dict(attention_bias=a.qkv_bias, use_sliding_window=False, sliding_window=a.hf_sliding_window,
                    max_window_layers=self.max_window_layers or self.num_hidden_layers)

    @classmethod
    def _fields_from_hf(cls, hf: "PretrainedConfig") -> dict[str, Any]:
        return {"attention": cls._mha_from_hf(hf), "max_window_layers": getattr(hf, "max_window_layers", None)}

    def _check_representable(self) -> None:
        a = self.attention
        if not a.qk_norm:
            raise ValueError("attention.qk_norm=False: transformers' Qwen3 always has q_norm/k_norm")
        if a.o_bias != a.qkv_bias:
            raise ValueError(f"attention.o_bias={a.o_bias} with qkv_bias={a.qkv_bias}: transformers' Qwen3 uses one "
                             "`attention_bias` for q/k/v/o, so they must be equal")
        super()._check_representable()


def _rope(theta: float) -> Any:
    return Field(default_factory=lambda: RopeParametersConfig(rope_theta=theta))


# XTuner's preset (xtuner/v1/model/dense/qwen3.py); https://huggingface.co/Qwen/Qwen3-0.6B/blob/main/config.json
# differs: tie_word_embeddings true there, False in XTuner (its comment: "官方的是 False"). XTuner's value is kept so
# that configs behave as in XTuner; Qwen3DenseConfig.from_hf(path) reads the checkpoint's own value.
class Qwen3Dense0P6BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 28
    max_window_layers: int | None = 28
    hidden_size: int = 1024
    intermediate_size: int = 3072
    attention: MHAConfig = _mha(16, sliding_window=None)
    tie_word_embeddings: bool = False


# https://huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json (XTuner has no 1.7B preset)
class Qwen3Dense1P7BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 28
    max_window_layers: int | None = 28
    hidden_size: int = 2048
    intermediate_size: int = 6144
    attention: MHAConfig = _mha(16, sliding_window=None)
    tie_word_embeddings: bool = True


# XTuner's preset; https://huggingface.co/Qwen/Qwen3-4B/blob/main/config.json differs: max_position_embeddings
# 40960 and rope_theta 1e6 there; XTuner uses 262144 and 5e6 (the values of Qwen3-4B-Instruct-2507's config.json).
class Qwen3Dense4BConfig(Qwen3DenseConfig):
    max_position_embeddings: int = 262144
    num_hidden_layers: int = 36
    max_window_layers: int | None = 36
    hidden_size: int = 2560
    intermediate_size: int = 9728
    rope_theta: float = 5e6
    rope_parameters_cfg: RopeParametersConfig | None = _rope(5e6)
    attention: MHAConfig = _mha(32, sliding_window=1024)
    tie_word_embeddings: bool = True


# XTuner's preset; https://huggingface.co/Qwen/Qwen3-8B/blob/main/config.json has sliding_window null where XTuner
# writes 1024 (unused either way: use_sliding_window is false).
class Qwen3Dense8BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 36
    max_window_layers: int | None = 36
    hidden_size: int = 4096
    intermediate_size: int = 12288
    attention: MHAConfig = _mha(32, sliding_window=1024)
    tie_word_embeddings: bool = False


# https://huggingface.co/Qwen/Qwen3-14B/blob/main/config.json (XTuner has no 14B preset)
class Qwen3Dense14BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 40
    max_window_layers: int | None = 40
    hidden_size: int = 5120
    intermediate_size: int = 17408
    attention: MHAConfig = _mha(40, sliding_window=None)
    tie_word_embeddings: bool = False


# https://huggingface.co/Qwen/Qwen3-32B/blob/main/config.json (XTuner has no 32B preset)
class Qwen3Dense32BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 64
    max_window_layers: int | None = 64
    hidden_size: int = 5120
    intermediate_size: int = 25600
    attention: MHAConfig = _mha(64, sliding_window=None)
    tie_word_embeddings: bool = False


# Where XTuner's preset differs from the model's own HF config.json: the HF values (see the comments above).
HF_CONFIG_JSON_DIFFS: dict[str, dict[str, Any]] = {
    "qwen3-0.6B": {"tie_word_embeddings": True},
    "qwen3-4B": {"max_position_embeddings": 40960, "rope_theta": 1e6},
    "qwen3-8B": {"attention.sliding_window": None},
}


# Tiny shape for tests and the CPU tutorials (see base.TinyShape)
class Qwen3DenseTinyConfig(TinyShape, Qwen3DenseConfig):
    max_window_layers: int | None = 4
    attention: MHAConfig = _mha(4, kv=2, head_dim=32)


Qwen3_8BConfig = Qwen3Dense8BConfig  # the name used by XTuner's Trainer tutorial page

QWEN3_PRESETS: dict[str, type[Qwen3DenseConfig]] = {
    "qwen3-tiny": Qwen3DenseTinyConfig,
    "qwen3-0.6B": Qwen3Dense0P6BConfig,
    "qwen3-1.7B": Qwen3Dense1P7BConfig,
    "qwen3-4B": Qwen3Dense4BConfig,
    "qwen3-8B": Qwen3Dense8BConfig,
    "qwen3-14B": Qwen3Dense14BConfig,
    "qwen3-32B": Qwen3Dense32BConfig,
}

# every named preset, by architecture
MODEL_PRESETS: dict[str, type[TransformerConfig]] = {**QWEN3_PRESETS, **QWEN2_PRESETS, **LLAMA_PRESETS}

# config.json's model_type -> our config class
MODEL_TYPES: dict[str, type[TransformerConfig]] = {
    cls.model_type: cls for cls in (Qwen3DenseConfig, Qwen2DenseConfig, LlamaDenseConfig)}


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


def config_class_for(model_type: str, where: str = "config.json") -> type[TransformerConfig]:
    """Our config class for an HF `model_type`; a clear error listing what is supported otherwise."""
    try:
        return MODEL_TYPES[model_type]
    except KeyError:
        supported = ", ".join(f"{t!r} ({c.__name__})" for t, c in MODEL_TYPES.items())
        raise ValueError(f"{where}: model_type {model_type!r} is not supported; supported dense architectures: "
                         f"{supported}") from None


def model_config_from_hf(path: str | Path, **overrides: Any) -> TransformerConfig:
    """The config of an HF checkpoint (a local folder, or a hub id such as "Qwen/Qwen3-0.6B" when a hub is
    reachable or cached), as the class its `config.json` `model_type` names: Qwen3/Qwen2/Llama dense."""
    from .pretrained import resolve_pretrained

    folder = resolve_pretrained(path, config_only=True)
    config_json = folder / "config.json"
    if not config_json.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected a Hugging Face model folder)")
    model_type = json.loads(config_json.read_text()).get("model_type")
    return config_class_for(model_type, str(config_json)).from_hf(folder, **overrides)


get_model_config_from_hf = model_config_from_hf  # XTuner v1's name


def presets_for(cls: type) -> dict[str, type[TransformerConfig]]:
    """The presets of the architecture `cls` belongs to (what a form's preset menu may swap to)."""
    family = next((c for c in MODEL_TYPES.values() if isinstance(cls, type) and issubclass(cls, c)), None)
    return {n: c for n, c in MODEL_PRESETS.items() if family is not None and issubclass(c, family)}
