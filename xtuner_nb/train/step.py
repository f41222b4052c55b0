"""One optimizer step as XTuner v1 defines it: `global_batch_size` packs, one forward/backward per pack.

The loss of the step is the token mean over *every* pack of *every* rank: each pack's loss is divided by the
step-wide denominator (the sum of loss weights, all-reduced), so summing the micro-step losses gives exactly the
loss of one big batch -- independent of the number of ranks and of gradient accumulation ("global loss
calibration"). `sample`/`square` reductions only change the per-token weights. The model computes each pack's
loss in its own forward (`xtuner_nb.model.packed`, e.g. `Qwen3ForPackedCausalLM`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..loss import BaseLossConfig, CELossConfig, global_denominator, loss_weights
from .distributed import all_reduce_sum
from .flops import effective_attn_len


def pack_inputs(pack: dict, device: torch.device) -> dict:
    cu = pack["cu_seq_lens"].to(device=device, dtype=torch.int32)
    return dict(input_ids=pack["input_ids"].to(device), position_ids=pack["position_ids"].to(device),
                cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=int(pack["max_length"]),
                max_length_k=int(pack["max_length"]), use_cache=False)  # transformers 5 builds a KV cache otherwise


@dataclass
class StepResult:
    reduced_loss: float  # the calibrated step loss (same on every rank)
    local_loss: float  # this rank's own token mean
    text_tokens: int  # non-padding tokens on this rank (prompt tokens included, as XTuner)
    loss_tokens: int
    attn_len: float  # sum(len_i^2)/sum(len_i): the effective attended length, for FLOPs


def forward_backward(model: nn.Module, packs: list[dict], loss_cfg: BaseLossConfig, device: torch.device,
                     world_size: int, autocast_dtype: torch.dtype | None, defer_reduce_scatter: bool = False,
                     grad_scaler: "torch.amp.GradScaler | None" = None, fp32_lm_head: bool = False) -> StepResult:
    """Forward and backward of every pack of this rank's share of the step; gradients accumulate in the model."""
    loss_kwargs, local_share = step_loss_inputs(packs, loss_cfg, device, fp32_lm_head)
    local_sum = torch.zeros((), dtype=torch.float64, device=device)
    fsdp = hasattr(model, "set_requires_gradient_sync")
    for i, (pack, kwargs) in enumerate(zip(packs, loss_kwargs)):
        if fsdp:  # reduce-scatter after every pack (sharded grads only); deferred: once, after the last pack
            model.set_requires_gradient_sync(not defer_reduce_scatter or i == len(packs) - 1)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = model(**pack_inputs(pack, device), **kwargs)
        # FSDP2 averages gradients over ranks; the calibrated loss wants their sum.
        scaled = loss * world_size if world_size > 1 else loss
        (grad_scaler.scale(scaled) if grad_scaler is not None else scaled).backward()
        local_sum += loss.detach().double()
    reduced = all_reduce_sum(local_sum.clone())
    lens = torch.cat([_sample_lengths(p) for p in packs])  # padding segments left out (MFU, tokens)
    return StepResult(
        reduced_loss=float(reduced),
        local_loss=local_share(local_sum),
        text_tokens=int(lens.sum()),
        loss_tokens=int(sum(int((p["shifted_labels"] != loss_cfg.ignore_idx).sum()) for p in packs)),
        attn_len=effective_attn_len(lens),
    )


def step_loss_inputs(packs: list[dict], loss_cfg: BaseLossConfig, device: torch.device,
                     fp32_lm_head: bool = False) -> tuple[list[dict], Callable[[torch.Tensor], float]]:
    """What the model's forward needs, per pack, to return its share of the step loss, and how this rank's own
    token mean follows from the sum of its packs' losses.

    CELossConfig: per-token weights and the step-wide denominator (the packed path of `model.packed`). Any other
    BaseLossConfig is XTuner's loss interface: `loss_cfg.build(pack)` per pack, `build_batches` over the step's
    packs (the context calibrates, e.g. divides by the step's loss tokens), then `ctx(hidden, lm_head.weight)`."""
    if type(loss_cfg) is not CELossConfig:
        ctxs = [loss_cfg.build({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in p.items()})
                for p in packs]
        ctxs = type(ctxs[0]).build_batches(ctxs, cu_seq_lens_list=[p["cu_seq_lens"].to(device) for p in packs],
                                           sp_mesh=None)
        return [{"loss_ctx": ctx} for ctx in ctxs], float
    weights = [loss_weights(p["shifted_labels"], p["cu_seq_lens"], loss_cfg.loss_reduction, loss_cfg.ignore_idx)
               .to(device) for p in packs]
    local_denom, denom = global_denominator(weights)
    extra = {"fp32_lm_head": True} if fp32_lm_head else {}
    kwargs = [dict(shifted_labels=p["shifted_labels"].to(device), loss_weights=w, loss_denominator=denom.float(),
                   loss_cfg=loss_cfg, **extra) for p, w in zip(packs, weights)]
    return kwargs, lambda local_sum: float(local_sum * denom / local_denom) if local_denom > 0 else 0.0


def _sample_lengths(pack: dict) -> torch.Tensor:
    """Lengths of the real samples of a pack: the collator appends padding as pseudo-samples at the end."""
    cu = pack["cu_seq_lens"].long()
    real_end = int(cu[-1]) - int(pack["num_padding"])
    return cu.diff()[cu[1:] <= real_end]


def clip_and_step(model: nn.Module, optimizer: torch.optim.Optimizer, max_norm: float, do_clip: bool,
                  skip_threshold: float | None, norm_dtype: torch.dtype = torch.float32,
                  grad_scaler: "torch.amp.GradScaler | None" = None) -> tuple[float, bool]:
    """Global L2 grad norm (DTensor-aware; accumulated in `norm_dtype`, XTuner's grad_norm_dtype), clip, then
    step -- or skip the update on NaN/Inf (or over threshold).

    With fp16 loss scaling the gradients are unscaled first; an overflow (a non-finite norm, the same on every rank)
    skips the update and lowers the scale. Returns (grad_norm, updated)."""
    if grad_scaler is not None:
        grad_scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad if norm_dtype == torch.float32 else p.grad.to(norm_dtype) for p in params]
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=None)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    value = float(norm)
    ok = math.isfinite(value) and (skip_threshold is None or value <= skip_threshold)
    if ok:
        if do_clip:
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        optimizer.step()
    if grad_scaler is not None:
        _update_scale(grad_scaler)
    optimizer.zero_grad(set_to_none=True)
    return value, ok


def _update_scale(grad_scaler: "torch.amp.GradScaler") -> None:
    """GradScaler.update from this rank's overflow record; then every rank takes the smallest scale, so ranks whose
    own shard was finite do not grow the scale while another rank's overflowed."""
    grad_scaler.update()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        scale = torch.tensor([grad_scaler.get_scale()], dtype=torch.float32,
                             device=grad_scaler._scale.device if grad_scaler._scale is not None else "cpu")
        torch.distributed.all_reduce(scale, op=torch.distributed.ReduceOp.MIN)
        grad_scaler.update(float(scale))
