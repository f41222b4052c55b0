"""LoRA (peft's low-rank adapters), all of it: `LoRAConfig`, wrapping a model once (`apply_lora`), the one merge
(`merged_state_dict`, `merged_model_weights`), the adapter folder (`save_adapter`) and the resume checks.

XTuner v1 has no LoRA; the field names are peft's (`peft.LoraConfig`), so a config reads the same in both. Only the
adapters train: W + (lora_alpha / r)·B@A, the base model frozen. torch and peft are imported on first use, so the
config (shown as a form) loads with pydantic only.

One wrapping, always: every `Trainer(...)` builds a fresh base model and wraps it here, so re-running the cell that
builds a Trainer, or resuming a run, never puts adapters on adapters; `apply_lora` refuses a model that already has
LoRA layers. A checkpoint holds the adapters and their optimizer state only (the frozen base comes from
`load_from`); it records the LoRA config and a fingerprint of the base, so resuming on another base -- e.g. on a
merged `hf-N` export, which already contains the adapters -- stops with a clear error instead of adding them twice.

The merge is W + scaling·B@A computed in fp32 and rounded once -- the same numbers as peft's `merge_and_unload()`;
`hf_save.save_hf(peft_model)` and the Trainer's LoRA export (`hf_save.save_lora_hf`: the merged model in `hf-N/`,
the adapter in peft's format in `hf-N/adapter/`) use it, one weight at a time (`merged_weights`: each merged
weight is made when it is written, `lazy_weights.py`), so an export adds about one linear to the process's memory.

QLoRA (`quantize_base="nf4"`, `qlora.py`) keeps the frozen decoder linears in 4 bits while training; its merge adds
the adapters to the checkpoint's own weights (read again from `load_from`, one tensor at a time), the base that peft
loads the adapter on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from pydantic import Field, field_validator

from ..config.base import XConfig
from .base import DECODER_LINEAR_MODULES

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .lazy_weights import Weight

ADAPTER = "default"  # peft's adapter name; the Trainer trains one adapter
ADAPTER_DIR = "adapter"  # hf-N/adapter: the peft adapter beside the merged weights
_TIED_ENDS = ("lm_head", "embed_tokens")


class LoRAConfig(XConfig):
    """Train rank-r adapters W + (lora_alpha / r)·B@A instead of W; the base model stays frozen."""

    r: int = Field(16, ge=1, description="Adapter rank: each adapted weight W (out x in) gains B (out x r) @ A (r x in).")
    lora_alpha: int = Field(32, ge=1, description="Scale of the update: (lora_alpha / r)·B@A (32 with r=16 gives 2).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input (0: none, runs are "
                                                            "bit-for-bit repeatable).")
    target_modules: list[str] = Field(default_factory=lambda: list(DECODER_LINEAR_MODULES),
                                      description="Layers to adapt, by name (default: all linear layers of every "
                                                  "decoder layer, q/k/v/o_proj and gate/up/down_proj).")
    modules_to_save: list[str] | None = Field(None, description="Modules trained in full beside the adapters, e.g. "
                                                                "['lm_head'] (not with tied embeddings).")
    quantize_base: Literal["nf4"] | None = Field(None, description="QLoRA: keep the frozen linear layers of every "
                                                 "decoder layer in 4-bit NF4 with double quantization (torchao; "
                                                 "pip install \"xtuner_nb[qlora]\"); None: the compute dtype.")

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


# ---- wrapping a model ---------------------------------------------------------------------------------------------
def has_lora(model: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def apply_lora(model: nn.Module, cfg: LoRAConfig, base_model_name_or_path: Any = None) -> nn.Module:
    """`peft.get_peft_model(model, cfg.to_peft())`: adapters in fp32, everything else frozen. Returns the PeftModel.
    With `cfg.quantize_base`, the decoder linears that are not NF4 yet are quantized first (`qlora.py`).

    Refuses a model that already carries LoRA layers (adapters on adapters), names that match no layer, and
    `lm_head`/`embed_tokens` among the trained modules of a model with tied embeddings (the merged export could not
    represent a matrix that is one tensor at both ends of the model but trained at one end only).
    """
    from .qlora import import_torchao_quietly, quantize_decoder_linears

    import_torchao_quietly()  # peft imports torchao when it is installed, LoRA or not: first, without its warnings
    from peft import get_peft_model
    from torch import nn

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
    if cfg.quantize_base is not None:  # a base built with 4-bit placeholders (build.build_model) is NF4 already
        quantize_decoder_linears(model)
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
    base = f", base decoder linears in {cfg.quantize_base.upper()}" if cfg.quantize_base else ""
    return (f"{'Q' if cfg.quantize_base else ''}LoRA r={cfg.r} alpha={cfg.lora_alpha} on "
            f"{','.join(cfg.target_modules)}: {trainable / 1e6:.3f} M trainable of {total / 1e6:.2f} M parameters "
            f"({100 * trainable / total:.3f}%){base}")


# ---- the one merge ------------------------------------------------------------------------------------------------
def merged_state_dict(state_dict: Mapping[str, torch.Tensor], scaling: float | Mapping[tuple[str, str], float],
                      adapters: tuple[str, ...] = (ADAPTER,), source: Any = None,
                      model_state: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """HF-named full weights of an adapted model: adapters merged, `modules_to_save` copies replacing originals.

    `state_dict`: the PeftModel's full state dict (plain tensors, e.g. `get_model_state_dict(...,
    full_state_dict=True)`). `scaling`: lora_alpha / r for every layer, or {(layer name, adapter): scaling} for the
    layers to merge (a layer left out keeps its base weight). `source`: the base checkpoint (`load_from`), read for
    the weights a QLoRA run holds in 4 bits, and for the names of `model_state` (the model's own state dict) that
    `state_dict` lacks (`qlora.unquantized_state_dict`). All weights made at once; an export makes them one at a
    time (`merged_weights`).
    """
    from .lazy_weights import materialize

    return {k: materialize(v) for k, v in merged_weights(state_dict, scaling, adapters, source, model_state).items()}


def merged_weights(state_dict: Mapping[str, torch.Tensor], scaling: float | Mapping[tuple[str, str], float],
                   adapters: tuple[str, ...] = (ADAPTER,), source: Any = None,
                   model_state: Mapping[str, torch.Tensor] | None = None) -> dict[str, Weight]:
    """`merged_state_dict` with every merged weight (and, under QLoRA, every base weight read back from `source`) a
    `LazyWeight`, made when it is written: an export holds one merged linear at a time, not the decoder again."""
    from .hf_load import hf_name
    from .lazy_weights import LazyWeight
    from .qlora import unquantized_state_dict

    state_dict = unquantized_state_dict(state_dict, source, model_state)
    out: dict[str, Weight] = {}
    for key, value in state_dict.items():
        if ".lora_" in key or ".original_module." in key:
            continue  # adapter factors (merged below) and the frozen originals of modules_to_save
        for adapter in adapters:
            key = key.replace(f".modules_to_save.{adapter}.", ".")
        if key.endswith(".base_layer.weight"):
            prefix = key[: -len(".base_layer.weight")]
            merges = [(a, s) for a in adapters
                      if (s := scaling if isinstance(scaling, (int, float)) else scaling.get((prefix, a))) is not None
                      and _factors(state_dict, prefix, a) is not None]
            if merges:
                value = LazyWeight(tuple(value.shape), partial(_merged, state_dict, prefix, merges, value))
        name = hf_name(key)
        if name is not None:
            out[name] = value
    return out


def _factors(sd: Mapping[str, Weight], prefix: str, adapter: str) -> tuple[torch.Tensor, torch.Tensor, bool] | None:
    """(A, B, is_embedding) of one adapter of one layer, None when it has none."""
    a, b = sd.get(f"{prefix}.lora_A.{adapter}.weight"), sd.get(f"{prefix}.lora_B.{adapter}.weight")
    if a is not None and b is not None:
        return a, b, False
    a, b = sd.get(f"{prefix}.lora_embedding_A.{adapter}"), sd.get(f"{prefix}.lora_embedding_B.{adapter}")
    return None if a is None or b is None else (a, b, True)


def _merged(sd: Mapping[str, Weight], prefix: str, merges: list[tuple[str, float]], base: Weight) -> torch.Tensor:
    """W + sum of scaling·B@A over `merges`, computed in fp32 and rounded once to W's dtype."""
    from .lazy_weights import materialize

    weight = materialize(base)
    delta = 0
    for adapter, scaling in merges:
        a, b, embedding = _factors(sd, prefix, adapter)
        ba = b.float() @ a.float()  # nn.Linear: W (out x in) += B (out x r) @ A (r x in)
        delta = delta + scaling * (ba.T if embedding else ba)  # nn.Embedding: W (vocab x dim) += (B@A)^T
    return (weight.float() + delta).to(weight.dtype)  # a new tensor: the model's own weight is not changed


def merged_model_weights(model: nn.Module) -> dict[str, Weight]:
    """`merged_weights` of a peft model's own state dict, for its active, unmerged adapters (merged weights are
    `LazyWeight`s, made when written); the model itself is not changed. DoRA, and LoRA on a tied embedding, are
    refused."""
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
    return merged_weights(model.state_dict(), scaling, all_adapters, base_checkpoint(model))


def base_checkpoint(model: nn.Module) -> str | None:
    """The base checkpoint a peft model was wrapped on (`apply_lora(..., base_model_name_or_path=load_from)`)."""
    config = getattr(model, "peft_config", {}).get(ADAPTER)
    return getattr(config, "base_model_name_or_path", None)


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


# ---- the adapter folder -------------------------------------------------------------------------------------------
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


# ---- resume: the same adapters on the same base --------------------------------------------------------------------
def base_fingerprint(model: nn.Module) -> dict[str, str]:
    """A digest of the (unwrapped, unsharded) base weights: the first 256 values of every floating tensor.

    A merged export differs from its base in every adapted matrix, first rows included, so it is told apart.
    """
    import torch

    from .qlora import is_nf4

    h = hashlib.sha1()
    dtypes = set()
    for name, t in sorted(model.state_dict().items()):
        if not t.is_floating_point() or t.is_meta:
            continue
        dtypes.add("nf4" if is_nf4(t) else str(t.dtype).removeprefix("torch."))
        t = t.quantized_data if is_nf4(t) else t  # the 4-bit codes: as telling as the first values
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
