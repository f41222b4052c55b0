"""The loss contexts (XTuner v1's custom-loss interface): `BaseLossKwargs`, `BaseLossContext`, and the CE context
`LMHeadLossContext` (= `CELossContext`) with its `CELossKwargs`. XTuner's module paths for them are
`loss.base_loss_ctx` and `loss.ce_loss`, which re-export them with their configs.

A custom loss is a `BaseLossConfig` subclass whose `build(data)` returns one context per pack, a context class
whose static `build_batches(ctx_list, cu_seq_lens_list=..., sp_mesh=None)` calibrates the contexts of one optimizer
step together (e.g. divides by the step-wide number of loss tokens), and a `loss_fn(hidden_states, head_weight,
head_bias, loss_kwargs) -> (loss, (logits, extra_info))`. The Trainer calls `ctx(hidden_states, lm_head.weight)`
inside the model's forward for every pack; the summed pack losses are the step loss.

The Trainer's own CE path is `loss.ce.lm_loss` (eager or chunked, global calibration); `LMHeadLossContext` wraps it
in XTuner's context interface so that code written against XTuner's loss classes runs unchanged, including the
loss page's `CELossContext.build_batches_loss_kwargs([CELossContextInputItem(shifted_labels=...)], loss_cfg)`. The configs
(`loss.config`) build these contexts, so this module imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, TypeVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from .ce import global_denominator, lm_loss, loss_weights

if TYPE_CHECKING:
    from .config import BaseLossConfig, CELossConfig


class BaseLossKwargs(BaseModel):
    """Everything one pack's loss needs (tensors shaped [1, L, ...]); `chunk` splits them along the tokens."""

    model_config = ConfigDict(title="loss keyword arguments", extra="forbid", arbitrary_types_allowed=True)

    def chunk(self, chunk_size: int) -> list["BaseLossKwargs"]:
        tensors = {k: torch.split(v, chunk_size, dim=1) for k, v in self.__dict__.items()
                   if isinstance(v, torch.Tensor) and v.dim() > 0}
        if not tensors:
            raise ValueError(f"{type(self).__name__}.chunk: no tensor field to split")
        others = {k: v for k, v in self.__dict__.items() if k not in tensors}
        n = len(next(iter(tensors.values())))
        return [type(self)(**{k: v[i] for k, v in tensors.items()}, **others) for i in range(n)]

    @classmethod
    def cat(cls, chunks: list["BaseLossKwargs"]) -> "BaseLossKwargs":
        if not chunks:
            raise ValueError("BaseLossKwargs.cat: no chunks")
        first = chunks[0].__dict__
        out = {k: (torch.cat([getattr(c, k) for c in chunks], dim=1)
                   if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in first.items()}
        return cls(**out)


_Ctx = TypeVar("_Ctx", bound="BaseLossContext")


class BaseLossContext(nn.Module):
    def __init__(self, loss_cfg: BaseLossConfig, loss_kwargs: BaseLossKwargs):
        super().__init__()
        self.loss_cfg = loss_cfg
        self.loss_kwargs = loss_kwargs
        self._batch_size = 1

    @staticmethod
    def build_batches(loss_ctx_list: list[_Ctx], *args: Any, **kwargs: Any) -> list[_Ctx]:
        """Calibrate the contexts of one step together; the base only records how many packs the step has."""
        for ctx in loss_ctx_list:
            ctx._batch_size = len(loss_ctx_list)
        return loss_ctx_list

    @classmethod
    def cat(cls: type[_Ctx], chunks: list[_Ctx]) -> _Ctx:
        return cls(chunks[0].loss_cfg, type(chunks[0].loss_kwargs).cat([c.loss_kwargs for c in chunks]))

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def loss_fn(self, hidden_states: torch.Tensor, head_weight: torch.Tensor, head_bias: torch.Tensor | None,
                loss_kwargs: BaseLossKwargs) -> tuple[torch.Tensor, tuple[torch.Tensor | None, dict]]:
        raise NotImplementedError(f"{type(self).__name__} must define loss_fn")

    def forward(self, hidden_states: torch.Tensor, head_weight: torch.Tensor,
                head_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor | None, dict]]:
        """eager: one `loss_fn` call; chunk: `loss_fn` per `chunk_size` tokens, summed (each chunk's logits are
        freed after its backward graph is built; XTuner's ChunkLoss also recomputes them in the backward)."""
        if self.loss_cfg.mode != "chunk":
            return self.loss_fn(hidden_states, head_weight, head_bias, self.loss_kwargs)
        size = self.loss_cfg.chunk_size
        total, extra = None, {}
        for i, kw in enumerate(self.loss_kwargs.chunk(size)):
            loss, (_, info) = self.loss_fn(hidden_states[:, i * size:(i + 1) * size], head_weight, head_bias, kw)
            total = loss if total is None else total + loss
            extra.update(info or {})
        return total, (None, extra)


