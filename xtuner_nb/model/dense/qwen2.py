"""XTuner v1's `xtuner.v1.model.dense.qwen2`: Qwen2 / Qwen2.5 dense configs (`Qwen2DenseConfig`, `Qwen2Dense7BConfig`),
transformers' `Qwen2ForCausalLM`, presets from the published Qwen2.5 HF `config.json`s (named in `model/registry.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import MHAConfig, TinyShape, TransformerConfig, mha

if TYPE_CHECKING:
    from transformers import PretrainedConfig


class Qwen2DenseConfig(TransformerConfig):
    """transformers' `Qwen2ForCausalLM`: bias on q/k/v (not o), no q/k norm, full attention in every layer."""

    model_type = "qwen2"
    hf_config_class = "Qwen2Config"
    hf_model_class = "Qwen2ForCausalLM"
    extra_eos_is_bos = True

    max_position_embeddings: int = 32768
    eos_token_id: int = 151643
    num_hidden_layers: int = 28
    hidden_size: int = 3584
    intermediate_size: int = 18944
    attention: MHAConfig = mha(28, kv=4, head_dim=128, qk_norm=False, qkv_bias=True)

    def _hf_fields(self) -> dict[str, Any]:
        return dict(use_sliding_window=self.use_sliding_window, sliding_window=self.attention.hf_sliding_window,
                    max_window_layers=self.max_window_layers or self.num_hidden_layers)

    @classmethod
    def _fields_from_hf(cls, hf: "PretrainedConfig") -> dict[str, Any]:
        return {"attention": cls._mha_from_hf(hf, qk_norm=False, qkv_bias=True, o_bias=False,
                                              sliding_window=_window(getattr(hf, "sliding_window", None))),
                "use_sliding_window": bool(getattr(hf, "use_sliding_window", False))}

    def _check_representable(self) -> None:
        a = self.attention
        if a.qk_norm or not a.qkv_bias or a.o_bias:
            raise ValueError(f"attention qk_norm={a.qk_norm}, qkv_bias={a.qkv_bias}, o_bias={a.o_bias}: "
                             "transformers' Qwen2 has no q/k norm, bias on q/k/v and none on o_proj")
        super()._check_representable()


# Tiny Qwen2 for tests and CPU tutorials (see base.TinyShape)
class Qwen2DenseTinyConfig(TinyShape, Qwen2DenseConfig):
    attention: MHAConfig = mha(4, kv=2, head_dim=32, qk_norm=False, qkv_bias=True)


# https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json
class Qwen2Dense0P5BConfig(Qwen2DenseConfig):
    num_hidden_layers: int = 24
    hidden_size: int = 896
    intermediate_size: int = 4864
    attention: MHAConfig = mha(14, kv=2, head_dim=64, qk_norm=False, qkv_bias=True)
    tie_word_embeddings: bool = True


# https://huggingface.co/Qwen/Qwen2.5-1.5B/blob/main/config.json
class Qwen2Dense1P5BConfig(Qwen2DenseConfig):
    hidden_size: int = 1536
    intermediate_size: int = 8960
    attention: MHAConfig = mha(12, kv=2, head_dim=128, qk_norm=False, qkv_bias=True)
    tie_word_embeddings: bool = True


# https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json (XTuner's preset of the same name has
# rope_theta=10000; the published checkpoints use 1e6)
class Qwen2Dense7BConfig(Qwen2DenseConfig):
    vocab_size: int = 152064


def _window(value: int | None) -> int:
    """config.json's null window is XTuner's -1 (none), as for Qwen3 (MHAConfig.sliding_window)."""
    return -1 if value is None else value
