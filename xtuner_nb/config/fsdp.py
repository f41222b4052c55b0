"""Parallelism and precision config: XTuner's FSDPConfig, every field with XTuner's default.

Fields that need tensor/expert parallelism or model parts this project has not (vision towers, MTP layers) take
only their default value here and say why otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_serializer, field_validator

from .base import ONLY_WHEN_SET_KEY, XConfig, compat_field, refused_unless_default

DType = Literal["bfloat16", "float16", "float32"]


class FSDPConfig(XConfig):
    reshard_after_forward: bool = Field(True, description="FSDP2: free gathered params after forward (less memory, more comms).")
    recompute_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of decoder layers with activation checkpointing.")
    checkpoint_preserve_rng_state: bool = Field(True, description="Replay dropout RNG exactly in recomputed layers.")
    cpu_offload: bool = Field(False, description="FSDP2 CPUOffloadPolicy: params, grads and optimizer state live on CPU.")
    param_dtype: DType = Field("bfloat16", description="Compute dtype of params on GPU (master weights stay fp32).")
    reduce_dtype: DType = Field("bfloat16", description="Dtype of gradient reduce-scatter.")
    precision: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto: param_dtype where the GPU computes it natively (sm80+), fp16 with loss scaling on "
                            "T4/V100 (sm70-75), fp32 on older GPUs and on CPU; a dtype forces it (bfloat16 on CPU "
                            "runs the mixed-precision path there).")
    defer_reduce_scatter: bool = Field(
        False, description="FSDP2 gradient accumulation: reduce-scatter once after the last pack of a step (fewer "
                           "collectives, but every layer's unsharded gradient is held; the memory estimate counts it).")
    fp32_lm_head: bool = Field(False, description="Keep the lm_head matmul in fp32.")
    torch_compile: bool = Field(True, description="torch.compile each decoder layer when set explicitly (True); left "
                                                  "at XTuner's default it is not applied, and the log says so (compile "
                                                  "time dominates short notebook runs).",
                                  json_schema_extra={ONLY_WHEN_SET_KEY: True})
    hsdp_sharding_size: int | None = Field(
        None, ge=1, description="HSDP (hybrid sharding): shard over groups of this many ranks (usually the GPUs of "
                                "one node) and replicate across the groups; world size must be a multiple. "
                                "None: plain FSDP, shard over all ranks.")
    # ---- XTuner's fields that do nothing here (compat_field, refused_unless_default): after the real ones ----
    tp_size: int = refused_unless_default(
        1, "tensor parallelism is not implemented (XTuner supports it for MoE models only); use FSDP over more "
           "GPUs (torchrun), fsdp_cfg.cpu_offload=True or LoRA to fit a larger model")
    ep_size: int = refused_unless_default(1, "expert parallelism is for MoE models; this project trains dense Qwen3")
    vision_recompute_ratio: float = refused_unless_default(1.0, "there is no vision tower (text-only models)")
    mtp_checkpoint_use_reentrant: bool = refused_unless_default(
        True, "there are no multi-token-prediction (MTP) layers in Qwen3 dense")
    mesh_prefix: str = compat_field(
        "default", "the name prefix of XTuner's device meshes; no effect (one data-parallel mesh here)")
    requires_grad: bool = refused_unless_default(
        True, "a frozen model (XTuner's RL reference model) is not trained here; use lora_cfg to train a subset")

    @field_validator("param_dtype", "reduce_dtype", mode="before")
    @classmethod
    def _accept_torch_dtype(cls, v: Any):
        # XTuner passes torch.bfloat16 and dumps "torch.bfloat16"; store the plain name so the config stays JSON.
        name = str(v).removeprefix("torch.")
        return {"half": "float16", "float": "float32", "bf16": "bfloat16"}.get(name, name)

    @field_serializer("param_dtype", "reduce_dtype")
    def _as_name(self, v: str) -> str:
        return v
