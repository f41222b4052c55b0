"""Will it fit? The memory of one SFT step on one device, by parts (the Trainer's fit check, its OOM message and the
notebook's `show_fit` all read it).

    est = estimate_memory(Qwen3Dense8BConfig(), pack_max_length=8192, loss_mode="chunk", world_size=8)

The arithmetic (bytes, per device; P = parameters, T = trainable parameters, s = world_size when fsdp else 1,
b = bytes of param_dtype, the compute dtype, N = pack_max_length * micro_batch_size tokens in one forward pass; the
Trainer runs the packs of a step one forward at a time, so micro_batch_size stays 1 for it):

- weights: fp32 master copy 4·T/s plus a compute copy b·T/s when b < 4 (autocast/FSDP mixed precision keep a
  bf16 cast of what they use); with LoRA the frozen base is kept in param_dtype only, b·P/s (`build.build_model`
  builds it in the compute dtype: on a CPU that is fp32 unless `FSDPConfig(precision="bfloat16")`).
- QLoRA (`LoRAConfig(quantize_base="nf4")`): the frozen linears of the decoder layers, D parameters, are NF4,
  0.5 + 1/64 + b/16384 bytes each (4-bit codes, int8 absmax per 64 weights, a scale per 256 absmaxes;
  `model.qlora.nf4_bytes`), the rest of the base, b·(P − D); the model is built on the meta device and loaded into
  4-bit placeholders, so no host-side build. Each forward and backward dequantizes one linear at a time: torchao's
  dequantization holds (8 + 3b) bytes per weight of the largest linear (two int64 index tensors, the values, the
  scaled values and the result), counted with the activations.
- gradients: fp32, 4·T/s. With `defer_reduce_scatter` (FSDP2 gradient accumulation that reduce-scatters only
  after the last pack) every layer's unsharded gradient in reduce_dtype is also held: + b·T·(1 − 1/s).
- optimizer: AdamW's two fp32 moments 8·T/s (SGD with momentum: 4·T/s).
- activations, what autograd keeps for one decoder layer of transformers' Qwen3 (bytes per token; the RMSNorms
  upcast to fp32): each of the two RMSNorms keeps its fp32 input, the normalised bf16 value and the weighted output
  that the next linear reads, (4 + 2b)·h; q_norm/k_norm the same for q and k, attention its q, k, v and output,
  (4 + 3b)·(q + kv); the MLP gate, up, SiLU output and product, 4b·I; fp32 norms' 1/rms and the attention's
  log-sum-exp 4·(2 + 2·heads + kv_heads). A layer without q/k norms (Llama, Qwen2) keeps q, k, v and the output
  only, 2b·(q + kv), and 4·(2 + heads) in fp32. A recomputed layer keeps only its input (b·h) and, during backward,
  one layer is rebuilt in full at a time. The final norm and the lm_head input add (4 + 3b)·h. Packed varlen attention
  keeps no L×L matrix. (Checked against the tensors autograd saves: tests/train/test_memory_estimate.py.)
- logits: eager mode holds the fp32 logits and their gradient, N·V·4·2; chunk mode one chunk, min(chunk, N)·V·4·2.
- cpu_offload (FSDP2 CPUOffloadPolicy): weights, gradients and optimizer states live in host memory
  (`host_bytes`); the device holds the compute copy of about two layers (one in use, one prefetched).
- a model built on the host before it moves to the GPU (a LoRA base in the compute dtype, or a random init in fp32;
  see `builds_on_meta`) needs P·b (LoRA) or 4·P of host memory while it is built (`host_bytes`).
- overhead: what the process holds besides the run's tensors. On a GPU the CUDA context and allocator slack (1 GiB
  by default). On a CPU, where everything is host memory, the process's own resident memory, measured when the fit
  check runs (`estimate_run`: Python, torch, transformers, a notebook kernel and what it already holds).
- allocator (CPU only): what glibc's malloc keeps resident of the forward's freed temporaries. A layer's forward
  frees tensors between those autograd keeps (`layer_forward_temporaries`: 4h + (4 + 1 with q/k norms)·(q + kv)
  elements a token; under LoRA 3 more per output element of every adapted linear, peft's base output, adapter
  output and its scaled copy, and 2h); malloc, whose mmap threshold grows to 32 MiB after the first large free,
  serves those below 32 MiB from its heap and keeps the holes (larger ones are unmapped when freed). 0.4 of those
  temporaries of all layers: measured on the project's
  2-core x86 VM as (peak RSS) - (peak RSS with MALLOC_MMAP_THRESHOLD_=65536, which returns every freed tensor):
  SmolLM2-135M LoRA packs of 256 and 2048 (0.38, 0.38; recompute on: 0.33), full fine-tune packs of 2048 (0.47).
  Returning every tensor instead costs 35-50 % more CPU time a step, so the Trainer leaves malloc as it is.
Adding all parts is conservative for the device: the peak of a real step comes at the start of backward, when
some of the gradients do not exist yet. Measured peaks (`memory/max_memory_GB` in the metrics) are the check:
`bench/memory_estimate.py` prints estimate against measured peak RSS on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...config import FSDPConfig
from ...model.base import DECODER_LINEAR_MODULES

__all__ = ["GiB", "MemoryEstimate", "estimate_memory", "estimate_run", "builds_on_meta", "lora_params", "nf4_base",
           "quantized_base",
           "reestimate", "layer_activation_bytes", "layer_forward_temporaries"]

GiB = 2 ** 30
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
_MMAP_THRESHOLD_MAX = 32 * 2 ** 20  # glibc on 64-bit: larger blocks are always mmapped, and unmapped when freed
PARTS = ("weights", "gradients", "optimizer", "activations", "logits", "allocator", "overhead")


@dataclass
class MemoryEstimate:
    """Bytes per device by part; `total` adds them. `inputs` are the arguments, so variants can be re-estimated."""

    params: int
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    allocator: int = 0  # CPU: freed forward temporaries glibc keeps resident
    host_bytes: int = 0  # host memory a GPU run needs besides the device's (cpu_offload state, a host-side build)
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> int:
        return sum(getattr(self, p) for p in PARTS)

    def parts(self) -> dict[str, int]:
        return {p: getattr(self, p) for p in PARTS}

    def gib(self) -> dict[str, float]:
        return {**{p: v / GiB for p, v in self.parts().items()}, "total": self.total / GiB}

    def summary(self) -> str:
        """One line: the total and its parts in GiB."""
        parts = ", ".join(f"{k} {v / GiB:.1f}" for k, v in self.parts().items())
        return f"{self.total / GiB:.1f} GiB ({parts} GiB)"

    def describe_run(self) -> str:
        """The settings the estimate is for, in one line (what the fit check and the OOM message name)."""
        i = self.inputs
        lora = i["lora"] is not None and i["lora"] is not False
        kind = ("QLoRA (NF4 base)" if quantized_base(i["lora"]) else "LoRA") if lora else "full fine-tune"
        ranks = f", {i['world_size']} ranks" if i["world_size"] > 1 else ""
        return (f"{type(i['model_cfg']).__name__} ({self.params / 1e9:.2f} B params, "
                f"{kind}, {i['param_dtype']} compute, pack {i['pack_max_length']}, "
                f"recompute {i['recompute_ratio']}, loss {i['loss_mode']}{ranks})")


def _adapted_linears(model_cfg: Any, targets: Any) -> list[tuple[int, int]]:
    """(in, out) of every LoRA-adapted linear of one decoder layer."""
    a, h, inter = model_cfg.attention, model_cfg.hidden_size, model_cfg.intermediate_size
    q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    names = DECODER_LINEAR_MODULES if targets in ("all-linear", "all", None) else list(targets)
    unknown = [n for n in names if n not in shapes]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; choose from {list(DECODER_LINEAR_MODULES)} or "
                         "'all-linear'")
    return [shapes[n] for n in names]


def lora_params(model_cfg: Any, rank: int, targets: Any = "all-linear") -> int:
    """Trainable LoRA parameters: r·(in+out) per adapted linear layer of every decoder layer."""
    return model_cfg.num_hidden_layers * sum(rank * (i + o) for i, o in _adapted_linears(model_cfg, targets))


def _forward_temporaries(model_cfg: Any, lora_targets: Any) -> list[tuple[int, int]]:
    """(width, how many) of the [tokens, width] tensors one decoder layer's forward frees before it ends (not kept
    for backward): 4 of h and 4 (5 with q/k norms) of q and of kv; a LoRA layer also 3 per adapted linear's output
    (peft's base output, adapter output and its scaled copy) and 2 of h. Fitted to the tensors torch allocates in a
    Qwen3 and a Llama layer (tests/train/test_memory_estimate.py)."""
    a, h = model_cfg.attention, model_cfg.hidden_size
    q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
    qk = 5 if a.qk_norm else 4
    groups = [(h, 4), (q, qk), (kv, qk)]
    if lora_targets is not None:
        groups += [(o, 3) for _, o in _adapted_linears(model_cfg, lora_targets)] + [(h, 2)]
    return groups


def layer_forward_temporaries(model_cfg: Any, tokens: int, dtype_bytes: int, lora_targets: Any = None,
                              below: int | None = None) -> int:
    """Bytes one decoder layer's forward allocates and frees before it ends (`_forward_temporaries`); `below`: only
    tensors smaller than that many bytes (what malloc serves from its heap)."""
    sizes = [(tokens * width * dtype_bytes, n) for width, n in _forward_temporaries(model_cfg, lora_targets)]
    return sum(size * n for size, n in sizes if below is None or size < below)


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


def quantized_base(lora: Any) -> bool:
    """Whether a LoRA spec (config, dict) keeps its base's decoder linears in 4 bits (QLoRA)."""
    q = lora.get("quantize_base") if isinstance(lora, dict) else getattr(lora, "quantize_base", None)
    return q is not None


def nf4_base(model_cfg: Any, dtype_bytes: int) -> tuple[int, int, int]:
    """QLoRA's decoder linears: (parameters, bytes in NF4 with their block scales, bytes torchao's dequantization of
    the largest one holds at once: two int64 index tensors and three of values, (8 + 3b) per weight)."""
    from ...model.qlora import nf4_bytes

    sizes = [i * o for i, o in _adapted_linears(model_cfg, "all-linear")]
    layers = model_cfg.num_hidden_layers
    return (layers * sum(sizes), layers * sum(nf4_bytes(n, dtype_bytes) for n in sizes),
            (8 + 3 * dtype_bytes) * max(sizes))


def layer_activation_bytes(model_cfg: Any, tokens: int, dtype_bytes: int) -> int:
    """What autograd keeps for one decoder layer over `tokens` tokens (see the module docstring; a layer without
    q/k norms, Llama's and Qwen2's, keeps only q, k, v and the attention output there, 2b·(q + kv))."""
    a, h, inter, b = model_cfg.attention, model_cfg.hidden_size, model_cfg.intermediate_size, dtype_bytes
    q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
    if a.qk_norm:
        attention, fp32 = (4 + 3 * b) * (q + kv), 4 * (2 + 2 * a.num_attention_heads + a.num_key_value_heads)
    else:
        attention, fp32 = 2 * b * (q + kv), 4 * (2 + a.num_attention_heads)
    return tokens * (2 * (4 + 2 * b) * h + attention + 4 * b * inter + fp32)


def estimate_memory(model_cfg: Any, pack_max_length: int, param_dtype: str = "bfloat16", recompute_ratio: float = 1.0,
                    loss_mode: str = "chunk", chunk_size: int = 1024, optimizer: str = "adamw", world_size: int = 1,
                    lora: Any = None, fsdp: bool = True, micro_batch_size: int = 1,
                    overhead_gib: float = 1.0, defer_reduce_scatter: bool = False,
                    cpu_offload: bool = False, pretrained: bool = True, device_type: str = "cuda") -> MemoryEstimate:
    """Estimate the per-device memory of one training step (see the module docstring for every formula).

    `pretrained`: the run fine-tunes a checkpoint (`load_from` set; False: trained from scratch), which decides
    where the model is built and which ways to fit make sense; `device_type`: "cpu" when the device is the host."""
    inputs = dict(model_cfg=model_cfg, pack_max_length=pack_max_length, param_dtype=param_dtype,
                  recompute_ratio=recompute_ratio, loss_mode=loss_mode, chunk_size=chunk_size, optimizer=optimizer,
                  world_size=world_size, lora=lora, fsdp=fsdp, micro_batch_size=micro_batch_size,
                  overhead_gib=overhead_gib, defer_reduce_scatter=defer_reduce_scatter, cpu_offload=cpu_offload,
                  pretrained=pretrained, device_type=device_type)
    if param_dtype not in DTYPE_BYTES:
        raise ValueError(f"param_dtype must be one of {sorted(DTYPE_BYTES)}, got {param_dtype!r}")
    if loss_mode not in ("eager", "chunk"):
        raise ValueError(f"loss_mode must be 'eager' or 'chunk', got {loss_mode!r}")
    if not 0 <= recompute_ratio <= 1:
        raise ValueError(f"recompute_ratio must lie in [0, 1], got {recompute_ratio}")
    b = DTYPE_BYTES[param_dtype]
    P = model_cfg.num_params()
    spec = _lora_spec(lora)
    T = lora_params(model_cfg, *spec) if spec else P
    if spec:  # peft's modules_to_save train in full beside the adapters
        saved = set(getattr(lora, "modules_to_save", None) or (lora.get("modules_to_save") or []
                                                               if isinstance(lora, dict) else []))
        emb = model_cfg.vocab_size * model_cfg.hidden_size
        T += emb * len(saved & {"lm_head", "embed_tokens"})
    frozen = b * P if spec else 0  # LoRA: the base model stays, frozen, beside the adapters
    quantized = spec is not None and quantized_base(lora)
    dequantizing = 0  # QLoRA: one linear dequantized at a time, in forward and in backward
    if quantized:
        decoder, decoder_bytes, dequantizing = nf4_base(model_cfg, b)
        frozen += decoder_bytes - b * decoder
    shards = world_size if fsdp else 1

    weights = (4 * T + (b * T if b < 4 else 0) + frozen) // shards
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
    activations = n_ckpt * kept + (layers - n_ckpt) * full + (full if n_ckpt else 0) + head + dequantizing

    host_build = device_type != "cpu" and not builds_on_meta(pretrained, spec is not None, quantized)
    host = (b if spec else 4) * P if host_build else 0  # the whole model, once, before it is placed and sharded
    if cpu_offload:  # the sharded state moves to the host; the device keeps about two layers' compute copies
        host = max(host, weights + gradients + opt)
        layer = (P - model_cfg.vocab_size * model_cfg.hidden_size * (1 if model_cfg.tie_word_embeddings else 2)) \
            // layers
        weights, gradients, opt = 2 * b * layer, 2 * b * layer, 0

    vocab = model_cfg.vocab_size
    logits = (n_tok if loss_mode == "eager" else min(chunk_size, n_tok)) * vocab * 4 * 2
    allocator = 0
    if device_type == "cpu":  # glibc keeps 0.4 of the forward's freed heap temporaries resident (module docstring)
        heap = layer_forward_temporaries(model_cfg, n_tok, b, spec[1] if spec else None, below=_MMAP_THRESHOLD_MAX)
        allocator = 2 * layers * heap // 5
    return MemoryEstimate(params=P, trainable=T, weights=weights, gradients=gradients, optimizer=opt,
                          activations=activations, logits=logits, overhead=int(overhead_gib * GiB),
                          allocator=allocator, host_bytes=host, inputs=inputs)


def reestimate(est: MemoryEstimate, **changes: Any) -> MemoryEstimate:
    """The same estimate with some inputs changed (how every way to fit is priced)."""
    return estimate_memory(**{**est.inputs, **changes})


def builds_on_meta(loads_weights: bool, lora: bool, quantized: bool = False) -> bool:
    """`build.build_model`'s rule, kept here so that the build and the estimate read one rule: with weights to load
    and no LoRA, or a QLoRA base (loaded into 4-bit placeholders), the model is built on the meta device and
    allocated where it runs; otherwise (random init, or a LoRA base in the compute dtype) it is built whole in host
    memory first."""
    return loads_weights and (not lora or quantized)


def estimate_run(config: Any, precision: Any, world_size: int, device_type: str,
                 process_bytes: int = 0) -> MemoryEstimate:
    """The estimate for a TrainerConfig on one device: `precision` is `train.precision.choose_precision`'s choice
    for that device, `process_bytes` the process's resident memory now (the overhead on a CPU)."""
    fsdp_cfg = config.fsdp_cfg or FSDPConfig()
    loss_cfg = config.effective_loss_cfg()
    return estimate_memory(
        config.model_cfg, config.dataloader_cfg.pack_max_length, param_dtype=precision.name,
        recompute_ratio=fsdp_cfg.recompute_ratio,
        loss_mode="eager" if loss_cfg.mode == "eager" else "chunk",  # liger's fused CE works chunk by chunk too
        chunk_size=loss_cfg.chunk_size or 1024, world_size=world_size, lora=config.lora_cfg, fsdp=world_size > 1,
        overhead_gib=process_bytes / GiB if device_type == "cpu" else 1.0,
        defer_reduce_scatter=fsdp_cfg.defer_reduce_scatter,
        cpu_offload=fsdp_cfg.cpu_offload, pretrained=config.load_from is not None, device_type=device_type)
