"""QLoRA's 4-bit base: the frozen linear layers of every decoder layer stored as NF4 (torchao's `NF4Tensor`, with
double quantization), under LoRA adapters that train in fp32 (`LoRAConfig(quantize_base="nf4")`).

NF4 (Dettmers et al., 2023): each block of 64 weights is 4-bit indices into 16 normal-distribution quantiles times
the block's absmax; the absmaxes themselves are quantized to int8 in blocks of 256 ("double quantization") with one
scale per 256-block in the compute dtype. A weight costs 0.5 + 1/64 + b/16384 bytes (`nf4_bytes`). A forward
dequantizes one linear at a time into the compute dtype (`NF4Linear`, torchao's `linear_nf4` with a leaner
dequantization, `dequantize_nf4`), and backward does it again for the input gradient: the base gets no gradient and
autograd keeps only the 4-bit tensor.

torchao is pure PyTorch (CPU, CUDA), and its `NF4Tensor` implements FSDP2's all-gather hooks, so a sharded run keeps
1/N of the 4-bit base per rank. It is an extra: `pip install "xtuner_nb[qlora]"` (`require_torchao` says so).

Memory at build (`build.build_model`): the model is built on the meta device with empty 4-bit placeholders for the
decoder linears (`nf4_placeholders`), allocated, then `load_hf_weights` copies each checkpoint tensor in, which
quantizes it (`NF4Tensor.copy_`): no moment holds the decoder in the compute dtype, only one tensor at a time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from .base import DECODER_LINEAR_MODULES
from .torchao_quiet import import_torchao_quietly, torchao_available

if TYPE_CHECKING:
    import torch
    from torch import nn

EXTRA = "qlora"  # pip install "xtuner_nb[qlora]": pyproject's extra with torchao
INSTALL_HINT = f'pip install "xtuner_nb[{EXTRA}]" (torchao)'
NF4_BLOCK = 64  # weights per absmax (QLoRA's block)
NF4_SCALER_BLOCK = 256  # absmaxes per int8 scale (QLoRA's double quantization)


def require_torchao():
    """torchao's NF4 module; ImportError naming the extra to install when torchao is missing."""
    if not torchao_available():
        raise ImportError(f"LoRAConfig(quantize_base='nf4') needs torchao: {INSTALL_HINT}")
    return import_torchao_quietly()


def nf4_bytes(numel: int, dtype_bytes: int) -> int:
    """Bytes of one NF4 tensor of `numel` weights: 4-bit data, int8 block absmaxes, one scale per 256 absmaxes in
    the compute dtype (the scalar mean and the 16-entry table aside)."""
    return numel // 2 + numel // NF4_BLOCK + dtype_bytes * (numel // (NF4_BLOCK * NF4_SCALER_BLOCK))


def is_nf4(t: object) -> bool:
    return type(t).__name__ == "NF4Tensor"


def decoder_linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every linear layer of every decoder layer (peft's `base_layer` when it is wrapped)."""
    from torch import nn

    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)
            and n.removesuffix(".base_layer").rsplit(".", 1)[-1] in DECODER_LINEAR_MODULES]


