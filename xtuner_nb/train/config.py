"""`TrainerConfig`: every argument of `Trainer(...)` in one serialisable object (XTuner v1 names and defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, field_validator, model_validator

from ..config import AdamWConfig, FSDPConfig, LRConfig, MuonConfig, XConfig
from ..config.base import compat_field, refused_unless_default
from ..config.optim import refuse_unimplemented_optimizer
from ..datasets import DataloaderConfig
from ..loss import BaseLossConfig, CELossConfig
from ..loss.config import loss_cfg_from_dump
from ..model import LoRAConfig, Qwen3DenseConfig, TransformerConfig


class LoadCheckpointConfig(XConfig):
    checkpoint_path: Path | None = Field(None, description="A ckpt-step-N folder to start from (new experiment dir).")
    load_optimizer_states: bool = Field(True, description="Restore AdamW moments.")
    load_optimizer_args: bool = Field(True, description="Restore the optimizer's hyperparameters (lr, betas, eps, "
                                                        "weight_decay) saved in the checkpoint; False: keep this "
                                                        "config's optim_cfg values.")
    load_dataset: bool = Field(True, description="Continue the data stream where the checkpoint stopped.")
    load_scheduler: bool = Field(True, description="Restore the LR schedule position.")
    offload_optimizer_first_step: bool = refused_unless_default(
        False, "XTuner's optimizer-state offload during the first step after a resume is not implemented; use "
               "fsdp_cfg.cpu_offload=True")


class ResumeConfig(XConfig):
    """XTuner's deprecated resume config: mapped onto auto_resume and load_checkpoint_cfg (as XTuner advises)."""

    resume_from: Path | None = Field(None, description="A checkpoint folder (= load_checkpoint_cfg.checkpoint_path).")
    auto_resume: bool = Field(False, description="= TrainerConfig.auto_resume.")
    load_optimizer_states: bool = Field(True, description="= load_checkpoint_cfg.load_optimizer_states.")
    load_optimizer_args: bool = Field(True, description="= load_checkpoint_cfg.load_optimizer_args.")
    load_dataset: bool = Field(True, description="= load_checkpoint_cfg.load_dataset.")
    load_scheduler: bool = Field(True, description="= load_checkpoint_cfg.load_scheduler.")


class EvalPrompt(XConfig):
    prompt: str = Field(description="The user message, answered greedily through the data's chat template.")
    expected: str | None = Field(None, description="The right answer (None: the answer is logged, not scored).")
    system: str | None = Field(None, description="An optional system message before the prompt.")


STAGES = ("after_save_dcp", "after_save_hf", "after_save_snapshot", "after_train_step")


