"""Data viewer HTML, memory arithmetic (by hand and against the tensors autograd really keeps), OOM advice."""

import re

import pytest
import torch

from xtuner_nb.config import FSDPConfig
from xtuner_nb.loss import CELossConfig
from xtuner_nb.model import Qwen3Dense8BConfig, Qwen3DenseTinyConfig
from xtuner_nb.model.tokenizer import make_tiny_tokenizer
from xtuner_nb.notebook.memory import (GiB, estimate_memory, layer_activation_bytes, lora_params, show_fit,
                                       suggestions)
from xtuner_nb.notebook.oom import oom_advice
from xtuner_nb.notebook.viewer import length_histogram, pack_stats_table, show_tokens


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def _chat_sample(tok):
    msgs = [{"role": "user", "content": "你好 world\n\tx"}, {"role": "assistant", "content": "Hi 🙂!"}]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = out["input_ids"]
    labels = [i if m else -100 for i, m in zip(ids, out["assistant_masks"])]
    return ids, labels


def _spans(html_text):
    return re.findall(r"<span class='tok (\w+)( special)?' data-id='(\d+)'", html_text)


def test_show_tokens_marks_trained_masked_special_and_whitespace(tok):
    ids, labels = _chat_sample(tok)
    out = show_tokens(tok, torch.tensor([ids]), torch.tensor(labels))  # [1, L] tensors are fine
    spans = _spans(out)
    assert [int(i) for _, _, i in spans] == ids  # one span per token, in order
    assert [k for k, _, _ in spans] == ["trained" if lab != -100 else "masked" for lab in labels]
    trained_ids = [int(i) for k, _, i in spans if k == "trained"]
    assert tok.decode(trained_ids) == "Hi 🙂!<|im_end|>"  # exactly the assistant reply + end token
    specials = [int(i) for _, s, i in spans if s]
    assert specials and all(tok.convert_ids_to_tokens(i) in ("<|im_start|>", "<|im_end|>") for i in specials)
    assert "↵" in out and "→" in out and "·" in out  # newline, tab, space made visible
    assert "你好" in out and "🙂" in out  # multi-byte characters reassembled
    assert f"trained {sum(l != -100 for l in labels)}" in out
    assert "title='#0 id 1 · " in out  # the tooltip gives position and id


def test_show_tokens_with_shifted_labels_and_pack_boundaries(tok):
    ids, labels = _chat_sample(tok)
    shifted = labels[1:] + [-100]
    packed = show_tokens(tok, ids + ids, shifted_labels=shifted + shifted, cu_seq_lens=[0, len(ids), 2 * len(ids)])
    assert [k for k, _, _ in _spans(packed)] == ["trained" if l != -100 else "masked" for l in labels + labels]
    assert "sample 0" in packed and "sample 1" in packed
    with pytest.raises(ValueError, match="labels has 3 entries but input_ids has"):
        show_tokens(tok, ids, [1, 2, 3])
    short = show_tokens(tok, ids, labels, max_tokens=5)
    assert len(_spans(short)) == 5 and f"{len(ids) - 5} more tokens" in short


def test_length_histogram_and_pack_stats():
    fig = length_histogram([10, 20, 30, 5000], pack_max_length=4096)
    ax = fig.axes[0]
    assert "1 longer than pack_max_length" in ax.get_title()
    assert ax.get_legend().get_texts()[0].get_text() == "pack_max_length = 4096"
    table = pack_stats_table({"samples": 12345, "fill_ratio": 0.9312, "pack_level": "soft",
                              "datasets": [{"name": "demo", "tokens": 999}]})
    assert "12,345" in table and "93.1%" in table and "soft" in table and "demo" in table


# ---- memory arithmetic ---------------------------------------------------------------------------------------
def test_tiny_param_count_by_hand():
    # attn 128*128 + 2*128*64 + 128*128 + 2*32 (q/k norms); mlp 3*128*384; 2 norms; 4 layers; final norm;
    # tied embedding 2048*128
    per_layer = (128 * 128 + 2 * 128 * 64 + 128 * 128 + 2 * 32) + 3 * 128 * 384 + 2 * 128
    assert Qwen3DenseTinyConfig().num_params() == 4 * per_layer + 128 + 2048 * 128 == 1_049_984


def test_weights_grads_optimizer_logits_exact():
    cfg = Qwen3DenseTinyConfig()
    P = 1_049_984
    e = estimate_memory(cfg, pack_max_length=2048, loss_mode="eager")
    assert (e.params, e.trainable) == (P, P)
    assert e.weights == P * (4 + 2)  # fp32 master + bf16 compute copy
    assert e.gradients == P * 4
    assert e.optimizer == P * 8  # AdamW: exp_avg + exp_avg_sq in fp32
    assert e.logits == 2048 * 2048 * 4 * 2 == 33_554_432
    assert estimate_memory(cfg, 2048, loss_mode="chunk", chunk_size=1024).logits == 1024 * 2048 * 8
    assert estimate_memory(cfg, 512, loss_mode="chunk", chunk_size=1024).logits == 512 * 2048 * 8  # chunk > L
    fp32 = estimate_memory(cfg, 2048, param_dtype="float32")
    assert fp32.weights == P * 4  # the master copy is the compute copy
    big = Qwen3Dense8BConfig()
    sharded = estimate_memory(big, 4096, world_size=8)
    assert sharded.weights == big.num_params() * 6 // 8 and sharded.optimizer == big.num_params() * 8 // 8
    assert estimate_memory(big, 4096, world_size=8, fsdp=False).gradients == big.num_params() * 4
    assert e.total == sum(e.parts().values())


