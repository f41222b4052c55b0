"""`TrainerConfig`: every argument of `Trainer(...)` in one serialisable object (XTuner v1 names and defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import AdamWConfig, FSDPConfig, LRConfig, XConfig
from ..datasets import DataloaderConfig
from ..loss import CELossConfig
from ..model import LoRAConfig, Qwen3DenseConfig, TransformerConfig


class LoadCheckpointConfig(XConfig):
    checkpoint_path: Path | None = Field(None, description="A ckpt-step-N folder to start from (new experiment dir).")
    load_optimizer_states: bool = Field(True, description="Restore AdamW moments.")
    load_dataset: bool = Field(True, description="Continue the data stream where the checkpoint stopped.")
    load_scheduler: bool = Field(True, description="Restore the LR schedule position.")


class EvalPrompt(XConfig):
    prompt: str = Field(description="The user message, answered greedily through the data's chat template.")
    expected: str | None = Field(None, description="The right answer (None: the answer is logged, not scored).")
    system: str | None = Field(None, description="An optional system message before the prompt.")


class TrainerConfig(XConfig):
    model_cfg: TransformerConfig = Field(
        description="Model architecture, e.g. Qwen3Dense8BConfig(); left out, it is read from load_from's "
                    "config.json (model_config_from_hf: Qwen3, Qwen2 or Llama).")
    load_from: Path | None = Field(None, description="HF folder (config.json + *.safetensors) or hub id 'org/name'; "
                                                     "None = random init.")
    tokenizer_path: Path | None = Field(None, description="Tokenizer folder (usually = load_from); None = toy UTF-8 byte tokenizer.")
    dataset_cfg: list[dict[str, Any]] | None = Field(
        None, description="Deprecated (XTuner): list of {'dataset': DatasetConfig, 'tokenize_fn': ...}; "
                          "overrides dataloader_cfg.dataset_config_list.")
    dataloader_cfg: DataloaderConfig = Field(default_factory=DataloaderConfig, description="Packing and batching.")
    optim_cfg: AdamWConfig = Field(default_factory=AdamWConfig, description="Optimizer.")
    lr_cfg: LRConfig = Field(default_factory=LRConfig, description="Learning-rate schedule.")
    loss_cfg: CELossConfig = Field(default_factory=CELossConfig, description="Cross-entropy mode and reduction.")
    fsdp_cfg: FSDPConfig | None = Field(None, description="Precision, recompute and FSDP2 options (None = defaults).")
    lora_cfg: LoRAConfig | None = Field(
        None, description="Train LoRA adapters (peft) on the frozen model instead of all weights (None = full).")
    global_batch_size: int | None = Field(
        None, ge=1, description="Packs per optimizer step over all ranks (None = one pack per rank).")
    total_step: int | None = Field(None, ge=1, description="Optimizer steps to run (exclusive with total_epoch).")
    total_epoch: int | None = Field(None, ge=1, description="Epochs to run (default 1 when total_step is unset).")
    work_dir: Path | None = Field(None, description="Run folder; None = ./work_dir.")
    log_dir: Path | None = Field(None, description="Logs folder; None = <exp_dir>/logs.")
    auto_resume: bool = Field(False, description="Continue the latest experiment in work_dir from its last checkpoint.")
    load_checkpoint_cfg: LoadCheckpointConfig = Field(default_factory=LoadCheckpointConfig,
                                                      description="Start from a given checkpoint.")
    strict_load: bool = Field(True, description="HF weight keys must match the model exactly.")
    checkpoint_interval: int | None = Field(-1, description="-1: save at the end only; N: every N steps and at the end; None: never.")
    checkpoint_maxkeep: int | None = Field(-1, description="Keep the newest N checkpoints (<=0 / None: keep all).")
    hf_interval: int | None = Field(None, description="HF export every N steps (None: at the end).")
    hf_max_keep: int | None = Field(None, description="Keep the newest N HF exports (None: keep all).")
    exp_tracker: Literal["jsonl"] = Field("jsonl", description="Metrics sink (tracker.jsonl, as XTuner).")
    seed: int = Field(42, description="Seeds python/torch RNGs, packing and the sampler.")
    do_clip: bool = Field(True, description="Clip gradients to optim_cfg.max_grad_norm.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU.")
    dist_backend: str | None = Field(None, description="torch.distributed backend (None: gloo on CPU, nccl on CUDA).")
    debug_skip_save: bool = Field(False, description="Disable every checkpoint and HF export.")
    eval_dataloader_cfg: DataloaderConfig | None = Field(
        None, description="Held-out data for the eval loss, given like dataloader_cfg; its fields left at their "
                          "defaults (pack_max_length, pack_level, ...) come from dataloader_cfg. None: no eval loss.")
    eval_interval: int | None = Field(
        None, ge=1, description="Evaluate every N steps and at the end (None: at the end only). Needs "
                                "eval_dataloader_cfg and/or eval_prompts.")
    eval_prompts: list[EvalPrompt] | None = Field(
        None, description="Generation checks at each eval: EvalPrompt(prompt, expected) or (prompt, expected) "
                          "pairs such as demo_prompts(); answers are greedy and scored with eval_match.")
    eval_match: Literal["exact", "contains"] = Field(
        "exact", description="exact: the answer equals the expected text (surrounding whitespace ignored); "
                             "contains: the expected text occurs in the answer.")
    eval_max_new_tokens: int = Field(32, ge=1, description="Longest generated answer, in tokens.")
    trust_remote_code: bool = Field(
        False, description="Let a tokenizer folder run the Python code it ships (auto_map). Off, as in transformers: "
                           "turn it on only for folders you trust.")
    default_hooks: list[str] | None = Field(
        None, description="Hooks the Trainer adds itself, by name (entry-point group xtuner_nb.hooks): None = "
                          "['curves_png'] plus 'dashboard' in a Jupyter kernel; [] = none.")

    @field_validator("eval_prompts", mode="before")
    @classmethod
    def _prompt_pairs(cls, v):
        """Accept plain strings and (prompt, expected) pairs, e.g. `eval_prompts=demo_prompts()`."""
        if not isinstance(v, (list, tuple)):
            return v
        return [{"prompt": p} if isinstance(p, str) else
                {"prompt": p[0], "expected": p[1]} if isinstance(p, (list, tuple)) and len(p) == 2 else p for p in v]

    @model_validator(mode="before")
    @classmethod
    def _model_cfg_from_load_from(cls, data):
        """No model_cfg: read it from load_from, as XTuner's `get_model_config_from_hf` does."""
        if isinstance(data, dict) and data.get("model_cfg") is None and data.get("load_from") is not None:
            from ..model import model_config_from_hf

            data = {**data, "model_cfg": model_config_from_hf(data["load_from"])}
        elif isinstance(data, dict) and isinstance(data.get("model_cfg"), dict):  # plain fields: Qwen3, as before
            data = {**data, "model_cfg": Qwen3DenseConfig(**data["model_cfg"])}
        return data

    @model_validator(mode="after")
    def _step_or_epoch(self):
        if self.total_step is not None and self.total_epoch is not None:
            raise ValueError("set total_step or total_epoch, not both")
        return self