class HooksConfig(XConfig):
    """XTuner's hooks: plain callables run after a train step and after each kind of save, with XTuner's keyword
    signatures, on every rank (`hooks/xtuner.py` runs them):

        def after_train_step(train_step_info, step, epoch, total_step, total_epoch): ...
        def after_save_dcp(checkpoint, step, epoch, total_step, total_epoch): ...   # also after_save_hf/_snapshot

    A hook object with `connect_trainer(trainer)` gets the Trainer once before the first step; `train_step_info`
    is the step's metrics row (loss, lr, grad_norm, ...), given after the optimizer step (XTuner calls it between
    backward and the optimizer step)."""

    after_save_dcp: list[Callable] | None = Field(None, description="Called after each checkpoint is saved.")
    after_save_hf: list[Callable] | None = Field(None, description="Called after each HF export.")
    after_save_snapshot: list[Callable] | None = Field(None, description="Called after each snapshot.")
    after_train_step: list[Callable] | None = Field(None, description="Called after each train step.")

    @field_validator(*STAGES, mode="before")
    @classmethod
    def _as_list(cls, v: Any):
        if v is None:
            return None
        hooks = list(v) if isinstance(v, (list, tuple)) else [v]
        for h in hooks:
            if isinstance(h, str):  # what XTuner (and this project) dump: hook names
                raise ValueError(f"hook {h!r} is a name from a dumped config; hooks are code: pass the callable")
        return hooks or None

    def get_hooks(self, stage: str) -> list[Callable]:
        return list(getattr(self, str(stage)) or [])

    def all_hooks(self) -> list[Callable]:
        return [h for stage in STAGES for h in self.get_hooks(stage)]


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
    optim_cfg: AdamWConfig | MuonConfig = Field(default_factory=AdamWConfig, description="Optimizer.")
    lr_cfg: LRConfig = Field(default_factory=LRConfig, description="Learning-rate schedule.")
    loss_cfg: BaseLossConfig | None = Field(
        default_factory=CELossConfig, description="Cross-entropy mode and reduction, or a custom BaseLossConfig "
                                                  "(None: the model config's lm_loss_cfg).")
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
    exp_tracker: Literal["tensorboard", "jsonl"] = Field(
        "jsonl", description="Metrics sink: tracker.jsonl (always written); tensorboard: also TensorBoard event "
                             "files in the same folder (`tensorboard --logdir <log_dir>/exp_tracking`).")
    seed: int = Field(42, description="Seeds python/torch RNGs, packing and the sampler.")
    do_clip: bool = Field(True, description="Clip gradients to optim_cfg.max_grad_norm.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU.")
    dist_backend: str | None = Field(None, description="torch.distributed backend (None: gloo on CPU, nccl on CUDA).")
    debug_skip_save: bool = Field(False, description="Disable every checkpoint and HF export.")
    skip_fit_check: bool = Field(
        False, description="Build the model even when the memory estimate exceeds the free memory (as "
                           "XTUNER_NB_SKIP_FIT_CHECK=1).")
    strict_data_check: bool = Field(
        False, description="Stop with an error, before the model is built, when the pre-flight check of the data "
                           "warns (untrained end-of-turn tokens, samples with no trained token, truncation, "
                           "duplicates); False: log the warnings and train.")
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
    resume_cfg: ResumeConfig | None = Field(
        None, description="Deprecated in XTuner: mapped onto auto_resume and load_checkpoint_cfg.")
    async_checkpoint: bool = Field(False, description="Write checkpoint weights with torch DCP async_save while "
                                                      "training goes on; a checkpoint counts once its weights are "
                                                      "on disk (train_state.json is written last).")
    snapshot_interval: int | None = Field(
        None, ge=1, description="Also save a snapshot every N steps (checkpoints/snapshot-step-N, only the newest "
                                "kept); auto_resume continues from the newest checkpoint or snapshot.")
    profile_step: list[int] | int | None = Field(
        None, description="Steps (1-based) to profile with torch.profiler: a Chrome trace in "
                          "<exp_dir>/profiling_time/step-N (profile_time) and a memory snapshot in "
                          "<exp_dir>/profiling_memory/step-N (profile_memory).")
    profile_time: bool = Field(True, description="With profile_step: write a torch.profiler Chrome trace.")
    profile_memory: bool = Field(False, description="With profile_step: write a memory snapshot (CUDA allocator "
                                                    "history; on CPU the profiler's memory timeline).")
    debug: bool = Field(False, description="Log DEBUG lines on the console too (XTuner's debug mode).")
    grad_norm_dtype: str = Field("float32", description="Dtype of the gradient-norm accumulation: float32 or "
                                                        "float64 (torch.float32 / torch.float64 accepted).")
    hooks_config: HooksConfig = Field(default_factory=HooksConfig,
                                      description="XTuner's hooks: callables after a train step and after saves.")
    # ---- XTuner's fields that do nothing here (compat_field, refused_unless_default): after the real ones ----
    sp_size: int = refused_unless_default(
        1, "sequence parallelism (one sequence split over GPUs) is not implemented; lower "
           "dataloader_cfg.pack_max_length, keep fsdp_cfg.recompute_ratio=1.0 or use CELossConfig(mode='chunk')")
    async_hf_export: bool = compat_field(
        False, "HF exports are written synchronously here (the step after an export waits for it)")
    skip_checkpoint_validation: bool = compat_field(
        False, "XTuner's DCP planner shortcut for more than 512 ranks; no effect here")
    patch_for_dcp_finish: bool = compat_field(False, "XTuner's patch of torch 2.7's DCP; no effect here")
    check_health_interval: int | None = refused_unless_default(
        None, "XTuner's GPU health check (a collective matmul test) is not implemented")
    intra_layer_micro_batch: int = refused_unless_default(
        1, "XTuner splits a micro batch inside a layer to overlap MoE communication; dense models here: use "
           "global_batch_size")
    prober_list: list[str] = refused_unless_default(
        [], "XTuner's numeric probers are not implemented; use hooks (HooksConfig.after_train_step)",
        default_factory=list)
    internal_metrics_cfg: Any = refused_unless_default(
        None, "XTuner's internal model metrics (per-layer statistics) are not implemented; use hooks")

    @staticmethod
    def with_field_names(fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` with XTuner's Trainer argument names turned into this config's field names: `Trainer(backend=)`
        is TrainerConfig's `dist_backend` (the one place that knows it). Both given and different: ValueError."""
        if "backend" not in fields:
            return fields
        fields = dict(fields)
        backend = fields.pop("backend")
        if fields.get("dist_backend") not in (None, backend):
            raise ValueError(f"backend={backend!r} and dist_backend={fields['dist_backend']!r} disagree")
        fields["dist_backend"] = backend
        return fields

    def with_overrides(self, fields: dict[str, Any]) -> "TrainerConfig":
        """This config with `fields` changed, validated: `Trainer(trainer_cfg=cfg, total_step=3)`. A name that is
        not a field (nor XTuner's Trainer argument `backend`) is an error, never silently ignored."""
        fields = self.with_field_names(fields)
        unknown = sorted(set(fields) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"Trainer(trainer_cfg=..., {', '.join(f'{k}=...' for k in unknown)}): not TrainerConfig "
                            f"field(s); the fields are {sorted(type(self).model_fields)}")
        if not fields:
            return self
        return type(self)(**{**{k: getattr(self, k) for k in self.model_fields_set}, **fields})

    @model_validator(mode="before")
    @classmethod
    def _xtuner_argument_names(cls, data):
        return cls.with_field_names(data) if isinstance(data, dict) else data

    @field_validator("loss_cfg", mode="before")
    @classmethod
    def _loss_from_dump(cls, v):
        return loss_cfg_from_dump(v)

    @field_validator("grad_norm_dtype", mode="before")
    @classmethod
    def _dtype_name(cls, v):
        name = str(v).removeprefix("torch.")
        if name not in ("float32", "float64"):
            raise ValueError(f"grad_norm_dtype {v} is not supported, must be 'float32' or 'float64' (as XTuner)")
        return name

    @field_validator("profile_step", mode="before")
    @classmethod
    def _profile_steps(cls, v):
        return [v] if isinstance(v, int) else v

    @field_validator("optim_cfg")
    @classmethod
    def _implemented_optimizer(cls, v):
        return refuse_unimplemented_optimizer(v)

    @model_validator(mode="after")
    def _apply_resume_cfg(self):
        """XTuner reads only resume_cfg.auto_resume; here its other fields fill load_checkpoint_cfg too."""
        r = self.resume_cfg
        if r is None:
            return self
        if r.auto_resume and not self.auto_resume:
            self.__dict__["auto_resume"] = True
        if r.resume_from is not None and self.load_checkpoint_cfg.checkpoint_path is None:
            self.__dict__["load_checkpoint_cfg"] = self.load_checkpoint_cfg.model_copy(update=dict(
                checkpoint_path=r.resume_from, load_optimizer_states=r.load_optimizer_states,
                load_optimizer_args=r.load_optimizer_args, load_dataset=r.load_dataset,
                load_scheduler=r.load_scheduler))
        return self

    def effective_loss_cfg(self) -> BaseLossConfig:
        """XTuner's rule: the Trainer's loss_cfg, or the model config's lm_loss_cfg when loss_cfg is None."""
        return self.loss_cfg if self.loss_cfg is not None else self.model_cfg.lm_loss_cfg

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
