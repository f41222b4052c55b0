"""Qwen3 dense model configs with XTuner v1 names, and size presets copied from the published HF `config.json`s.

A preset is a subclass that only changes defaults, so any field stays overridable:
`Qwen3Dense8BConfig(num_hidden_layers=16)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..config.base import XConfig

if TYPE_CHECKING:
    import torch
    from transformers import Qwen3Config


class MHAConfig(XConfig):
    num_attention_heads: int = Field(32, ge=1, description="Query heads.")
    num_key_value_heads: int = Field(8, ge=1, description="Key/value heads (GQA when fewer than query heads).")
    head_dim: int = Field(128, ge=1, description="Width of one head.")
    dropout: float = Field(0.0, ge=0, le=1, description="Attention dropout.")
    qkv_bias: bool = Field(False, description="Bias on q/k/v projections.")
    qk_norm: bool = Field(True, description="RMSNorm on q and k per head (Qwen3).")
    rms_norm_eps: float = Field(1e-6, gt=0, description="Epsilon of the q/k norms.")
    o_bias: bool = Field(False, description="Bias on the output projection.")
    sliding_window: int | None = Field(None, description="Unused by Qwen3 dense (use_sliding_window=False).")
    attn_impl: Literal["varlen", "sdpa", "eager"] = Field(
        "varlen", description="varlen: packed samples never attend to each other (flash/varlen kernel on CUDA, "
                              "per-sample SDPA on CPU); sdpa/eager: transformers' own paths, for one sample per row.")


class Qwen3DenseConfig(XConfig):
    vocab_size: int = Field(151936, ge=1, description="Vocabulary size (embedding rows).")
    max_position_embeddings: int = Field(40960, ge=1, description="Longest position RoPE is configured for.")
    bos_token_id: int = Field(151643, description="Begin-of-sequence token id.")
    eos_token_id: int = Field(151645, description="End-of-sequence token id (<|im_end|> for Qwen3 chat).")
    pad_token_id: int | None = Field(None, description="Padding token id (the Trainer takes it from the tokenizer).")
    num_hidden_layers: int = Field(36, ge=1, description="Decoder layers.")
    hidden_size: int = Field(4096, ge=1, description="Residual stream width.")
    intermediate_size: int = Field(12288, ge=1, description="MLP inner width.")
    rms_norm_eps: float = Field(1e-6, gt=0, description="RMSNorm epsilon.")
    hidden_act: str = Field("silu", description="MLP activation (a transformers ACT2FN key).")
    rope_theta: float = Field(1e6, gt=0, description="RoPE base frequency.")
    attention: MHAConfig = Field(default_factory=MHAConfig, description="Attention shape and implementation.")
    tie_word_embeddings: bool = Field(False, description="lm_head shares the embedding matrix.")
    initializer_range: float = Field(0.02, gt=0, description="Std of the random init (when no load_from).")

    # ---- transformers interop --------------------------------------------------------------------------------
    @property
    def hf_config(self) -> "Qwen3Config":
        from transformers import Qwen3Config

        a = self.attention
        cfg = Qwen3Config(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=a.num_attention_heads,
            num_key_value_heads=a.num_key_value_heads, head_dim=a.head_dim, hidden_act=self.hidden_act,
            max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta, tie_word_embeddings=self.tie_word_embeddings,
            attention_bias=a.qkv_bias, attention_dropout=a.dropout, use_sliding_window=False,
            sliding_window=a.sliding_window, max_window_layers=self.num_hidden_layers,
            bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id,
            initializer_range=self.initializer_range, architectures=["Qwen3ForCausalLM"], torch_dtype="bfloat16",
        )
        # transformers 5 reads rope_parameters; older versions read rope_theta. Keep both views consistent.
        if getattr(cfg, "rope_parameters", None) is not None:
            cfg.rope_parameters = {**cfg.rope_parameters, "rope_theta": self.rope_theta}
        return cfg

    @classmethod
    def from_hf(cls, path: str | Path, **overrides: Any) -> "Qwen3DenseConfig":
        """Read `config.json` of a local HF Qwen3 folder."""
        from transformers import AutoConfig

        hf = AutoConfig.from_pretrained(str(path))
        if hf.model_type != "qwen3":
            raise ValueError(f"{path}/config.json: model_type is {hf.model_type!r}, expected 'qwen3'")
        rope = getattr(hf, "rope_parameters", None) or {}
        fields = dict(
            vocab_size=hf.vocab_size, max_position_embeddings=hf.max_position_embeddings,
            bos_token_id=hf.bos_token_id if hf.bos_token_id is not None else 151643,
            eos_token_id=hf.eos_token_id if isinstance(hf.eos_token_id, int) else (hf.eos_token_id or [151645])[0],
            pad_token_id=hf.pad_token_id, num_hidden_layers=hf.num_hidden_layers, hidden_size=hf.hidden_size,
            intermediate_size=hf.intermediate_size, rms_norm_eps=hf.rms_norm_eps, hidden_act=hf.hidden_act,
            rope_theta=rope.get("rope_theta", getattr(hf, "rope_theta", 1e6)),
            tie_word_embeddings=bool(hf.tie_word_embeddings),
            initializer_range=getattr(hf, "initializer_range", 0.02),
            attention=MHAConfig(num_attention_heads=hf.num_attention_heads,
                                num_key_value_heads=hf.num_key_value_heads,
                                head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
                                qkv_bias=bool(getattr(hf, "attention_bias", False)),
                                dropout=float(getattr(hf, "attention_dropout", 0.0))),
        )
        fields.update(overrides)
        return Qwen3DenseConfig(**fields)

    def build(self, device: "str | torch.device | None" = None, dtype: "torch.dtype | None" = None):
        """A transformers `Qwen3ForCausalLM` with random init, its attention set to `attention.attn_impl`."""
        from .qwen3 import build_qwen3

        return build_qwen3(self, device=device, dtype=dtype)

    def num_params(self, include_embeddings: bool = True) -> int:
        """Exact parameter count by arithmetic (equals building on the meta device)."""
        a, h = self.attention, self.hidden_size
        q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
        attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if a.qkv_bias else 0) + (h if a.o_bias else 0)
        attn += 2 * a.head_dim if a.qk_norm else 0
        mlp = 3 * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h
        body = self.num_hidden_layers * per_layer + h
        emb = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return body + (emb if include_embeddings else 0)


def _mha(heads: int, kv: int = 8, head_dim: int = 128) -> Any:
    return Field(default_factory=lambda: MHAConfig(num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim))


# https://huggingface.co/Qwen/Qwen3-0.6B/blob/main/config.json
class Qwen3Dense0P6BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 28
    hidden_size: int = 1024
    intermediate_size: int = 3072
    attention: MHAConfig = _mha(16)
    tie_word_embeddings: bool = True


# https://huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json
class Qwen3Dense1P7BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 28
    hidden_size: int = 2048
    intermediate_size: int = 6144
    attention: MHAConfig = _mha(16)
    tie_word_embeddings: bool = True


# https://huggingface.co/Qwen/Qwen3-4B/blob/main/config.json (XTuner's preset uses the 2507 values instead:
# max_position_embeddings=262144, rope_theta=5e6; pass them as overrides for the 2507 checkpoints)
class Qwen3Dense4BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 36
    hidden_size: int = 2560
    intermediate_size: int = 9728
    attention: MHAConfig = _mha(32)
    tie_word_embeddings: bool = True


# https://huggingface.co/Qwen/Qwen3-8B/blob/main/config.json
class Qwen3Dense8BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 36
    hidden_size: int = 4096
    intermediate_size: int = 12288
    attention: MHAConfig = _mha(32)
    tie_word_embeddings: bool = False


# https://huggingface.co/Qwen/Qwen3-14B/blob/main/config.json
class Qwen3Dense14BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 40
    hidden_size: int = 5120
    intermediate_size: int = 17408
    attention: MHAConfig = _mha(40)
    tie_word_embeddings: bool = False


# https://huggingface.co/Qwen/Qwen3-32B/blob/main/config.json
class Qwen3Dense32BConfig(Qwen3DenseConfig):
    num_hidden_layers: int = 64
    hidden_size: int = 5120
    intermediate_size: int = 25600
    attention: MHAConfig = _mha(64)
    tie_word_embeddings: bool = False


# Tiny shape for tests and the CPU tutorials (about 1 M parameters with the demo tokenizer's 2048 vocab).
# Token ids match the tokenizer written by `xtuner_nb.model.make_tiny_checkpoint`.
class Qwen3DenseTinyConfig(Qwen3DenseConfig):
    vocab_size: int = 2048
    max_position_embeddings: int = 4096
    bos_token_id: int = 0
    eos_token_id: int = 2
    num_hidden_layers: int = 4
    hidden_size: int = 128
    intermediate_size: int = 384
    rope_theta: float = 10000.0
    attention: MHAConfig = _mha(4, kv=2, head_dim=32)
    tie_word_embeddings: bool = True


Qwen3_8BConfig = Qwen3Dense8BConfig  # the name used by XTuner's Trainer tutorial page

MODEL_PRESETS: dict[str, type[Qwen3DenseConfig]] = {
    "qwen3-tiny": Qwen3DenseTinyConfig,
    "qwen3-0.6B": Qwen3Dense0P6BConfig,
    "qwen3-1.7B": Qwen3Dense1P7BConfig,
    "qwen3-4B": Qwen3Dense4BConfig,
    "qwen3-8B": Qwen3Dense8BConfig,
    "qwen3-14B": Qwen3Dense14BConfig,
    "qwen3-32B": Qwen3Dense32BConfig,
}


def get_model_config(name: str, **overrides: Any) -> Qwen3DenseConfig:
    try:
        return MODEL_PRESETS[name](**overrides)
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(MODEL_PRESETS)}") from None
