"""A tiny random model (Qwen3 by default, or any architecture's tiny config) + its tokenizer in one HF folder: the
"pretrained model" of tests and the CPU tutorials."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

import torch

from .base import TransformerConfig
from .dense.qwen3 import Qwen3DenseTinyConfig
from .hf_save import save_hf
from .tokenizer import make_tiny_tokenizer


def make_tiny_checkpoint(path: str | Path, model_cfg: TransformerConfig | None = None,
                         texts: Iterable[str] | None = None, seed: int = 0,
                         dtype: torch.dtype = torch.float32) -> Path:
    """Write a random (seeded) model of `model_cfg` (default `Qwen3DenseTinyConfig()`; `LlamaDenseTinyConfig()`,
    `Qwen2DenseTinyConfig()` for the other architectures) and a freshly trained tiny tokenizer to `path`.

    Returns `path`. `AutoTokenizer.from_pretrained(path)` and `AutoModelForCausalLM.from_pretrained(path)` load it,
    and `model_config_from_hf(path)` gives back `model_cfg`. The model's bos/eos ids must be the tokenizer's
    <|endoftext|>/<|im_end|> and its vocabulary must cover the tokenizer. Saved in fp32 by default (it is tiny, and
    tests compare logits exactly). The global torch RNG is left untouched.
    """
    model_cfg = model_cfg if model_cfg is not None else Qwen3DenseTinyConfig()
    with tempfile.TemporaryDirectory() as tok_dir:
        tokenizer = make_tiny_tokenizer(tok_dir, texts)
    _check_tokenizer_fits(model_cfg, tokenizer)
    # sdpa: the saved weights do not depend on it, and it keeps the build independent of our registration
    build_cfg = model_cfg.model_copy(update={"attention": model_cfg.attention.model_copy(update={"attn_impl": "sdpa"})})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_cfg.build()
    return save_hf(model, model_cfg, path, tokenizer=tokenizer, dtype=dtype)


def _check_tokenizer_fits(model_cfg: TransformerConfig, tokenizer) -> None:
    if len(tokenizer) > model_cfg.vocab_size:
        raise ValueError(f"model_cfg.vocab_size={model_cfg.vocab_size} is smaller than the tokenizer "
                         f"({len(tokenizer)} tokens incl. specials); raise vocab_size to at least {len(tokenizer)}")
    ids = {"bos_token_id": ("<|endoftext|>", model_cfg.bos_token_id),
           "eos_token_id": ("<|im_end|>", model_cfg.eos_token_id)}
    for field, (token, value) in ids.items():
        expected = tokenizer.convert_tokens_to_ids(token)
        if value != expected:
            raise ValueError(f"model_cfg.{field}={value} but the tiny tokenizer has {token}={expected}; "
                             f"set {field}={expected}")
    if model_cfg.pad_token_id not in (None, tokenizer.pad_token_id):
        raise ValueError(f"model_cfg.pad_token_id={model_cfg.pad_token_id} but the tokenizer pads with "
                         f"{tokenizer.pad_token_id}")
