"""Packed ("varlen") attention for transformers' Qwen3, registered under the name `xtuner_varlen`.

A training pack is one row [1, L] holding several samples back to back, with `position_ids` restarting at 0 for each
sample. The samples must not attend to each other. The caller passes the sample boundaries the way transformers'
flash-attention path names them, and they reach every attention layer through `**kwargs`:

    model(input_ids=ids, position_ids=pos, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=m, max_length_k=m)

`cu` is int32 [n+1] (0, len_1, len_1+len_2, ..., L); it indexes the flattened batch (B*L tokens) when B > 1.

Without `cu_seq_lens_q` the function is transformers' own `sdpa_attention_forward`, called with the very mask sdpa
would get, so `generate()` (KV cache, left padding) and plain batches behave exactly as with
`attn_implementation="sdpa"` on the same model object.

Kernels for a pack: `attention_kernels.DISPATCHER` picks torch's varlen flash kernel, flash-attn, a block-masked
SDPA or one exact SDPA per sample, whichever is first to be present, accept the call and pass a one-time numerical
self-check on CUDA. Set `XTUNER_NB_VARLEN_BACKEND=torch|flash_attn|sdpa_block|loop` to force one.

Mask creation: transformers builds a [B, 1, L, L] boolean mask whenever it sees restarting `position_ids` (and no
cache), which costs L*L bytes (1 GiB at L = 32k). Our mask function returns the sample boundaries instead (an int32
[n+1] tensor, found in O(L)); the attention function reads that as `cu_seq_lens` when none were passed.
"""

from __future__ import annotations

from typing import Callable

import torch
from .torchao_quiet import import_torchao_quietly

import_torchao_quietly()  # transformers imports torchao when it is installed: first, without its warnings
# (CUDA extensions a CPU torch cannot load, torch's notes on torchao's enums), which a kernel paints red
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, causal_mask_function, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from .attention_kernels import DISPATCHER

VARLEN_IMPL = "xtuner_varlen"  # the name in transformers' AttentionInterface / AttentionMaskInterface


# ---- mask creation -------------------------------------------------------------------------------------------------
def varlen_mask(batch_size: int, q_length: int | None = None, kv_length: int = 0, q_offset=0, kv_offset=0,
                mask_function: Callable = causal_mask_function, attention_mask: torch.Tensor | None = None,
                allow_is_causal_skip: bool = True, device: torch.device | str = "cpu", **kwargs):
    """sdpa's mask, except for a pack found in `position_ids`: then int32 cu_seq_lens over the B*L flat tokens.

    transformers 5 passes the queries as `q_length`/`q_offset`; 4.x passes `cache_position` (their positions)."""
    cache_position = kwargs.get("cache_position")
    if q_length is None:  # transformers 4.x
        q_length, device = cache_position.shape[0], cache_position.device
        q_offset = 0 if q_length and int(cache_position[0]) == 0 else None  # None: not a fresh full sequence
    packed = (not allow_is_causal_skip and attention_mask is None and q_length == kv_length and q_length > 1
              and isinstance(q_offset, int) and q_offset == 0 and kv_offset == 0)
    if packed:
        cu = _boundaries(mask_function, batch_size, q_length, device)
        # transformers 4.x marks every batch with position_ids as a pack; one sample a row needs no mask (5.x: None)
        if cu is not None or cache_position is not None:
            return cu
    if cache_position is not None:
        return sdpa_mask(batch_size=batch_size, kv_length=kv_length, kv_offset=kv_offset, mask_function=mask_function,
                         attention_mask=attention_mask, allow_is_causal_skip=allow_is_causal_skip, **kwargs)
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, mask_function=mask_function, attention_mask=attention_mask,
                     allow_is_causal_skip=allow_is_causal_skip, device=device, **kwargs)


