"""Our model -> a Hugging Face folder: safetensors (sharded when large), `config.json`, `generation_config.json`,
the tokenizer; written to a temporary sibling and renamed, so a crash never leaves half a folder. A LoRA run's export
(`save_lora_hf`) is the merged model, with the adapter in peft's format beside it.

An export of a fine-tuned checkpoint is that checkpoint with new weights: the JSON and tokenizer files of `source`
(the `load_from` folder) and `tokenizer_source` are copied as they are, and only what training changed is written
over them (`export_source.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from .hf_load import INDEX_FILE, SINGLE_FILE, few, named_tensors, hf_name
from .export_source import write_metadata
from .lazy_weights import LazyWeight, Weight, write_safetensors
from .lora import ADAPTER_DIR, base_checkpoint, merged_model_weights, merged_weights, save_adapter

if TYPE_CHECKING:
    from .base import TransformerConfig
    from .lora import LoRAConfig

TIED_KEY = "lm_head.weight"  # dropped on save when tied, as transformers does


def save_hf(state_dict_or_model: nn.Module | Mapping[str, torch.Tensor], model_cfg: "TransformerConfig",
            path: str | Path, tokenizer: Any = None, dtype: torch.dtype = torch.bfloat16,
            max_shard_size: int | str = "4GB", *, source: str | Path | None = None,
            tokenizer_source: str | Path | None = None, chat_template: str | None = None) -> Path:
    """Write an HF folder that `AutoModelForCausalLM.from_pretrained(path)` loads; returns `path`.

    `state_dict_or_model`: a model (plain, compiled, or peft: active LoRA adapters are merged into the saved
    weights, the model is left as it is), or a plain state dict of full tensors. For FSDP2, gather on every rank with
    `torch.distributed.checkpoint.state_dict.get_model_state_dict(model, options=StateDictOptions(
    full_state_dict=True, cpu_offload=True))` and call `save_hf(that_dict, ...)` on rank 0 only.
    Weights are cast to `dtype` shard by shard (files of at most `max_shard_size`, "4GB" = 4e9 bytes, "4GiB" =
    4*2**30; sharded with `model.safetensors.index.json` when larger). With `source` (the checkpoint training
    started from) its `config.json` and `generation_config.json` are kept, key for key, except what training
    changed (the dtype, a field of `model_cfg` that differs from the source's); with `tokenizer_source` its
    tokenizer files are copied as they are. `chat_template` (Jinja) replaces the tokenizer's chat template: the
    template training used. Without a source, `config.json` comes from `model_cfg.hf_config`,
    `generation_config.json` holds bos/eos/pad (eos = [eos, bos] for Qwen, like Qwen3's own) and the tokenizer is
    saved with `save_pretrained`. Everything goes to a temporary sibling folder that is renamed onto
    `path` at the end, so a crash leaves either the old folder or the complete new one (an existing `path` is
    replaced).
    """
    path = Path(path)
    tensors = _full_state_dict(state_dict_or_model)
    tensors = _check_against_config(tensors, model_cfg)
    limit = parse_size(max_shard_size)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_weights(tensors, tmp, dtype, limit)
        write_metadata(tmp, model_cfg, tokenizer, dtype, _generation_config(model_cfg, tokenizer),
                       source=source, tokenizer_source=tokenizer_source, chat_template=chat_template)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def save_lora_hf(peft_model: nn.Module, state_dict: Mapping[str, torch.Tensor], model_cfg: "TransformerConfig",
                 cfg: "LoRAConfig", path: str | Path, tokenizer: Any = None,
                 dtype: torch.dtype = torch.bfloat16, **export_source: Any) -> Path:
    """`path/`: the merged model (an ordinary HF folder, `dtype`); `path/adapter/`: the peft adapter (fp32), which
    loads as `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), "path/adapter")`.

    `state_dict`: the PeftModel's full state dict (plain tensors), so a sharded (FSDP2) model saves from rank 0;
    under QLoRA its trainable parameters are enough (`train.checkpoint.export` gathers only those).
    `export_source`: `source`, `tokenizer_source`, `chat_template` of `save_hf`."""
    path = Path(path)
    # QLoRA: the frozen base comes from the checkpoint (its 16-bit weights, not their 4-bit copy); `state_dict` may
    # hold only the trainable parameters
    merged = merged_weights(state_dict, cfg.scaling, source=base_checkpoint(peft_model),
                            model_state=peft_model.state_dict())
    save_hf(merged, model_cfg, path, tokenizer=tokenizer, dtype=dtype, **export_source)
    save_adapter(peft_model, state_dict, path / ADAPTER_DIR)
    return path


def _full_state_dict(obj: nn.Module | Mapping[str, Weight]) -> dict[str, Weight]:
    if isinstance(obj, nn.Module):
        raw = merged_model_weights(obj)  # HF names; active LoRA adapters merged
    else:
        raw = dict(obj)
        lora = [k for k in raw if "lora_" in k]
        if lora:
            raise ValueError(f"save_hf: the state dict holds LoRA adapter weights ({lora[0]}, ...) that cannot be "
                             "merged without their peft config; pass the peft model itself, or merge first "
                             "(model.merge_and_unload())")
    out: dict[str, Weight] = {}
    for raw_name, t in raw.items():
        name = hf_name(raw_name)
        if name is None:
            continue
        if isinstance(t, LazyWeight):  # a merged weight, made when written
            out[name] = t
            continue
        if type(t).__name__ == "DTensor":
            raise ValueError(f"save_hf: {raw_name} is a DTensor shard; gather a full state dict first with "
                             "get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, "
                             "cpu_offload=True)) and call save_hf on rank 0 only")
        if t.is_meta:
            raise ValueError(f"save_hf: {raw_name} is on the meta device (no values to save)")
        out[name] = t
    return out


def _check_against_config(tensors: dict[str, Weight], model_cfg: "TransformerConfig") -> dict[str, Weight]:
    """Same names and shapes as the model `model_cfg` builds (checked on the meta device); drops the tied lm_head."""
    expected = {n: tuple(t.shape) for n, t in named_tensors(model_cfg.build(device="meta"))[0].items()}
    if model_cfg.tie_word_embeddings:
        tensors = {k: v for k, v in tensors.items() if k != TIED_KEY}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        msg = ["save_hf: the weights do not match model_cfg"]
        if missing:
            msg.append(f"missing ({len(missing)}): {few(missing)}")
        if unexpected:
            msg.append(f"unexpected ({len(unexpected)}): {few(unexpected)}")
        raise KeyError("; ".join(msg))
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"save_hf: {name} has shape {tuple(tensors[name].shape)}, model_cfg implies {shape}")
    return {n: tensors[n] for n in expected}  # HF order: embeddings, layers, norm, lm_head


def _write_weights(tensors: dict[str, Weight], folder: Path, dtype: torch.dtype, limit: int) -> None:
    """Shards of at most `limit` bytes, each written one tensor at a time in `dtype` (`write_safetensors`): a merged
    weight is made, cast, written and freed before the next, so an export adds about one linear to what the model
    holds, not a copy of the model."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    shards: list[list[str]] = [[]]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * itemsize
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    total = sum(t.numel() for t in tensors.values()) * itemsize
    files = [SINGLE_FILE] if len(shards) == 1 else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                                                      for i in range(len(shards))]
    weight_map = {}
    for file, names in zip(files, shards):
        write_safetensors({n: tensors[n] for n in names}, folder / file, dtype, metadata={"format": "pt"})
        weight_map.update({n: file for n in names})
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def _generation_config(model_cfg: "TransformerConfig", tokenizer: Any):
    from transformers import GenerationConfig

    bos, eos = model_cfg.bos_token_id, model_cfg.eos_token_id
    pad = model_cfg.pad_token_id
    if pad is None and tokenizer is not None:
        pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = bos if bos is not None else eos
    eos_ids = [eos] + ([bos] if model_cfg.extra_eos_is_bos and bos is not None and bos != eos else [])
    return GenerationConfig(bos_token_id=bos, eos_token_id=eos_ids if len(eos_ids) > 1 else eos, pad_token_id=pad)


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put `tmp` at `path`: a rename, after moving an existing `path` aside (and deleting it afterwards)."""
    old = None
    if path.exists() or path.is_symlink():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size: int | str) -> int:
    """Bytes from 4_000_000_000, "4GB" (decimal, as transformers) or "4GiB" (binary)."""
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {size}")
        return size
    m = _SIZE.match(str(size))
    if not m:
        raise ValueError(f"max_shard_size {size!r}: expected bytes or a size like '4GB', '500MB', '2GiB'")
    return max(1, int(float(m.group(1)) * _UNITS[(m.group(2) or "B").upper()]))


