"""The packed-attention dispatcher, driven on CPU with stand-in kernels of each released `varlen_attn` signature.

The stand-ins are attention kernels (computed per sample with SDPA, refusing what the real release refuses); the
model around them is transformers' real Qwen3. One stand-in returns wrong numbers, one a wrong gradient, one
raises: the dispatcher must notice each and fall back.
"""

from __future__ import annotations

import pytest
import torch

from xtuner_nb.model import attention
from xtuner_nb.model.attention_kernels import (AttentionDispatcher, Kernel, adapt_torch_varlen, loop_attention,
                                               sdpa_block)

from .model_testlib import make_pack, twin_models

CALLS: list[dict] = []


def _per_sample(q, k, v, cu_q, cu_k, causal, scale):
    return loop_attention(q, k, v, cu_q, cu_k, None, None, scale, causal, 0.0)


def _no_gqa(q, k):
    if k.shape[1] != q.shape[1]:
        raise RuntimeError("number of heads in key/value must equal the number of heads in query")


def varlen_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, is_causal=False,
                scale=None):
    CALLS.append(dict(is_causal=is_causal, kv_heads=key.shape[1]))
    _no_gqa(query, key)
    return _per_sample(query, key, value, cu_seq_q, cu_seq_k, is_causal, scale)


def varlen_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                window_size=(-1, -1)):
    CALLS.append(dict(window_size=tuple(window_size), kv_heads=key.shape[1]))
    _no_gqa(query, key)
    return _per_sample(query, key, value, cu_seq_q, cu_seq_k, tuple(window_size) == (-1, 0), scale)


