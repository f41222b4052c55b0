"""`build_qwen3(cfg)`: the name earlier code and tests use for `cfg.build()` (see `base.TransformerConfig.build`),
and `Qwen3ForPackedCausalLM`, the class it builds for Qwen3 (see `packed.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .packed import Qwen3ForPackedCausalLM

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from .base import TransformerConfig

__all__ = ["Qwen3ForPackedCausalLM", "build_qwen3"]


def build_qwen3(cfg: "TransformerConfig", device: "str | torch.device | None" = None,
                dtype: "torch.dtype | None" = None) -> "PreTrainedModel":
    """transformers' CausalLM of `cfg`'s architecture, randomly initialised (`cfg.build(device, dtype)`)."""
    return cfg.build(device=device, dtype=dtype)
