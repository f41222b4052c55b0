"""XTuner v1's `xtuner.v1.module.rope.rope`: `RopeParametersConfig` (the `rope_parameters_cfg` field of
`xtuner_nb.model.TransformerConfig`). Pydantic only."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ...config.base import XConfig, refused_unless_default


class RopeParametersConfig(XConfig):
    """XTuner's RoPE parameters; rope_theta follows TransformerConfig.rope_theta, scaling goes to rope_scaling."""

    rope_theta: float = Field(10000.0, gt=0, description="RoPE base frequency.")
    rope_type: Literal["default", "linear", "dynamic", "yarn", "longrope", "llama3"] = Field(
        "default", description="transformers' RoPE type (qwen3_vl's multimodal RoPE is not supported).")
    original_max_position_embeddings: int | None = Field(None, description="Scaling: pre-extension context.")
    factor: float | None = Field(None, description="Scaling factor.")
    beta_fast: float | None = Field(None, description="YaRN beta_fast.")
    beta_slow: float | None = Field(None, description="YaRN beta_slow.")
    short_factor: list[float] | None = Field(None, description="LongRoPE short factors.")
    long_factor: list[float] | None = Field(None, description="LongRoPE long factors.")
    low_freq_factor: float | None = Field(None, description="Llama3 low_freq_factor.")
    high_freq_factor: float | None = Field(None, description="Llama3 high_freq_factor.")
    mscale: float | None = Field(None, description="YaRN mscale.")
    mscale_all_dim: float | None = Field(None, description="YaRN mscale_all_dim.")
    truncate: bool = Field(False, description="YaRN truncate.")
    partial_rotary_factor: float = Field(1.0, gt=0, le=1, description="Fraction of head_dim that is rotated.")
    # ---- XTuner's fields that only take their default here ----
    mrope_section: list[int] | None = refused_unless_default(None, "multimodal RoPE belongs to vision-language models")
    fope_init_factor: float | None = refused_unless_default(None, "Fourier position embedding (FoPE) is not implemented")
    fope_sep_head: bool | None = refused_unless_default(None, "Fourier position embedding (FoPE) is not implemented")
    num_inv_freq: int | None = refused_unless_default(None, "Fourier position embedding (FoPE) is not implemented")

    def scaling(self) -> dict[str, Any] | None:
        """The fields besides rope_theta that differ from the defaults (transformers' rope_parameters)."""
        defaults = RopeParametersConfig().model_dump()
        out = {k: v for k, v in self.model_dump().items() if k != "rope_theta" and v != defaults[k]}
        return out or None
