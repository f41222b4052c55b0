"""The forward and backward of a linear layer whose frozen weight is NF4 (QLoRA's base, `qlora.py`).

torchao's `linear_nf4` does the same with its `get_original_weight`, which makes int64 indices and more
temporaries for every dequantization, twice per linear and step: 60 MiB at its peak for a 12 MiB fp32 weight of
3072x1024. On the CPU glibc keeps such freed blocks in its heap (its mmap threshold rises after the first large
free), and the mixture of sizes fragments it: QLoRA's peak RSS crept up step after step, by more than half of what
the 4-bit base saves. `dequantize_nf4` gives the same values with the result as its only weight-sized allocation
(13 MiB for that weight), 4x faster.
"""

from __future__ import annotations

import torch
from torch import nn

DEQUANT_CHUNK = 1 << 18  # bytes of 4-bit codes (2 weights each) looked up at a time: a 1 MiB int32 index


def dequantize_nf4(t: torch.Tensor, dtype: torch.dtype | None = None, chunk: int | None = None) -> torch.Tensor:
    """The values of NF4 tensor `t`, equal to torchao's `t.get_original_weight().to(dtype)`.

    The codes are looked up `chunk` bytes at a time in a 256-entry table of value pairs (a byte holds two codes, high
    nibble first, as torchao packs them) straight into the result, which is then scaled in place block by block.
    Default chunk: `DEQUANT_CHUNK` on the CPU; on a GPU the whole tensor at once, where the caching allocator reuses
    the one index temporary and a loop would cost a kernel launch per chunk (an 8B model's MLP weight is 100 chunks)."""
    scalers = t.dequantize_scalers(t.quantized_scalers, t.quantization_factor, t.scaler_block_size)
    byte = torch.arange(256, device=t.device)
    pairs = torch.stack([t.nf4[byte >> 4], t.nf4[byte & 15]], dim=-1).to(t.dtype)  # (256, 2): byte -> 2 values
    codes = t.quantized_data.view(-1)
    out = torch.empty(t.shape, dtype=t.dtype, device=t.device)
    as_pairs, as_blocks = out.view(-1, 2), out.view(-1, t.block_size)
    per_block = t.block_size // 2  # bytes per block of weights
    chunk = chunk or (DEQUANT_CHUNK if t.device.type == "cpu" else codes.numel())
    chunk = max(per_block, chunk - chunk % per_block)
    for start in range(0, codes.numel(), chunk):
        stop = min(start + chunk, codes.numel())
        torch.index_select(pairs, 0, codes[start:stop].int(), out=as_pairs[start:stop])
        blocks = slice(start // per_block, stop // per_block)
        as_blocks[blocks].mul_(scalers[blocks, None])
    return out if dtype is None or dtype == t.dtype else out.to(dtype)


class NF4LinearFunction(torch.autograd.Function):
    """y = x Wᵀ (+ b) with W in NF4: dequantized for the product and again in backward for dx. W gets no gradient
    and autograd keeps only its 4-bit form (under FSDP2, the gathered one, as torchao's `LinearNF4` does). Its
    saved 4-bit weight, not a dequantized copy, is what keeps QLoRA's activation memory that of LoRA."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(weight)
        return nn.functional.linear(x, dequantize_nf4(weight, x.dtype), bias)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        grad_x = grad_out @ dequantize_nf4(weight, grad_out.dtype) if ctx.needs_input_grad[0] else None
        # the base's bias is frozen as its weight is; computed anyway should a caller train it
        grad_bias = grad_out.reshape(-1, grad_out.shape[-1]).sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, None, grad_bias


class NF4Linear(nn.Linear):
    """An nn.Linear whose frozen weight is NF4 (`qlora.quantize_decoder_linears`, `qlora.nf4_placeholders`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return NF4LinearFunction.apply(x, self.weight, self.bias)


def as_nf4_linear(module: nn.Module) -> None:
    """Make the nn.Linear `module` an `NF4Linear` in place: its class is swapped, the module is not replaced, so its
    name, hooks, peft's `base_layer` and FSDP2's wrapping stay as they are."""
    if type(module) is nn.Linear:
        module.__class__ = NF4Linear