def varlen_2_12(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
    CALLS.append(dict(window_size=tuple(window_size), enable_gqa=enable_gqa, kv_heads=key.shape[1]))
    if not enable_gqa:
        _no_gqa(query, key)
    return _per_sample(query, key, value, cu_seq_q, cu_seq_k, tuple(window_size) == (-1, 0), scale)


def varlen_not_causal(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
                      enable_gqa=False):
    """Wrong numbers: attends to the future too, whatever it is asked."""
    return _per_sample(query, key, value, cu_seq_q, cu_seq_k, False, scale)


class _WrongGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 0.5 * g


def varlen_wrong_backward(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
                          enable_gqa=False):
    """Right forward, halved gradient for the query."""
    return _per_sample(_WrongGrad.apply(query), key, value, cu_seq_q, cu_seq_k, tuple(window_size) == (-1, 0), scale)


def varlen_no_image(*args, window_size=(-1, -1), enable_gqa=False, **kw):
    raise RuntimeError("CUDA error: no kernel image is available for execution on the device")


def _loop_kernel():
    return Kernel("loop", lambda: loop_attention)


def _dispatcher(*kernels: Kernel) -> AttentionDispatcher:
    return AttentionDispatcher([*kernels, _loop_kernel()], check_on_cpu=True)


def _torch_kernel(fn):
    return Kernel("torch", lambda: adapt_torch_varlen(fn))


def _packed_vs_alone(monkeypatch, dispatcher, kv_heads=2):
    monkeypatch.setattr(attention, "DISPATCHER", dispatcher)
    ours, ref = twin_models(kv_heads=kv_heads)
    samples, ids, pos, cu = make_pack([7, 1, 12, 4, 9])
    m = int(cu.diff().max())
    with torch.no_grad():
        packed = ours(input_ids=ids, position_ids=pos, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=m,
                      max_length_k=m).logits
        alone = torch.cat([ref(s).logits for s in samples], dim=1)
    return (packed - alone).abs().max().item()


@pytest.mark.parametrize("fn, causal_kw", [(varlen_2_10, {"is_causal": True}),
                                           (varlen_2_11, {"window_size": (-1, 0)}),
                                           (varlen_2_12, {"window_size": (-1, 0), "enable_gqa": True})],
                         ids=["2.10", "2.11", "2.12"])
def test_each_signature_is_called_right_in_the_real_model(monkeypatch, fn, causal_kw):
    CALLS.clear()
    d = _dispatcher(_torch_kernel(fn))
    assert _packed_vs_alone(monkeypatch, d) < 1e-5
    assert d.backend_in_use() == "torch"
    assert any("self-check passed" in n for n in d.notes), d.notes
    model_calls = CALLS[-2:]  # the two decoder layers (the self-check calls come first)
    for call in model_calls:
        assert {k: call[k] for k in causal_kw} == causal_kw
    # GQA (4 query heads, 2 kv heads): without enable_gqa the kv heads arrive repeated
    assert model_calls[0]["kv_heads"] == (2 if "enable_gqa" in causal_kw else 4)


@pytest.mark.parametrize("fn, why", [(varlen_not_causal, "forward error"),
                                     (varlen_wrong_backward, "backward error")], ids=["forward", "backward"])
def test_wrong_numbers_are_caught_and_fall_back(monkeypatch, fn, why):
    d = _dispatcher(_torch_kernel(fn))
    with pytest.warns(RuntimeWarning, match="self-check failed"):
        diff = _packed_vs_alone(monkeypatch, d)
    assert diff < 1e-5  # the run goes on with the exact loop
    assert d.backend_in_use() == "loop"
    failed = next(n for n in d.notes if "self-check failed" in n)
    assert why in failed
    err = float(failed.split(why)[1].split()[0].rstrip(","))
    assert err > 0.1, failed


def test_a_kernel_that_raises_on_first_use_is_passed_over(monkeypatch):
    d = AttentionDispatcher([_torch_kernel(varlen_no_image), _loop_kernel()])  # no self-check: the call raises
    with pytest.warns(RuntimeWarning, match="no kernel image"):
        assert _packed_vs_alone(monkeypatch, d) < 1e-5
    assert d.backend_in_use() == "loop"


def test_missing_refused_and_unknown_kernels_are_skipped_in_order(monkeypatch):
    def missing():
        raise ImportError("No module named 'flash_attn'")

    d = _dispatcher(_torch_kernel(lambda q, k, v, a, b, c, e: None),  # neither window_size nor is_causal
                    Kernel("flash_attn", missing),
                    Kernel("sdpa_block", lambda: sdpa_block, lambda q, k, dropout: "needs a CUDA tensor"))
    assert _packed_vs_alone(monkeypatch, d) < 1e-5
    assert d.backend_in_use() == "loop"
    assert [n.split(":")[0] for n in d.notes] == ["torch", "flash_attn", "sdpa_block"]
    assert "unknown varlen_attn signature" in d.notes[0] and "refused" in d.notes[2]


def test_block_masked_sdpa_equals_the_loop_and_the_default_order_on_cpu(monkeypatch):
    d = _dispatcher(Kernel("sdpa_block", lambda: sdpa_block))  # the real kernel, allowed on CPU here
    assert _packed_vs_alone(monkeypatch, d, kv_heads=4) < 1e-5
    assert d.backend_in_use() == "sdpa_block"
    assert "self-check passed" in d.notes[-1]
    d = AttentionDispatcher()  # the real list: torch/flash_attn/sdpa_block refuse CPU tensors
    assert _packed_vs_alone(monkeypatch, d) < 1e-5
    assert d.backend_in_use() == "loop"
    assert [n.split(":")[0] for n in d.notes] == ["torch", "flash_attn", "sdpa_block"]


def test_forced_backend(monkeypatch):
    monkeypatch.setenv("XTUNER_NB_VARLEN_BACKEND", "loop")
    d = AttentionDispatcher(check_on_cpu=True)
    assert _packed_vs_alone(monkeypatch, d) < 1e-5
    assert d.backend_in_use() == "loop"
    monkeypatch.setenv("XTUNER_NB_VARLEN_BACKEND", "nope")
    with pytest.raises(ValueError, match="choose one of"):
        _packed_vs_alone(monkeypatch, AttentionDispatcher())
