"""XTuner v1's `xtuner.v1.model.dense.qwen3`: Qwen3 dense configs with XTuner's names and size presets copied from the
published HF `config.json`s (named in `model/registry.py`, which also records where XTuner's presets differ from them).

A preset is a subclass that only changes defaults, so any field stays overridable:
`Qwen3Dense8BConfig(num_hidden_layers=16)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ...module.attention.mha import MHAConfig
from ...module.rope.rope import RopeParametersConfig
from ..base import TinyShape, TransformerConfig, mha as _mha

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PretrainedConfig


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


# Tiny shape for tests and the CPU tutorials (see base.TinyShape)
class Qwen3DenseTinyConfig(TinyShape, Qwen3DenseConfig):
    max_window_layers: int | None = 4
    attention: MHAConfig = _mha(4, kv=2, head_dim=32)


Qwen3_8BConfig = Qwen3Dense8BConfig  # the name used by XTuner's Trainer tutorial page


def build_qwen3(cfg: TransformerConfig, device: "str | torch.device | None" = None,
                dtype: "torch.dtype | None" = None) -> "PreTrainedModel":
    """transformers' CausalLM of `cfg`'s architecture, randomly initialised: the name earlier code and tests use for
    `cfg.build(device, dtype)` (the Qwen3 class it builds is `model.packed.Qwen3ForPackedCausalLM`)."""
    return cfg.build(device=device, dtype=dtype)
