"""Loss configs: XTuner v1's `BaseLossConfig` (the base of custom losses) and `CELossConfig` (pydantic only)."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config.base import XConfig


class BaseLossConfig(XConfig):
    """Base of every loss config (XTuner's loss tutorial): a subclass names its context class in `loss_ctx_cls`
    and builds one context per pack in `build(data, sp_mesh)`. Set it as `TrainerConfig.loss_cfg` (or the model
    config's `lm_loss_cfg`)."""

    ignore_idx: int = Field(-100, description="Label id that carries no loss.")
    mode: Literal["eager", "chunk"] = Field(
        "eager", description="eager: full [tokens, vocab] logits; chunk: lm_head + loss per chunk of tokens.")
    chunk_size: int | None = Field(1024, ge=1, description="Tokens per chunk in chunk mode (ignored in eager mode).")

    @property
    def loss_ctx_cls(self) -> type:
        raise NotImplementedError(f"{type(self).__name__} must define the property `loss_ctx_cls`")

    @property
    def _loss_kwargs_cls(self) -> type:
        raise NotImplementedError(f"{type(self).__name__} must define the property `_loss_kwargs_cls`")

    def build(self, data: dict, sp_mesh: Any = None):
        """One loss context for one pack: `data` holds `shifted_labels` (and the pack's other tensors)."""
        raise NotImplementedError(f"{type(self).__name__} must define build(data, sp_mesh)")

    @model_validator(mode="after")
    def _chunk_needs_size(self):
        if self.mode == "chunk" and self.chunk_size is None:
            raise ValueError(f"{type(self).__name__}: mode='chunk' needs a chunk_size (None is only meaningful in "
                             "eager mode, where it is ignored; XTuner asserts the same)")
        return self


class CELossConfig(BaseLossConfig):
    mode: Literal["eager", "chunk", "liger"] = Field(  # type: ignore[assignment]
        "eager", description="eager: full [tokens, vocab] logits; chunk: lm_head + CE per chunk, logits never whole; "
                             "liger: liger-kernel's fused linear cross-entropy (CUDA, needs liger-kernel).")
    loss_reduction: Literal["token", "sample", "square"] = Field(
        "token", description="token: mean over all loss tokens of the step; sample: each sample weighs the same; "
                             "square: sample weight 1/sqrt(n_tokens).")

    @property
    def loss_ctx_cls(self) -> type:
        from .context import LMHeadLossContext

        return LMHeadLossContext

    @property
    def _loss_kwargs_cls(self) -> type:
        from .context import CELossKwargs

        return CELossKwargs

    def build(self, data: dict, sp_mesh: Any = None):
        from .context import build_ce_context

        return build_ce_context(self, data, sp_mesh)

    @model_validator(mode="after")
    def _liger_available(self):
        if self.mode != "liger":
            return self
        if importlib.util.find_spec("liger_kernel") is None:
            raise ValueError("CELossConfig(mode='liger') needs the liger-kernel package (`pip install liger-kernel`, "
                             "CUDA only), which is not installed; use mode='chunk', which also never materialises "
                             "the whole [tokens, vocab] logits")
        if self.loss_reduction != "token":
            raise ValueError("CELossConfig(mode='liger') only supports loss_reduction='token' (as XTuner); use "
                             "mode='chunk' for 'sample' or 'square'")
        return self


def loss_cfg_from_dump(value: Any) -> Any:
    """A loss config field given as a plain dict (what XTuner dumps) is a CELossConfig, XTuner's default class."""
    if isinstance(value, dict) and "__type__" not in value:
        return CELossConfig.model_validate(value)
    if isinstance(value, dict):
        return BaseLossConfig.from_dict(value)
    return value
