"""The one list of ways to make a run fit: the fit check, the OOM message and `show_fit` all print it.

A way is a change of the estimate's inputs (`reestimate(est, **changes)` prices it) that `config_with_changes`
turns into the TrainerConfig that would run it, so what the advice prices is what the Trainer would build. Only
ways that the device could run are listed, and only those that lower the estimate:
- LoRA only for a pretrained checkpoint (adapters on a random base learn nothing useful); fewer layers only for a
  model trained from scratch (cutting layers out of a checkpoint breaks it);
- a lower compute precision only where `train.precision.choose_precision` accepts it on that device (bf16 on sm80+
  and on a CPU, fp16 on sm70-75); with LoRA the frozen base is then built in that dtype (`build.build_model`);
- QLoRA (the base's decoder linears in 4 bits) only for a pretrained checkpoint and only when no LoRA with its base
  in the compute dtype fits: it is slower and rounds the base, so a 16-bit LoRA that fits comes first. Without
  torchao the way says which extra to install;
- CPU offload and more GPUs only on a GPU node, under torchrun with 2 or more processes, and CPU offload only when
  the host RAM it needs is there for every process of the node.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ...config import FSDPConfig
from ..precision import choose_precision
from .budget import DeviceBudget
from .estimate import GiB, MemoryEstimate, quantized_base, reestimate

__all__ = ["WayToFit", "ways_to_fit", "config_with_changes"]

_LONG_PACK = 2048  # "all savings together" shortens longer packs to this, or to half or a quarter of it to fit


@dataclass(frozen=True)
class WayToFit:
    changes: dict[str, Any]  # estimate inputs that change (see `config_with_changes` for the TrainerConfig)
    text: str  # the settings, as code, and why they help
    estimate: MemoryEstimate
    fits: bool
    processes: int  # processes the way runs with (torchrun --nproc-per-node)


def _lower_precision(est: MemoryEstimate, budget: DeviceBudget) -> str | None:
    """The 16-bit dtype `choose_precision` accepts on this device, when the run computes in fp32."""
    if est.inputs["param_dtype"] != "float32" or (budget.on_gpu and budget.capability is None):
        return None
    for dtype in ("bfloat16", "float16"):
        try:
            return choose_precision(FSDPConfig(precision=dtype), budget.device, budget.capability).name
        except ValueError:  # this device cannot compute in it
            continue
    return None


def _describe(changes: dict[str, Any], est: MemoryEstimate, priced: MemoryEstimate, budget: DeviceBudget) -> str:
    """The settings as code, and, for a single change, why it helps."""
    def precision(v):
        base = ", and the frozen LoRA base in it" if priced.inputs["lora"] else ""
        return (f"fsdp_cfg=FSDPConfig(precision={v!r})",
                f"{v} compute{base}{'; slow on a CPU without native bf16' if not budget.on_gpu else ''}")

    def offload(v):
        n = changes.get("world_size", est.inputs["world_size"])
        return ("fsdp_cfg=FSDPConfig(cpu_offload=True)", "FSDP2 keeps weights, gradients and AdamW states in host "
                f"RAM, {priced.host_bytes * n / GiB:.1f} GiB for {n} processes; under torchrun only")

    def lora(v):
        if not v.quantize_base:
            return f"lora_cfg=LoRAConfig(r={v.r})", "train adapters; the pretrained base stays frozen"
        return (f"lora_cfg=LoRAConfig(r={v.r}, quantize_base={v.quantize_base!r})",
                "QLoRA: the frozen base's decoder linears in 4 bits, slower than a 16-bit base")

    texts = {  # estimate input -> (the setting as code, why it lowers the memory)
        "lora": lora,
        "param_dtype": precision,
        "recompute_ratio": lambda v: (f"fsdp_cfg=FSDPConfig(recompute_ratio={v})",
                                      "recompute each layer's activations in backward"),
        "loss_mode": lambda v: ("loss_cfg=CELossConfig(mode='chunk')", "the logits one chunk at a time"),
        "pack_max_length": lambda v: (f"dataloader_cfg pack_max_length={v}",
                                      "raise global_batch_size to keep the tokens per step"),
        "defer_reduce_scatter": lambda v: ("fsdp_cfg=FSDPConfig(defer_reduce_scatter=False)",
                                           "reduce-scatter after every pack"),
        "cpu_offload": offload,
        "world_size": lambda v: (f"torchrun --nproc-per-node={v}",
                                 f"FSDP2 shards weights, gradients and optimizer states over {v} GPUs"),
        "model_cfg": lambda v: (f"model_cfg num_hidden_layers={v.num_hidden_layers}",
                                "a smaller model, trained from scratch"),
    }
    described = [texts[key](value) for key, value in changes.items()]
    text = ", ".join(code for code, _ in described) + (f" ({described[0][1]})" if len(described) == 1 else "")
    if quantized_base(changes.get("lora")):
        from ...model.qlora import INSTALL_HINT, torchao_available

        text += "" if torchao_available() else f"; needs {INSTALL_HINT}"  # what to install, on every QLoRA way
    return text


def _with_4bit_base(lora: Any) -> Any:
    """The run's LoRA config (or the default) with its base in NF4."""
    from ...model.lora import LoRAConfig

    if isinstance(lora, LoRAConfig):
        return lora.model_copy(update={"quantize_base": "nf4"})
    rank = lora if isinstance(lora, int) and not isinstance(lora, bool) else 16
    return LoRAConfig(r=rank, quantize_base="nf4")


