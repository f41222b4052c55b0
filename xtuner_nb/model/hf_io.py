"""Hugging Face folder <-> our model: safetensors weights, `config.json`, `generation_config.json`, tokenizer.

Parameter names are HF names already (the module is transformers' `Qwen3ForCausalLM`), so there is no key mapping;
only wrapper prefixes are stripped (peft's `base_model.model.` and `.base_layer`, `torch.compile`'s `_orig_mod.`,
activation checkpointing, DDP's `module.`), which lets a peft-wrapped or compiled model load and save as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch
from torch import nn

if TYPE_CHECKING:
    from .config import Qwen3DenseConfig

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TIED_KEY = "lm_head.weight"  # dropped on save when tied, as transformers does
_WRAPPER_PARTS = ("_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")
_PREFIXES = ("base_model.model.", "module.")


@dataclass
class LoadReport:
    """What `load_hf_weights` did; with `strict=False`, missing/unexpected are reported here instead of raised."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# ---- load --------------------------------------------------------------------------------------------------------
def load_hf_weights(model: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Copy the safetensors weights of the HF folder `path` into `model`, keeping the model's dtype and device.

    A bf16 checkpoint loaded into an fp32 model gives fp32 master weights. A tied model (lm_head is the embedding)
    takes `model.embed_tokens.weight`, ignores a redundant `lm_head.weight`, and is re-tied first if `to_empty()`
    untied it. Shape mismatches always raise; missing or unexpected keys raise when `strict`. FSDP2 (DTensor)
    parameters are filled shard by shard: every rank reads only its own rows of each tensor from the files. Call it
    before `fully_shard` or after, but not on the meta device (use `model.to_empty(device=...)` first; RoPE buffers
    are recomputed here, since `to_empty` leaves them garbage).
    """
    path = Path(path)
    key_to_file = _checkpoint_index(path)
    _retie(model)
    targets, aliases = _named_tensors(model)
    meta = [name for name, t in targets.items() if t.is_meta]
    if meta:
        raise ValueError(f"load_hf_weights: {len(meta)} tensors are on the meta device (e.g. {meta[0]}); "
                         "allocate them first with model.to_empty(device=...)")

    report = LoadReport(files=sorted(set(key_to_file.values())))
    report.missing = sorted(name for name in targets if name not in key_to_file)
    report.unexpected = sorted(k for k in key_to_file if k not in targets and aliases.get(k) not in targets)
    if strict and (report.missing or report.unexpected):
        raise KeyError(_key_error(path, report.missing, report.unexpected))

    from safetensors import safe_open

    by_file: dict[str, list[str]] = {}
    for key, file in key_to_file.items():
        if key in targets:
            by_file.setdefault(file, []).append(key)
    with torch.no_grad():
        for file, keys in sorted(by_file.items()):
            with safe_open(str(path / file), framework="pt", device="cpu") as f:
                for key in keys:
                    src, dst = f.get_slice(key), targets[key]
                    if tuple(src.get_shape()) != tuple(dst.shape):
                        raise ValueError(f"{path / file}: {key} has shape {tuple(src.get_shape())} in the "
                                         f"checkpoint but {tuple(dst.shape)} in the model (check vocab_size/"
                                         f"hidden_size of the model config against {path / 'config.json'})")
                    _copy_into(dst, src)
                    report.loaded.append(key)
    _reset_rope_buffers(model)
    return report


def _retie(model: nn.Module) -> None:
    """Re-tie lm_head to the embedding when the config says so: `to_empty()` (after a meta build) unties them."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if not isinstance(module, PreTrainedModel) or not getattr(module.config, "tie_word_embeddings", False):
            continue
        head, emb = module.get_output_embeddings(), module.get_input_embeddings()
        if head is None or emb is None or head.weight is emb.weight:
            return
        if type(head.weight).__name__ == "DTensor":
            raise ValueError("load_hf_weights: lm_head and embed_tokens are separate sharded tensors although "
                             "tie_word_embeddings=True; call model.tie_weights() before fully_shard")
        module.tie_weights()
        return


def _checkpoint_index(path: Path) -> dict[str, str]:
    """key -> file name, from the index of a sharded checkpoint or the keys of a single file."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory (expected a Hugging Face model folder)")
    index = path / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{index}: not a safetensors index ({e.__class__.__name__}: {e})") from None
        for file in sorted(set(weight_map.values())):
            if not (path / file).exists():
                raise FileNotFoundError(f"{index} lists {file}, which is missing from {path}")
        return dict(weight_map)
    single = path / SINGLE_FILE
    if single.exists():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt", device="cpu") as f:
            return {k: SINGLE_FILE for k in f.keys()}
    others = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
    hint = f" (found {others}; only safetensors are supported, convert with save_pretrained)" if others else ""
    raise FileNotFoundError(f"{path}: neither {SINGLE_FILE} nor {INDEX_FILE}{hint}")


def _named_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """HF name -> tensor for every parameter and persistent buffer (each tensor once), and alias -> kept name.

    Tied weights are one tensor under two names; the first name (the embedding) is kept, the other is an alias.
    LoRA adapter weights are not part of an HF base checkpoint and are left out.
    """
    targets: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[int, str] = {}
    for raw, tensor in model.state_dict(keep_vars=True).items():
        name = hf_name(raw)
        if name is None:
            continue
        if id(tensor) in seen:
            aliases[name] = seen[id(tensor)]
            continue
        seen[id(tensor)] = name
        targets[name] = tensor
    return targets, aliases


def hf_name(name: str) -> str | None:
    """Our module's parameter name -> HF checkpoint key; None for adapter weights (LoRA) that have no HF key."""
    if "lora_" in name or ".modules_to_save." in name or "original_module." in name:
        return None
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace(".base_layer.", ".")


def _copy_into(dst: torch.Tensor, src) -> None:
    """Copy the safetensors slice `src` into `dst`. An FSDP2 shard (a DTensor split on dim 0 over one mesh
    dimension) reads only its own rows from the file, so each rank touches 1/N of the checkpoint's bytes."""
    try:
        from torch.distributed.tensor import DTensor, Shard, distribute_tensor
    except ImportError:  # torch without distributed
        DTensor = None
    if DTensor is not None and isinstance(dst, DTensor):
        local = dst.to_local()
        if dst.device_mesh.ndim == 1 and tuple(dst.placements) == (Shard(0),):
            rows = dst.shape[0]
            size, rank = dst.device_mesh.size(), dst.device_mesh.get_local_rank()
            chunk = -(-rows // size)  # torch.chunk's split, as FSDP2 shards: ceil(rows / N) rows per rank
            start = min(rank * chunk, rows)
            part = src[start:start + local.shape[0]]
        else:  # another layout: read the whole tensor, keep this rank's part (no communication)
            part = distribute_tensor(src[:].to(dtype=dst.dtype), dst.device_mesh, dst.placements,
                                     src_data_rank=None).to_local()
        local.detach().copy_(part)
        return
    dst.detach().copy_(src[:])


def _reset_rope_buffers(model: nn.Module) -> None:
    """Recompute RoPE `inv_freq` (non-persistent, so not in the checkpoint) the way transformers' init does."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    with torch.no_grad():
        for module in model.modules():
            if "RotaryEmbedding" not in type(module).__name__ or not hasattr(module, "original_inv_freq"):
                continue
            if module.inv_freq.is_meta:
                continue
            fn = (module.compute_default_rope_parameters if module.rope_type == "default"
                  else ROPE_INIT_FUNCTIONS[module.rope_type])
            inv_freq, _ = fn(module.config)
            module.inv_freq.copy_(inv_freq.to(module.inv_freq.device))
            module.original_inv_freq.copy_(inv_freq.to(module.original_inv_freq.device))


def _key_error(path: Path, missing: list[str], unexpected: list[str]) -> str:
    parts = [f"{path}: checkpoint keys do not match the model"]
    if missing:
        parts.append(f"missing from the checkpoint ({len(missing)}): {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected in the checkpoint ({len(unexpected)}): {_few(unexpected)}")
    parts.append("(pass strict=False to load the matching keys only)")
    return "; ".join(parts)


def _few(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f", ... {len(names) - n} more" if len(names) > n else "")


# ---- save --------------------------------------------------------------------------------------------------------
def save_hf(state_dict_or_model: nn.Module | Mapping[str, torch.Tensor], model_cfg: "Qwen3DenseConfig",
            path: str | Path, tokenizer: Any = None, dtype: torch.dtype = torch.bfloat16,
            max_shard_size: int | str = "4GB") -> Path:
    """Write an HF folder that `AutoModelForCausalLM.from_pretrained(path)` loads; returns `path`.

    `state_dict_or_model`: a model (plain, compiled, or peft: active LoRA adapters are merged into the saved
    weights, the model is left as it is), or a plain state dict of full tensors. For FSDP2, gather on every rank with
    `torch.distributed.checkpoint.state_dict.get_model_state_dict(model, options=StateDictOptions(
    full_state_dict=True, cpu_offload=True))` and call `save_hf(that_dict, ...)` on rank 0 only.
    Weights are cast to `dtype` shard by shard (files of at most `max_shard_size`, "4GB" = 4e9 bytes, "4GiB" =
    4*2**30; sharded with `model.safetensors.index.json` when larger). `config.json` comes from
    `model_cfg.hf_config`, `generation_config.json` holds bos/eos/pad (eos = [eos, bos] like Qwen3's own), the
    tokenizer is saved with `save_pretrained`. Everything goes to a temporary sibling folder that is renamed onto
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
        hf = model_cfg.hf_config
        hf.dtype = dtype
        hf.save_pretrained(str(tmp))
        _generation_config(model_cfg, tokenizer).save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _full_state_dict(obj: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        raw = obj.state_dict()
        raw.update(_merged_lora_weights(obj))
    else:
        raw = dict(obj)
        lora = [k for k in raw if "lora_" in k]
        if lora:
            raise ValueError(f"save_hf: the state dict holds LoRA adapter weights ({lora[0]}, ...) that cannot be "
                             "merged without their peft config; pass the peft model itself, or merge first "
                             "(model.merge_and_unload())")
    out: dict[str, torch.Tensor] = {}
    for raw_name, t in raw.items():
        name = hf_name(raw_name)
        if name is None:
            continue
        if type(t).__name__ == "DTensor":
            raise ValueError(f"save_hf: {raw_name} is a DTensor shard; gather a full state dict first with "
                             "get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, "
                             "cpu_offload=True)) and call save_hf on rank 0 only")
        if t.is_meta:
            raise ValueError(f"save_hf: {raw_name} is on the meta device (no values to save)")
        out[name] = t
    return out


def _merged_lora_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """`<layer>.base_layer.weight` + the active LoRA deltas, computed aside: the model itself is not changed.

    Same numbers as peft's `merge_and_unload()`, so a LoRA run exports as a plain HF model.
    """
    merged = {}
    tied = _tied_weight(model)
    for name, module in model.named_modules():
        if not (hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")):
            continue
        if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
            continue  # deltas already inside the base weight, or switched off
        adapters = [a for a in module.active_adapters
                    if a in getattr(module, "lora_A", {}) or a in getattr(module, "lora_embedding_A", {})]
        if not adapters:
            continue
        if any(getattr(module, "use_dora", {}).get(a, False) for a in adapters):
            raise ValueError(f"save_hf: {name} uses DoRA; merge it with peft first (model.merge_and_unload())")
        if tied is not None and module.base_layer.weight is tied:
            raise ValueError(f"save_hf: LoRA on {name}, whose weight is tied to the other end of the model "
                             "(tie_word_embeddings=True): a merged tied matrix would change both ends, which is not "
                             "the model that was trained; leave embed_tokens/lm_head out of target_modules")
        with torch.no_grad():
            weight = module.base_layer.weight.detach()
            delta = sum(module.get_delta_weight(a) for a in adapters)
            merged[f"{name}.base_layer.weight"] = weight + delta.to(weight.dtype)
    return merged


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


def _check_against_config(tensors: dict[str, torch.Tensor], model_cfg: "Qwen3DenseConfig") -> dict[str, torch.Tensor]:
    """Same names and shapes as the model `model_cfg` builds (checked on the meta device); drops the tied lm_head."""
    expected = {n: tuple(t.shape) for n, t in _named_tensors(model_cfg.build(device="meta"))[0].items()}
    if model_cfg.tie_word_embeddings:
        tensors = {k: v for k, v in tensors.items() if k != TIED_KEY}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        msg = ["save_hf: the weights do not match model_cfg"]
        if missing:
            msg.append(f"missing ({len(missing)}): {_few(missing)}")
        if unexpected:
            msg.append(f"unexpected ({len(unexpected)}): {_few(unexpected)}")
        raise KeyError("; ".join(msg))
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"save_hf: {name} has shape {tuple(tensors[name].shape)}, model_cfg implies {shape}")
    return {n: tensors[n] for n in expected}  # HF order: embeddings, layers, norm, lm_head


def _write_weights(tensors: dict[str, torch.Tensor], folder: Path, dtype: torch.dtype, limit: int) -> None:
    from safetensors.torch import save_file

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
        # cast one shard at a time; copy=True so no saved tensor shares storage with another (safetensors refuses)
        shard = {n: tensors[n].detach().to(device="cpu", dtype=dtype, copy=True).contiguous() for n in names}
        save_file(shard, str(folder / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in names})
        del shard
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def _generation_config(model_cfg: "Qwen3DenseConfig", tokenizer: Any):
    from transformers import GenerationConfig

    bos, eos = model_cfg.bos_token_id, model_cfg.eos_token_id
    pad = model_cfg.pad_token_id
    if pad is None and tokenizer is not None:
        pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = bos
    eos_ids = [eos] + ([bos] if bos != eos else [])
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


def iter_checkpoint_keys(path: str | Path) -> Iterable[str]:
    """The weight names of an HF folder (for inspection in a notebook)."""
    return sorted(_checkpoint_index(Path(path)))
