"""Causal-LM cross-entropy with XTuner v1's reductions and global loss calibration.

A step's loss is `sum over every token of the step (CE_i * w_i) / sum(w_i)`: `loss_weights` gives the
un-normalised `w` of one pack, `global_denominator` sums them over all packs (and ranks) of the step, and
`lm_loss` of each pack divides by that shared denominator. Summing the per-pack losses (and
their gradients) then gives exactly the loss of one big batch, whatever the accumulation count.

`mode="chunk"` never materialises the full `[L, vocab]` logits: `_ChunkedLinearCE` runs lm_head + CE over
`chunk_size` rows at a time and computes d(loss)/d(hidden) and d(loss)/d(lm_head weight) in the forward, so the
backward only scales the stored gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:
    from .config import CELossConfig

__all__ = ["loss_weights", "global_denominator", "lm_loss"]


def loss_weights(shifted_labels: torch.Tensor, cu_seq_lens: torch.Tensor, reduction: str = "token",
                 ignore_idx: int = -100) -> torch.Tensor:
    """Float32 [L] per-token weights, not normalised: token -> 1, sample -> 1/n_i, square -> 1/sqrt(n_i),

    where n_i is the number of loss tokens of the sample (a `cu_seq_lens` segment) the token belongs to.
    Ignored labels, and so segments without any loss token (padding), get 0.
    """
    labels = shifted_labels.reshape(-1)
    mask = labels != ignore_idx
    if reduction == "token":
        return mask.float()
    if reduction not in ("sample", "square"):
        raise ValueError(f"loss reduction must be 'token', 'sample' or 'square', got {reduction!r}")
    cu = cu_seq_lens.reshape(-1).to(device=labels.device, dtype=torch.long)
    seg_lens = cu.diff()
    if cu.numel() < 2 or int(cu[0]) != 0 or int(cu[-1]) != labels.numel() or bool((seg_lens < 0).any()):
        raise ValueError(f"cu_seq_lens must rise from 0 to the number of labels ({labels.numel()}), "
                         f"got {cu.tolist()}")
    seg_id = torch.repeat_interleave(torch.arange(seg_lens.numel(), device=labels.device), seg_lens)
    n_loss = torch.zeros(seg_lens.numel(), device=labels.device).index_add_(0, seg_id, mask.float())
    n_tok = n_loss[seg_id].clamp_min(1.0)  # clamp only guards 1/0 where the mask is 0 anyway
    w = n_tok.reciprocal() if reduction == "sample" else n_tok.rsqrt()
    return torch.where(mask, w, torch.zeros_like(w))


def global_denominator(pack_weights: Sequence[torch.Tensor],
                       device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(this rank's, the whole step's) sum of the loss weights of `pack_weights`, one tensor per pack, in fp64. The
    step's sum is all-reduced over the ranks and at least 1e-12, so a step without a loss token divides safely.
    Every path that calibrates a loss over a step (the training step, the eval loss, XTuner's LMHeadLossContext)
    takes its denominator from here."""
    if not pack_weights:  # a rank without packs (eval) still joins the all-reduce
        local = torch.zeros((), dtype=torch.float64, device=device)
    else:
        local = torch.stack([w.sum() for w in pack_weights]).sum().double()
    total = local.clone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return local, total.clamp_min(1e-12)


def lm_loss(hidden: torch.Tensor, lm_head_weight: torch.Tensor, shifted_labels: torch.Tensor,
            weights: torch.Tensor, denominator: float | torch.Tensor, loss_cfg: CELossConfig) -> torch.Tensor:
    """`sum_i(CE_i * w_i) / denominator` of `hidden [1,L,H] or [L,H]` through `lm_head_weight [V,H]`, with the mode,
    chunk size and ignored label of `loss_cfg` (a `CELossConfig`).

    Logits are upcast to fp32 before the CE. A zero denominator (no loss token in the whole step) gives 0.
    """
    h = hidden.reshape(-1, hidden.shape[-1])
    labels = shifted_labels.reshape(-1)
    w = weights.reshape(-1).to(device=h.device, dtype=torch.float32)
    if lm_head_weight.dim() != 2 or lm_head_weight.shape[1] != h.shape[1]:
        raise ValueError(f"lm_head_weight must be [vocab, {h.shape[1]}], got {list(lm_head_weight.shape)}")
    if labels.numel() != h.shape[0] or w.numel() != h.shape[0]:
        raise ValueError(f"hidden has {h.shape[0]} tokens but shifted_labels has {labels.numel()} "
                         f"and weights {w.numel()}")
    labels = labels.to(h.device)
    if isinstance(denominator, torch.Tensor):
        d = denominator.to(device=h.device, dtype=torch.float32)
        d = torch.where(d == 0, torch.ones_like(d), d)
    else:
        d = float(denominator) or 1.0
    if loss_cfg.mode == "eager":
        logits = F.linear(h, lm_head_weight).float()
        ce = F.cross_entropy(logits, labels, ignore_index=loss_cfg.ignore_idx, reduction="none")
        return (ce * w).sum() / d
    if loss_cfg.mode == "liger":  # token reduction only (the config checks it): every weight is 1 or 0
        return _liger_loss(h, lm_head_weight, labels, loss_cfg.ignore_idx) / d
    if loss_cfg.mode != "chunk":
        raise ValueError(f"CELossConfig.mode must be 'eager', 'chunk' or 'liger', got {loss_cfg.mode!r}")
    # Fold 1/denominator into the weights so the gradients stored by the forward are already final: the backward
    # then multiplies by grad_output (1, or a power-of-two loss scale), exact even in bf16.
    w = w / d
    if torch.is_grad_enabled() and (h.requires_grad or lm_head_weight.requires_grad):
        return _ChunkedLinearCE.apply(h, lm_head_weight, labels, w, loss_cfg.chunk_size, loss_cfg.ignore_idx)
    # eval: the same chunking without gradient buffers
    return _chunked_forward(h, lm_head_weight, labels, w, loss_cfg.chunk_size, loss_cfg.ignore_idx, False, False)[0]


