"""What every dense decoder config shares (XTuner v1's `xtuner.v1.model.base`: `TransformerConfig`, `HFSaveCfg`), and
building transformers' own module.

A subclass per architecture (`model/dense/`: `Qwen3DenseConfig`, `Qwen2DenseConfig`, `LlamaDenseConfig`) names its
transformers config/model classes and maps its own HF fields; the module is always transformers' `<Arch>ForCausalLM`
(parameter names = HF checkpoint names, `generate()` works, peft and FSDP2 know it), with our packed attention when
`attention.attn_impl="varlen"`. Its attention and RoPE configs are at XTuner's paths (`xtuner_nb.module.attention.mha`,
`xtuner_nb.module.rope.rope`). XTuner's fields that have no effect here come after the real ones (`compat_field`,
`refused_unless_default`). This file imports only pydantic; torch and transformers load on first use.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..config.base import XConfig, compat_field, refused_unless_default
from ..loss.config import BaseLossConfig, CELossConfig, loss_cfg_from_dump
from ..module.attention.mha import MHAConfig
from ..module.rope.rope import RopeParametersConfig

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel

# every linear layer of a Llama-family decoder layer (attention, then MLP); lm_head and the embedding are left out
DECODER_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


_WRITER = "a setting of XTuner's parallel HF-export writer; no effect (rank 0 writes the export here)"


class HFSaveCfg(XConfig):
    """XTuner's HF-export options: the writer threads and ranks are XTuner's; exports here are written by rank 0."""

    worker_per_rank: int = compat_field(16, _WRITER, ge=1)
    max_save_rank: int = compat_field(16, _WRITER, ge=1)
    bucket_size: int = compat_field(1024 ** 3 * 4, _WRITER, ge=1)
    fp32_keys_pattern: list[str] | None = refused_unless_default(
        None, "HF exports are written in one dtype (bf16); no per-key fp32")


class TransformerConfig(XConfig):
    """The fields of a dense decoder; defaults are Qwen3-8B's. Build a subclass, not this class."""

    model_type: ClassVar[str | None] = None  # config.json's model_type
    hf_config_class: ClassVar[str] = ""  # transformers' config class name
    hf_model_class: ClassVar[str] = ""  # transformers' CausalLM class name
    extra_eos_is_bos: ClassVar[bool] = False  # generation also stops at bos (Qwen's <|endoftext|>)

    vocab_size: int = Field(151936, ge=1, description="Vocabulary size (embedding rows).")
    max_position_embeddings: int = Field(40960, ge=1, description="Longest position RoPE is configured for.")
    bos_token_id: int | None = Field(151643, description="Begin-of-sequence token id.")
    eos_token_id: int = Field(151645, description="End-of-sequence token id (<|im_end|> for Qwen3 chat).")
    pad_token_id: int | None = Field(None, description="Padding token id (the Trainer takes it from the tokenizer).")
    num_hidden_layers: int = Field(36, ge=1, description="Decoder layers.")
    hidden_size: int = Field(4096, ge=1, description="Residual stream width.")
    intermediate_size: int = Field(12288, ge=1, description="MLP inner width.")
    rms_norm_eps: float = Field(1e-6, gt=0, description="RMSNorm epsilon.")
    hidden_act: str = Field("silu", description="MLP activation (a transformers ACT2FN key).")
    rope_theta: float = Field(1e6, gt=0, description="RoPE base frequency.")
    rope_scaling: dict[str, Any] | None = Field(
        None, description="RoPE scaling as in the HF config's rope_parameters besides rope_theta, e.g. "
                          "{'rope_type': 'llama3', 'factor': 32.0, ...} (None: plain RoPE).")
    attention: MHAConfig = Field(default_factory=MHAConfig, description="Attention shape and implementation.")
    tie_word_embeddings: bool = Field(False, description="lm_head shares the embedding matrix.")
    initializer_range: float = Field(0.02, gt=0, description="Std of the random init (when no load_from).")
    max_window_layers: int | None = Field(None, description="HF config.json's max_window_layers (None: the number "
                                                            "of layers; sliding windows are off).")
    rope_parameters_cfg: RopeParametersConfig | None = Field(
        default_factory=lambda: RopeParametersConfig(rope_theta=1e6),
        description="XTuner's RoPE parameters; rope_theta is kept equal to the rope_theta field, scaling fields "
                    "given here fill rope_scaling.")
    lm_loss_cfg: BaseLossConfig = Field(
        default_factory=CELossConfig, description="The loss of the lm_head (used when TrainerConfig.loss_cfg is None).")
    # ---- XTuner's fields that have no effect here, or only take their default ----
    # mlp_bias first: LlamaDenseConfig makes it a real field, which keeps this position (pydantic orders a field where
    # the base declares it), so it must come right after the real fields
    mlp_bias: bool = refused_unless_default(False, "this architecture's MLP has no bias")
    hf_save_cfg: HFSaveCfg = compat_field(HFSaveCfg(), "the settings of XTuner's parallel HF-export writer; no "
                                                       "effect (rank 0 writes the export here)")
    float8_cfg: Any = refused_unless_default(
        None, "float8 training needs XTuner's float8 kernels and an FP8 GPU (Hopper or newer); not implemented, "
              "train in bf16")
    compile_cfg: dict[str, Any] | bool | None = compat_field(
        None, "XTuner's torch.compile options; not applied (transformers' layers run eagerly here)")
    hf_key_mapping: dict[str, str] | None = refused_unless_default(
        None, "weights are loaded by their HF names (transformers' modules); no key remapping")
    dcp_ignore_frozen_params: bool = compat_field(True, "no effect: checkpoints hold every trained parameter "
                                                        "(LoRA: the adapters' state)")
    rms_norm_type: Literal["default", "zero_centered"] = refused_unless_default(
        "default", "these models use plain RMSNorm")
    linear_attention: Any = refused_unless_default(None, "linear attention (gated DeltaNet) belongs to Qwen3.5")
    generate_config: Any = refused_unless_default(None, "XTuner's GenerateConfig is for RL rollouts; use "
                                                        "xtuner_nb.notebook.chat or eval_prompts")
    return_hidden_states: bool = refused_unless_default(False, "the training forward returns the loss only")
    use_sliding_window: bool = refused_unless_default(False, "packed training uses full attention")
    mesh_prefix: str = compat_field("default", "the name prefix of XTuner's device meshes; no effect (one "
                                                "data-parallel mesh here)")

    @field_validator("lm_loss_cfg", mode="before")
    @classmethod
    def _loss_from_dump(cls, v: Any):
        return loss_cfg_from_dump(v)

    @model_validator(mode="before")
    @classmethod
    def _xtuner_spellings(cls, data: Any):
        """XTuner keeps rope_theta (and scaling) in rope_parameters_cfg, takes rope_theta= as a legacy argument, and
        has model_type as a field (a class attribute here: None or the class's own value are accepted)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "model_type" in data:
            given = data.pop("model_type")
            if given not in (None, cls.model_type):
                raise ValueError(f"{cls.__name__}: model_type={given!r}, but this class is {cls.model_type!r}")
        rp = data.get("rope_parameters_cfg")
        if rp is not None:
            rp = rp if isinstance(rp, RopeParametersConfig) else RopeParametersConfig.model_validate(rp)
            data.setdefault("rope_theta", rp.rope_theta)
            if rp.scaling() is not None:
                data.setdefault("rope_scaling", rp.scaling())
        return data

    @model_validator(mode="after")
    def _rope_parameters_follow_rope_theta(self):
        rp = self.rope_parameters_cfg
        if rp is not None and rp.rope_theta != self.rope_theta:
            self.__dict__["rope_parameters_cfg"] = rp.model_copy(update={"rope_theta": self.rope_theta})
        return self

    # ---- per architecture ------------------------------------------------------------------------------------
    def _hf_fields(self) -> dict[str, Any]:
        """Architecture-specific keyword arguments of the transformers config."""
        return {}

    @classmethod
    def _fields_from_hf(cls, hf: "PretrainedConfig") -> dict[str, Any]:
        """Architecture-specific fields (at least `attention`) read from a transformers config."""
        raise NotImplementedError

    def _check_representable(self) -> None:
        a = self.attention
        if a.num_attention_heads % a.num_key_value_heads:
            raise ValueError(f"attention.num_attention_heads={a.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads={a.num_key_value_heads}")

    # ---- transformers interop --------------------------------------------------------------------------------
    @property
    def hf_config(self) -> "PretrainedConfig":
        import transformers

        self._need_architecture()
        a = self.attention
        rope = {"rope_theta": self.rope_theta, "rope_type": "default", **(self.rope_scaling or {})}
        cfg = getattr(transformers, self.hf_config_class)(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=a.num_attention_heads,
            num_key_value_heads=a.num_key_value_heads, head_dim=a.head_dim, hidden_act=self.hidden_act,
            max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps,
            rope_parameters=rope, tie_word_embeddings=self.tie_word_embeddings, attention_dropout=a.dropout,
            bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id,
            initializer_range=self.initializer_range, architectures=[self.hf_model_class], torch_dtype="bfloat16",
            **self._hf_fields(),
        )
        # transformers 5 reads rope_parameters; older versions read rope_theta. Keep both views consistent.
        if getattr(cfg, "rope_parameters", None) is not None:
            cfg.rope_parameters = {**cfg.rope_parameters, **rope}
        return cfg

    @classmethod
    def from_hf(cls, path: str | Path, **overrides: Any) -> "TransformerConfig":
        """Read `config.json` of an HF folder (or a hub id, see `hub.resolve_pretrained`) of this architecture.

        Called on `TransformerConfig` itself it picks the class from `model_type` (= `model_config_from_hf`).
        """
        from .hub import resolve_pretrained

        folder = resolve_pretrained(path, config_only=True)
        if cls.model_type is None:
            config_json = folder / "config.json"
            if not config_json.is_file():
                raise FileNotFoundError(f"{folder}: no config.json (expected a Hugging Face model folder)")
            model_type = json.loads(config_json.read_text()).get("model_type")
            return config_class_for(model_type, str(config_json)).from_hf(folder, **overrides)
        from transformers import AutoConfig

        return cls.from_hf_config(AutoConfig.from_pretrained(str(folder)), where=f"{folder}/config.json",
                                  **overrides)

    @classmethod
    def from_hf_config(cls, hf: "PretrainedConfig", where: str = "the HF config",
                       **overrides: Any) -> "TransformerConfig":
        """The same, from a transformers config object."""
        if hf.model_type != cls.model_type:
            raise ValueError(f"{where}: model_type is {hf.model_type!r}, expected {cls.model_type!r} for "
                             f"{cls.__name__} (model_config_from_hf picks the class by model_type)")
        rope = dict(getattr(hf, "rope_parameters", None) or {})
        theta = rope.pop("rope_theta", getattr(hf, "rope_theta", 1e6))
        if rope.get("rope_type", "default") == "default":
            rope.pop("rope_type", None)
        eos = hf.eos_token_id if isinstance(hf.eos_token_id, int) or hf.eos_token_id is None else hf.eos_token_id[0]
        fields = dict(
            vocab_size=hf.vocab_size, max_position_embeddings=hf.max_position_embeddings,
            bos_token_id=hf.bos_token_id, pad_token_id=hf.pad_token_id, num_hidden_layers=hf.num_hidden_layers,
            hidden_size=hf.hidden_size, intermediate_size=hf.intermediate_size, rms_norm_eps=hf.rms_norm_eps,
            hidden_act=hf.hidden_act, rope_theta=theta, rope_scaling=rope or None,
            tie_word_embeddings=bool(hf.tie_word_embeddings),
            initializer_range=getattr(hf, "initializer_range", 0.02), **cls._fields_from_hf(hf),
        )
        if eos is not None:
            fields["eos_token_id"] = eos
        if fields["bos_token_id"] is None:
            fields.pop("bos_token_id")
        fields.update(overrides)
        return cls(**fields)

    @staticmethod
    def _mha_from_hf(hf: "PretrainedConfig", **fixed: Any) -> MHAConfig:
        bias = bool(getattr(hf, "attention_bias", False))
        fields = dict(num_attention_heads=hf.num_attention_heads, num_key_value_heads=hf.num_key_value_heads,
                      head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
                      qkv_bias=bias, o_bias=bias, dropout=float(getattr(hf, "attention_dropout", 0.0)))
        fields.update(fixed)
        return MHAConfig(**fields)

    def build(self, device: "str | torch.device | None" = None,
              dtype: "torch.dtype | None" = None) -> "PreTrainedModel":
        """transformers' `<Arch>ForCausalLM` (its packed-loss subclass, `packed.py`) with random init (std = `initializer_range`, from torch's global RNG),
        its attention set to `attention.attn_impl`.

        `device="meta"` allocates nothing (parameter counting, or `to_empty()` + `load_hf_weights` later).
        `dtype` is the parameter dtype (default float32, the master weights for training).
        """
        import torch

        from .attention import VARLEN_IMPL, register_varlen_attention
        from .packed import PACKED_CLASSES

        self._check_representable()
        register_varlen_attention()
        hf = self.hf_config
        # XTuner's flash_attention / flex_attention / eager_attention are its kernels for the same packed attention
        packed = {name: VARLEN_IMPL for name in ("varlen", "flash_attention", "flex_attention", "eager_attention")}
        hf._attn_implementation = {**packed, "sdpa": "sdpa", "eager": "eager"}[self.attention.attn_impl]
        device_ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with device_ctx, _default_dtype(dtype or torch.float32):
            return PACKED_CLASSES[self.hf_model_class](hf)

    def num_params(self, include_embeddings: bool = True) -> int:
        """Exact parameter count by arithmetic (equals building on the meta device)."""
        a, h = self.attention, self.hidden_size
        q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
        attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if a.qkv_bias else 0) + (h if a.o_bias else 0)
        attn += 2 * a.head_dim if a.qk_norm else 0
        mlp = 3 * h * self.intermediate_size
        if getattr(self, "mlp_bias", False):
            mlp += 2 * self.intermediate_size + h
        per_layer = attn + mlp + 2 * h
        body = self.num_hidden_layers * per_layer + h
        emb = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return body + (emb if include_embeddings else 0)

    def _need_architecture(self) -> None:
        if self.model_type is None:
            raise TypeError("TransformerConfig is the shared base; use an architecture's config (Qwen3DenseConfig, "
                            "Qwen2DenseConfig, LlamaDenseConfig) or model_config_from_hf(path)")


def architectures() -> dict[str, type[TransformerConfig]]:
    """config.json's model_type -> its config class: the direct subclasses of TransformerConfig that name one.

    These are the architectures of `model/dense/`, which `xtuner_nb.model` imports (Qwen3, Qwen2, Llama, in that
    order) before any of its modules runs. They are found rather than listed because they import this module.
    """
    found: dict[str, type[TransformerConfig]] = {}
    for sub in TransformerConfig.__subclasses__():
        if sub.model_type is not None:
            found.setdefault(sub.model_type, sub)
    return found


def config_class_for(model_type: str, where: str = "config.json") -> type[TransformerConfig]:
    """Our config class for an HF `model_type`; a clear error listing what is supported otherwise."""
    known = architectures()
    try:
        return known[model_type]
    except KeyError:
        supported = ", ".join(f"{t!r} ({c.__name__})" for t, c in known.items())
        raise ValueError(f"{where}: model_type {model_type!r} is not supported; supported dense architectures: "
                         f"{supported}") from None


class TinyShape(XConfig):
    """The tiny shape of tests and the CPU tutorials (about 1 M parameters with the demo tokenizer's 2048 vocab), mixed
    into each architecture's tiny preset: `class LlamaDenseTinyConfig(TinyShape, LlamaDenseConfig)`. Token ids match
    the tokenizer written by `xtuner_nb.model.make_tiny_checkpoint`; the attention shape is set per architecture.

    It holds only these values: a field it does not name comes from the architecture (e.g. Llama's real `mlp_bias`),
    since pydantic takes an inherited field from the first base that has it."""

    vocab_size: int = 2048
    max_position_embeddings: int = 4096
    bos_token_id: int | None = 0
    eos_token_id: int = 2
    num_hidden_layers: int = 4
    hidden_size: int = 128
    intermediate_size: int = 384
    rope_theta: float = 10000.0
    rope_parameters_cfg: RopeParametersConfig | None = Field(default_factory=lambda: RopeParametersConfig())
    tie_word_embeddings: bool = True
    rms_norm_eps: float = TransformerConfig.model_fields["rms_norm_eps"]  # 1e-6 in every tiny preset, Llama's too


def mha(heads: int, kv: int = 8, head_dim: int = 128, **more: Any) -> Any:
    """A preset's attention default: `attention: MHAConfig = mha(16)`."""
    return Field(default_factory=lambda: MHAConfig(num_attention_heads=heads, num_key_value_heads=kv,
                                                   head_dim=head_dim, **more))


@contextlib.contextmanager
def _default_dtype(dtype: "torch.dtype"):
    """Create parameters directly in `dtype` (no fp32 copy of a large model first)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
