"""transformers' CausalLM classes whose forward also returns the packed training loss (XTuner v1's models take a
loss context the same way); `TransformerConfig.build()` builds these, so the Trainer never changes a class.

The loss runs inside the root module's forward because under FSDP2 the lm_head weight is only gathered there.
Without `shifted_labels` (generation, evaluation logits) the forward is transformers', unchanged.
"""

from __future__ import annotations

from .torchao_quiet import import_torchao_quietly

import_torchao_quietly()  # transformers imports torchao when it is installed: first, without its warnings
# (CUDA extensions a CPU torch cannot load, torch's notes on torchao's enums), which a kernel paints red
from transformers import LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM


class PackedLossMixin:
    def forward(self, *args, shifted_labels=None, loss_weights=None, loss_denominator=None, loss_cfg=None,
                loss_ctx=None, fp32_lm_head=False, **kw):
        if shifted_labels is None and loss_ctx is None:
            return super().forward(*args, **kw)
        import torch

        from ..loss import CELossConfig, lm_loss

        hidden = self.model(*args, **kw).last_hidden_state
        if loss_ctx is not None:  # a custom BaseLossConfig's context (XTuner's loss interface)
            return loss_ctx(hidden, self.lm_head.weight)[0]
        loss_cfg = loss_cfg or CELossConfig()  # no loss config given: plain token-mean CE
        if fp32_lm_head:  # FSDPConfig.fp32_lm_head: the logits matmul in fp32, outside autocast
            with torch.autocast(hidden.device.type, enabled=False):
                return lm_loss(hidden.float(), self.lm_head.weight.float(), shifted_labels, loss_weights,
                               loss_denominator, loss_cfg)
        return lm_loss(hidden, self.lm_head.weight, shifted_labels, loss_weights, loss_denominator, loss_cfg)


class Qwen3ForPackedCausalLM(PackedLossMixin, Qwen3ForCausalLM):
    """transformers' Qwen3ForCausalLM; given `shifted_labels` its forward returns the step-calibrated packed loss."""


class Qwen2ForPackedCausalLM(PackedLossMixin, Qwen2ForCausalLM):
    """transformers' Qwen2ForCausalLM; given `shifted_labels` its forward returns the step-calibrated packed loss."""


class LlamaForPackedCausalLM(PackedLossMixin, LlamaForCausalLM):
    """transformers' LlamaForCausalLM; given `shifted_labels` its forward returns the step-calibrated packed loss."""


PACKED_CLASSES = {cls.__mro__[2].__name__: cls
                  for cls in (Qwen3ForPackedCausalLM, Qwen2ForPackedCausalLM, LlamaForPackedCausalLM)}
