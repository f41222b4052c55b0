"""Training FLOPs per token, device peak FLOP/s and MFU (model FLOPs utilisation).

Convention (PaLM, Chowdhery et al. 2022, app. B; Megatron-LM, Narayanan et al. 2021, which gives the same count):

    flops_per_token = 6 * N  +  12 * n_layers * (n_heads * head_dim) * S

* `N` = non-embedding parameters + lm_head parameters (`vocab * hidden`, counted even when tied to the
  embedding: the lookup is free but the output projection is a real matmul). Each parameter costs 2 FLOPs per
  token in the forward (multiply + add) and 4 in the backward (grad of input + grad of weight): 6.
* Attention scores `Q K^T` and `P V` cost `2 * 2 * S * n_heads * head_dim` per token per layer in the forward,
  times 3 for forward + backward: 12. `S` is the attended length. Like PaLM and Megatron we do not halve it for the
  causal mask. For a pack of samples with lengths `l_i` under varlen attention (samples never attend to each
  other) the work is `sum(l_i^2)` over `sum(l_i)` tokens, so pass `S = sum(l_i^2) / sum(l_i)`
  (`effective_attn_len`); for one unpacked sequence it is its length.
* The peak: a GPU's from its datasheet (the table below), a CPU's measured on the machine (`cpu_peak.py`).
* LoRA (`adapter_params`, the adapters' parameter count): the base is frozen, so its weights cost 4 FLOPs per token
  (the forward and the input's gradient; no weight gradient) and the adapters 6: `4 * N + 6 * adapters`. Counted
  as 6 * N, a LoRA run's MFU read 1.5x what it did (above 100 % on a CPU). A module trained whole beside the
  adapters (`modules_to_save`) is counted as frozen: its weight gradient is left out.
* MFU counts model FLOPs only: activation recomputation (checkpointing) is not counted, so those runs' MFU reads
  lower than the hardware is really doing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["flops_per_token", "effective_attn_len", "device_peak_flops", "peak_flops_for_name", "mfu"]


def flops_per_token(model_cfg: Any, seq_len_or_attn_term: float, adapter_params: int | None = None) -> float:
    """Training FLOPs per token (forward + backward) of `model_cfg` (a `Qwen3DenseConfig`) at attended length S;
    with `adapter_params`, of LoRA adapters of that many parameters over the frozen model."""
    if seq_len_or_attn_term < 0:
        raise ValueError(f"attended length must be >= 0, got {seq_len_or_attn_term}")
    a = model_cfg.attention
    n_params = model_cfg.num_params(include_embeddings=False) + model_cfg.vocab_size * model_cfg.hidden_size
    attn = 12 * model_cfg.num_hidden_layers * a.num_attention_heads * a.head_dim * seq_len_or_attn_term
    dense = 6 * n_params if adapter_params is None else 4 * n_params + 6 * adapter_params
    return float(dense + attn)


def effective_attn_len(seq_lens: Sequence[int] | torch.Tensor) -> float:
    """`sum(l_i^2) / sum(l_i)` of the sample lengths of a pack (pass `cu_seq_lens.diff()` for a pack)."""
    lens = torch.as_tensor(seq_lens, dtype=torch.float64).reshape(-1)
    total = lens.sum().item()
    return (lens.square().sum().item() / total) if total else 0.0


# Dense (no sparsity) tensor-core peaks in FLOP/s from the vendor datasheets: (bf16, fp16). More specific names
# first: an "H100 PCIe" must not match the SXM entry, an "L40S" must not match "L4".
_PEAKS: list[tuple[str, float | None, float | None]] = [
    (r"H100.*PCIe", 756e12, 756e12),
    (r"H100.*NVL", 835e12, 835e12),
    (r"H100", 989e12, 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    (r"H200", 989e12, 989e12),
    (r"A100", 312e12, 312e12),
    (r"\bL4\b", 121e12, 121e12),
    (r"\bT4\b", None, 65e12),  # Turing: no bf16 tensor cores
    (r"RTX 4090", 165e12, 165e12),  # fp32 accumulation
]


def peak_flops_for_name(name: str, dtype: torch.dtype = torch.bfloat16) -> float | None:
    """Peak FLOP/s of a GPU given its `torch.cuda.get_device_name`, or None if unknown (MFU is then null)."""
    col = {torch.bfloat16: 1, torch.float16: 2}.get(dtype)
    if col is None:  # fp32/tf32 training: no table, report no MFU rather than a misleading one
        return None
    for pattern, *peaks in _PEAKS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return peaks[col - 1]
    return None


def device_peak_flops(device: torch.device | str | None = None, dtype: torch.dtype = torch.bfloat16) -> float | None:
    """Peak FLOP/s of `device` for `dtype` matmuls: on a CPU the one measured on this machine (`cpu_peak`), on a
    GPU the datasheet's; None for an unlisted GPU, or CUDA asked for without it."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        from .cpu_peak import measured_cpu_peak

        return measured_cpu_peak().get(str(dtype).removeprefix("torch."))
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device), dtype)


def mfu(tokens_per_sec: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1]: achieved model FLOP/s over the peak. `tokens_per_sec` is per device."""
    if not peak:
        return None
    return tokens_per_sec * flops_per_token / peak
