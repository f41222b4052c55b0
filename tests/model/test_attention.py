"""Packed (varlen) attention against transformers' own Qwen3 with sdpa, sample by sample (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask

from .model_testlib import VOCAB, make_pack, twin_models

ATOL = 1e-5


def _packed_kwargs(cu: torch.Tensor) -> dict:
    m = int((cu[1:] - cu[:-1]).max())
    return dict(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=m, max_length_k=m)


@pytest.mark.parametrize("kv_heads", [2, 4], ids=["gqa", "mha"])
def test_pack_logits_equal_each_sample_alone(kv_heads):
    ours, ref = twin_models(kv_heads=kv_heads)
    samples, ids, pos, cu = make_pack([7, 1, 12, 4, 9])
    with torch.no_grad():
        alone = torch.cat([ref(s).logits for s in samples], dim=1)
        packed = ours(input_ids=ids, position_ids=pos, **_packed_kwargs(cu)).logits
    diff = (packed - alone).abs().max().item()
    assert diff < ATOL, diff
    # without isolation the pack really differs (so the test can fail): sdpa on the same pack, cache on
    with torch.no_grad():
        leaky = ref(input_ids=ids, position_ids=pos).logits
    assert (leaky - alone).abs().max().item() > 1e-2


def test_contract_forward_through_model_model():
    """The Trainer's call: model.model(...).last_hidden_state, then its own lm_head/loss."""
    ours, ref = twin_models()
    samples, ids, pos, cu = make_pack([5, 11, 3])
    with torch.no_grad():
        hidden = ours.model(input_ids=ids, position_ids=pos, use_cache=False, **_packed_kwargs(cu)).last_hidden_state
        alone = torch.cat([ref.model(s).last_hidden_state for s in samples], dim=1)
    assert hidden.shape == (1, 19, 128)
    assert (hidden - alone).abs().max().item() < ATOL


def test_gradients_of_summed_loss_match():
    ours, ref = twin_models(seed=1)
    ours.train(), ref.train()
    samples, ids, pos, cu = make_pack([6, 2, 10, 5], seed=1)
    targets = torch.randint(0, VOCAB, (1, ids.shape[1]), generator=torch.Generator().manual_seed(2))

    logits = ours(input_ids=ids, position_ids=pos, use_cache=False, **_packed_kwargs(cu)).logits
    torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="sum").backward()

    start = 0
    for s in samples:
        n = s.shape[1]
        logits_s = ref(s, use_cache=False).logits
        torch.nn.functional.cross_entropy(logits_s[0], targets[0, start:start + n], reduction="sum").backward()
        start += n

    worst = 0.0
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert p.grad is not None, name
        scale = max(1.0, q.grad.abs().max().item())
        worst = max(worst, (p.grad - q.grad).abs().max().item() / scale)
    assert worst < 1e-4, worst


def test_batch_of_packs_uses_flat_cu_seq_lens():
    """B > 1: cu_seq_lens index the B*L flattened tokens (transformers' flash convention)."""
    ours, ref = twin_models()
    s1, ids1, pos1, cu1 = make_pack([4, 8], seed=3)
    s2, ids2, pos2, cu2 = make_pack([9, 3], seed=4)
    cu = torch.cat([cu1, cu2[1:] + 12]).to(torch.int32)
    with torch.no_grad():
        packed = ours(input_ids=torch.cat([ids1, ids2]), position_ids=torch.cat([pos1, pos2]),
                      **_packed_kwargs(cu)).logits
        alone = torch.cat([torch.cat([ref(s).logits for s in s1], 1), torch.cat([ref(s).logits for s in s2], 1)])
    assert (packed - alone).abs().max().item() < ATOL


