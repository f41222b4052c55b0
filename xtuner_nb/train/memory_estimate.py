"""Will it fit? A per-device memory estimate of an SFT step, by parts (the Trainer's fit check and the notebook's
`show_fit` both read it).

    est = estimate_memory(Qwen3Dense8BConfig(), pack_max_length=8192, loss_mode="chunk", world_size=8)

The arithmetic (bytes, per GPU; P = parameters, T = trainable parameters, s = world_size when fsdp else 1,
b = bytes of param_dtype, N = pack_max_length * micro_batch_size tokens in one forward pass; the Trainer runs the
packs of a step one forward at a time, so micro_batch_size stays 1 for it):

- weights: fp32 master copy 4·T/s plus a compute copy b·T/s when b < 4 (autocast/FSDP mixed precision keep a
  bf16 cast of what they use); with LoRA the frozen base is kept in param_dtype only: b·(P−T)/s.
- gradients: fp32, 4·T/s. With `defer_reduce_scatter` (FSDP2 gradient accumulation that reduce-scatters only
  after the last pack) every layer's unsharded gradient in reduce_dtype is also held: + b·T·(1 − 1/s).
- optimizer: AdamW's two fp32 moments 8·T/s (SGD with momentum: 4·T/s).
- activations, what autograd keeps for one decoder layer of transformers' Qwen3 (bytes per token; the RMSNorms
  upcast to fp32): each of the two RMSNorms keeps its fp32 input, the normalised bf16 value and the weighted output
  that the next linear reads, (4 + 2b)·h; q_norm/k_norm the same for q and k, attention its q, k, v and output,
  (4 + 3b)·(q + kv); the MLP gate, up, SiLU output and product, 4b·I; fp32 norms' 1/rms and the attention's
  log-sum-exp 4·(2 + 2·heads + kv_heads). A recomputed layer keeps only its input (b·h) and, during backward, one
  layer is rebuilt in full at a time. The final norm and the lm_head input add (4 + 3b)·h. Packed varlen attention
  keeps no L×L matrix. (Checked against the tensors autograd saves: tests/notebook/test_viewer_memory.py.)
- logits: eager mode holds the fp32 logits and their gradient, N·V·4·2; chunk mode one chunk, min(chunk, N)·V·4·2.
- cpu_offload (FSDP2 CPUOffloadPolicy): weights, gradients and optimizer states live in host memory
  (`host_bytes`); the device holds the compute copy of about two layers (one in use, one prefetched).
- overhead: the CUDA context and allocator slack (default 1 GiB).

Adding all parts is conservative: the peak of a real step comes at the start of backward, when some of the
gradients do not exist yet. Measured peaks (`memory/max_memory_GB` in the metrics) are the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["GiB", "MemoryEstimate", "estimate_memory", "suggestions", "lora_params", "reestimate",
           "layer_activation_bytes"]

GiB = 2 ** 30
_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PARTS = ("weights", "gradients", "optimizer", "activations", "logits", "overhead")


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
    host_bytes: int = 0  # what cpu_offload keeps in host memory instead
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> int:
        return sum(getattr(self, p) for p in _PARTS)

    def parts(self) -> dict[str, int]:
        return {p: getattr(self, p) for p in _PARTS}

    def gib(self) -> dict[str, float]:
        return {**{p: v / GiB for p, v in self.parts().items()}, "total": self.total / GiB}

    def summary(self) -> str:
        """One line: the total and its parts in GiB."""
        parts = ", ".join(f"{k} {v / GiB:.1f}" for k, v in self.parts().items())
        return f"{self.total / GiB:.1f} GiB ({parts} GiB)"


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
                    overhead_gib: float = 1.0, defer_reduce_scatter: bool = False,
                    cpu_offload: bool = False) -> MemoryEstimate:
    """Estimate the per-GPU memory of one training step (see the module docstring for every formula)."""
    inputs = dict(model_cfg=model_cfg, pack_max_length=pack_max_length, param_dtype=param_dtype,
                  recompute_ratio=recompute_ratio, loss_mode=loss_mode, chunk_size=chunk_size, optimizer=optimizer,
                  world_size=world_size, lora=lora, fsdp=fsdp, micro_batch_size=micro_batch_size,
                  overhead_gib=overhead_gib, defer_reduce_scatter=defer_reduce_scatter, cpu_offload=cpu_offload)
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
    if defer_reduce_scatter and fsdp and world_size > 1:  # unsharded gradients of every layer until the last pack
        gradients += b * T - b * T // shards
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

    host = 0
    if cpu_offload:  # the sharded state moves to the host; the device keeps about two layers' compute copies
        host = weights + gradients + opt
        layer = (P - model_cfg.vocab_size * model_cfg.hidden_size * (1 if model_cfg.tie_word_embeddings else 2)) \
            // layers
        weights, gradients, opt = 2 * b * layer, 2 * b * layer, 0

    vocab = model_cfg.vocab_size
    logits = (n_tok if loss_mode == "eager" else min(chunk_size, n_tok)) * vocab * 4 * 2
    return MemoryEstimate(params=P, trainable=T, weights=weights, gradients=gradients, optimizer=opt,
                          activations=activations, logits=logits, overhead=int(overhead_gib * GiB), host_bytes=host,
                          inputs=inputs)


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
    if i.get("defer_reduce_scatter"):
        consider("fsdp_cfg=FSDPConfig(defer_reduce_scatter=False) (reduce-scatter after every pack)",
                 defer_reduce_scatter=False)
    if i["fsdp"] and i["world_size"] == 1:
        consider("more GPUs with FSDP (world_size=8 shards weights, gradients and optimizer states)", world_size=8)
    return sorted(out, key=lambda t: -t[1])
