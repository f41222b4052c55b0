"""XTuner v1's `xtuner.v1.float8.config`: `Float8Config` and `ScalingGranularity`, so that configs written for
XTuner load. Float8 training is not supported here: a `Float8Config` that turns it on is refused with the reason
(and `model_cfg.float8_cfg` accepts only XTuner's default, None)."""

from __future__ import annotations

import enum

from pydantic import Field, model_validator

from ..config.base import XConfig

WHY = ("float8 training needs XTuner's FP8 GEMM kernels (AdaptiveGEMM, Triton) and a GPU with FP8 tensor cores "
       "(compute capability 8.9 or newer); it is not implemented here, train in bf16")


class ScalingGranularity(enum.Enum):
    """How many values share one float8 scale (XTuner's values)."""

    TILEWISE = "tilewise"  # one scale per 1x128 tile
    BLOCKWISE = "blockwise"  # one per 128x128 block
    TENSORWISE = "tensorwise"  # one for the whole tensor


class Float8Config(XConfig):
    scaling_granularity_gemm: ScalingGranularity | None = Field(
        None, description="Scaling granularity of the GEMMs (refused: float8 training is not supported).")
    scaling_granularity_grouped_gemm: ScalingGranularity | None = Field(
        None, description="Scaling granularity of the grouped (MoE) GEMMs (refused: float8 training is not "
                          "supported).")

    @model_validator(mode="after")
    def _refuse_float8(self):
        if self.enable_float8:
            raise ValueError(f"Float8Config is not supported by xtuner_nb: {WHY}")
        return self

    @property
    def enable_float8(self) -> bool:
        return self.scaling_granularity_gemm is not None or self.scaling_granularity_grouped_gemm is not None

    @property
    def is_tilewise(self) -> bool:
        return ScalingGranularity.TILEWISE in (self.scaling_granularity_gemm, self.scaling_granularity_grouped_gemm)

    @property
    def is_tensorwise(self) -> bool:
        return self.scaling_granularity_gemm == ScalingGranularity.TENSORWISE

    def build(self):
        raise NotImplementedError(f"Float8Config.build: {WHY}")
