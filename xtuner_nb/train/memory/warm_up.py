"""The first training step of a process loads code and sets up buffers that the process then keeps: transformers'
model module, the packed attention, the optimizer's first step (which imports torch's compiler stack), oneDNN's
kernels. On this 2-core CPU VM that is about 75 MB of resident memory, measured, more than the whole tiny tutorial
model with its activations. On a CPU the fit check counts the process's resident memory as part of the run, so it
first pays these one-off costs with one step of a micro copy of the architecture, and measures after that.
"""

from __future__ import annotations

from typing import Any

import torch

_WARM: set[tuple[str, str, bool]] = set()  # (architecture, compute dtype, LoRA): what this process has run once


def warm_up_training_runtime(config: Any, autocast_dtype: torch.dtype | None) -> None:
    """One forward, backward and optimizer step of a one-layer, 64-wide copy of `config`'s model on the CPU, once per
    process and kind of run. Takes a few tens of milliseconds and leaves the global RNG as it was."""
    key = (type(config.model_cfg).__name__, str(autocast_dtype), config.lora_cfg is not None)
    if key in _WARM:
        return
    from ...loss import CELossConfig
    from ..step import clip_and_step, forward_backward

    model_cfg = config.model_cfg
    attention = model_cfg.attention.model_copy(update=dict(num_attention_heads=2, num_key_value_heads=1, head_dim=32))
    micro = model_cfg.model_copy(update=dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128,
                                             vocab_size=256, attention=attention))
    with torch.random.fork_rng(devices=[]):
        model = micro.build(device="cpu")
        if config.lora_cfg is not None:
            from ...model.lora import apply_lora

            model = apply_lora(model, config.lora_cfg)
        optimizer = config.optim_cfg.build([p for p in model.parameters() if p.requires_grad])
        ids = torch.randint(0, micro.vocab_size, (1, 16))
        pack = dict(input_ids=ids, shifted_labels=ids, position_ids=torch.arange(16)[None],
                    cu_seq_lens=torch.tensor([0, 8, 16], dtype=torch.int32), max_length=8, num_padding=0)
        loss_cfg = config.effective_loss_cfg()  # a custom loss of the user's is not run here: it may count its calls
        loss_cfg = loss_cfg if type(loss_cfg) is CELossConfig else CELossConfig()
        forward_backward(model, [pack], loss_cfg, torch.device("cpu"), 1, autocast_dtype)
        clip_and_step(model, optimizer, 1.0, True, None)
    _WARM.add(key)
