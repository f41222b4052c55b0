"""make_tiny_checkpoint: a real HF folder (random tiny Qwen3 + trained tokenizer) that transformers loads."""

from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from xtuner_nb.model import Qwen3DenseConfig, Qwen3DenseTinyConfig, load_hf_weights, make_tiny_checkpoint


def test_transformers_loads_it_and_generates(tiny_ckpt):
    tok = AutoTokenizer.from_pretrained(str(tiny_ckpt))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_ckpt)).eval()
    assert model.config.vocab_size >= len(tok)
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert (model.config.bos_token_id, model.config.eos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 2, 2, 0)
    prompt = tok.apply_chat_template([{"role": "user", "content": "你好, tiny model!"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape == (1, prompt["input_ids"].shape[1] + 8) or int(out[0, -1]) in (0, 2)  # or stopped at eos
    assert isinstance(tok.decode(out[0]), str)


def test_our_build_loads_it_like_transformers(tiny_ckpt):
    cfg = Qwen3DenseConfig.from_hf(tiny_ckpt)
    assert cfg.to_dict(with_type=False) == Qwen3DenseTinyConfig().to_dict(with_type=False)
    ours = cfg.build()
    load_hf_weights(ours, tiny_ckpt)
    theirs = AutoModelForCausalLM.from_pretrained(str(tiny_ckpt))
    ids = torch.randint(0, 500, (1, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(ids).logits - theirs(ids).logits).abs().max().item() < 1e-5


def test_seeded_fast_and_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    start = time.process_time()  # CPU time: robust to other jobs sharing the 2 cores
    a = make_tiny_checkpoint(tmp_path / "a", seed=7)
    elapsed = time.process_time() - start
    assert torch.equal(torch.rand(3), expected_next)
    b = make_tiny_checkpoint(tmp_path / "b", seed=7)
    c = make_tiny_checkpoint(tmp_path / "c", seed=8)
    wa, wb, wc = (load_file(str(p / "model.safetensors")) for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["model.embed_tokens.weight"], wc["model.embed_tokens.weight"])
    assert wa["model.embed_tokens.weight"].dtype == torch.float32
    assert elapsed < 3.0, elapsed


def test_custom_texts_and_shape(tmp_path):
    cfg = Qwen3DenseTinyConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128)
    path = make_tiny_checkpoint(tmp_path / "m", model_cfg=cfg, texts=["hello world"] * 20 + ["学习"] * 5)
    tok = AutoTokenizer.from_pretrained(str(path))
    assert tok.decode(tok("hello 学习")["input_ids"]) == "hello 学习"
    assert AutoModelForCausalLM.from_pretrained(str(path)).config.hidden_size == 64


def test_vocab_too_small_or_wrong_ids_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size=300 is smaller than the tokenizer \(\d+ tokens"):
        make_tiny_checkpoint(tmp_path / "a", model_cfg=Qwen3DenseTinyConfig(vocab_size=300))
    with pytest.raises(ValueError, match=r"eos_token_id=151645 .*<\|im_end\|>=2"):
        make_tiny_checkpoint(tmp_path / "b", model_cfg=Qwen3DenseTinyConfig(eos_token_id=151645))
    assert not list(tmp_path.iterdir())
