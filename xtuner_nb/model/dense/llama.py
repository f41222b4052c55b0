"""Llama dense configs (SmolLM2, TinyLlama, Llama 3.x): transformers' `LlamaForCausalLM`, presets from the published
HF `config.json`s (named in `model/registry.py`). XTuner v1 has no Llama config; the names follow its
`<Family>Dense<Size>Config` pattern and its module layout (`model/dense/<family>.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..base import MHAConfig, TinyShape, TransformerConfig, mha

if TYPE_CHECKING:
    from transformers import PretrainedConfig


class LlamaDenseConfig(TransformerConfig):
    """transformers' `LlamaForCausalLM`: no q/k norm, one `attention_bias` for q/k/v/o, optional `mlp_bias`."""

    model_type = "llama"
    hf_config_class = "LlamaConfig"
    hf_model_class = "LlamaForCausalLM"

    vocab_size: int = 128256
    max_position_embeddings: int = 131072
    bos_token_id: int | None = 128000
    eos_token_id: int = 128001
    num_hidden_layers: int = 32
    hidden_size: int = 4096
    intermediate_size: int = 14336
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    attention: MHAConfig = mha(32, qk_norm=False)
    mlp_bias: bool = Field(False, description="Bias on gate/up/down_proj (Llama's mlp_bias).")

    def _hf_fields(self) -> dict[str, Any]:
        return dict(attention_bias=self.attention.qkv_bias, mlp_bias=self.mlp_bias)

    @classmethod
    def _fields_from_hf(cls, hf: "PretrainedConfig") -> dict[str, Any]:
        return {"attention": cls._mha_from_hf(hf, qk_norm=False), "mlp_bias": bool(getattr(hf, "mlp_bias", False))}

    def _check_representable(self) -> None:
        a = self.attention
        if a.qk_norm:
            raise ValueError("attention.qk_norm=True: transformers' Llama has no q/k norm")
        if a.o_bias != a.qkv_bias:
            raise ValueError(f"attention.o_bias={a.o_bias} with qkv_bias={a.qkv_bias}: transformers' Llama uses one "
                             "`attention_bias` for q/k/v/o, so they must be equal")
        super()._check_representable()


_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}


# Tiny Llama for tests and CPU tutorials (see base.TinyShape)
class LlamaDenseTinyConfig(TinyShape, LlamaDenseConfig):
    attention: MHAConfig = mha(4, kv=2, head_dim=32, qk_norm=False)


# https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json
class SmolLM2Dense135MConfig(LlamaDenseConfig):
    vocab_size: int = 49152
    max_position_embeddings: int = 8192
    bos_token_id: int | None = 1
    eos_token_id: int = 2
    pad_token_id: int | None = 2
    num_hidden_layers: int = 30
    hidden_size: int = 576
    intermediate_size: int = 1536
    rope_theta: float = 100000.0
    attention: MHAConfig = mha(9, kv=3, head_dim=64, qk_norm=False)
    tie_word_embeddings: bool = True
    initializer_range: float = 0.041666666666666664


# https://huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct/blob/main/config.json
class SmolLM2Dense360MConfig(SmolLM2Dense135MConfig):
    num_hidden_layers: int = 32
    hidden_size: int = 960
    intermediate_size: int = 2560
    attention: MHAConfig = mha(15, kv=5, head_dim=64, qk_norm=False)
    initializer_range: float = 0.02


# https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/blob/main/config.json
class TinyLlamaDense1P1BConfig(LlamaDenseConfig):
    vocab_size: int = 32000
    max_position_embeddings: int = 2048
    bos_token_id: int | None = 1
    eos_token_id: int = 2
    num_hidden_layers: int = 22
    hidden_size: int = 2048
    intermediate_size: int = 5632
    rope_theta: float = 10000.0
    attention: MHAConfig = mha(32, kv=4, head_dim=64, qk_norm=False)


# https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json
class Llama3P2Dense1BConfig(LlamaDenseConfig):
    num_hidden_layers: int = 16
    hidden_size: int = 2048
    intermediate_size: int = 8192
    attention: MHAConfig = mha(32, kv=8, head_dim=64, qk_norm=False)
    rope_scaling: dict[str, Any] | None = Field(default_factory=lambda: dict(_LLAMA3_ROPE))
    tie_word_embeddings: bool = True


# https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json
class Llama3P2Dense3BConfig(Llama3P2Dense1BConfig):
    num_hidden_layers: int = 28
    hidden_size: int = 3072
    attention: MHAConfig = mha(24, kv=8, head_dim=128, qk_norm=False)


# https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
class Llama3P1Dense8BConfig(LlamaDenseConfig):
    rope_scaling: dict[str, Any] | None = Field(default_factory=lambda: {**_LLAMA3_ROPE, "factor": 8.0})