def _scaler_block(numel: int, shards: int) -> int:
    """The largest block of at most 256 absmaxes per scale that leaves a multiple of 8 scales (256 for every Qwen3
    linear; smaller for small or odd shapes), so that the layout, and so the values, are the same in one process and
    sharded over 2, 4 or 8 ranks: FSDP2 needs a whole number of scales per shard."""
    if numel % NF4_BLOCK:
        raise ValueError(f"NF4 needs a multiple of {NF4_BLOCK} weights per linear layer, got {numel}")
    blocks = numel // NF4_BLOCK
    for multiple in (math.lcm(8, shards), shards):
        for size in range(min(NF4_SCALER_BLOCK, blocks), 0, -1):
            if blocks % size == 0 and (blocks // size) % multiple == 0:
                return size
    raise ValueError(f"a linear layer of {numel} weights cannot be split into NF4 scale blocks over {shards} shards")


def quantize(weight: torch.Tensor, shards: int = 1) -> torch.Tensor:
    """`weight` (2-D, any float dtype) as an NF4Tensor of the same dtype."""
    nf4 = require_torchao()
    return nf4.to_nf4(weight.detach(), NF4_BLOCK, _scaler_block(weight.numel(), shards))


def dequantize(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A plain tensor of an NF4 tensor's values (in `dtype`, default its own); other tensors as they are."""
    if not is_nf4(t):
        return t if dtype is None else t.to(dtype)
    from .nf4_linear import dequantize_nf4

    return dequantize_nf4(t, dtype)


def quantize_decoder_linears(model: nn.Module, shards: int = 1) -> int:
    """Replace the weight of every decoder linear (see `decoder_linears`) by its NF4 form, frozen; returns how many.
    Weights that are NF4 already are left as they are."""
    import torch
    from torch import nn

    from .nf4_linear import as_nf4_linear

    n = 0
    with torch.no_grad():
        for _, module in decoder_linears(model):
            if not is_nf4(module.weight):
                module.weight = nn.Parameter(quantize(module.weight, shards), requires_grad=False)
                n += 1
            as_nf4_linear(module)
    return n


def nf4_placeholders(model: nn.Module, device: torch.device | str, shards: int = 1) -> int:
    """On a model built on the meta device: make every decoder linear's weight an empty NF4 tensor on `device` (4
    bits a weight, not filled), so that `load_hf_weights` quantizes each checkpoint tensor into it."""
    import dataclasses

    import torch

    from .nf4_linear import as_nf4_linear

    linears = decoder_linears(model)
    if not all(m.weight.is_meta for _, m in linears):
        raise ValueError("nf4_placeholders: the model must be built on the meta device")
    nf4 = require_torchao()
    device = torch.device(device)
    for _, module in linears:
        w = module.weight
        # the layout from torchao's own quantizer run on the meta device (shapes and dtypes only), then every inner
        # tensor allocated on `device`: the absmax mean and the 16-value table too, which `to_empty` leaves alone
        layout = nf4.to_nf4(torch.empty(w.shape, dtype=w.dtype, device="meta"), NF4_BLOCK,
                            _scaler_block(w.numel(), shards))
        names, ctx = layout.__tensor_flatten__()
        inner = {a: torch.empty_like(getattr(layout, a), device=device) for a in names}
        ctx = {**ctx, "tensor_meta": dataclasses.replace(ctx["tensor_meta"], device=device)}
        placeholder = type(layout).__tensor_unflatten__(inner, ctx, w.shape, w.stride())
        module.weight = torch.nn.Parameter(placeholder, requires_grad=False)
        as_nf4_linear(module)
    return len(linears)


def quantized_bytes(model: nn.Module) -> int:
    """Bytes the NF4 tensors of `model` hold (what the estimate prices with `nf4_bytes`)."""
    total = 0
    for _, module in decoder_linears(model):
        w = module.weight
        if is_nf4(w):
            total += sum(getattr(w, a).numel() * getattr(w, a).element_size()
                         for a in ("quantized_data", "quantized_scalers", "quantization_factor"))
    return total


def unquantized_state_dict(state_dict: Mapping[str, torch.Tensor], source: Any,
                           model_state: Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """`state_dict` with every NF4 tensor replaced by the checkpoint's own tensor from `source` (the run's
    `load_from`), so a merge adds the adapters to the weights `PeftModel.from_pretrained(<the original base>,
    adapter)` runs on, not to their 4-bit rounding. Each is a `LazyWeight` that reads its one tensor when made, in the
    model's dtype: an export holds one at a time. `model_state`: the model's own state dict (any tensors: FSDP2
    shards, NF4); the names `state_dict` lacks (an export that gathered the trainable parameters only,
    `ignore_frozen_params`) are read from `source` too. Without a source (a base built from random weights) NF4
    tensors are dequantized, also one at a time."""
    from functools import partial

    from .hf_load import hf_name, hf_tensor_shapes
    from .hub import resolve_pretrained
    from .lazy_weights import LazyWeight

    model_state = state_dict if model_state is None else model_state
    wanted = {k: hf_name(k) for k, v in model_state.items() if k not in state_dict or is_nf4(state_dict[k])}
    wanted = {k: n for k, n in wanted.items() if n is not None}  # adapters and peft's frozen copies have no HF name
    if not wanted:
        return dict(state_dict)
    if source is None:
        if any(k not in state_dict for k in wanted):
            raise ValueError("the state dict lacks the frozen base weights and no base checkpoint is known to read "
                             "them from (apply_lora(..., base_model_name_or_path=load_from))")
        return {k: LazyWeight(tuple(v.shape), partial(dequantize, v)) if is_nf4(v) else v
                for k, v in state_dict.items()}
    source = resolve_pretrained(source)  # once: a hub id is looked up once, not for every tensor
    shapes = hf_tensor_shapes(source, sorted(set(wanted.values())))  # a tied lm_head is not stored: left out
    out = dict(state_dict)
    for key, name in wanted.items():
        if name not in shapes:
            continue
        if shapes[name] != tuple(model_state[key].shape):
            raise ValueError(f"{source}: {name} has shape {shapes[name]}, the trained model "
                             f"{tuple(model_state[key].shape)}: not the checkpoint this run was built from")
        # as the run loaded it (the model's dtype): the merge rounds once
        out[key] = LazyWeight(shapes[name], partial(_read_original, source, name, model_state[key].dtype))
    return out


def _read_original(source: Any, name: str, dtype: torch.dtype) -> torch.Tensor:
    from .hf_load import read_hf_tensors

    return read_hf_tensors(source, [name])[name].to(dtype)