def test_lora_counts_only_adapters_as_trainable():
    cfg = Qwen3DenseTinyConfig()
    # rank 8 on q_proj (128 -> 128) and v_proj (128 -> 64) of 4 layers
    assert lora_params(cfg, 8, ["q_proj", "v_proj"]) == 4 * 8 * ((128 + 128) + (128 + 64)) == 14_336
    e = estimate_memory(cfg, 2048, lora={"rank": 8, "targets": ["q_proj", "v_proj"]})
    assert e.trainable == 14_336
    assert (e.gradients, e.optimizer) == (14_336 * 4, 14_336 * 8)
    assert e.weights == 14_336 * 6 + 1_049_984 * 2  # adapters fp32+bf16, frozen base bf16 only
    from xtuner_nb.model.lora import LoRAConfig

    assert estimate_memory(cfg, 2048, lora=LoRAConfig(r=8, target_modules=["q_proj", "v_proj"])).trainable == 14_336
    untied = Qwen3DenseTinyConfig(tie_word_embeddings=False)
    head = estimate_memory(untied, 2048, lora=LoRAConfig(r=8, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    assert head.trainable == 4 * 8 * (128 + 128) + 2048 * 128
    with pytest.raises(ValueError, match="unknown LoRA target"):
        lora_params(cfg, 8, ["qkv"])


def test_activation_formula_by_hand_and_recompute():
    cfg = Qwen3DenseTinyConfig()  # h 128, q 128, kv 64, I 384, 4 heads, 2 kv heads
    per_tok = 2 * (4 + 4) * 128 + (4 + 6) * (128 + 64) + 8 * 384 + 4 * (2 + 8 + 2)
    assert per_tok == 2048 + 1920 + 3072 + 48
    assert layer_activation_bytes(cfg, 2048, 2) == 2048 * per_tok
    head = 2048 * (4 + 6) * 128
    kept = 2048 * 128 * 2
    full_recompute = estimate_memory(cfg, 2048, recompute_ratio=1.0)
    assert full_recompute.activations == 4 * kept + 2048 * per_tok + head
    none = estimate_memory(cfg, 2048, recompute_ratio=0.0)
    assert none.activations == 4 * 2048 * per_tok + head
    half = estimate_memory(cfg, 2048, recompute_ratio=0.5)
    assert half.activations == 2 * kept + 2 * 2048 * per_tok + 2048 * per_tok + head


def test_activation_formula_matches_what_autograd_saves():
    """Sum the tensors autograd keeps for one real transformers Qwen3 decoder layer (bf16) and compare."""
    cfg = Qwen3DenseTinyConfig(hidden_size=256, intermediate_size=768, num_hidden_layers=1)
    model = cfg.build(dtype=torch.bfloat16)
    n = 256
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in params:
            saved[key] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(1, n, 256, dtype=torch.bfloat16, requires_grad=True)
    pos = torch.arange(n)[None]
    cos_sin = model.model.rotary_emb(x, pos)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model.layers[0](x, position_embeddings=cos_sin, position_ids=pos, attention_mask=None)
    rope_tables = sum(t.untyped_storage().nbytes() for t in cos_sin)  # shared by all layers
    measured = sum(saved.values()) - rope_tables
    assert measured == pytest.approx(layer_activation_bytes(cfg, n, 2), rel=0.03)


def test_show_fit_verdicts_and_suggestions():
    cfg = Qwen3Dense8BConfig()
    e = estimate_memory(cfg, 8192, loss_mode="eager", recompute_ratio=0.0)
    out = show_fit(e, "H100")
    assert "does not fit" in out and "H100 80GB" in out and "mode=&#x27;chunk&#x27;" in out
    assert "✓ fits" in show_fit(estimate_memory(Qwen3DenseTinyConfig(), 2048), "T4")
    assert "✓ fits" in show_fit(estimate_memory(Qwen3DenseTinyConfig(), 2048), 2)  # 2 GiB
    texts = [t for t, _ in suggestions(e)]
    assert any("chunk" in t for t in texts) and any("recompute_ratio=1.0" in t for t in texts)
    with pytest.raises(ValueError, match="unknown GPU"):
        show_fit(e, "K80")
    if not torch.cuda.is_available():
        assert "No GPU here" in show_fit(e)


def test_oom_advice_reads_trainer_like_settings():
    from types import SimpleNamespace

    trainer = SimpleNamespace(model_cfg=Qwen3Dense8BConfig(), fsdp_cfg=FSDPConfig(recompute_ratio=0.5),
                              loss_cfg=CELossConfig(mode="eager"),
                              config=SimpleNamespace(dataloader_cfg=SimpleNamespace(pack_max_length=16384)),
                              dist=SimpleNamespace(world_size=1))
    text = oom_advice(trainer, RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert text.startswith("Out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB).")
    assert "CELossConfig(mode='chunk')" in text and "recompute_ratio=1.0" in text and "pack_max_length=8192" in text
    assert "Estimated per GPU" in text
    assert "pack_max_length" in oom_advice(None)
