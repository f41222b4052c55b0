"""cfg.build(): transformers' own CausalLM per architecture, sizes of every preset on the meta device, seeded init,
dtypes."""

from __future__ import annotations

import pytest
import torch
import transformers

from .model_testlib import small_cfg
from xtuner_nb.model import HF_CONFIG_JSON_DIFFS, MODEL_PRESETS, MHAConfig, Qwen3DenseTinyConfig, build_qwen3

# published sizes (model cards), in billions, at the precision they are published with
PUBLISHED = {"qwen3-0.6B": (0.596, 3), "qwen3-1.7B": (1.72, 2), "qwen3-4B": (4.02, 2), "qwen3-8B": (8.19, 2),
             "qwen3-14B": (14.77, 2), "qwen3-32B": (32.76, 2), "qwen2.5-0.5B": (0.49, 2), "qwen2.5-1.5B": (1.54, 2),
             "qwen2.5-7B": (7.6, 1), "smollm2-135M": (0.1345, 4), "smollm2-360M": (0.362, 3),
             "tinyllama-1.1B": (1.1, 1), "llama3.2-1B": (1.24, 2), "llama3.2-3B": (3.21, 2), "llama3.1-8B": (8.03, 2)}


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_meta_parameter_count_equals_num_params_and_published_size(name):
    cfg = MODEL_PRESETS[name]()
    model = cfg.build(device="meta")
    assert cfg.hf_model_class == f"{cfg.hf_config_class[:-6]}ForCausalLM"
    assert type(model).__mro__[2] is getattr(transformers, cfg.hf_model_class)  # its packed-loss subclass
    assert all(p.is_meta for p in model.parameters())
    n = sum(p.numel() for p in model.parameters())  # tied lm_head is counted once
    assert n == cfg.num_params()
    hf_diffs = {k: v for k, v in HF_CONFIG_JSON_DIFFS.get(name, {}).items() if "." not in k}
    n = MODEL_PRESETS[name](**hf_diffs).num_params()  # the published size is that of the HF config.json
    if name in PUBLISHED:
        size, digits = PUBLISHED[name]
        assert round(n / 1e9, digits) == size
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == cfg.tie_word_embeddings


def test_attn_impl_maps_to_transformers_names():
    for ours, theirs in [("varlen", "xtuner_varlen"), ("sdpa", "sdpa"), ("eager", "eager")]:
        model = small_cfg(ours).build(device="meta")
        assert model.config._attn_implementation == theirs


def test_random_init_is_seeded_and_uses_initializer_range():
    cfg = Qwen3DenseTinyConfig(initializer_range=0.05)
    torch.manual_seed(3)
    a = cfg.build()
    torch.manual_seed(3)
    b = build_qwen3(cfg)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert abs(a.model.layers[0].mlp.up_proj.weight.std().item() - 0.05) < 2e-3
    assert torch.equal(a.model.norm.weight, torch.ones(128))
    assert a.model.embed_tokens.weight.dtype == torch.float32


def test_dtype_and_rope_buffers():
    model = Qwen3DenseTinyConfig().build(dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32  # RoPE keeps fp32 frequencies
    assert torch.get_default_dtype() == torch.float32  # restored


@pytest.mark.parametrize("attention, message", [
    (MHAConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=32, qk_norm=False), "qk_norm"),
    (MHAConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=32, o_bias=True), "o_bias"),
    (MHAConfig(num_attention_heads=4, num_key_value_heads=3, head_dim=32), "multiple"),
])
def test_shapes_transformers_cannot_express_are_refused(attention, message):
    with pytest.raises(ValueError, match=message):
        Qwen3DenseTinyConfig(attention=attention).build(device="meta")
