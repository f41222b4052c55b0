"""Packed attention on CUDA: the flash varlen kernel against the exact per-sample loop (bf16), and memory."""

from __future__ import annotations

import pytest
import torch

from xtuner_nb.model import attention
from xtuner_nb.model.attention_kernels import AttentionDispatcher

from .model_testlib import make_pack, small_cfg

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (varlen flash kernels)")]


def _model(attn_impl="varlen", seed=0):
    torch.manual_seed(seed)
    return small_cfg(attn_impl).build(device="cuda", dtype=torch.bfloat16)


def _run(model, ids, pos, cu):
    model.zero_grad()
    m = int((cu[1:] - cu[:-1]).max())
    logits = model(input_ids=ids, position_ids=pos, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=m,
                   max_length_k=m, use_cache=False).logits
    logits.float().square().mean().backward()
    return logits.detach().float(), [p.grad.float().clone() for p in model.parameters()]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()


def test_kernel_matches_per_sample_loop_forward_and_backward(monkeypatch):
    model = _model()
    _, ids, pos, cu = make_pack([37, 1, 130, 64, 17])
    ids, pos, cu = ids.cuda(), pos.cuda(), cu.cuda()
    monkeypatch.setattr(attention, "DISPATCHER", AttentionDispatcher())
    kernel_logits, kernel_grads = _run(model, ids, pos, cu)
    assert attention.DISPATCHER.backend_in_use() in ("torch", "flash_attn"), attention.DISPATCHER.notes
    assert any("self-check passed" in n for n in attention.DISPATCHER.notes)
    monkeypatch.setenv("XTUNER_NB_VARLEN_BACKEND", "loop")
    monkeypatch.setattr(attention, "DISPATCHER", AttentionDispatcher())
    loop_logits, loop_grads = _run(model, ids, pos, cu)
    assert _rel(kernel_logits, loop_logits) < 2e-2
    assert max(_rel(a, b) for a, b in zip(kernel_grads, loop_grads)) < 5e-2


def test_kernel_matches_each_sample_alone_with_sdpa():
    model = _model()
    ref = _model("sdpa")
    ref.load_state_dict(model.state_dict())
    samples, ids, pos, cu = make_pack([50, 3, 90])
    with torch.no_grad():
        alone = torch.cat([ref(s.cuda()).logits for s in samples], dim=1).float()
        packed, _ = _run(model, ids.cuda(), pos.cuda(), cu.cuda())
    assert _rel(packed, alone) < 2e-2


def test_long_pack_builds_no_square_mask():
    """32k tokens: an [L, L] bool mask alone would be 1 GiB; the tiny model's whole forward needs far less."""
    model = _model()
    lengths = [4096] * 8
    _, ids, pos, cu = make_pack(lengths)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.no_grad():
        model.model(input_ids=ids.cuda(), position_ids=pos.cuda(), cu_seq_lens_q=cu.cuda(), cu_seq_lens_k=cu.cuda(),
                    max_length_q=4096, max_length_k=4096, use_cache=False)
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 2**30 // 2, peak
