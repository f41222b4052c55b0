"""XTuner v1's `xtuner.v1.loss.ce_loss`: `CELossConfig`, `CELossKwargs`, `LMHeadLossContext` (= `CELossContext`).

The Trainer's own CE path is `loss.ce.lm_loss` (eager or chunked, global calibration); this module wraps it in
XTuner's context interface so that code written against XTuner's loss classes runs unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .base_loss_ctx import BaseLossContext, BaseLossKwargs
from .ce import lm_loss, loss_weights
from .config import CELossConfig

__all__ = ["CELossConfig", "CELossKwargs", "LMHeadLossContext", "CELossContext"]


class CELossKwargs(BaseLossKwargs):
    shifted_labels: torch.Tensor
    loss_weight: torch.Tensor | None = None


def build_ce_context(cfg: CELossConfig, data: dict, sp_mesh: Any = None) -> "LMHeadLossContext | None":
    if "shifted_labels" not in data:
        return None
    if sp_mesh is not None and sp_mesh.size() > 1:
        raise ValueError("sequence parallelism (sp_size > 1) is not supported by xtuner_nb")
    return LMHeadLossContext(cfg, CELossKwargs(shifted_labels=data["shifted_labels"]))


class LMHeadLossContext(BaseLossContext):
    loss_cfg: CELossConfig
    loss_kwargs: CELossKwargs

    @staticmethod
    def build_batches(loss_ctx_list: list["LMHeadLossContext"],  # type: ignore[override]
                      cu_seq_lens_list: Sequence[torch.Tensor] | None = None,
                      sp_mesh: Any = None) -> list["LMHeadLossContext"]:
        """Per-token weights of each pack, divided by their sum over the whole step (and over all ranks)."""
        import torch.distributed as dist

        cfg = loss_ctx_list[0].loss_cfg
        for i, ctx in enumerate(loss_ctx_list):
            labels = ctx.loss_kwargs.shifted_labels
            cu = cu_seq_lens_list[i] if cu_seq_lens_list is not None else \
                torch.tensor([0, labels.numel()], dtype=torch.int32)
            ctx.loss_kwargs.loss_weight = loss_weights(labels, cu, cfg.loss_reduction, cfg.ignore_idx).view_as(labels)
        denominator = sum(c.loss_kwargs.loss_weight.sum() for c in loss_ctx_list)
        if dist.is_initialized():
            dist.all_reduce(denominator)
        for ctx in loss_ctx_list:
            ctx._batch_size = len(loss_ctx_list)
            ctx.loss_kwargs.loss_weight = ctx.loss_kwargs.loss_weight / (denominator + 1e-12)
        return loss_ctx_list

    def loss_fn(self, hidden_states, head_weight, head_bias, loss_kwargs):
        if head_bias is not None:
            raise NotImplementedError("the loss does not support an lm_head bias (as XTuner)")
        loss = lm_loss(hidden_states, head_weight, loss_kwargs.shifted_labels, loss_kwargs.loss_weight, 1.0,
                       self.loss_cfg)
        return loss, (None, {})

    def forward(self, hidden_states, head_weight, head_bias=None):
        # lm_loss chunks (or fuses) itself; the base class' per-chunk loop is for custom losses
        return self.loss_fn(hidden_states, head_weight, head_bias, self.loss_kwargs)


CELossContext = LMHeadLossContext  # XTuner's deprecated name