def _liger_loss(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_idx: int) -> torch.Tensor:
    """Summed CE from liger-kernel's fused linear cross-entropy (as XTuner's mode='liger'; CUDA + Triton)."""
    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(ignore_index=ignore_idx, reduction="sum",
                                            accum_dtype=torch.float32)(weight, h, labels)


def _chunked_forward(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, w: torch.Tensor,
                     chunk_size: int, ignore_idx: int, grad_h_needed: bool, grad_w_needed: bool):
    """Loss sum, and optionally its gradients w.r.t. h ([L,H], h's dtype) and weight ([V,H], weight's dtype).

    Per chunk of c rows the only vocab-sized tensors are the fp32 [c, V] logits (softmax and gradient are computed
    in their buffer) and, for bf16/fp16 inputs, one low-precision [c, V] copy.
    d(CE_i * w_i)/d(logits_i) = w_i * (softmax(logits_i) - onehot(label_i)).
    """
    total = torch.zeros((), device=h.device, dtype=torch.float32)
    grad_h = torch.empty_like(h) if grad_h_needed else None
    # fp32 accumulator across chunks: bf16 partial sums added in bf16 would lose the small chunks' contributions.
    grad_w = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if grad_w_needed else None
    for start in range(0, h.shape[0], chunk_size):
        hc, lab = h[start:start + chunk_size], labels[start:start + chunk_size]
        wc = w[start:start + chunk_size]
        keep = lab != ignore_idx
        tgt = torch.where(keep, lab, torch.zeros_like(lab))
        logits = F.linear(hc, weight).float()
        target_logit = logits.gather(1, tgt[:, None]).squeeze(1)
        row_max = logits.amax(dim=-1, keepdim=True)
        exp = logits.sub_(row_max).exp_()  # in place: torch.logsumexp would allocate a second [c, V] buffer
        sum_exp = exp.sum(dim=-1, keepdim=True)
        ce = (row_max + sum_exp.log()).squeeze(1) - target_logit
        scale = torch.where(keep, wc, torch.zeros_like(wc))  # w is 0 on ignored labels anyway; be safe
        total += (ce * scale).sum()
        if not (grad_h_needed or grad_w_needed):
            del logits, exp
            continue
        g = exp.div_(sum_exp)  # softmax, still in the logits' buffer
        g[torch.arange(g.shape[0], device=g.device), tgt] -= 1.0
        g.mul_(scale[:, None])
        g_mm = g if g.dtype == hc.dtype else g.to(hc.dtype)  # bf16/fp16 matmuls accumulate in fp32 inside
        del logits, exp, g
        if grad_h_needed:
            grad_h[start:start + chunk_size] = g_mm @ weight
        if grad_w_needed and g_mm.dtype == torch.float32:
            grad_w.addmm_(g_mm.t(), hc)
        elif grad_w_needed:  # low-precision product per chunk, summed over chunks in fp32
            grad_w += g_mm.t() @ hc
        del g_mm
    return total, grad_h, None if grad_w is None else grad_w.to(weight.dtype)


class _ChunkedLinearCE(torch.autograd.Function):
    """sum_i CE(h_i @ W.T, label_i) * w_i with gradients computed chunk by chunk in the forward.

    A plain autograd Function: a tied lm_head weight gets this grad added to the embedding's by autograd, and a
    weight all-gathered inside an FSDP2 forward flows back through FSDP's own hooks. The weight is not kept for
    the backward (FSDP may reshard it right after the forward).
    """

    @staticmethod
    def forward(ctx, h, weight, labels, w, chunk_size, ignore_idx):
        total, grad_h, grad_w = _chunked_forward(h, weight, labels, w, chunk_size, ignore_idx,
                                                 ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        ctx.save_for_backward(grad_h, grad_w)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is not None:
            grad_h = grad_h * grad_out.to(grad_h.dtype)
        if grad_w is not None:
            grad_w = grad_w * grad_out.to(grad_w.dtype)
        return grad_h, grad_w, None, None, None, None