def test_without_cu_seq_lens_it_is_sdpa():
    """No cu_seq_lens: the same numbers as transformers' sdpa, also where sdpa itself isolates or leaks."""
    ours, ref = twin_models()
    _, ids, pos, _ = make_pack([6, 9, 4])
    x = torch.randint(0, VOCAB, (3, 10), generator=torch.Generator().manual_seed(5))
    pad = torch.ones(3, 10, dtype=torch.long)
    pad[0, :4] = 0
    pad[2, :1] = 0
    with torch.no_grad():
        for kwargs in [dict(input_ids=x), dict(input_ids=x, attention_mask=pad),
                       dict(input_ids=ids, position_ids=pos),  # cache on: sdpa does not isolate
                       dict(input_ids=ids, position_ids=pos, use_cache=False)]:  # sdpa isolates
            diff = (ours(**kwargs).logits - ref(**kwargs).logits).abs().max().item()
            assert diff < ATOL, (list(kwargs), diff)


def test_pack_mask_is_boundaries_not_a_square_matrix():
    """Where transformers would build a [1, 1, L, L] mask for a pack, we hand over int32 boundaries instead."""
    ours, _ = twin_models()
    _, ids, pos, cu = make_pack([300, 1, 500, 223])
    embeds = torch.zeros(1, ids.shape[1], 8)
    mask = create_causal_mask(config=ours.config, inputs_embeds=embeds, attention_mask=None, cache=None,
                              position_ids=pos)
    assert mask.dtype == torch.int32 and mask.shape == (5,) and torch.equal(mask, cu)
    # with a (training-default) cache, or a plain row, there is no mask at all: the causal flag does it
    assert create_causal_mask(config=ours.config, inputs_embeds=embeds, attention_mask=None,
                              cache=DynamicCache(config=ours.config), position_ids=pos) is None
    plain = torch.arange(ids.shape[1])[None]
    assert create_causal_mask(config=ours.config, inputs_embeds=embeds, attention_mask=None, cache=None,
                              position_ids=plain) is None


def test_generate_equals_sdpa_greedy_after_packed_training_step():
    ours, ref = twin_models(seed=2)
    _, ids, pos, cu = make_pack([5, 7])
    ours(input_ids=ids, position_ids=pos, **_packed_kwargs(cu)).logits.sum().backward()  # same object, trained path
    ours.zero_grad()
    prompt = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(6))
    mask = torch.ones_like(prompt)
    mask[1, :2] = 0  # left padding
    with torch.no_grad():
        for kwargs in [dict(input_ids=prompt[:1]), dict(input_ids=prompt, attention_mask=mask)]:
            a = ours.generate(**kwargs, max_new_tokens=12, do_sample=False, pad_token_id=0)
            b = ref.generate(**kwargs, max_new_tokens=12, do_sample=False, pad_token_id=0)
            assert torch.equal(a, b)
            assert a.shape[1] == 18


@pytest.mark.parametrize("bad, message", [
    (torch.tensor([0, 5, 10], dtype=torch.int32), "end at the number of tokens"),
    (torch.tensor([1, 5, 12], dtype=torch.int32), "start at 0"),
    (torch.tensor([0, 7, 5, 12], dtype=torch.int32), "non-decreasing"),
])
def test_bad_cu_seq_lens_raise(bad, message):
    ours, _ = twin_models()
    _, ids, pos, _ = make_pack([5, 7])
    with pytest.raises(ValueError, match=message):
        ours(input_ids=ids, position_ids=pos, cu_seq_lens_q=bad, cu_seq_lens_k=bad, max_length_q=7, max_length_k=7)


def test_pack_with_padding_mask_is_refused():
    ours, _ = twin_models()
    _, ids, pos, cu = make_pack([5, 7])
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    with pytest.raises(ValueError, match="cu_seq_lens"):
        ours(input_ids=ids, attention_mask=mask, **_packed_kwargs(cu))


def test_gradient_checkpointing_keeps_pack_isolation_and_grads():
    ours, _ = twin_models(seed=3)
    ours.train()
    _, ids, pos, cu = make_pack([4, 9, 6], seed=5)

    def grads():
        ours.zero_grad()
        ours(input_ids=ids, position_ids=pos, use_cache=False, **_packed_kwargs(cu)).logits.square().mean().backward()
        return [p.grad.clone() for p in ours.parameters()]

    plain = grads()
    ours.activation_checkpointing_enable()  # transformers 5 name of gradient_checkpointing_enable
    recomputed = grads()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, recomputed))