def _boundaries(mask_function: Callable, batch_size: int, length: int, device) -> torch.Tensor | None:
    """Sample starts of a block-diagonal causal mask, probing only the sub-diagonal (token i sees token i-1?).

    transformers disables the is_causal shortcut for Qwen3 only when it found restarting position_ids, and its mask
    is then causal AND same-sample; a token that cannot see its left neighbour starts a new sample.
    """
    idx = torch.arange(1, length, device=device)
    rows = torch.arange(batch_size, device=device)
    zero = torch.zeros((), dtype=torch.long, device=device)
    sees_left = mask_function(rows[:, None], zero, idx[None, :], idx[None, :] - 1)  # [B, L-1]
    sees_left = sees_left.expand(batch_size, length - 1)
    if bool(sees_left.all()):
        return None  # not a pack after all: let sdpa_mask decide
    flat_starts = torch.nonzero(~sees_left)  # (row, i-1) pairs
    starts = flat_starts[:, 0] * length + flat_starts[:, 1] + 1
    row_starts = rows * length
    total = torch.tensor([batch_size * length], device=device)
    return torch.unique(torch.cat([row_starts, starts, total])).to(torch.int32)  # unique() also sorts


# ---- attention -----------------------------------------------------------------------------------------------------
def varlen_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                             is_causal: bool | None = None, cu_seq_lens_q: torch.Tensor | None = None,
                             cu_seq_lens_k: torch.Tensor | None = None, max_length_q: int | None = None,
                             max_length_k: int | None = None, **kwargs):
    """transformers attention interface: query [B, Hq, L, D], key/value [B, Hkv, S, D] -> ([B, L, Hq, D], None)."""
    found = attention_mask if attention_mask is not None and attention_mask.ndim == 1 else None
    if cu_seq_lens_q is None and found is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if attention_mask is not None and attention_mask.ndim != 1:
        raise ValueError("packed attention got cu_seq_lens_q and a materialised attention mask; a pack takes "
                         "cu_seq_lens + position_ids only (no attention_mask, no KV cache offset)")
    if kwargs.get("sliding_window") is not None:
        raise NotImplementedError("packed attention does not support sliding-window layers")
    cu_q = cu_seq_lens_q if cu_seq_lens_q is not None else found
    cu_k = cu_seq_lens_k if cu_seq_lens_k is not None else cu_q
    if cu_seq_lens_q is None:  # boundaries found from position_ids: lengths are the same for q and k
        max_length_q = max_length_k = None
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)

    b, hq, lq, d = query.shape
    q = query.transpose(1, 2).reshape(b * lq, hq, d)  # flat tokens [T, H, D], as the varlen kernels want
    k = key.transpose(1, 2).reshape(b * key.shape[2], key.shape[1], d)
    v = value.transpose(1, 2).reshape(b * value.shape[2], value.shape[1], value.shape[-1])
    if getattr(module, "layer_idx", 0) == 0:  # one host sync per forward, not per layer
        _check_cu(cu_q, q.shape[0], "cu_seq_lens_q")
        _check_cu(cu_k, k.shape[0], "cu_seq_lens_k")

    cu_q, cu_k = cu_q.to(q.device, torch.int32), cu_k.to(q.device, torch.int32)  # what the flash kernels want
    mq = int(max_length_q) if max_length_q is not None else _max_len(cu_q)
    mk = int(max_length_k) if max_length_k is not None else (mq if cu_k is cu_q else _max_len(cu_k))
    out = DISPATCHER(q, k, v, cu_q, cu_k, mq, mk, scaling, causal, dropout)
    return out.reshape(b, lq, hq, out.shape[-1]), None


def _max_len(cu: torch.Tensor) -> int:
    return int((cu[1:] - cu[:-1]).max())


def _check_cu(cu: torch.Tensor, total: int, name: str) -> None:
    if cu.ndim != 1 or cu.numel() < 2:
        raise ValueError(f"{name} must be a 1-D tensor [n+1] of cumulative lengths, got shape {tuple(cu.shape)}")
    first, last = int(cu[0]), int(cu[-1])
    if first != 0 or last != total:
        raise ValueError(f"{name} must start at 0 and end at the number of tokens ({total}); got {first}..{last} "
                         "(padding must be a segment of its own, or the kernel leaves those rows undefined)")
    if bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(f"{name} must be non-decreasing, got {cu.tolist()}")


def register_varlen_attention() -> str:
    """Register `xtuner_varlen` in transformers (idempotent; done on import). Returns the name."""
    AttentionInterface.register(VARLEN_IMPL, varlen_attention_forward)
    AttentionMaskInterface.register(VARLEN_IMPL, varlen_mask)
    return VARLEN_IMPL


register_varlen_attention()
