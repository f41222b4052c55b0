"""The Trainer: XTuner v1's `Trainer(...).fit()`, runnable in a notebook kernel and under torchrun.

Reading order: `__init__` builds the parts (dist -> work dir/logs -> tokenizer -> data -> model -> optimizer ->
resume), `_run` is the loop, `_train_one_step` the step. Hooks observe via `events.py`; nothing here knows of
widgets. A kernel interrupt (SIGINT) or a hook's stop request ends the run at a step boundary with a checkpoint.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import os
import random
import resource
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator

import torch

from ..datasets import DataloaderConfig
from . import checkpoint as ckpt
from .config import TrainerConfig
from .dist import DistInfo, all_reduce_max, barrier, broadcast_object, init_distributed, teardown_distributed
from .evaluate import build_evaluator
from .events import DEFAULT_HOOK_FACTORIES, Control, Hook, TrainState, call_hooks
from .lora import apply_lora, base_fingerprint, check_resume as check_lora_resume, describe as describe_lora
from .lora import resume_record as lora_resume_record, save_lora_hf
from .parallel import apply_recompute, compute_dtype, place_model
from .step import clip_and_step, enable_packed_loss, forward_backward
from .tracker import JsonlTracker, format_step_line, get_logger, read_tracker, set_console_level, setup_logging
from ..config import FSDPConfig

_LIVE: "weakref.ref[Trainer] | None" = None  # the kernel's previous Trainer, freed when a cell builds a new one


class TrainingStopped(Exception):
    """Raised inside the loop when a graceful stop was requested (never escapes `fit`)."""


class Trainer:
    def __init__(self, *, hooks: list[Hook] | None = None, trainer_cfg: TrainerConfig | None = None,
                 show_dashboard: bool = True, **fields: Any):
        global _LIVE
        if _LIVE is not None and _LIVE() is not None:
            _LIVE().close()  # re-running the cell that builds a Trainer frees the previous one's memory
        self.config = cfg = trainer_cfg or TrainerConfig(**fields)
        self.hooks = list(hooks or [])
        self.show_dashboard = show_dashboard
        self.running_async = False
        self.model_cfg = cfg.model_cfg
        self.fsdp_cfg = cfg.fsdp_cfg or FSDPConfig()
        self.dist: DistInfo = init_distributed(cfg.device, cfg.dist_backend)
        _seed_everything(cfg.seed)
        self._setup_work_dir()
        self.logger = setup_logging(self.log_dir, self.dist.rank)
        self.logger.info(f"exp_dir: {self.exp_dir}  device: {self.dist.device}  world_size: {self.dist.world_size}")
        self.tokenizer = self._build_tokenizer()
        self._build_data()
        self.evaluator = build_evaluator(self)  # eval data and prompts (None when no eval is configured)
        self._build_model()
        self.optimizer = cfg.optim_cfg.build([p for p in self.model.parameters() if p.requires_grad])
        self.lr_scheduler = cfg.lr_cfg.build(self.optimizer, self.total_step)
        self.cur_step, self.cur_epoch, self.consumed_tokens, self._time_offset = 0, 1, 0, 0.0
        self._rows: list[dict[str, Any]] = []
        self._data_iter: Iterator | None = None
        self._resume_if_asked()
        self.tracker = JsonlTracker(self.log_dir / "exp_tracking" / f"rank{self.dist.rank}" / "tracker.jsonl") \
            if self.dist.is_main else None
        self._stop_reason: str | None = None
        _LIVE = weakref.ref(self)

    @classmethod
    def from_config(cls, config: TrainerConfig, **kw: Any) -> "Trainer":
        return cls(trainer_cfg=config, **kw)

    # ---- construction ----------------------------------------------------------------------------------------
    def _setup_work_dir(self) -> None:
        cfg = self.config
        self.work_dir = Path(cfg.work_dir or Path.cwd() / "work_dir").resolve()
        exp_dir = None
        if self.dist.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            meta = ckpt.read_meta(self.work_dir)
            if cfg.auto_resume and meta["exps"]:
                exp_dir = meta["exps"][-1]["exp_dir"]
            else:
                stamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
                exp_dir = str(self.work_dir / stamp)
                while Path(exp_dir).exists():  # two runs in the same second
                    exp_dir += "_1"
                meta["exps"].append({"exp_dir": exp_dir, "history": [], "checkpoint_list": [],
                                     "hf_checkpoint_list": [], "cur_step": 0})
            meta["exps"][-1]["history"].append({"begin": datetime.datetime.now().isoformat(timespec="seconds")})
            ckpt.write_meta(self.work_dir, meta)
        self.exp_dir = Path(broadcast_object(exp_dir))
        self.log_dir = Path(self.config.log_dir or self.exp_dir / "logs")
        self.exp_dir.mkdir(parents=True, exist_ok=True)

    def _build_tokenizer(self):
        if self.config.tokenizer_path is None:
            from .toy_tokenizer import UTF8ByteTokenizer

            self.logger.info("Using toy tokenizer (UTF-8 bytes): tokenizer_path is None")
            return UTF8ByteTokenizer()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.config.tokenizer_path), trust_remote_code=True)

    def _build_data(self) -> None:
        cfg, world = self.config, self.dist.world_size
        dl_cfg: DataloaderConfig = cfg.dataloader_cfg.model_copy()
        if cfg.dataset_cfg is not None:
            dl_cfg = dl_cfg.model_copy(update={"dataset_config_list": cfg.dataset_cfg})
        pad = getattr(self.tokenizer, "pad_token_id", None)
        dl_cfg = dl_cfg.model_copy(update={"pad_token_id": pad if pad is not None else self.tokenizer.eos_token_id})
        gbs = cfg.global_batch_size or world
        if gbs % world:
            raise ValueError(f"global_batch_size={gbs} must be a multiple of the number of ranks ({world})")
        self.global_batch_size, self.micro_batch_size = gbs, gbs // world
        self.loader = dl_cfg.build(self.tokenizer, dp_rank=self.dist.rank, dp_size=world,
                                   micro_batch_size=self.micro_batch_size, seed=cfg.seed)
        steps_per_epoch = len(self.loader)
        self.total_step = cfg.total_step or steps_per_epoch * (cfg.total_epoch or 1)
        self.logger.info(f"data: {getattr(self.loader, 'stats', '')}; {steps_per_epoch} steps/epoch, "
                         f"global_batch_size {gbs} packs, grad_accumulation_steps: {self.micro_batch_size}, "
                         f"total_step {self.total_step}")

    def _build_model(self) -> None:
        from ..model import load_hf_weights

        cfg = self.config
        vocab = len(self.tokenizer)
        if vocab > self.model_cfg.vocab_size:
            raise ValueError(f"tokenizer has {vocab} tokens but model_cfg.vocab_size is {self.model_cfg.vocab_size}")
        lora = cfg.lora_cfg  # LoRA: the frozen base needs no fp32 master copy, it lives in the compute dtype
        # Under torchrun with weights to load, no rank ever holds the whole model: build on the meta device, shard,
        # allocate each rank's shards, then fill them from the safetensors files (torchtitan's order).
        sharded_load = self.dist.distributed and cfg.load_from is not None and lora is None
        model = self.model_cfg.build(device="meta" if sharded_load else "cpu",
                                     dtype=torch.float32 if lora is None
                                     else compute_dtype(self.fsdp_cfg, self.dist.device))
        if cfg.load_from is not None and not sharded_load:
            load_hf_weights(model, cfg.load_from, strict=cfg.strict_load)
            self.logger.info(f"loaded weights from {cfg.load_from}")
        enable_packed_loss(model)
        self._lora_record = lora_resume_record(None, None)
        if lora is not None:  # a fresh base in every Trainer: re-running the cell never stacks adapters
            self._lora_record = lora_resume_record(lora, base_fingerprint(model))
            model = apply_lora(model, lora, base_model_name_or_path=cfg.load_from)
            self.logger.info(describe_lora(model, lora))
        n = apply_recompute(model, self.fsdp_cfg)
        self.model = place_model(model, self.fsdp_cfg, self.dist)
        if sharded_load:
            self.model.to_empty(device=self.dist.device)
            load_hf_weights(self.model, cfg.load_from, strict=cfg.strict_load)
            self.logger.info(f"loaded weights from {cfg.load_from} shard by shard (meta-device build, "
                             f"{self.dist.world_size} ranks)")
        self.model.train()
        self.autocast_dtype = None if self.dist.distributed or self.dist.device.type == "cpu" \
            else compute_dtype(self.fsdp_cfg, self.dist.device)
        n_params = sum(p.numel() for p in model.parameters())
        self.logger.info(f"model: {type(self.model_cfg).__name__} {n_params / 1e6:.2f} M params, "
                         f"recompute {n}/{self.model_cfg.num_hidden_layers} layers")

    def _resume_if_asked(self) -> None:
        cfg = self.config
        lc = cfg.load_checkpoint_cfg
        path = lc.checkpoint_path
        if cfg.auto_resume:
            found = ckpt.list_checkpoints(self.exp_dir)
            path = found[-1] if found else path
        if path is None:
            return
        lora = self._lora_record["lora"]
        check_lora_resume(Path(path), self.config.lora_cfg, lora and lora["base"])
        out = ckpt.load_checkpoint(Path(path), model=self.model, optimizer=self.optimizer,
                                   scheduler=self.lr_scheduler, rank=self.dist.rank,
                                   load_optimizer=lc.load_optimizer_states, load_scheduler=lc.load_scheduler)
        ts = out["train_state"]
        self.cur_step, self.cur_epoch = ts["cur_step"], ts["cur_epoch"]
        self.consumed_tokens, self._time_offset = ts["total_consumed_tokens"], ts["train_time_offset"]
        if lc.load_dataset:  # continue mid-epoch: the next batch is the one after the checkpoint's step
            self.loader.load_state_dict(out["loader_state"])
            self._data_iter = iter(self.loader)
        self._rows = read_tracker(self.log_dir / "exp_tracking" / "rank0" / "tracker.jsonl", self.cur_step)
        self.logger.info(f"resumed from {path} at step {self.cur_step} (epoch {self.cur_epoch})")

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
        self._rows.append(row)
        if self.tracker:
            self.tracker.write(row)
        n = f" {row['eval/correct']}/{row['eval/scored']} answers right" if "eval/scored" in row else ""
        loss = f" loss {row['eval/loss']:.6f}" if "eval/loss" in row else ""
        self.logger.info(f"Eval at step {self.cur_step}:{loss}{n} ({row['eval/time']:.1f} s)")
        for g in row.get("eval/generations", []):
            self.logger.debug(f"eval generation: {g}")
        return row

    @property
    def history(self):
        """One row per step: an eval row (tracker.jsonl keeps it apart) is joined to its step's training row."""
        import pandas as pd

        merged: dict[Any, dict[str, Any]] = {}
        for row in self._rows:
            merged.setdefault(row.get("step"), {}).update(row)
        return pd.DataFrame(list(merged.values()))

    def plot(self):
        from ..notebook.plots import plot_history  # lazy: the notebook layer draws, the Trainer does not

        return plot_history(self.history)

    @property
    def state(self) -> TrainState:
        return TrainState(step=self.cur_step, total_step=self.total_step, epoch=self.cur_epoch,
                          total_epoch=self.config.total_epoch, consumed_tokens=self.consumed_tokens,
                          elapsed=self._time_offset, exp_dir=self.exp_dir, rank=self.dist.rank,
                          world_size=self.dist.world_size, device=str(self.dist.device), history=self._rows)

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
    def _fit_hooks(self) -> list[Hook]:
        extra = [h for f in DEFAULT_HOOK_FACTORIES if (h := f(self)) is not None]
        hooks = self.hooks + extra
        return [h for h in hooks if self.dist.is_main or not getattr(h, "main_process_only", True)]

    def _run(self):
        hooks, control = self._fit_hooks(), Control()
        if any(getattr(h, "replaces_console_log", False) for h in hooks):
            set_console_level(30)  # a dashboard shows the steps; keep warnings on the console
        self._stop_reason, reason = None, "finished"
        restore = _install_interrupt_handler(self)
        call_hooks(hooks, "on_fit_begin", self.state, control)
        fit_start, tokens_at_start, steps_at_start = time.time(), 0, self.cur_step
        try:
            while self.cur_step < self.total_step:
                row = self._train_one_step(fit_start, tokens_at_start, steps_at_start)
                tokens_at_start += row["runtime_info/text_tokens"]
                call_hooks(hooks, "on_step_end", self.state, row, control)
                self._maybe_evaluate(hooks, control)
                self._maybe_save(hooks, control, force=control.should_save)
                control.should_save = False
                if self._should_stop(control):
                    reason = "interrupted" if self._stop_reason == "interrupt" else "stopped"
                    break
                yield row
            if reason != "finished" and self.cur_step > 0 and not self._saved_at(self.cur_step) \
                    and not self.config.debug_skip_save:
                self._save_checkpoint(hooks, control)  # the last completed step, so nothing is lost
        except torch.OutOfMemoryError as exc:
            reason = "error"
            self.optimizer.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
            raise torch.OutOfMemoryError(f"{exc}\n{_oom_advice(self)}") from None
        except BaseException:
            reason = "error"
            raise
        finally:
            restore()
            set_console_level(20)
            self._time_offset += time.time() - fit_start
            call_hooks(hooks, "on_fit_end", self.state, reason, control)
        self._end_message(reason)

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

    def _train_one_step(self, fit_start: float, tokens_since_start: int, steps_at_start: int) -> dict[str, Any]:
        dev = self.dist.device
        t0 = time.time()
        packs = self._next_batch()
        data_time = time.time() - t0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses (read before scheduler.step)
        res = forward_backward(self.model, packs, self.config.loss_cfg, dev, self.dist.world_size, self.autocast_dtype)
        grad_norm, updated = clip_and_step(self.model, self.optimizer, self.config.optim_cfg.max_grad_norm,
                                           self.config.do_clip, self.config.optim_cfg.skip_grad_norm_threshold)
        if not updated:
            self.logger.warning(f"step {self.cur_step + 1}: grad norm {grad_norm} -> update skipped")
        self.lr_scheduler.step()
        self.cur_step += 1
        self.consumed_tokens += res.text_tokens
        step_time = time.time() - t0
        done = self.cur_step - steps_at_start
        wall = time.time() - fit_start
        row = {
            "step": self.cur_step, "lr": lr, "grad_norm": grad_norm,
            "loss/reduced_llm_loss": res.reduced_loss, "loss/local_loss": res.local_loss,
            "time/step_time": step_time, "time/data_time": data_time,
            "time/eta_seconds": wall / done * (self.total_step - self.cur_step),
            "runtime_info/text_tokens": res.text_tokens, "runtime_info/loss_tokens": res.loss_tokens,
            "runtime_info/tgs": res.text_tokens / step_time,
            "runtime_info/exp_tgs": (tokens_since_start + res.text_tokens) / wall,
            "runtime_info/mfu": _mfu(self, res, step_time),
            "memory/max_memory_GB": _max_memory_gb(dev),
            "epoch": self.cur_epoch,
        }
        if not updated:
            row["skipped_update"] = True
        self._rows.append(row)
        if self.tracker:
            self.tracker.write(row)
        self.logger.info(format_step_line(row, self.total_step, self.cur_epoch))
        return row

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

    # ---- saving ------------------------------------------------------------------------------------------------
    def _saved_at(self, step: int) -> bool:
        return any(p.name == f"ckpt-step-{step}" for p in ckpt.list_checkpoints(self.exp_dir))

    def _maybe_save(self, hooks: list[Hook], control: Control, force: bool = False) -> None:
        """After a step: HF export and checkpoint when their interval is due (`force`: a hook asked to save)."""
        cfg, step, last = self.config, self.cur_step, self.cur_step == self.total_step
        if cfg.debug_skip_save or step == 0:
            return
        hf_every = cfg.hf_interval or self.total_step
        if step % hf_every == 0 or last:
            self._save_hf(hooks, control)
        every = cfg.checkpoint_interval
        due = every is not None and (last or (every > 0 and step % every == 0))
        if (due or force) and not self._saved_at(step):
            self._save_checkpoint(hooks, control)

    def _save_checkpoint(self, hooks: list[Hook], control: Control) -> Path:
        step = self.cur_step
        path = self.exp_dir / "checkpoints" / f"ckpt-step-{step}"
        if self.dist.is_main:
            ckpt.remove_stale_tmp(self.exp_dir)
        train_state = {"cur_step": step, "cur_epoch": self.cur_epoch, "total_consumed_tokens": self.consumed_tokens,
                       "train_time_offset": self._time_offset, **self._lora_record}
        ckpt.save_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.lr_scheduler,
                             loader_state=self.loader.state_dict(), train_state=train_state,
                             config_json=self._config_json(), rank=self.dist.rank)
        if self.dist.is_main:
            ckpt.prune(ckpt.list_checkpoints(self.exp_dir), self.config.checkpoint_maxkeep)
            self._update_meta(checkpoint=path)
        self.logger.info(f"checkpoint saved: {path}")
        call_hooks(hooks, "on_save", self.state, path, "checkpoint", control)
        return path

    def _save_hf(self, hooks: list[Hook], control: Control) -> Path:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        from ..model import save_hf

        path = self.exp_dir / f"hf-{self.cur_step}"
        sd = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.dist.is_main:
            if self.config.lora_cfg is None:
                save_hf(sd, self.model_cfg, path, tokenizer=self.tokenizer)
            else:  # hf-N: merged weights; hf-N/adapter: the peft adapter
                save_lora_hf(self.model, sd, self.model_cfg, self.config.lora_cfg, path, tokenizer=self.tokenizer)
            ckpt.point_symlink(self.exp_dir / "hf-latest", path)
            exports = sorted(self.exp_dir.glob("hf-[0-9]*"), key=lambda p: int(p.name.split("-")[1]))
            ckpt.prune(exports, self.config.hf_max_keep)
            self._update_meta(hf=path)
            self.logger.info(f"HF model saved: {path}")
        barrier()
        call_hooks(hooks, "on_save", self.state, path, "hf", control)
        return path

    def _update_meta(self, checkpoint: Path | None = None, hf: Path | None = None) -> None:
        meta = ckpt.read_meta(self.work_dir)
        exp = next((e for e in meta["exps"] if e["exp_dir"] == str(self.exp_dir)), None)
        if exp is None:
            return
        exp["checkpoint_list"] = [str(p) for p in ckpt.list_checkpoints(self.exp_dir)]
        if hf is not None:
            exp["hf_checkpoint_list"] = [str(p) for p in sorted(self.exp_dir.glob("hf-[0-9]*"))]
        exp["cur_step"], exp["cur_epoch"], exp["consumed_tokens"] = self.cur_step, self.cur_epoch, self.consumed_tokens
        ckpt.write_meta(self.work_dir, meta)

    def _config_json(self) -> str | None:
        try:
            return self.config.to_json()
        except Exception:  # a config holding an unserialisable object (a custom tokenize fn, say)
            return None

    def _end_message(self, reason: str) -> None:
        found = ckpt.list_checkpoints(self.exp_dir)
        where = found[-1] if found else None
        if reason == "finished":
            self.logger.info(f"Training finished at step {self.cur_step}; checkpoint: {where}")
            return
        self.logger.warning(
            f"Training {reason} ({self._stop_reason}) at step {self.cur_step}/{self.total_step}. "
            f"Checkpoint: {where}. Continue with `trainer.fit()` in this kernel, or build the Trainer with "
            f"auto_resume=True and work_dir={str(self.work_dir)!r} in a new process.")
        if reason == "interrupted" and not _in_kernel():
            teardown_distributed()
            raise SystemExit(130)  # a script was interrupted: state is saved, the exit code says it stopped early


