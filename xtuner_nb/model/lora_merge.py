"""The one LoRA merge: W + scaling·B@A, computed in fp32 and rounded once -- the same numbers as peft's
`merge_and_unload()`. Used by `save_hf(peft_model)` and by the Trainer's LoRA export (`train/lora.py`).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .hf_load import hf_name

ADAPTER = "default"  # peft's adapter name; the Trainer trains one adapter


def merged_state_dict(state_dict: Mapping[str, torch.Tensor], scaling: float | Mapping[tuple[str, str], float],
                      adapters: tuple[str, ...] = (ADAPTER,)) -> dict[str, torch.Tensor]:
    """HF-named full weights of an adapted model: adapters merged, `modules_to_save` copies replacing originals.

    `state_dict`: the PeftModel's full state dict (plain tensors, e.g. `get_model_state_dict(...,
    full_state_dict=True)`). `scaling`: lora_alpha / r for every layer, or {(layer name, adapter): scaling} for the
    layers to merge (a layer left out keeps its base weight).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if ".lora_" in key or ".original_module." in key:
            continue  # adapter factors (merged below) and the frozen originals of modules_to_save
        for adapter in adapters:
            key = key.replace(f".modules_to_save.{adapter}.", ".")
        if key.endswith(".base_layer.weight"):
            prefix = key[: -len(".base_layer.weight")]
            for adapter in adapters:
                scale = scaling if isinstance(scaling, (int, float)) else scaling.get((prefix, adapter))
                if scale is not None:
                    value = _merge(state_dict, prefix, adapter, value, scale)
        name = hf_name(key)
        if name is not None:
            out[name] = value
    return out


def _merge(sd: Mapping[str, torch.Tensor], prefix: str, adapter: str, weight: torch.Tensor,
           scaling: float) -> torch.Tensor:
    a, b = sd.get(f"{prefix}.lora_A.{adapter}.weight"), sd.get(f"{prefix}.lora_B.{adapter}.weight")
    if a is not None and b is not None:  # nn.Linear: W (out x in) += B (out x r) @ A (r x in)
        delta = b.float() @ a.float()
    else:
        a, b = sd.get(f"{prefix}.lora_embedding_A.{adapter}"), sd.get(f"{prefix}.lora_embedding_B.{adapter}")
        if a is None or b is None:
            return weight
        delta = (b.float() @ a.float()).T  # nn.Embedding: W (vocab x dim) += (B (dim x r) @ A (r x vocab))^T
    return (weight.float() + scaling * delta).to(weight.dtype)


def merged_model_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """`merged_state_dict` of a peft model's own state dict, for its active, unmerged adapters; the model itself is
    not changed. DoRA, and LoRA on a tied embedding, are refused."""
    scaling: dict[tuple[str, str], float] = {}
    tied = _tied_weight(model)
    for name, module in model.named_modules():
        if not (hasattr(module, "scaling") and hasattr(module, "base_layer")):
            continue
        if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
            continue  # deltas already inside the base weight, or switched off
        adapters = [a for a in module.active_adapters
                    if a in getattr(module, "lora_A", {}) or a in getattr(module, "lora_embedding_A", {})]
        if any(getattr(module, "use_dora", {}).get(a, False) for a in adapters):
            raise ValueError(f"save_hf: {name} uses DoRA; merge it with peft first (model.merge_and_unload())")
        if adapters and tied is not None and module.base_layer.weight is tied:
            raise ValueError(f"save_hf: LoRA on {name}, whose weight is tied to the other end of the model "
                             "(tie_word_embeddings=True): a merged tied matrix would change both ends, which is not "
                             "the model that was trained; leave embed_tokens/lm_head out of target_modules")
        scaling.update({(name, a): module.scaling[a] for a in adapters})
    all_adapters = tuple(sorted({a for _, a in scaling}))
    return merged_state_dict(model.state_dict(), scaling, all_adapters)


def _tied_weight(model: nn.Module) -> torch.Tensor | None:
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            head, emb = module.get_output_embeddings(), module.get_input_embeddings()
            head_w = getattr(head, "weight", None)
            if hasattr(head, "base_layer"):
                head_w = head.base_layer.weight
            emb_w = emb.base_layer.weight if hasattr(emb, "base_layer") else getattr(emb, "weight", None)
            return emb_w if head_w is not None and head_w is emb_w else None
    return None
