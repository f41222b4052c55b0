"""XTuner v1's `xtuner.v1.module.attention.mha`: `MHAConfig`, the attention shape of a dense decoder (the `attention`
field of `xtuner_nb.model.TransformerConfig`). Pydantic only."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...config.base import XConfig, refused_unless_default


class MHAConfig(XConfig):
    num_attention_heads: int = Field(32, ge=1, description="Query heads.")
    num_key_value_heads: int = Field(8, ge=1, description="Key/value heads (GQA when fewer than query heads).")
    head_dim: int = Field(128, ge=1, description="Width of one head.")
    dropout: float = Field(0.0, ge=0, le=1, description="Attention dropout.")
    qkv_bias: bool = Field(False, description="Bias on q/k/v projections.")
    qk_norm: bool = Field(True, description="RMSNorm on q and k per head (Qwen3).")
    rms_norm_eps: float = Field(1e-6, gt=0, description="Epsilon of the q/k norms.")
    o_bias: bool = Field(False, description="Bias on the output projection.")
    sliding_window: int | None = Field(-1, description="Window of sliding-window layers (-1/None: none); kept for "
                                                       "the HF config, packed training uses full attention.")
    attn_impl: Literal["flash_attention", "flex_attention", "eager_attention", "varlen", "sdpa", "eager"] = Field(
        "flash_attention", description="XTuner's flash_attention / flex_attention / eager_attention, and varlen, all "
                                       "run the packed path: samples of a pack never attend to each other (flash/"
                                       "varlen kernel on CUDA, per-sample SDPA on CPU); sdpa / eager: transformers' "
                                       "own paths, for one sample per row.")
    # ---- XTuner's fields that only take their default here ----
    rms_norm_type: Literal["default", "zero_centered"] = refused_unless_default(
        "default", "the q/k norms are plain RMSNorm (zero-centred norms belong to other XTuner models)")
    with_sink: bool = refused_unless_default(False, "attention sinks belong to GPT-OSS")
    with_gate: bool = refused_unless_default(False, "gated attention belongs to Qwen3.5/Qwen3-Next")

    @property
    def hf_sliding_window(self) -> int | None:
        return None if self.sliding_window in (None, -1) else self.sliding_window
