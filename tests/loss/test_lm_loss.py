"""lm_loss: chunk mode equals eager (loss and grads), reductions, global calibration, bf16, tied embeddings."""

import pytest
import torch
import torch.nn.functional as F

from xtuner_nb.loss import CELossConfig, lm_loss, loss_weights

X = -100
V, H = 97, 24


def make_pack(lengths, seed, n_prompt=2, vocab=V):
    """Labels of a pack of samples whose first `n_prompt` labels are masked, plus its cu_seq_lens."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, vocab, (1, sum(lengths)), generator=g)
    cu = torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    for s in cu[:-1].tolist():
        labels[0, s:s + n_prompt] = X
    return labels, cu


def leaves(L, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(1, L, H, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(V, H, generator=g) * 0.3).to(dtype).requires_grad_()
    return hidden, weight


def loss_and_grads(hidden, weight, labels, w, d, cfg):
    hidden.grad = weight.grad = None
    loss = lm_loss(hidden, weight, labels, w, d, cfg)
    loss.backward()
    return loss.detach(), hidden.grad.clone(), weight.grad.clone()


@pytest.mark.parametrize("reduction", ["token", "sample", "square"])
@pytest.mark.parametrize("chunk_size", [1, 7, 16, 64, 1000])  # 7 and 64 do not divide L=80; 1000 > L
def test_chunk_equals_eager(reduction, chunk_size):
    labels, cu = make_pack([30, 5, 33, 12], seed=1)
    w = loss_weights(labels, cu, reduction)
    hidden, weight = leaves(labels.shape[1])
    ref = loss_and_grads(hidden, weight, labels, w, w.sum(), CELossConfig(mode="eager"))
    got = loss_and_grads(hidden, weight, labels, w, w.sum(), CELossConfig(mode="chunk", chunk_size=chunk_size))
    for name, a, b in zip(["loss", "grad hidden", "grad weight"], ref, got):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("mode", ["eager", "chunk"])
def test_token_reduction_is_cross_entropy_mean(mode):
    labels, cu = make_pack([20, 20, 9], seed=2)
    hidden, weight = leaves(labels.shape[1], seed=2)
    w = loss_weights(labels, cu, "token")
    loss = lm_loss(hidden, weight, labels, w, w.sum(), CELossConfig(mode=mode, chunk_size=8))
    ref = F.cross_entropy((hidden[0] @ weight.T).float(), labels[0], ignore_index=X)  # mean over non-ignored
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["eager", "chunk"])
def test_sample_reduction_is_mean_of_per_sample_means(mode):
    labels, cu = make_pack([10, 4, 25], seed=3)
    hidden, weight = leaves(labels.shape[1], seed=3)
    w = loss_weights(labels, cu, "sample")
    loss = lm_loss(hidden, weight, labels, w, w.sum(), CELossConfig(mode=mode, chunk_size=5))
    per_sample = [F.cross_entropy(hidden[0, s:e] @ weight.T, labels[0, s:e], ignore_index=X)
                  for s, e in zip(cu[:-1].tolist(), cu[1:].tolist())]
    torch.testing.assert_close(loss, torch.stack(per_sample).mean(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["token", "sample", "square"])
@pytest.mark.parametrize("mode", ["eager", "chunk"])
def test_global_calibration_two_micro_steps_equal_one_batch(reduction, mode):
    """Two packs, each divided by the step-wide denominator, sum to the loss (and grads) of one merged batch."""
    cfg = CELossConfig(mode=mode, chunk_size=6, loss_reduction=reduction)
    (l1, cu1), (l2, cu2) = make_pack([9, 30], seed=4), make_pack([3, 14, 7], seed=5)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 63, H, generator=g)
    proj = torch.randn(H, H, generator=g).requires_grad_()  # hidden = x @ proj: grads accumulate on a shared leaf
    weight = torch.randn(V, H, generator=g).requires_grad_()
    w1, w2 = loss_weights(l1, cu1, reduction), loss_weights(l2, cu2, reduction)
    denom = w1.sum() + w2.sum()
    micro = lm_loss(x[:, :39] @ proj, weight, l1, w1, denom, cfg)
    micro.backward()
    micro2 = lm_loss(x[:, 39:] @ proj, weight, l2, w2, denom, cfg)
    micro2.backward()
    step_loss, g_proj, g_weight = (micro + micro2).detach(), proj.grad.clone(), weight.grad.clone()

    proj.grad = weight.grad = None
    labels = torch.cat([l1, l2], dim=1)
    cu = torch.cat([cu1, cu2[1:] + cu1[-1]])
    w = loss_weights(labels, cu, reduction)
    torch.testing.assert_close(w, torch.cat([w1, w2]))
    single = lm_loss(x @ proj, weight, labels, w, w.sum(), cfg)
    single.backward()
    torch.testing.assert_close(step_loss, single.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(g_proj, proj.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g_weight, weight.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "chunk"])
def test_ignored_only_segments_contribute_nothing(mode):
    labels, cu = make_pack([12, 12], seed=7)
    padded = torch.cat([labels, torch.full((1, 8), X)], dim=1)  # a padding segment with no loss token
    cu_padded = torch.cat([cu, torch.tensor([32], dtype=torch.int32)])
    hidden, weight = leaves(32, seed=7)
    for reduction in ["token", "sample", "square"]:
        cfg = CELossConfig(mode=mode, chunk_size=5)
        w = loss_weights(padded, cu_padded, reduction)
        loss, g_hidden, g_weight = loss_and_grads(hidden, weight, padded, w, w.sum(), cfg)
        assert torch.all(g_hidden[0, 24:] == 0)
        w_short = loss_weights(labels, cu, reduction)
        short = lm_loss(hidden[:, :24], weight, labels, w_short, w_short.sum(), cfg)
        torch.testing.assert_close(loss, short.detach(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["eager", "chunk"])
def test_no_loss_token_in_the_step_gives_zero(mode):
    hidden, weight = leaves(10)
    labels = torch.full((1, 10), X)
    w = loss_weights(labels, torch.tensor([0, 10], dtype=torch.int32), "sample")
    loss, g_hidden, g_weight = loss_and_grads(hidden, weight, labels, w, w.sum(), CELossConfig(mode=mode))
    assert loss.item() == 0 and not g_hidden.any() and not g_weight.any()


def test_bf16_inputs():
    labels, cu = make_pack([40, 24], seed=8)
    w = loss_weights(labels, cu, "token")
    hidden32, weight32 = leaves(64, seed=8)
    ref = loss_and_grads(hidden32, weight32, labels, w, w.sum(), CELossConfig(mode="eager"))
    hidden, weight = leaves(64, seed=8, dtype=torch.bfloat16)
    for cfg in [CELossConfig(mode="eager"), CELossConfig(mode="chunk", chunk_size=16)]:
        loss, g_hidden, g_weight = loss_and_grads(hidden, weight, labels, w, w.sum(), cfg)
        assert loss.dtype == torch.float32  # logits are upcast before the CE
        assert g_hidden.dtype == g_weight.dtype == torch.bfloat16
        torch.testing.assert_close(loss, ref[0], atol=3e-2, rtol=1e-2)
        torch.testing.assert_close(g_hidden.float(), ref[1], atol=2e-3, rtol=5e-2)
        torch.testing.assert_close(g_weight.float(), ref[2], atol=2e-3, rtol=5e-2)


def test_chunk_only_computes_grads_that_are_needed_and_none_without_grad():
    labels, cu = make_pack([16], seed=9)
    w = loss_weights(labels, cu, "token")
    hidden, weight = leaves(16, seed=9)
    cfg = CELossConfig(mode="chunk", chunk_size=4)
    frozen_head = weight.detach()  # e.g. LoRA: lm_head frozen
    lm_loss(hidden, frozen_head, labels, w, w.sum(), cfg).backward()
    assert hidden.grad is not None
    with torch.no_grad():
        eval_loss = lm_loss(hidden, weight, labels, w, w.sum(), cfg)
    assert not eval_loss.requires_grad
    torch.testing.assert_close(eval_loss, lm_loss(hidden, weight, labels, w, w.sum(), CELossConfig()).detach())


def test_shape_errors_are_clear():
    hidden, weight = leaves(8)
    w = torch.ones(8)
    with pytest.raises(ValueError, match="hidden has 8 tokens but shifted_labels has 7"):
        lm_loss(hidden, weight, torch.zeros(1, 7, dtype=torch.long), w, 8.0, CELossConfig())
    with pytest.raises(ValueError, match=r"lm_head_weight must be \[vocab, 24\]"):
        lm_loss(hidden, weight[:, :5], torch.zeros(1, 8, dtype=torch.long), w, 8.0, CELossConfig())


@pytest.mark.parametrize("mode", ["eager", "chunk"])
def test_tied_embeddings_match_transformers_qwen3(mode):
    """Real transformers Qwen3 with tied embeddings: our loss and the embedding's total grad equal HF's own."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=V, hidden_size=H, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=12, tie_word_embeddings=True)
    model = Qwen3ForCausalLM(cfg).float()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    ids = torch.randint(0, V, (1, 30))
    labels = ids.clone()
    labels[0, :6] = X  # prompt
    model(input_ids=ids, labels=labels).loss.backward()  # HF shifts internally and averages over loss tokens
    ref_loss_grad = model.model.embed_tokens.weight.grad.clone()
    ref_loss = model(input_ids=ids, labels=labels).loss.detach()

    model.zero_grad()
    shifted = torch.cat([labels[:, 1:], torch.full((1, 1), X)], dim=1)
    w = loss_weights(shifted, torch.tensor([0, 30], dtype=torch.int32), "token")
    hidden = model.model(input_ids=ids).last_hidden_state
    loss = lm_loss(hidden, model.lm_head.weight, shifted, w, w.sum(), CELossConfig(mode=mode, chunk_size=7))
    loss.backward()
    torch.testing.assert_close(loss.detach(), ref_loss, atol=1e-6, rtol=1e-6)
    # the tied weight's grad = lm_head part + embedding-lookup part, added by autograd
    torch.testing.assert_close(model.model.embed_tokens.weight.grad, ref_loss_grad, atol=1e-6, rtol=1e-5)
