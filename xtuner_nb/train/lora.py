"""LoRA in the Trainer (peft): wrap once, train the adapters only, export the adapter and the merged model.

One wrapping, always: every `Trainer(...)` builds a fresh base model and wraps it here, so re-running the cell that
builds a Trainer, or resuming a run, never puts adapters on adapters; `apply_lora` refuses a model that already has
LoRA layers. A checkpoint holds the adapters and their optimizer state only (the frozen base comes from
`load_from`); it records the LoRA config and a fingerprint of the base, so resuming on another base -- e.g. on a
merged `hf-N` export, which already contains the adapters -- stops with a clear error instead of adding them twice.

An HF export `hf-N/` is the merged model (base + (alpha/r)·B@A, an ordinary HF folder) and `hf-N/adapter/` the
adapter in peft's format: `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), "hf-N/adapter")`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..model.hf_save import save_hf
from ..model.lora import LoRAConfig
from ..model.lora_merge import ADAPTER, merged_state_dict

ADAPTER_DIR = "adapter"  # hf-N/adapter: the peft adapter beside the merged weights
_TIED_ENDS = ("lm_head", "embed_tokens")


def has_lora(model: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def apply_lora(model: nn.Module, cfg: LoRAConfig, base_model_name_or_path: Any = None) -> nn.Module:
    """`peft.get_peft_model(model, cfg.to_peft())`: adapters in fp32, everything else frozen. Returns the PeftModel.

    Refuses a model that already carries LoRA layers (adapters on adapters), names that match no layer, and
    `lm_head`/`embed_tokens` among the trained modules of a model with tied embeddings (the merged export could not
    represent a matrix that is one tensor at both ends of the model but trained at one end only).
    """
    from peft import get_peft_model

    if has_lora(model):
        raise ValueError("apply_lora: the model already has LoRA adapters; wrapping it again would stack a second "
                         "adapter on the first. Build a fresh base model (model_cfg.build() + load_hf_weights), or "
                         "merge first (model.merge_and_unload())")
    config = getattr(model, "config", None)
    if getattr(config, "tie_word_embeddings", False):
        bad = [n for n in [*cfg.target_modules, *(cfg.modules_to_save or [])] if n in _TIED_ENDS]
        if bad:
            raise ValueError(f"LoRAConfig: {bad} in a model with tie_word_embeddings=True: lm_head and embed_tokens "
                             "are one matrix there; leave them out of target_modules/modules_to_save")
    names = [n for n, _ in model.named_modules()]
    unknown = [t for t in cfg.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"LoRAConfig.target_modules: {unknown} match no layer of the model; its linear layers are "
                         f"{linears}")
    with warnings.catch_warnings():  # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, cfg.to_peft(), autocast_adapter_dtype=True)
    if base_model_name_or_path is not None:  # get_peft_model takes it from the model, which has none here
        peft_model.peft_config[ADAPTER].base_model_name_or_path = str(base_model_name_or_path)
    return peft_model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each tensor once (tied weights are one tensor)."""
    params = list(model.parameters())  # deduplicated; a DTensor shard counts its full size
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def describe(model: nn.Module, cfg: LoRAConfig) -> str:
    trainable, total = trainable_parameters(model)
    return (f"LoRA r={cfg.r} alpha={cfg.lora_alpha} on {','.join(cfg.target_modules)}: {trainable / 1e6:.3f} M "
            f"trainable of {total / 1e6:.2f} M parameters ({100 * trainable / total:.3f}%)")


# ---- the adapter folder and the merged export ----------------------------------------------------------------------
def save_adapter(peft_model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """The adapter in peft's format (`adapter_config.json` + `adapter_model.safetensors`), written atomically.

    `state_dict`: the PeftModel's full state dict (plain tensors), so a sharded (FSDP2) model saves from rank 0."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        peft_model.save_pretrained(str(tmp), state_dict=dict(state_dict), selected_adapters=[ADAPTER])
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def save_lora_hf(peft_model: nn.Module, state_dict: Mapping[str, torch.Tensor], model_cfg, cfg: LoRAConfig,
                 path: str | Path, tokenizer: Any = None, dtype: torch.dtype = torch.bfloat16) -> Path:
    """`path/`: the merged model (an ordinary HF folder, `dtype`); `path/adapter/`: the peft adapter (fp32)."""
    path = Path(path)
    save_hf(merged_state_dict(state_dict, cfg.scaling), model_cfg, path, tokenizer=tokenizer, dtype=dtype)
    save_adapter(peft_model, state_dict, path / ADAPTER_DIR)
    return path


# ---- resume: the same adapters on the same base --------------------------------------------------------------------
def base_fingerprint(model: nn.Module) -> dict[str, str]:
    """A digest of the (unwrapped, unsharded) base weights: the first 256 values of every floating tensor.

    A merged export differs from its base in every adapted matrix, first rows included, so it is told apart.
    """
    h = hashlib.sha1()
    dtypes = set()
    for name, t in sorted(model.state_dict().items()):
        if not t.is_floating_point() or t.is_meta:
            continue
        dtypes.add(str(t.dtype).removeprefix("torch."))
        h.update(name.encode())
        h.update(t.detach().flatten()[:256].contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return {"digest": h.hexdigest(), "dtype": ",".join(sorted(dtypes))}


def resume_record(cfg: LoRAConfig | None, fingerprint: dict[str, str] | None) -> dict[str, Any]:
    """What a checkpoint's train_state.json records about LoRA (None: full fine-tuning)."""
    return {"lora": None if cfg is None else {"config": cfg.to_dict(with_type=False), "base": fingerprint}}


def check_resume(ckpt_path: Path, cfg: LoRAConfig | None, fingerprint: dict[str, str] | None) -> None:
    """Refuse a checkpoint whose adapters do not fit this run: LoRA vs full, another LoRA config, another base."""
    state_file = Path(ckpt_path) / "train_state.json"
    if not state_file.is_file():
        return  # load_checkpoint reports an incomplete checkpoint itself
    state = json.loads(state_file.read_text(encoding="utf-8"))
    if "lora" not in state:
        return  # a checkpoint from before LoRA support: full fine-tuning
    saved = state["lora"]
    if saved is None and cfg is None:
        return
    if saved is None:
        raise ValueError(f"{ckpt_path}: a full fine-tuning checkpoint, but this run trains LoRA adapters "
                         "(lora_cfg is set); resume it with lora_cfg=None, or start LoRA from its HF export "
                         "(load_from=<exp_dir>/hf-N) without resuming")
    if cfg is None:
        raise ValueError(f"{ckpt_path}: holds LoRA adapters ({saved['config']}) but this run has lora_cfg=None; "
                         "resume with the same lora_cfg, or load the merged export <exp_dir>/hf-N as load_from")
    now = cfg.to_dict(with_type=False)
    if saved["config"] != now:
        diff = {k: (saved["config"].get(k), v) for k, v in now.items() if saved["config"].get(k) != v}
        raise ValueError(f"{ckpt_path}: its adapters were trained with another LoRAConfig "
                         f"(field: (checkpoint, now) = {diff}); resume with the checkpoint's lora_cfg")
    base = saved.get("base")
    if base and fingerprint and base["dtype"] == fingerprint["dtype"] and base["digest"] != fingerprint["digest"]:
        raise ValueError(f"{ckpt_path}: its adapters were trained on another base model than load_from. Resume "
                         "with the load_from of the original run; a merged export (hf-N) already contains the "
                         "adapters, and resuming on it would apply them twice")
