"""Helpers of the model tests: a small Qwen3 shape, twin models (ours vs transformers' sdpa), packs."""

from __future__ import annotations

import torch

from xtuner_nb.model import MHAConfig, Qwen3DenseTinyConfig

VOCAB = 300


def small_cfg(attn_impl: str = "varlen", kv_heads: int = 2, layers: int = 2, **overrides) -> Qwen3DenseTinyConfig:
    """4 query heads of 32 (GQA with 2 kv heads by default), 2 layers: fast, and still every code path."""
    attention = MHAConfig(num_attention_heads=4, num_key_value_heads=kv_heads, head_dim=32, attn_impl=attn_impl)
    return Qwen3DenseTinyConfig(vocab_size=VOCAB, num_hidden_layers=layers, attention=attention, **overrides)


def twin_models(kv_heads: int = 2, seed: int = 0, **overrides):
    """(ours with attn_impl="varlen", transformers' Qwen3 with attn_implementation="sdpa"), same weights, eval()."""
    torch.manual_seed(seed)
    ours = small_cfg("varlen", kv_heads, **overrides).build().eval()
    ref = small_cfg("sdpa", kv_heads, **overrides).build().eval()
    ref.load_state_dict(ours.state_dict())
    assert ours.config._attn_implementation == "xtuner_varlen" and ref.config._attn_implementation == "sdpa"
    return ours, ref


def make_pack(lengths: list[int], seed: int = 0):
    """Samples of the given lengths, and their pack: ids [1, L], restarting position_ids, int32 cu_seq_lens."""
    g = torch.Generator().manual_seed(seed)
    samples = [torch.randint(0, VOCAB, (1, n), generator=g) for n in lengths]
    ids = torch.cat(samples, dim=1)
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
    return samples, ids, pos, cu
