"""Loss config (XTuner v1 `CELossConfig`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config.base import XConfig


class CELossConfig(XConfig):
    ignore_idx: int = Field(-100, description="Label id that carries no loss.")
    mode: Literal["eager", "chunk"] = Field(
        "eager", description="eager: full [tokens, vocab] logits; chunk: lm_head + CE per chunk, logits never whole.")
    chunk_size: int = Field(1024, ge=1, description="Tokens per chunk in chunk mode.")
    loss_reduction: Literal["token", "sample", "square"] = Field(
        "token", description="token: mean over all loss tokens of the step; sample: each sample weighs the same; "
                             "square: sample weight 1/sqrt(n_tokens).")