class CELossKwargs(BaseLossKwargs):
    shifted_labels: torch.Tensor
    loss_weight: torch.Tensor | None = None


class CELossContextInputItem(BaseModel):
    """What one pack gives the CE loss before calibration (XTuner's loss page): its shifted labels [1, L]."""

    model_config = ConfigDict(title="CE loss input", extra="forbid", arbitrary_types_allowed=True)
    shifted_labels: torch.Tensor


def build_ce_context(cfg: CELossConfig, data: dict, sp_mesh: Any = None) -> "LMHeadLossContext | None":
    if "shifted_labels" not in data:
        return None
    if sp_mesh is not None and sp_mesh.size() > 1:
        raise ValueError("sequence parallelism (sp_size > 1) is not supported by xtuner_nb")
    return LMHeadLossContext(cfg, CELossKwargs(shifted_labels=data["shifted_labels"]))


class LMHeadLossContext(BaseLossContext):
    loss_cfg: CELossConfig
    loss_kwargs: CELossKwargs

    @classmethod
    def build_batches_loss_kwargs(cls, data_batches: Sequence[CELossContextInputItem], loss_cfg: CELossConfig,
                                  cu_seq_lens_list: Sequence[torch.Tensor] | None = None,
                                  sp_mesh: Any = None) -> list[CELossKwargs]:
        """XTuner's loss-page entry point: the `CELossKwargs` of every pack of one step, each pack's per-token
        weights divided by their sum over the whole step (and over all ranks: global loss calibration)."""
        if sp_mesh is not None and sp_mesh.size() > 1:
            raise ValueError("sequence parallelism (sp_size > 1) is not supported by xtuner_nb")
        weights = []
        for i, item in enumerate(data_batches):
            labels = item.shifted_labels
            cu = cu_seq_lens_list[i] if cu_seq_lens_list is not None else \
                torch.tensor([0, labels.numel()], dtype=torch.int32)
            weights.append(loss_weights(labels, cu, loss_cfg.loss_reduction, loss_cfg.ignore_idx).view_as(labels))
        _, denominator = global_denominator(weights)
        return [CELossKwargs(shifted_labels=item.shifted_labels, loss_weight=w / denominator.float())
                for item, w in zip(data_batches, weights)]

    @staticmethod
    def build_batches(loss_ctx_list: list["LMHeadLossContext"],  # type: ignore[override]
                      cu_seq_lens_list: Sequence[torch.Tensor] | None = None,
                      sp_mesh: Any = None) -> list["LMHeadLossContext"]:
        """The contexts of one step calibrated together (`build_batches_loss_kwargs` on their labels)."""
        calibrated = LMHeadLossContext.build_batches_loss_kwargs(
            [c.loss_kwargs for c in loss_ctx_list], loss_ctx_list[0].loss_cfg, cu_seq_lens_list, sp_mesh)
        for ctx, kwargs in zip(loss_ctx_list, calibrated):
            ctx._batch_size = len(loss_ctx_list)
            ctx.loss_kwargs.loss_weight = kwargs.loss_weight
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
