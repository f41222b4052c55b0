"""Build transformers' own `Qwen3ForCausalLM` from a `Qwen3DenseConfig`, with our attention choice.

The module is transformers' (parameter names = HF checkpoint names, `generate()` works, peft and FSDP2 know it);
only the attention function is ours when `attn_impl="varlen"` (see `attention.py`), and the built class is a
subclass whose forward also returns the packed training loss when given `shifted_labels` (as XTuner v1's models
take a loss context), so the Trainer never changes a model's class at run time.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
from transformers import Qwen3ForCausalLM

from .attention import VARLEN_IMPL, register_varlen_attention

if TYPE_CHECKING:
    from .config import Qwen3DenseConfig

# our config names -> transformers' attn_implementation
ATTN_IMPLEMENTATIONS = {"varlen": VARLEN_IMPL, "sdpa": "sdpa", "eager": "eager"}


class Qwen3ForPackedCausalLM(Qwen3ForCausalLM):
    """transformers' Qwen3ForCausalLM; given `shifted_labels` its forward returns the step-calibrated packed loss.

    The loss runs inside the root module's forward because under FSDP2 the lm_head weight is only gathered there.
    Without `shifted_labels` (generation, evaluation logits) it is transformers' forward, unchanged.
    """

    def forward(self, *args, shifted_labels=None, loss_weights=None, loss_denominator=None, loss_cfg=None, **kw):
        if shifted_labels is None:
            return super().forward(*args, **kw)
        from ..loss import lm_loss

        hidden = self.model(*args, **kw).last_hidden_state
        return lm_loss(hidden, self.lm_head.weight, shifted_labels, loss_weights, loss_denominator, loss_cfg)


def build_qwen3(cfg: "Qwen3DenseConfig", device: "str | torch.device | None" = None,
                dtype: "torch.dtype | None" = None) -> Qwen3ForPackedCausalLM:
    """A randomly initialised (std = `cfg.initializer_range`, from torch's global RNG) Qwen3ForCausalLM.

    `device="meta"` allocates nothing (parameter counting, or `to_empty()` + `load_hf_weights` later).
    `dtype` is the parameter dtype (default float32, the master weights for training).
    """
    _check_representable(cfg)
    register_varlen_attention()
    hf = cfg.hf_config
    hf._attn_implementation = ATTN_IMPLEMENTATIONS[cfg.attention.attn_impl]
    device_ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    with device_ctx, _default_dtype(dtype or torch.float32):
        model = Qwen3ForPackedCausalLM(hf)
    return model


def _check_representable(cfg: "Qwen3DenseConfig") -> None:
    a = cfg.attention
    if not a.qk_norm:
        raise ValueError("attention.qk_norm=False: transformers' Qwen3 always has q_norm/k_norm")
    if a.o_bias != a.qkv_bias:
        raise ValueError(f"attention.o_bias={a.o_bias} with qkv_bias={a.qkv_bias}: transformers' Qwen3 uses one "
                         "`attention_bias` for q/k/v/o, so they must be equal")
    if a.num_attention_heads % a.num_key_value_heads:
        raise ValueError(f"attention.num_attention_heads={a.num_attention_heads} is not a multiple of "
                         f"num_key_value_heads={a.num_key_value_heads}")


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """Create parameters directly in `dtype` (no fp32 copy of a large model first)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
