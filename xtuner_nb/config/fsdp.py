"""Parallelism and precision config: fields of XTuner's FSDPConfig, names and defaults as XTuner's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from .base import XConfig

DType = Literal["bfloat16", "float16", "float32"]


class FSDPConfig(XConfig):
    tp_size: int = Field(1, ge=1, le=1, description="Tensor parallel degree (dense models: 1 only, as XTuner).")
    ep_size: int = Field(1, ge=1, le=1, description="Expert parallel degree (MoE only; 1 here).")
    reshard_after_forward: bool = Field(True, description="FSDP2: free gathered params after forward (less memory, more comms).")
    recompute_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of decoder layers with activation checkpointing.")
    checkpoint_preserve_rng_state: bool = Field(True, description="Replay dropout RNG exactly in recomputed layers.")
    cpu_offload: bool = Field(False, description="FSDP2 CPUOffloadPolicy: params, grads and optimizer state live on CPU.")
    param_dtype: DType = Field("bfloat16", description="Compute dtype of params on GPU (master weights stay fp32).")
    reduce_dtype: DType = Field("bfloat16", description="Dtype of gradient reduce-scatter.")
    fp32_lm_head: bool = Field(False, description="Keep the lm_head matmul in fp32.")
    torch_compile: bool = Field(False, description="torch.compile each decoder layer (XTuner's default is on; off here "
                                                   "because compile time dominates short notebook runs).")
    hsdp_sharding_size: int | None = Field(
        None, ge=1, description="HSDP (hybrid sharding): shard over groups of this many ranks (usually the GPUs of "
                                "one node) and replicate across the groups; world size must be a multiple. "
                                "None: plain FSDP, shard over all ranks.")

    @field_validator("param_dtype", "reduce_dtype", mode="before")
    @classmethod
    def _accept_torch_dtype(cls, v: Any):
        # XTuner passes torch.bfloat16; keep the config serialisable by storing the name.
        return str(v).removeprefix("torch.") if not isinstance(v, str) else v
