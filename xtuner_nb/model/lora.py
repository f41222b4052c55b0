"""`LoRAConfig`: low-rank adapters (peft's LoRA) on a decoder's linear layers; only the adapters train.

XTuner v1 has no LoRA; the field names are peft's (`peft.LoraConfig`), so a config reads the same in both. This
module imports only pydantic (it is a config, shown as a form); the Trainer applies it with
`xtuner_nb.train.lora.apply_lora`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ..config.base import XConfig
from .base import DECODER_LINEAR_MODULES

# Qwen3, Qwen2 and Llama name the linear layers of a decoder layer alike (each config's `lora_target_modules`)
QWEN3_LINEAR_MODULES = DECODER_LINEAR_MODULES


class LoRAConfig(XConfig):
    """Train rank-r adapters W + (lora_alpha / r)·B@A instead of W; the base model stays frozen."""

    r: int = Field(16, ge=1, description="Adapter rank: each adapted weight W (out x in) gains B (out x r) @ A (r x in).")
    lora_alpha: int = Field(32, ge=1, description="Scale of the update: (lora_alpha / r)·B@A (32 with r=16 gives 2).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input (0: none, runs are "
                                                            "bit-for-bit repeatable).")
    target_modules: list[str] = Field(default_factory=lambda: list(QWEN3_LINEAR_MODULES),
                                      description="Layers to adapt, by name (default: all linear layers of every "
                                                  "decoder layer, q/k/v/o_proj and gate/up/down_proj).")
    modules_to_save: list[str] | None = Field(None, description="Modules trained in full beside the adapters, e.g. "
                                                                "['lm_head'] (not with tied embeddings).")

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("target_modules is empty: name at least one layer, e.g. ['q_proj', 'v_proj']")
        if len(set(v)) != len(v):
            raise ValueError(f"target_modules lists a name twice: {v}")
        return v

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r

    def to_peft(self, base_model_name_or_path: Any = None):
        """The equivalent `peft.LoraConfig` (no task type: the Trainer's packed forward passes straight through)."""
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=list(self.target_modules), bias="none",
                          modules_to_save=list(self.modules_to_save) if self.modules_to_save else None,
                          base_model_name_or_path=str(base_model_name_or_path) if base_model_name_or_path else None)
