"""Will it fit? A per-GPU memory estimate of an SFT step, by parts, shown against a GPU.

    est = estimate_memory(Qwen3Dense8BConfig(), pack_max_length=8192, loss_mode="chunk", world_size=8)
    show_fit(est, "H100")          # or gpu=None: the GPU of this machine (or every known GPU when there is none)

The arithmetic (bytes, per GPU; P = parameters, T = trainable parameters, s = world_size when fsdp else 1,
b = bytes of param_dtype, N = pack_max_length * micro_batch_size tokens in one forward pass; the Trainer runs the
packs of a step one forward at a time, so micro_batch_size stays 1 for it):

- weights: fp32 master copy 4·T/s plus a compute copy b·T/s when b < 4 (autocast/FSDP mixed precision keep a
  bf16 cast of what they use); with LoRA the frozen base is kept in param_dtype only: b·(P−T)/s.
- gradients: fp32, 4·T/s.   optimizer: AdamW's two fp32 moments 8·T/s (SGD with momentum: 4·T/s).
- activations, what autograd keeps for one decoder layer of transformers' Qwen3 (bytes per token; the RMSNorms
  upcast to fp32): each of the two RMSNorms keeps its fp32 input, the normalised bf16 value and the weighted output
  that the next linear reads, (4 + 2b)·h; q_norm/k_norm the same for q and k, attention its q, k, v and output,
  (4 + 3b)·(q + kv); the MLP gate, up, SiLU output and product, 4b·I; fp32 norms' 1/rms and the attention's
  log-sum-exp 4·(2 + 2·heads + kv_heads). A recomputed layer keeps only its input (b·h) and, during backward, one
  layer is rebuilt in full at a time. The final norm and the lm_head input add (4 + 3b)·h. Packed varlen attention
  keeps no L×L matrix. (Checked against the tensors autograd saves: tests/notebook/test_memory.py.)
- logits: eager mode holds the fp32 logits and their gradient, N·V·4·2; chunk mode one chunk, min(chunk, N)·V·4·2.
- overhead: the CUDA context and allocator slack (default 1 GiB).

Adding all parts is conservative: the peak of a real step comes at the start of backward, when some of the
gradients do not exist yet. Measured peaks (`memory/max_memory_GB` in the metrics) are the check.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from .viewer import Html

__all__ = ["MemoryEstimate", "estimate_memory", "show_fit", "GPUS", "suggestions", "lora_params", "reestimate",
           "layer_activation_bytes"]

GiB = 2 ** 30
# nominal memory of common training GPUs (GiB)
GPUS: dict[str, float] = {"T4": 16, "L4": 24, "RTX 4090": 24, "A100 40GB": 40, "A100 80GB": 80, "H100 80GB": 80,
                          "H200": 141}
_ALIASES = {"4090": "RTX 4090", "A100-40": "A100 40GB", "A100-40GB": "A100 40GB", "A100-80": "A100 80GB",
            "A100-80GB": "A100 80GB", "A100": "A100 80GB", "H100": "H100 80GB", "H100-80GB": "H100 80GB"}
_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PARTS = ("weights", "gradients", "optimizer", "activations", "logits", "overhead")
_COLORS = {"weights": "#1e88e5", "gradients": "#43a047", "optimizer": "#fb8c00", "activations": "#8e24aa",
           "logits": "#e53935", "overhead": "#9e9e9e"}


@dataclass
class MemoryEstimate:
    """Bytes per GPU by part; `total` adds them. `inputs` are the arguments, so variants can be re-estimated."""

    params: int
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> int:
        return sum(getattr(self, p) for p in _PARTS)

    def parts(self) -> dict[str, int]:
        return {p: getattr(self, p) for p in _PARTS}

    def gib(self) -> dict[str, float]:
        return {**{p: v / GiB for p, v in self.parts().items()}, "total": self.total / GiB}

    def _repr_html_(self) -> str:
        return str(show_fit(self))


def lora_params(model_cfg: Any, rank: int, targets: Any = "all-linear") -> int:
    """Trainable LoRA parameters: r·(in+out) per adapted linear layer of every decoder layer."""
    a, h, inter = model_cfg.attention, model_cfg.hidden_size, model_cfg.intermediate_size
    q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    names = _LINEARS if targets in ("all-linear", "all", None) else list(targets)
    unknown = [n for n in names if n not in shapes]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; choose from {list(_LINEARS)} or 'all-linear'")
    return model_cfg.num_hidden_layers * sum(rank * sum(shapes[n]) for n in names)


def _lora_spec(lora: Any) -> tuple[int, Any] | None:
    if lora is None or lora is False:
        return None
    if isinstance(lora, int):
        return lora, "all-linear"
    if isinstance(lora, dict):
        return int(lora.get("rank", lora.get("r", 16))), lora.get("targets", lora.get("target_modules", "all-linear"))
    rank = getattr(lora, "rank", None) or getattr(lora, "r", None)
    targets = getattr(lora, "targets", None) or getattr(lora, "target_modules", None) or "all-linear"
    if rank is None:
        raise TypeError(f"lora must be a rank, a dict(rank=..., targets=...) or a config with .rank/.r, got {lora!r}")
    return int(rank), targets


def layer_activation_bytes(model_cfg: Any, tokens: int, dtype_bytes: int) -> int:
    """What autograd keeps for one Qwen3 decoder layer over `tokens` tokens (see the module docstring)."""
    a, h, inter, b = model_cfg.attention, model_cfg.hidden_size, model_cfg.intermediate_size, dtype_bytes
    q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
    fp32 = 4 * (2 + 2 * a.num_attention_heads + a.num_key_value_heads)
    return tokens * (2 * (4 + 2 * b) * h + (4 + 3 * b) * (q + kv) + 4 * b * inter + fp32)


def estimate_memory(model_cfg: Any, pack_max_length: int, param_dtype: str = "bfloat16", recompute_ratio: float = 1.0,
                    loss_mode: str = "chunk", chunk_size: int = 1024, optimizer: str = "adamw", world_size: int = 1,
                    lora: Any = None, fsdp: bool = True, micro_batch_size: int = 1,
                    overhead_gib: float = 1.0) -> MemoryEstimate:
    """Estimate the per-GPU memory of one training step (see the module docstring for every formula)."""
    inputs = dict(model_cfg=model_cfg, pack_max_length=pack_max_length, param_dtype=param_dtype,
                  recompute_ratio=recompute_ratio, loss_mode=loss_mode, chunk_size=chunk_size, optimizer=optimizer,
                  world_size=world_size, lora=lora, fsdp=fsdp, micro_batch_size=micro_batch_size,
                  overhead_gib=overhead_gib)
    if param_dtype not in _DTYPE_BYTES:
        raise ValueError(f"param_dtype must be one of {sorted(_DTYPE_BYTES)}, got {param_dtype!r}")
    if loss_mode not in ("eager", "chunk"):
        raise ValueError(f"loss_mode must be 'eager' or 'chunk', got {loss_mode!r}")
    if not 0 <= recompute_ratio <= 1:
        raise ValueError(f"recompute_ratio must lie in [0, 1], got {recompute_ratio}")
    b = _DTYPE_BYTES[param_dtype]
    P = model_cfg.num_params()
    spec = _lora_spec(lora)
    T = lora_params(model_cfg, *spec) if spec else P
    if spec:  # peft's modules_to_save train in full beside the adapters
        saved = set(getattr(lora, "modules_to_save", None) or (lora.get("modules_to_save") or []
                                                               if isinstance(lora, dict) else []))
        emb = model_cfg.vocab_size * model_cfg.hidden_size
        T += emb * len(saved & {"lm_head", "embed_tokens"})
    frozen = P if spec else 0  # LoRA: the base model stays, frozen, beside the adapters
    shards = world_size if fsdp else 1

    weights = (4 * T + (b * T if b < 4 else 0) + b * frozen) // shards
    gradients = 4 * T // shards
    per_param_state = {"adamw": 8, "adam": 8, "sgd": 4}
    if optimizer.lower() not in per_param_state:
        raise ValueError(f"optimizer must be one of {sorted(per_param_state)}, got {optimizer!r}")
    opt = per_param_state[optimizer.lower()] * T // shards

    n_tok = pack_max_length * micro_batch_size
    layers = model_cfg.num_hidden_layers
    n_ckpt = int(layers * recompute_ratio)
    full = layer_activation_bytes(model_cfg, n_tok, b)
    kept = n_tok * model_cfg.hidden_size * b
    head = n_tok * (4 + 3 * b) * model_cfg.hidden_size  # final norm + lm_head input
    activations = n_ckpt * kept + (layers - n_ckpt) * full + (full if n_ckpt else 0) + head

    vocab = model_cfg.vocab_size
    logits = (n_tok if loss_mode == "eager" else min(chunk_size, n_tok)) * vocab * 4 * 2
    return MemoryEstimate(params=P, trainable=T, weights=weights, gradients=gradients, optimizer=opt,
                          activations=activations, logits=logits, overhead=int(overhead_gib * GiB), inputs=inputs)


def reestimate(est: MemoryEstimate, **changes: Any) -> MemoryEstimate:
    return estimate_memory(**{**est.inputs, **changes})


def suggestions(est: MemoryEstimate) -> list[tuple[str, int]]:
    """Settings that lower this estimate, with the bytes each saves, largest saving first."""
    i = est.inputs
    out: list[tuple[str, int]] = []

    def consider(text: str, **changes: Any) -> None:
        saved = est.total - reestimate(est, **changes).total
        if saved > 0:
            out.append((text, saved))

    if i["loss_mode"] == "eager":
        consider("loss_cfg=CELossConfig(mode='chunk') (logits one chunk at a time)", loss_mode="chunk")
    if i["recompute_ratio"] < 1:
        consider("fsdp_cfg=FSDPConfig(recompute_ratio=1.0) (recompute every layer's activations)", recompute_ratio=1.0)
    if i["pack_max_length"] > 1024:
        half = i["pack_max_length"] // 2
        consider(f"dataloader_cfg pack_max_length={half} (and double the global batch to keep tokens per step)",
                 pack_max_length=half)
    if i["micro_batch_size"] > 1:
        consider("a smaller micro batch (more gradient accumulation steps)", micro_batch_size=1)
    if i["lora"] is None:
        consider("lora_cfg=LoRAConfig(r=16) (train adapters, the base stays frozen)", lora=16)
    if i["fsdp"] and i["world_size"] == 1:
        consider("more GPUs with FSDP (world_size=8 shards weights, gradients and optimizer states)", world_size=8)
    return sorted(out, key=lambda t: -t[1])


def _gpu_bytes(gpu: Any) -> tuple[str, int] | None:
    if gpu is None:
        try:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(torch.cuda.current_device())
                return f"{props.name} (this machine)", int(props.total_memory)
        except Exception:  # no CUDA build, driver trouble: fall back to the table of known GPUs
            return None
        return None
    if isinstance(gpu, (int, float)):
        return f"{gpu:g} GiB GPU", int(gpu * GiB)
    key = str(gpu).strip()
    lookup = {k.lower().replace(" ", "").replace("-", ""): k for k in GPUS}
    lookup.update({k.lower().replace(" ", "").replace("-", ""): v for k, v in _ALIASES.items()})
    name = lookup.get(key.lower().replace(" ", "").replace("-", ""))
    if name is None:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of {list(GPUS)} or give the memory in GiB")
    return name, int(GPUS[name] * GiB)


def show_fit(estimate: MemoryEstimate, gpu: Any = None) -> Html:
    """A stacked bar and a table of the estimate against a GPU (name, GiB, or None: this machine's GPU; with no
    GPU here, a fits/does-not-fit line for each known GPU)."""
    target = _gpu_bytes(gpu)
    total = estimate.total
    cap = target[1] if target else None
    scale = max(total, cap or 0) or 1
    segs = "".join(
        f"<div title='{p}: {v / GiB:.2f} GiB' style='width:{100 * v / scale:.3f}%;background:{_COLORS[p]};"
        f"height:100%;display:inline-block'></div>" for p, v in estimate.parts().items() if v > 0)
    marker = (f"<div style='position:absolute;left:{100 * cap / scale:.3f}%;top:-3px;bottom:-3px;"
              f"border-left:3px solid #000' title='GPU memory'></div>") if cap else ""
    bar = (f"<div style='position:relative;width:520px;height:22px;background:#eee;border:1px solid #ccc;"
           f"white-space:nowrap;font-size:0;margin:6px 0'>{segs}{marker}</div>")
    rows = "".join(
        f"<tr><td><span style='display:inline-block;width:10px;height:10px;background:{_COLORS[p]}'></span> {p}</td>"
        f"<td style='text-align:right;padding-left:12px'>{v / GiB:,.2f} GiB</td>"
        f"<td style='text-align:right;padding-left:12px;color:#777'>{100 * v / max(total, 1):.0f}%</td></tr>"
        for p, v in estimate.parts().items())
    rows += (f"<tr style='border-top:1px solid #999'><td><b>total</b></td>"
             f"<td style='text-align:right;padding-left:12px'><b>{total / GiB:,.2f} GiB</b></td><td></td></tr>")
    i = estimate.inputs
    what = (f"{type(i.get('model_cfg')).__name__}: {estimate.params / 1e9:.3g} B params"
            f"{f', {estimate.trainable / 1e6:.3g} M trainable (LoRA)' if estimate.trainable != estimate.params else ''}"
            f" · pack {i.get('pack_max_length')} × {i.get('micro_batch_size')} · {i.get('param_dtype')} · "
            f"recompute {i.get('recompute_ratio')} · loss {i.get('loss_mode')} · "
            f"{i.get('world_size')} GPU(s){' FSDP' if i.get('fsdp') and i.get('world_size', 1) > 1 else ''}")
    if target:
        name, cap = target
        ok = total <= cap
        verdict = (f"<b style='color:{'#2e7d32' if ok else '#c62828'}'>{'✓ fits' if ok else '✗ does not fit'}</b> "
                   f"on {html.escape(name)}: {total / GiB:.1f} of {cap / GiB:.1f} GiB ({100 * total / cap:.0f}%)")
        if not ok:
            tips = suggestions(estimate)
            if tips:
                verdict += "<div style='margin-top:4px'>To lower it:<ul style='margin:2px 0'>" + "".join(
                    f"<li>{html.escape(t)}: −{s / GiB:.1f} GiB</li>" for t, s in tips) + "</ul></div>"
    else:
        verdict = "No GPU here; fits on: " + ", ".join(
            f"<span style='color:{'#2e7d32' if total <= g * GiB else '#c62828'}'>"
            f"{'✓' if total <= g * GiB else '✗'} {html.escape(n)} ({g:g} GiB)</span>" for n, g in GPUS.items())
    return Html(f"<div style='font-family:sans-serif;font-size:0.9em'><div style='color:#555'>{html.escape(what)}</div>"
                f"{bar}<div>{verdict}</div><table style='border-collapse:collapse;margin-top:4px'>{rows}</table>"
                f"<div style='color:#888;font-size:0.85em'>estimate per GPU, all parts added (conservative)</div></div>")

