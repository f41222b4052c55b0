"""The Trainer: XTuner v1's `Trainer(...).fit()`, runnable in a notebook kernel and under torchrun.

The Trainer owns its run: every piece of state a run holds is an attribute set in this file, and nothing else
writes them (tests/train/test_trainer_owns_its_state.py). The other modules are plain functions of explicit values.

Reading order: `__init__` decides the device and precision, checks the memory, builds the parts (`build.py`),
opens the run folder and resumes (`checkpoint/`); the hooks are resolved once, first (`hooks/builtin.py`). `fit` -> `_run`
(the loop) -> `_train_one_step` -> `step.forward_backward` (one forward/backward per pack; the model's forward
returns the pack's calibrated loss, `model/packed.py` -> `loss/ce.py`) -> `step.clip_and_step` (clip, optimizer
step). After each step: metrics (`metrics.py`), hooks (`hooks/events.py`), evaluation (`evaluate.py`) and the saves
that are due (`checkpoint/run_dir.saves_due`). Hooks observe; nothing here knows of widgets. A kernel interrupt
(SIGINT) or a hook's stop request ends the run at a step boundary with a checkpoint.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..config import FSDPConfig
from ..datasets.preflight import check_loader
from . import build, memory
from .checkpoint import folder, run_dir
from .checkpoint.export import write_gguf, write_hf_export
from .config import HooksConfig, LoadCheckpointConfig, ResumeConfig, TrainerConfig
from .distributed import (DistInfo, all_reduce_max, any_rank, describe_node, init_distributed,
                          teardown_distributed)
from .evaluate import build_evaluator
from .hooks.builtin import plot_history_function, resolve_hooks
from .hooks.events import Control, Hook, TrainState, call_every_hook, call_hooks
from .interrupt import install_interrupt_handler
from .logs import JsonlTracker, format_step_line, in_notebook_kernel, read_tracker, set_console_level, setup_logging
from .metrics import history_frame, step_metrics
from .parallel import refuse_unplaceable
from .precision import make_grad_scaler, precision_for_run
from .step import clip_and_step, forward_backward

__all__ = ["Trainer", "TrainerConfig", "LoadCheckpointConfig", "ResumeConfig", "HooksConfig"]  # XTuner's module


class Trainer:
    def __init__(self, *, hooks: list[Hook] | None = None, trainer_cfg: TrainerConfig | None = None,
                 show_dashboard: bool = True, **fields: Any):
        self.config = cfg = trainer_cfg.with_overrides(fields) if trainer_cfg is not None else TrainerConfig(**fields)
        self.show_dashboard = show_dashboard
        self.running_async = False
        self.model_cfg, self.fsdp_cfg = cfg.model_cfg, cfg.fsdp_cfg or FSDPConfig()
        self.dist: DistInfo = init_distributed(cfg.device, cfg.dist_backend)
        build.seed_everything(cfg.seed)
        self.work_dir, self.exp_dir, self.log_dir = run_dir.open_experiment(cfg, self.dist)
        self.logger = setup_logging(self.log_dir, self.dist.rank)
        set_console_level(10 if cfg.debug else 20)  # XTuner's debug=True: DEBUG lines on the console
        self.logger.info(f"exp_dir: {self.exp_dir}  device: {self.dist.device}  {describe_node(self.dist)}")
        # the hooks first: they pay their one-off costs (a figure, its fonts) before the fit check measures
        self.hooks: list[Hook] = resolve_hooks(self, hooks)
        # the device decisions, before the data and the model take any memory
        self.precision = precision_for_run(self.fsdp_cfg, self.dist.device)
        self.logger.info(self.precision.describe())
        refuse_unplaceable(self.fsdp_cfg, self.dist)
        self.memory_estimate = memory.check_run_fits(cfg, self.precision, self.dist, self.logger)
        self.grad_scaler = make_grad_scaler(self.precision, self.dist.device)
        self.attention_backend: str | None = None
        self.gguf_check = None  # export_gguf(check=True): llama.cpp's answers vs transformers'
        # the parts, in the order that consumes the RNG
        self.tokenizer = build.build_tokenizer(cfg, self.logger)
        data = build.build_data(cfg, self.dist, self.tokenizer, self.logger)
        self.loader, self.total_step = data.loader, data.total_step
        self.global_batch_size, self.micro_batch_size = data.global_batch_size, data.micro_batch_size
        # the pre-flight check of the data, before the model takes any memory (strict_data_check stops here)
        self.preflight = check_loader(self.loader, data.dataset_config_list, self.tokenizer,
                                      strict=cfg.strict_data_check, stop_token_ids=[self.model_cfg.eos_token_id],
                                      log=self.logger)
        self.evaluator = build_evaluator(cfg, self.tokenizer, self.dist, self.logger)
        parts = build.build_model(cfg, self.dist, self.tokenizer, self.logger, self.precision)
        self.model, self.autocast_dtype, self.lora_record = parts.model, parts.autocast_dtype, parts.lora_record
        # LoRA's adapters (the trainable parameters; global sizes under FSDP2): the FLOPs of a frozen base for MFU
        if cfg.lora_cfg is not None:
            from ..model.lora import trainable_parameters

            self._adapter_params = trainable_parameters(self.model)[0]
        else:
            self._adapter_params = None
        self.optimizer, self.lr_scheduler = build.build_optimizer(cfg, self.model, self.total_step)
        # the run's progress (what a checkpoint records) and the loop's own state
        self.cur_step, self.cur_epoch, self.consumed_tokens, self.elapsed = 0, 1, 0, 0.0
        self.rows: list[dict[str, Any]] = []  # every metrics row so far (`history`)
        self._data_iter: Iterator | None = None
        self._stop_reason: str | None = None
        self._pending_save: tuple[int, Callable[[], Path]] | None = None  # async_checkpoint: (step, finish)
        self._resume_if_asked()
        self.tracker = JsonlTracker(self.log_dir / "exp_tracking" / f"rank{self.dist.rank}" / "tracker.jsonl") \
            if self.dist.is_main else None

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

    def save_checkpoint(self, snapshot: bool = False, control: Control | None = None) -> Path:
        """Collective: `checkpoints/ckpt-step-N` (written as `.tmp`, then renamed), pruned to checkpoint_maxkeep;
        `snapshot`: `checkpoints/snapshot-step-N`, only the newest kept (XTuner's snapshot_interval). With
        async_checkpoint the weights are written in the background and the save completes at the next save or at
        the end of fit.

        Each checkpoint records its files, sizes and checksums (`manifest.json`), checked before a resume. A save
        that runs out of disk space raises `DiskFullError` (what it needed, what was free, the checkpoint that
        remains); the Trainer keeps its state, so after freeing space `trainer.save_checkpoint()` saves it."""
        self._finish_pending_save()
        step, cfg = self.cur_step, self.config
        path = run_dir.checkpoint_dir(self.exp_dir, step, snapshot)
        if self.dist.is_main:
            run_dir.remove_stale_tmp(self.exp_dir)
        intact = next((p for p in run_dir.resume_candidates(self.exp_dir) if p != path), None)
        train_state = {"cur_step": step, "cur_epoch": self.cur_epoch, "total_consumed_tokens": self.consumed_tokens,
                       "train_time_offset": self.elapsed, **self.lora_record}
        if self.grad_scaler is not None:  # fp16: the loss scale and its growth counter, so a resume steps identically
            train_state["grad_scaler"] = self.grad_scaler.state_dict()
        written = folder.save_checkpoint(path, model=self.model, optimizer=self.optimizer,
                                         scheduler=self.lr_scheduler, loader_state=self.loader.state_dict(),
                                         train_state=train_state, config_json=_config_json(cfg),
                                         rank=self.dist.rank, world_size=self.dist.world_size,
                                         async_save=cfg.async_checkpoint, intact=intact, logger=self.logger)
        state, control = self.state, control or Control()

        def completed() -> Path:
            done = written() if callable(written) else written
            if self.dist.is_main:
                pattern, keep = (run_dir.SNAPSHOT_RE, 1) if snapshot else (run_dir.CKPT_RE, cfg.checkpoint_maxkeep)
                run_dir.prune(run_dir.list_checkpoints(self.exp_dir, pattern), keep)
                run_dir.record_in_meta(self.work_dir, self.exp_dir, self._progress())
            self.logger.info(f"{'snapshot' if snapshot else 'checkpoint'} saved: {done}")
            call_hooks(self.hooks, "on_save", state, done, "snapshot" if snapshot else "checkpoint", control)
            return done

        if callable(written):
            self._pending_save = (step, completed)
            self.logger.info(f"checkpoint of step {step} is being written in the background: {path}")
            return path
        return completed()

    def export_hf(self, control: Control | None = None) -> Path:
        """Collective: `hf-N/` (an ordinary HF folder; with LoRA the merged weights + `hf-N/adapter/`), and
        `hf-latest` pointing at it; exports beyond hf_max_keep are pruned."""
        path = write_hf_export(self.model, self.model_cfg, self.config.lora_cfg, self.tokenizer,
                               self.exp_dir / f"hf-{self.cur_step}", self.dist, source=self.config.load_from,
                               tokenizer_source=self.config.tokenizer_path,
                               chat_template=self.preflight.export_template.jinja)
        if self.dist.is_main:
            run_dir.point_symlink(self.exp_dir / "hf-latest", path)
            run_dir.prune(run_dir.list_hf_exports(self.exp_dir), self.config.hf_max_keep)
            run_dir.record_in_meta(self.work_dir, self.exp_dir, self._progress(), hf=True)
            self.logger.info(f"HF model saved: {path}")
        call_hooks(self.hooks, "on_save", self.state, path, "hf", control or Control())
        return path

    def export_gguf(self, path: str | Path | None = None, outtype: str = "f16",
                    check: bool = False) -> Path | None:
        """The model at this step as one GGUF file (llama.cpp, Ollama), by llama.cpp's own converter: this step's
        HF export (written first when missing; merged weights under LoRA) -> `hf-<step>/model-<outtype>.gguf` by
        default. `check`: run the file in llama.cpp (prebuilt, fetched from npm; needs Node.js) on the eval
        prompts and compare its greedy answers with transformers' on the HF export (logged; the result is
        `trainer.gguf_check`). Collective under torchrun; rank 0 returns the path, the others None."""
        hf = self.exp_dir / f"hf-{self.cur_step}"
        if not (hf / "config.json").is_file():
            hf = self.export_hf()
        out = write_gguf(hf, path, outtype, self.dist)
        if check and out is not None:
            from ..model.gguf_check import DEFAULT_PROMPTS, check_gguf

            prompts = [p.prompt for p in self.config.eval_prompts or []] or DEFAULT_PROMPTS
            self.gguf_check = check_gguf(out, hf, prompts, self.config.eval_max_new_tokens)
            (self.logger.info if self.gguf_check.passed else self.logger.warning)(self.gguf_check.summary())
        return out

    @property
    def history(self):
        """One row per step: an eval row (tracker.jsonl keeps it apart) is joined to its step's training row."""
        return history_frame(self.rows)

    def plot(self):
        """The training curves (the notebook layer draws them: `xtuner_nb.notebook.plot_history`)."""
        return plot_history_function()(self.history)

    @property
    def state(self) -> TrainState:
        return TrainState(step=self.cur_step, total_step=self.total_step, epoch=self.cur_epoch,
                          total_epoch=self.config.total_epoch, consumed_tokens=self.consumed_tokens,
                          elapsed=self.elapsed, exp_dir=self.exp_dir, rank=self.dist.rank,
                          world_size=self.dist.world_size, device=str(self.dist.device), history=self.rows,
                          precision=self.precision.name, attention_backend=self.attention_backend)

    def close(self) -> None:
        """Free the model and optimizer (GPU memory included); the Trainer cannot train afterwards."""
        self.model = self.optimizer = self.lr_scheduler = self.loader = self._data_iter = self.evaluator = None
        if self.tracker is not None:
            self.tracker.close()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __repr__(self) -> str:  # what a notebook cell ending in `trainer.fit()` prints
        return (f"Trainer(step {self.cur_step}/{self.total_step}, epoch {self.cur_epoch}, "
                f"{self.dist.world_size} rank(s) on {self.dist.device}, exp_dir={str(self.exp_dir)!r})")

    def describe(self) -> str:
        """The loop and the hooks that fire in it (fastai's show_training_loop)."""
        hooks = ", ".join(type(h).__name__ for h in self.hooks) or "none"
        return (f"fit(): step {self.cur_step}/{self.total_step}; each step: {self.micro_batch_size} pack(s) per rank x "
                f"{self.dist.world_size} rank(s) -> forward/backward per pack -> clip -> AdamW -> LR -> log -> "
                f"[checkpoint every {self.config.checkpoint_interval}] [HF every {self.config.hf_interval or 'end'}]"
                f"\nhooks: {hooks}")

    # ---- the loop ----------------------------------------------------------------------------------------------
    def _run(self):
        hooks, control = self.hooks, Control()
        if any(getattr(h, "replaces_console_log", False) for h in hooks):
            set_console_level(30)  # a dashboard shows the steps; keep warnings on the console
        self._stop_reason, reason = None, "finished"
        restore = install_interrupt_handler(self.request_stop, lambda: self.cur_step + 1)
        call_hooks(hooks, "on_fit_begin", self.state, control)
        fit_start, tokens_at_start, steps_at_start = time.time(), 0, self.cur_step
        failure: BaseException | None = None
        try:
            while self.cur_step < self.total_step:
                row = self._train_one_step(fit_start, tokens_at_start, steps_at_start)
                tokens_at_start += row["runtime_info/total_text_tokens"]
                call_hooks(hooks, "on_step_end", self.state, row, control)
                self._maybe_evaluate(control)
                self._save_what_is_due(control, requested=any_rank(control.should_save, self.dist.device))
                control.should_save = False
                if self._should_stop(control):
                    reason = "interrupted" if self._stop_reason == "interrupt" else "stopped"
                    break
                yield row
            if reason != "finished" and self.cur_step > 0 and not self._saved_at(self.cur_step) \
                    and not self.config.debug_skip_save:
                self.save_checkpoint(control=control)  # the last completed step: nothing is lost
        except torch.OutOfMemoryError as exc:
            reason = "error"
            self.optimizer.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
            advice = memory.oom_message(self.config, self.precision, self.dist)
            failure = torch.OutOfMemoryError(f"{exc}\n{advice}")
            raise failure from None
        except BaseException as exc:
            reason, failure = "error", exc
            raise
        finally:
            self._end_fit(reason, control, failure, restore, fit_start)
        self._end_message(reason)

    def _end_fit(self, reason: str, control: Control, failure: BaseException | None, restore: Callable[[], None],
                 fit_start: float) -> None:
        """The end of every fit(), failed or not: the pending async save completes, the interrupt handler and the
        console go back, then every hook's on_fit_end. The first error wins: after a failed run whatever fails here
        is logged and noted on the run's error, which is the one raised; after a good run the first failure here is
        raised once the rest has run."""
        errors: list[BaseException] = []
        try:
            self._finish_pending_save()  # async_checkpoint: the last save completes
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # torch DCP's CheckpointException is a BaseException
            errors.append(exc)
        restore()
        set_console_level(10 if self.config.debug else 20)
        self.elapsed += time.time() - fit_start
        ended = "error" if failure is not None or errors else reason
        errors += call_every_hook(self.hooks, "on_fit_end", self.state, ended, control)
        first = failure if failure is not None else (errors[0] if errors else None)
        for later in errors[0 if failure is not None else 1:]:
            self.logger.error(f"{later} (after the error that ended the run: {type(first).__name__})")
            first.add_note(f"Afterwards: {later}")
        if failure is None and errors:
            raise errors[0]

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
            self.attention_backend = self._log_attention_backend()
        if not updated:
            self.logger.warning(f"step {self.cur_step + 1}: grad norm {grad_norm} -> update skipped")
        self.lr_scheduler.step()
        self.cur_step += 1
        row = step_metrics(step=self.cur_step, total_step=self.total_step, epoch=self.cur_epoch, lr=lr,
                           grad_norm=grad_norm, updated=updated, res=res, step_time=time.time() - t0,
                           data_time=data_time, wall=time.time() - fit_start,
                           steps_done=self.cur_step - steps_at_start, tokens_before=tokens_since_start,
                           model_cfg=self.model_cfg, device=dev, compute_dtype=self.precision.compute,
                           world_size=self.dist.world_size, adapter_params=self._adapter_params)
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
        self.rows.append(row)
        if self.tracker:
            self.tracker.write(row)

    def _maybe_evaluate(self, control: Control) -> None:
        every = self.config.eval_interval
        if self.evaluator is not None and (self.cur_step == self.total_step or (every and self.cur_step % every == 0)):
            call_hooks(self.hooks, "on_eval_end", self.state, self.evaluate(), control)

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
        where = run_dir.latest_checkpoint(self.exp_dir)
        if reason == "finished":
            self.logger.info(f"Training finished at step {self.cur_step}; checkpoint: {where}")
            return
        self.logger.warning(
            f"Training {reason} ({self._stop_reason}) at step {self.cur_step}/{self.total_step}. "
            f"Checkpoint: {where}. Continue with `trainer.fit()` in this kernel, or build the Trainer with "
            f"auto_resume=True and work_dir={str(self.work_dir)!r} in a new process.")
        if reason == "interrupted" and not in_notebook_kernel():
            teardown_distributed()
            raise SystemExit(130)  # a script was interrupted: state is saved, the exit code says it stopped early

    def _log_attention_backend(self) -> str | None:
        """Name the packed attention kernel in use (and its self-check figures) once it was chosen."""
        from ..model.attention_kernels import DISPATCHER

        backend = DISPATCHER.backend_in_use()
        checked = [n for n in DISPATCHER.notes if "self-check" in n]
        self.logger.info(f"packed attention backend: {backend or 'none (no packed forward)'}"
                         + (f" ({'; '.join(checked)})" if checked else ""))
        return backend

    # ---- saving and resuming -------------------------------------------------------------------------------------
    def _save_what_is_due(self, control: Control, requested: bool) -> None:
        """After a step: the HF export, checkpoint and snapshot whose interval is due (`requested`: a hook asked)."""
        self._finish_pending_save()  # an async checkpoint of an earlier step
        due = run_dir.saves_due(self.config, self.cur_step, self.total_step, requested)
        if due.hf:
            self.export_hf(control)
        if due.checkpoint and not self._saved_at(self.cur_step):
            self.save_checkpoint(control=control)
        if due.snapshot and not self._saved_at(self.cur_step):
            self.save_checkpoint(snapshot=True, control=control)

    def _saved_at(self, step: int) -> bool:
        pending = self._pending_save is not None and self._pending_save[0] == step
        return pending or run_dir.checkpoint_dir(self.exp_dir, step) in run_dir.list_checkpoints(self.exp_dir)

    def _finish_pending_save(self) -> None:
        """Wait for an async checkpoint (XTuner's async_checkpoint) and complete it; nothing when none is pending."""
        pending, self._pending_save = self._pending_save, None
        if pending is not None:
            pending[1]()

    def _progress(self) -> dict[str, Any]:
        return {"cur_step": self.cur_step, "cur_epoch": self.cur_epoch, "consumed_tokens": self.consumed_tokens}

    def _resume_if_asked(self) -> None:
        """auto_resume (the newest intact checkpoint or snapshot of exp_dir: a damaged one is named and skipped) or
        load_checkpoint_cfg (refused when damaged): restore weights, optimizer, scheduler, RNG, data position,
        counters and the history rows up to the checkpoint's step."""
        path = run_dir.resume_checkpoint(self.config, self.exp_dir, self.dist, self.logger)
        if path is None:
            return
        from ..model.lora import check_resume as check_lora_resume

        lc = self.config.load_checkpoint_cfg
        lora = self.lora_record["lora"]
        check_lora_resume(path, self.config.lora_cfg, lora and lora["base"])
        out = folder.load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.lr_scheduler,
                                     rank=self.dist.rank, load_optimizer=lc.load_optimizer_states,
                                     load_scheduler=lc.load_scheduler, load_optimizer_args=lc.load_optimizer_args)
        ts = out["train_state"]
        self.cur_step, self.cur_epoch = ts["cur_step"], ts["cur_epoch"]
        self.consumed_tokens, self.elapsed = ts["total_consumed_tokens"], ts["train_time_offset"]
        if self.grad_scaler is not None and ts.get("grad_scaler"):
            self.grad_scaler.load_state_dict(ts["grad_scaler"])
        elif self.grad_scaler is not None:
            self.logger.warning(f"{path}: saved without a loss scale (not an fp16 run); the fp16 loss scale starts "
                                f"again from {self.grad_scaler.get_scale():g}")
        if lc.load_dataset:  # continue mid-epoch: the next batch is the one after the checkpoint's step
            self.loader.load_state_dict(out["loader_state"])
            self._data_iter = iter(self.loader)
        self.rows = read_tracker(self.log_dir / "exp_tracking" / "rank0" / "tracker.jsonl", self.cur_step)
        self.logger.info(f"resumed from {path} at step {self.cur_step} (epoch {self.cur_epoch})")


def _config_json(cfg: TrainerConfig) -> str | None:
    try:
        return cfg.to_json()
    except Exception:  # a config holding an unserialisable object (a custom tokenize fn, say)
        return None