def _most_layers_that_fit(est: MemoryEstimate, budget: DeviceBudget) -> int:
    cfg = est.inputs["model_cfg"]
    lo, hi = 0, cfg.num_hidden_layers
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if budget.fits(reestimate(est, model_cfg=cfg.model_copy(update={"num_hidden_layers": mid}))):
            lo = mid
        else:
            hi = mid - 1
    return lo


def ways_to_fit(est: MemoryEstimate, budget: DeviceBudget) -> list[WayToFit]:
    """Changes that lower `est` on `budget`'s device, each priced; those that fit first, then by estimate.
    Whether the run fine-tunes a checkpoint is the estimate's `pretrained` input (`load_from` set)."""
    from ...model.lora import LoRAConfig

    i = est.inputs
    pretrained = i["pretrained"]
    processes = i["world_size"] if i["fsdp"] else 1
    singles: list[dict[str, Any]] = []
    lora = {"lora": LoRAConfig()} if pretrained and not i["lora"] else {}
    dtype = _lower_precision(est, budget)
    lower = {"param_dtype": dtype} if dtype else {}
    singles += [c for c in (lora, lower, {**lora, **lower} if lora and lower else {}) if c]
    if i["recompute_ratio"] < 1:
        singles.append({"recompute_ratio": 1.0})
    if i["loss_mode"] == "eager":
        singles.append({"loss_mode": "chunk"})
    if i["pack_max_length"] > 512:
        singles.append({"pack_max_length": i["pack_max_length"] // 2})
    if i.get("defer_reduce_scatter") and processes > 1:
        singles.append({"defer_reduce_scatter": False})
    if budget.on_gpu and budget.gpus > processes:  # the other GPUs of this node, under torchrun
        singles.append({"world_size": budget.gpus, "fsdp": True})
    launch = {} if processes > 1 else {"world_size": budget.gpus, "fsdp": True}  # FSDP2 needs 2+ processes
    if budget.on_gpu and not i["cpu_offload"] and max(processes, budget.gpus) > 1 and budget.host_bytes is not None:
        singles.append({"cpu_offload": True, **launch})

    together = {**lora, **lower, "recompute_ratio": 1.0, "loss_mode": "chunk"}
    packs = [p for p in (_LONG_PACK, _LONG_PACK // 2, _LONG_PACK // 4) if p < i["pack_max_length"]]
    for pack in packs:  # the longest of these packs at which all the savings together fit
        together["pack_max_length"] = pack
        if budget.fits(reestimate(est, **together)):
            break
    together = {k: v for k, v in together.items() if i.get(k) != v}
    candidates = singles + ([together] if together and together not in singles else [])
    if pretrained and not quantized_base(i["lora"]):  # QLoRA, when no LoRA on a 16-bit base fits (module docstring)
        if not any(budget.fits(reestimate(est, **c)) for c in [{}] + candidates if i["lora"] or "lora" in c):
            qlora = {"lora": _with_4bit_base(i["lora"])}
            for c in (qlora, {**qlora, **lower}, {**together, **qlora}):
                if c not in candidates:
                    candidates.append(c)
    if not pretrained:  # as many layers as fit, alone and with all the savings
        for base in ([{}, together] if together else [{}]):
            priced = reestimate(est, **base)
            layers = _most_layers_that_fit(priced, budget)
            if 1 <= layers < i["model_cfg"].num_hidden_layers and not budget.fits(priced):
                candidates.append({**base, "model_cfg": i["model_cfg"].model_copy(
                    update={"num_hidden_layers": layers})})

    ways = []
    for changes in candidates:
        priced = reestimate(est, **changes)
        n = changes.get("world_size", processes)
        if priced.total >= est.total and priced.host_bytes >= est.host_bytes:
            continue  # lowers nothing
        text = _describe({k: v for k, v in changes.items() if k != "fsdp"}, est, priced, budget)
        ways.append(WayToFit(changes, text, priced, replace(budget, processes_per_node=n).fits(priced), n))
    return sorted(ways, key=lambda w: (not w.fits, w.estimate.total))


def config_with_changes(config: Any, changes: dict[str, Any]) -> Any:
    """The TrainerConfig that runs `config` with a way's `changes` (world_size is the launch, not a field)."""
    fsdp = config.fsdp_cfg or FSDPConfig()
    fsdp_fields = {"param_dtype": "precision", "recompute_ratio": "recompute_ratio", "cpu_offload": "cpu_offload",
                   "defer_reduce_scatter": "defer_reduce_scatter"}
    update: dict[str, Any] = {}
    fsdp_update = {fsdp_fields[k]: v for k, v in changes.items() if k in fsdp_fields}
    if fsdp_update:
        update["fsdp_cfg"] = fsdp.model_copy(update=fsdp_update)
    if "lora" in changes:
        update["lora_cfg"] = changes["lora"]
    if "model_cfg" in changes:
        update["model_cfg"] = changes["model_cfg"]
    if "loss_mode" in changes:
        update["loss_cfg"] = config.effective_loss_cfg().model_copy(update={"mode": changes["loss_mode"]})
    if "pack_max_length" in changes:
        update["dataloader_cfg"] = config.dataloader_cfg.model_copy(
            update={"pack_max_length": changes["pack_max_length"]})
    unknown = set(changes) - set(fsdp_fields) - {"lora", "model_cfg", "loss_mode", "pack_max_length", "world_size",
                                                 "fsdp"}
    if unknown:
        raise ValueError(f"config_with_changes: no TrainerConfig field for {sorted(unknown)}")
    return config.model_copy(update=update)