# ---- helpers ---------------------------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def _in_kernel() -> bool:
    return "ipykernel" in sys.modules


def _install_interrupt_handler(trainer: Trainer):
    """First SIGINT (kernel ■, Ctrl-C): finish the step, checkpoint, return. A second one aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if trainer._stop_reason == "interrupt":
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        trainer._stop_reason = "interrupt"
        get_logger().warning(f"Interrupt received: finishing step {trainer.cur_step + 1}, then saving a checkpoint "
                             "(interrupt again to abort without saving).")

    signal.signal(signal.SIGINT, on_sigint)
    sigterm_prev = None
    if not _in_kernel():  # torchrun forwards SIGTERM to its workers when it is stopped
        sigterm_prev = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, on_sigint)

    def restore():
        signal.signal(signal.SIGINT, previous)
        if sigterm_prev is not None:
            signal.signal(signal.SIGTERM, sigterm_prev)

    return restore


def _max_memory_gb(dev: torch.device) -> float:
    """Peak GPU memory allocated in this step; on CPU the process's peak resident memory."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _mfu(trainer: Trainer, res, step_time: float) -> float | None:
    try:
        from .flops import device_peak_flops, flops_per_token
    except ImportError:
        return None
    peak = device_peak_flops(trainer.dist.device, trainer.autocast_dtype or torch.float32)
    if not peak:
        return None
    return res.text_tokens * flops_per_token(trainer.model_cfg, res.attn_len) / step_time / peak


def _oom_advice(trainer: Trainer) -> str:
    dl = trainer.loader
    return ("Out of GPU memory; memory was freed, the kernel can keep going. Lower one of: "
            f"dataloader_cfg.pack_max_length, use loss_cfg=CELossConfig(mode='chunk') "
            f"(now {trainer.config.loss_cfg.mode!r}), fsdp_cfg.recompute_ratio=1.0 "
            f"(now {trainer.fsdp_cfg.recompute_ratio}), or train LoRA adapters instead of all weights.")
