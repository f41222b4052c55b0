"""The Trainer: XTuner v1's `Trainer(...).fit()`, runnable in a notebook kernel and under torchrun.

Reading order: `__init__` builds the parts (`build.py`, `checkpointing.open_experiment`/`resume_if_asked`), `_run`
is the loop, `_train_one_step` the step (`step.py`: forward/backward over the packs, clip, optimizer step).
Saving and HF export are in `checkpointing.py`, evaluation in `evaluate.py`, the hooks a Trainer adds itself in
`default_hooks.py`. Hooks observe via `events.py`; nothing here knows of widgets. A kernel interrupt (SIGINT) or a
hook's stop request ends the run at a step boundary with a checkpoint.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from ..config import FSDPConfig
from . import build, checkpointing, device_setup
from .config import TrainerConfig
from .default_hooks import default_hook_names, load_hook_factories, plot_history_function
from .dist import DistInfo, all_reduce_max, any_rank, init_distributed, teardown_distributed
from .evaluate import build_evaluator
from .events import Control, Hook, TrainState, call_hooks
from .interrupt import in_kernel, install_interrupt_handler
from .metrics import step_metrics
from .multinode import describe_node
from .step import clip_and_step, forward_backward
from .tracker import JsonlTracker, format_step_line, setup_logging, set_console_level
from .xtuner_hooks import xtuner_hook_factories


class Trainer:
    def __init__(self, *, hooks: list[Hook] | None = None, trainer_cfg: TrainerConfig | None = None,
                 show_dashboard: bool = True, **fields: Any):
        self.config = cfg = config_with_overrides(trainer_cfg, fields)
        self.hooks = list(hooks or [])
        self.show_dashboard = show_dashboard
        self.running_async = False
        self.model_cfg, self.fsdp_cfg = cfg.model_cfg, cfg.fsdp_cfg or FSDPConfig()
        self.dist: DistInfo = init_distributed(cfg.device, cfg.dist_backend)
        build.seed_everything(cfg.seed)
        self.work_dir, self.exp_dir, self.log_dir = checkpointing.open_experiment(cfg, self.dist)
        self.logger = setup_logging(self.log_dir, self.dist.rank)
        set_console_level(10 if cfg.debug else 20)  # XTuner's debug=True: DEBUG lines on the console
        self.logger.info(f"exp_dir: {self.exp_dir}  device: {self.dist.device}  {describe_node(self.dist)}")
        build.warn_if_memory_is_held(cfg, self.dist, self.logger)
        plan = device_setup.plan_device(cfg, self.fsdp_cfg, self.dist, self.logger)  # precision, fit check
        self.precision, self.memory_estimate, self.grad_scaler = plan.precision, plan.memory_estimate, plan.grad_scaler
        self.attention_backend: str | None = None
        self.tokenizer = build.build_tokenizer(cfg, self.logger)
        data = build.build_data(cfg, self.dist, self.tokenizer, self.logger)
        self.loader, self.total_step = data.loader, data.total_step
        self.global_batch_size, self.micro_batch_size = data.global_batch_size, data.micro_batch_size
        self.evaluator = build_evaluator(self)  # eval data and prompts (None when no eval is configured)
        parts = build.build_model(cfg, self.dist, self.tokenizer, self.logger, self.precision)
        self.model, self.autocast_dtype, self._lora_record = parts.model, parts.autocast_dtype, parts.lora_record
        self.optimizer, self.lr_scheduler = build.build_optimizer(cfg, self.model, self.total_step)
        self.cur_step, self.cur_epoch, self.consumed_tokens, self._time_offset = 0, 1, 0, 0.0
        self._rows: list[dict[str, Any]] = []
        self._data_iter: Iterator | None = None
        checkpointing.resume_if_asked(self)
        self.tracker = JsonlTracker(self.log_dir / "exp_tracking" / f"rank{self.dist.rank}" / "tracker.jsonl") \
            if self.dist.is_main else None
        self._stop_reason: str | None = None
        self.default_hook_factories = load_hook_factories(default_hook_names(cfg.default_hooks, show_dashboard),
                                                          explicit=cfg.default_hooks is not None)

    @classmethod
    def from_config(cls, config: TrainerConfig, **kw: Any) -> "Trainer":
        return cls(trainer_cfg=config, **kw)

    # ---- public API ------------------------------------------------------------------------------------------
    def fit(self) -> "Trainer":
        """Train to `total_step`. Interrupt (■ / Ctrl-C) or a hook's stop request: checkpoint, then return."""
        for _ in self._run():
            pass
        return self

    async def afit(self) -> "Trainer":
        """`fit()` that yields to the event loop between steps, so notebook widgets (the Stop button) respond."""
        self.running_async = True
        try:
            for _ in self._run():
                await asyncio.sleep(0)
        finally:
            self.running_async = False
        return self

    def request_stop(self, reason: str = "stop requested") -> None:
        self._stop_reason = reason

    def evaluate(self) -> dict[str, Any]:
        """Eval loss and generation checks of the model as it is now; recorded in tracker.jsonl (a row with this
        step and the `eval/...` keys) and in `history`. Training is not affected (see `evaluate.py`)."""
        if self.evaluator is None:
            raise ValueError("nothing to evaluate: set eval_dataloader_cfg and/or eval_prompts in the TrainerConfig")
        row = {"step": self.cur_step, **self.evaluator.run(self.model, self.autocast_dtype)}
        self._record(row)
        n = f" {row['eval/correct']}/{row['eval/scored']} answers right" if "eval/scored" in row else ""
        loss = f" loss {row['eval/loss']:.6f}" if "eval/loss" in row else ""
        self.logger.info(f"Eval at step {self.cur_step}:{loss}{n} ({row['eval/time']:.1f} s)")
        for g in row.get("eval/generations", []):
            self.logger.debug(f"eval generation: {g}")
        return row

    def export_gguf(self, path: str | Path | None = None, outtype: str = "f16") -> Path | None:
        """The model at this step as one GGUF file (llama.cpp, Ollama), by llama.cpp's own converter: this step's
        HF export (written first when missing; merged weights under LoRA) -> `hf-<step>/model-<outtype>.gguf` by
        default. Collective under torchrun; rank 0 returns the path, the others None (`checkpointing.export_gguf`)."""
        return checkpointing.export_gguf(self, self._fit_hooks(), path, outtype)

    @property
    def history(self):
        """One row per step: an eval row (tracker.jsonl keeps it apart) is joined to its step's training row."""
        import pandas as pd

        merged: dict[Any, dict[str, Any]] = {}
        for row in self._rows:
            merged.setdefault(row.get("step"), {}).update(row)
        return pd.DataFrame(list(merged.values()))

    def plot(self):
        """The training curves (the notebook layer draws them: `xtuner_nb.notebook.plot_history`)."""
        return plot_history_function()(self.history)

    @property
    def state(self) -> TrainState:
        return TrainState(step=self.cur_step, total_step=self.total_step, epoch=self.cur_epoch,
                          total_epoch=self.config.total_epoch, consumed_tokens=self.consumed_tokens,
                          elapsed=self._time_offset, exp_dir=self.exp_dir, rank=self.dist.rank,
                          world_size=self.dist.world_size, device=str(self.dist.device), history=self._rows,
                          precision=self.precision.name, attention_backend=self.attention_backend)

    def close(self) -> None:
        """Free the model and optimizer (GPU memory included); the Trainer cannot train afterwards."""
        for name in ("model", "optimizer", "lr_scheduler", "loader", "_data_iter", "evaluator"):
            if hasattr(self, name):
                setattr(self, name, None)
        if getattr(self, "tracker", None):
            self.tracker.close()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __repr__(self) -> str:  # what a notebook cell ending in `trainer.fit()` prints
        return (f"Trainer(step {self.cur_step}/{self.total_step}, epoch {self.cur_epoch}, "
                f"{self.dist.world_size} rank(s) on {self.dist.device}, exp_dir={str(self.exp_dir)!r})")

    def describe(self) -> str:
        """The loop and the hooks that fire in it (fastai's show_training_loop)."""
        hooks = ", ".join(type(h).__name__ for h in self._fit_hooks()) or "none"
        return (f"fit(): step {self.cur_step}/{self.total_step}; each step: {self.micro_batch_size} pack(s) per rank x "
                f"{self.dist.world_size} rank(s) -> forward/backward per pack -> clip -> AdamW -> LR -> log -> "
                f"[checkpoint every {self.config.checkpoint_interval}] [HF every {self.config.hf_interval or 'end'}]"
                f"\nhooks: {hooks}")

    # ---- the loop ----------------------------------------------------------------------------------------------
    def _run(self):
        hooks, control = self._fit_hooks(), Control()
        if any(getattr(h, "replaces_console_log", False) for h in hooks):
            set_console_level(30)  # a dashboard shows the steps; keep warnings on the console
        self._stop_reason, reason = None, "finished"
        restore = install_interrupt_handler(self)
        call_hooks(hooks, "on_fit_begin", self.state, control)
        fit_start, tokens_at_start, steps_at_start = time.time(), 0, self.cur_step
        try:
            while self.cur_step < self.total_step:
                row = self._train_one_step(fit_start, tokens_at_start, steps_at_start)
                tokens_at_start += row["runtime_info/total_text_tokens"]
                call_hooks(hooks, "on_step_end", self.state, row, control)
                self._maybe_evaluate(hooks, control)
                checkpointing.maybe_save(self, hooks, control, force=any_rank(control.should_save, self.dist.device))
                control.should_save = False
                if self._should_stop(control):
                    reason = "interrupted" if self._stop_reason == "interrupt" else "stopped"
                    break
                yield row
            if reason != "finished" and self.cur_step > 0 and not checkpointing.saved_at(self, self.cur_step) \
                    and not self.config.debug_skip_save:
                checkpointing.save_checkpoint(self, hooks, control)  # the last completed step: nothing is lost
        except torch.OutOfMemoryError as exc:
            reason = "error"
            self.optimizer.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
            raise torch.OutOfMemoryError(f"{exc}\n{self._oom_advice()}") from None
        except BaseException:
            reason = "error"
            raise
        finally:
            checkpointing.finish_pending_save(self)  # async_checkpoint: the last save completes
            restore()
            set_console_level(10 if self.config.debug else 20)
            self._time_offset += time.time() - fit_start
            call_hooks(hooks, "on_fit_end", self.state, reason, control)
        self._end_message(reason)

    def _train_one_step(self, fit_start: float, tokens_since_start: int, steps_at_start: int) -> dict[str, Any]:
        dev, cfg = self.dist.device, self.config
        t0 = time.time()
        packs = self._next_batch()
        data_time = time.time() - t0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses (read before scheduler.step)
        res = forward_backward(self.model, packs, cfg.effective_loss_cfg(), dev, self.dist.world_size,
                               self.autocast_dtype, self.fsdp_cfg.defer_reduce_scatter, self.grad_scaler,
                               self.fsdp_cfg.fp32_lm_head)
        grad_norm, updated = clip_and_step(self.model, self.optimizer, cfg.optim_cfg.max_grad_norm, cfg.do_clip,
                                           cfg.optim_cfg.skip_grad_norm_threshold, getattr(torch, cfg.grad_norm_dtype),
                                           self.grad_scaler)
        if self.cur_step == steps_at_start:  # the first step of this fit() chose the attention kernel
            self.attention_backend = device_setup.log_attention_backend(self.logger)
        if not updated:
            self.logger.warning(f"step {self.cur_step + 1}: grad norm {grad_norm} -> update skipped")
        self.lr_scheduler.step()
        self.cur_step += 1
        row = step_metrics(step=self.cur_step, total_step=self.total_step, epoch=self.cur_epoch, lr=lr,
                           grad_norm=grad_norm, updated=updated, res=res, step_time=time.time() - t0,
                           data_time=data_time, wall=time.time() - fit_start,
                           steps_done=self.cur_step - steps_at_start, tokens_before=tokens_since_start,
                           model_cfg=self.model_cfg, device=dev, compute_dtype=self.precision.compute,
                           world_size=self.dist.world_size)
        self.consumed_tokens += row["runtime_info/total_text_tokens"]
        self._record(row)
        self.logger.info(format_step_line(row, self.total_step, self.cur_epoch))
        return row

    def _next_batch(self) -> list[dict]:
        if self._data_iter is None:
            self.loader.set_epoch(self.cur_epoch)
            self._data_iter = iter(self.loader)
        try:
            return next(self._data_iter)
        except StopIteration:
            self.cur_epoch += 1
            self.loader.set_epoch(self.cur_epoch)
            self._data_iter = iter(self.loader)
            return next(self._data_iter)

    def _record(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if self.tracker:
            self.tracker.write(row)

    def _fit_hooks(self) -> list[Hook]:
        # XTuner's profile_step / exp_tracker="tensorboard" / hooks_config, then the default hooks
        extra = [h for f in xtuner_hook_factories() + self.default_hook_factories if (h := f(self)) is not None]
        return [h for h in self.hooks + extra if self.dist.is_main or not getattr(h, "main_process_only", True)]

    def _maybe_evaluate(self, hooks: list[Hook], control: Control) -> None:
        every = self.config.eval_interval
        if self.evaluator is not None and (self.cur_step == self.total_step or (every and self.cur_step % every == 0)):
            call_hooks(hooks, "on_eval_end", self.state, self.evaluate(), control)

    def _should_stop(self, control: Control) -> bool:
        if control.should_stop and self._stop_reason is None:
            self._stop_reason = control.stop_reason or "stop requested"
        flag = torch.tensor(float(self._stop_reason is not None), device=self.dist.device)
        if self.dist.distributed:  # every rank must stop at the same step
            all_reduce_max(flag)
            if flag.item() and self._stop_reason is None:
                self._stop_reason = "stop requested on another rank"
        return bool(flag.item())

    def _end_message(self, reason: str) -> None:
        where = checkpointing.latest_checkpoint(self)
        if reason == "finished":
            self.logger.info(f"Training finished at step {self.cur_step}; checkpoint: {where}")
            return
        self.logger.warning(
            f"Training {reason} ({self._stop_reason}) at step {self.cur_step}/{self.total_step}. "
            f"Checkpoint: {where}. Continue with `trainer.fit()` in this kernel, or build the Trainer with "
            f"auto_resume=True and work_dir={str(self.work_dir)!r} in a new process.")
        if reason == "interrupted" and not in_kernel():
            teardown_distributed()
            raise SystemExit(130)  # a script was interrupted: state is saved, the exit code says it stopped early

    def _oom_advice(self) -> str:
        return ("Out of GPU memory; memory was freed, the kernel can keep going. Lower one of: "
                f"dataloader_cfg.pack_max_length, use loss_cfg=CELossConfig(mode='chunk') "
                f"(now {self.config.effective_loss_cfg().mode!r}), fsdp_cfg.recompute_ratio=1.0 "
                f"(now {self.fsdp_cfg.recompute_ratio}), or train LoRA adapters instead of all weights.")


def config_with_overrides(cfg: TrainerConfig | None, fields: dict[str, Any]) -> TrainerConfig:
    """`Trainer(model_cfg=..., ...)` builds the config from the fields; `Trainer(trainer_cfg=cfg, total_step=3)`
    applies the fields as overrides of `cfg` (validated; an unknown name is an error, never silently ignored)."""
    if cfg is None:
        return TrainerConfig(**fields)
    if "backend" in fields:  # XTuner's Trainer argument for TrainerConfig.dist_backend
        fields = dict(fields)
        fields["dist_backend"] = fields.pop("backend")
    unknown = sorted(set(fields) - set(type(cfg).model_fields))
    if unknown:
        raise TypeError(f"Trainer(trainer_cfg=..., {', '.join(f'{k}=...' for k in unknown)}): not TrainerConfig "
                        f"field(s); the fields are {sorted(type(cfg).model_fields)}")
    if not fields:
        return cfg
    return type(cfg)(**{**{k: getattr(cfg, k) for k in cfg.model_fields_set}, **fields})
