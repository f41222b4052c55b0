"""XTuner v1's custom-loss interface (`xtuner.v1.loss.base_loss_ctx`): `BaseLossConfig`, `BaseLossKwargs`,
`BaseLossContext`.

A custom loss is a `BaseLossConfig` subclass whose `build(data)` returns one context per pack, a context class
whose static `build_batches(ctx_list, cu_seq_lens_list=..., sp_mesh=None)` calibrates the contexts of one optimizer
step together (e.g. divides by the step-wide number of loss tokens), and a `loss_fn(hidden_states, head_weight,
head_bias, loss_kwargs) -> (loss, (logits, extra_info))`. The Trainer calls `ctx(hidden_states, lm_head.weight)`
inside the model's forward for every pack; the summed pack losses are the step loss.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from .config import BaseLossConfig

__all__ = ["BaseLossConfig", "BaseLossKwargs", "BaseLossContext"]


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
