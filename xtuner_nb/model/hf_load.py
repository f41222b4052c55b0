"""Hugging Face folder -> our model: safetensors weights copied into a built (plain, peft, compiled or FSDP2) model.

Parameter names are HF names already (the module is transformers' `Qwen3ForCausalLM`), so there is no key mapping;
only wrapper prefixes are stripped (`hf_name`: peft's `base_model.model.` and `.base_layer`, `torch.compile`'s
`_orig_mod.`, activation checkpointing, DDP's `module.`). Saving is `hf_save.py`, LoRA merging `lora.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_WRAPPER_PARTS = ("_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")
_PREFIXES = ("base_model.model.", "module.")


@dataclass
class LoadReport:
    """What `load_hf_weights` did; with `strict=False`, missing/unexpected are reported here instead of raised."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)



def load_hf_weights(model: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Copy the safetensors weights of the HF folder `path` into `model`, keeping the model's dtype and device.

    A bf16 checkpoint loaded into an fp32 model gives fp32 master weights. A tied model (lm_head is the embedding)
    takes `model.embed_tokens.weight`, ignores a redundant `lm_head.weight`, and is re-tied first if `to_empty()`
    untied it. Shape mismatches always raise; missing or unexpected keys raise when `strict`. FSDP2 (DTensor)
    parameters are filled shard by shard: every rank reads only its own rows of each tensor from the files. Call it
    before `fully_shard` or after, but not on the meta device (use `model.to_empty(device=...)` first; RoPE buffers
    are recomputed here, since `to_empty` leaves them garbage).
    """
    from .hub import resolve_pretrained

    path = resolve_pretrained(path)
    key_to_file = _checkpoint_index(path)
    _retie(model)
    targets, aliases = named_tensors(model)
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


def read_hf_tensors(path: str | Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The checkpoint's own tensors `names` (HF keys) from the HF folder `path`, as stored (dtype kept), on the CPU;
    names the checkpoint does not hold (a tied `lm_head.weight`) are left out. What a QLoRA export merges into
    instead of the 4-bit copy it trained on."""
    from safetensors import safe_open

    from .hub import resolve_pretrained

    path = resolve_pretrained(path)
    key_to_file = _checkpoint_index(path)
    out: dict[str, torch.Tensor] = {}
    for file in sorted({key_to_file[n] for n in names if n in key_to_file}):
        with safe_open(str(path / file), framework="pt", device="cpu") as f:
            out.update({n: f.get_tensor(n) for n in names if key_to_file.get(n) == file})
    return out


def hf_tensor_shapes(path: str | Path, names: list[str]) -> dict[str, tuple[int, ...]]:
    """The shapes of the checkpoint's tensors `names` (HF keys) in the HF folder `path`, read from the headers;
    names the checkpoint does not hold are left out."""
    from safetensors import safe_open

    from .hub import resolve_pretrained

    path = resolve_pretrained(path)
    key_to_file = _checkpoint_index(path)
    out: dict[str, tuple[int, ...]] = {}
    for file in sorted({key_to_file[n] for n in names if n in key_to_file}):
        with safe_open(str(path / file), framework="pt", device="cpu") as f:
            out.update({n: tuple(f.get_slice(n).get_shape()) for n in names if key_to_file.get(n) == file})
    return out


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


def named_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
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
    dimension, replicated over the others as with HSDP) reads only its own rows from the file, so each rank touches
    1/N of the checkpoint's bytes (N = the ranks it is sharded over)."""
    try:
        from torch.distributed.tensor import DTensor, Shard, distribute_tensor
    except ImportError:  # torch without distributed
        DTensor = None
    if DTensor is not None and isinstance(dst, DTensor):
        local = dst.to_local()
        sharded = [d for d, p in enumerate(dst.placements) if p == Shard(0)]
        if len(sharded) == 1 and all(p.is_replicate() for d, p in enumerate(dst.placements) if d != sharded[0]):
            rows = dst.shape[0]
            size, rank = dst.device_mesh.size(sharded[0]), dst.device_mesh.get_local_rank(sharded[0])
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
            # transformers 5 puts the default on the module; 4.x keeps it in the table as "default"
            fn = module.compute_default_rope_parameters if module.rope_type == "default" and hasattr(
                module, "compute_default_rope_parameters") else ROPE_INIT_FUNCTIONS[module.rope_type]
            inv_freq, _ = fn(module.config)
            module.inv_freq.copy_(inv_freq.to(module.inv_freq.device))
            module.original_inv_freq.copy_(inv_freq.to(module.original_inv_freq.device))


def _key_error(path: Path, missing: list[str], unexpected: list[str]) -> str:
    parts = [f"{path}: checkpoint keys do not match the model"]
    if missing:
        parts.append(f"missing from the checkpoint ({len(missing)}): {few(missing)}")
    if unexpected:
        parts.append(f"unexpected in the checkpoint ({len(unexpected)}): {few(unexpected)}")
    parts.append("(pass strict=False to load the matching keys only)")
    return "; ".join(parts)


def few(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f", ... {len(names) - n} more" if len(names) > n else "")
