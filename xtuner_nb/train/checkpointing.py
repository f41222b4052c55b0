"""The Trainer's files: the experiment folder, resume, checkpoints and HF exports (XTuner v1's layout).

`checkpoint.py` writes and reads one checkpoint folder; this module decides when and where, keeps the work_dir
registry (`.xtuner`) up to date and tells hooks (`on_save`). Plain functions of the Trainer.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import checkpoint as ckpt
from .config import TrainerConfig
from .dist import DistInfo, barrier, broadcast_object
from .events import Control, Hook, call_hooks
from .lora import check_resume as check_lora_resume, save_lora_hf
from .multinode import check_shared_work_dir
from .tracker import read_tracker

if TYPE_CHECKING:
    from .trainer import Trainer


def open_experiment(cfg: TrainerConfig, dist: DistInfo) -> tuple[Path, Path, Path]:
    """(work_dir, exp_dir, log_dir): a new time-stamped exp_dir, or with auto_resume the latest one of work_dir."""
    work_dir = Path(cfg.work_dir or Path.cwd() / "work_dir").resolve()
    check_shared_work_dir(work_dir, dist)
    exp_dir = None
    if dist.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        meta = ckpt.read_meta(work_dir)
        if cfg.auto_resume and meta["exps"]:
            exp_dir = meta["exps"][-1]["exp_dir"]
        else:
            stamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
            exp_dir = str(work_dir / stamp)
            while Path(exp_dir).exists():  # two runs in the same second
                exp_dir += "_1"
            meta["exps"].append({"exp_dir": exp_dir, "history": [], "checkpoint_list": [],
                                 "hf_checkpoint_list": [], "cur_step": 0})
        meta["exps"][-1]["history"].append({"begin": datetime.datetime.now().isoformat(timespec="seconds")})
        ckpt.write_meta(work_dir, meta)
    exp_dir = Path(broadcast_object(exp_dir))
    log_dir = Path(cfg.log_dir or exp_dir / "logs")
    exp_dir.mkdir(parents=True, exist_ok=True)
    return work_dir, exp_dir, log_dir


def resume_if_asked(trainer: "Trainer") -> None:
    """auto_resume (the latest checkpoint of exp_dir) or load_checkpoint_cfg: restore weights, optimizer,
    scheduler, RNG, data position, counters and the history rows up to the checkpoint's step."""
    cfg = trainer.config
    lc = cfg.load_checkpoint_cfg
    path = lc.checkpoint_path
    if cfg.auto_resume:  # the newest checkpoint or snapshot
        found = ckpt.list_checkpoints(trainer.exp_dir) + ckpt.list_checkpoints(trainer.exp_dir, ckpt.SNAPSHOT_RE)
        path = max(found, key=ckpt.step_of) if found else path
    if path is None:
        return
    lora = trainer._lora_record["lora"]
    check_lora_resume(Path(path), cfg.lora_cfg, lora and lora["base"])
    out = ckpt.load_checkpoint(Path(path), model=trainer.model, optimizer=trainer.optimizer,
                               scheduler=trainer.lr_scheduler, rank=trainer.dist.rank,
                               load_optimizer=lc.load_optimizer_states, load_scheduler=lc.load_scheduler,
                               load_optimizer_args=lc.load_optimizer_args)
    ts = out["train_state"]
    trainer.cur_step, trainer.cur_epoch = ts["cur_step"], ts["cur_epoch"]
    trainer.consumed_tokens, trainer._time_offset = ts["total_consumed_tokens"], ts["train_time_offset"]
    if trainer.grad_scaler is not None and ts.get("grad_scaler"):
        trainer.grad_scaler.load_state_dict(ts["grad_scaler"])
    elif trainer.grad_scaler is not None:
        trainer.logger.warning(f"{path}: saved without a loss scale (not an fp16 run); the fp16 loss scale starts "
                               f"again from {trainer.grad_scaler.get_scale():g}")
    if lc.load_dataset:  # continue mid-epoch: the next batch is the one after the checkpoint's step
        trainer.loader.load_state_dict(out["loader_state"])
        trainer._data_iter = iter(trainer.loader)
    trainer._rows = read_tracker(trainer.log_dir / "exp_tracking" / "rank0" / "tracker.jsonl", trainer.cur_step)
    trainer.logger.info(f"resumed from {path} at step {trainer.cur_step} (epoch {trainer.cur_epoch})")


def saved_at(trainer: "Trainer", step: int) -> bool:
    pending = getattr(trainer, "_pending_save", None) is not None and trainer._pending_step == step
    return pending or any(p.name == f"ckpt-step-{step}" for p in ckpt.list_checkpoints(trainer.exp_dir))


def latest_checkpoint(trainer: "Trainer") -> Path | None:
    found = ckpt.list_checkpoints(trainer.exp_dir)
    return found[-1] if found else None


def maybe_save(trainer: "Trainer", hooks: list[Hook], control: Control, force: bool = False) -> None:
    """After a step: HF export and checkpoint when their interval is due (`force`: a hook asked to save)."""
    cfg, step = trainer.config, trainer.cur_step
    last = step == trainer.total_step
    finish_pending_save(trainer)  # an async checkpoint of an earlier step
    if cfg.debug_skip_save or step == 0:
        return
    hf_every = cfg.hf_interval or trainer.total_step
    if step % hf_every == 0 or last:
        export_hf(trainer, hooks, control)
    every = cfg.checkpoint_interval
    due = every is not None and (last or (every > 0 and step % every == 0))
    if (due or force) and not saved_at(trainer, step):
        save_checkpoint(trainer, hooks, control)
    snap = cfg.snapshot_interval
    if snap and step % snap == 0 and not saved_at(trainer, step):
        save_checkpoint(trainer, hooks, control, snapshot=True)


def save_checkpoint(trainer: "Trainer", hooks: list[Hook], control: Control, snapshot: bool = False) -> Path:
    """Collective: `checkpoints/ckpt-step-N` (written as `.tmp`, then renamed), pruned to checkpoint_maxkeep;
    `snapshot`: `checkpoints/snapshot-step-N`, only the newest kept (XTuner's snapshot_interval). With
    async_checkpoint the weights are written in the background and the save completes at the next save or at the
    end of fit (`finish_pending_save`)."""
    finish_pending_save(trainer)
    step, exp_dir = trainer.cur_step, trainer.exp_dir
    path = exp_dir / "checkpoints" / (f"snapshot-step-{step}" if snapshot else f"ckpt-step-{step}")
    if trainer.dist.is_main:
        ckpt.remove_stale_tmp(exp_dir)
    train_state = {"cur_step": step, "cur_epoch": trainer.cur_epoch, "total_consumed_tokens": trainer.consumed_tokens,
                   "train_time_offset": trainer._time_offset, **trainer._lora_record}
    if trainer.grad_scaler is not None:  # fp16: the loss scale and its growth counter, so a resume steps identically
        train_state["grad_scaler"] = trainer.grad_scaler.state_dict()
    written = ckpt.save_checkpoint(path, model=trainer.model, optimizer=trainer.optimizer,
                                   scheduler=trainer.lr_scheduler, loader_state=trainer.loader.state_dict(),
                                   train_state=train_state, config_json=_config_json(trainer.config),
                                   rank=trainer.dist.rank, async_save=trainer.config.async_checkpoint)
    state = trainer.state

    def completed() -> Path:
        done = written() if callable(written) else written
        if trainer.dist.is_main:
            if snapshot:
                ckpt.prune(ckpt.list_checkpoints(exp_dir, ckpt.SNAPSHOT_RE), 1)
            else:
                ckpt.prune(ckpt.list_checkpoints(exp_dir), trainer.config.checkpoint_maxkeep)
            _update_meta(trainer)
        trainer.logger.info(f"{'snapshot' if snapshot else 'checkpoint'} saved: {done}")
        call_hooks(hooks, "on_save", state, done, "snapshot" if snapshot else "checkpoint", control)
        return done

    if callable(written):
        trainer._pending_save, trainer._pending_step = completed, step
        trainer.logger.info(f"checkpoint of step {step} is being written in the background: {path}")
        return path
    return completed()


def finish_pending_save(trainer: "Trainer") -> None:
    """Wait for an async checkpoint (XTuner's async_checkpoint) and complete it; nothing when none is pending."""
    pending, trainer._pending_save = getattr(trainer, "_pending_save", None), None
    if pending is not None:
        pending()


def export_hf(trainer: "Trainer", hooks: list[Hook], control: Control) -> Path:
    """Collective: `hf-N/` (an ordinary HF folder; with LoRA the merged weights + `hf-N/adapter/`), `hf-latest`."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from ..model import save_hf

    exp_dir, cfg = trainer.exp_dir, trainer.config
    path = exp_dir / f"hf-{trainer.cur_step}"
    sd = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.dist.is_main:
        if cfg.lora_cfg is None:
            save_hf(sd, trainer.model_cfg, path, tokenizer=trainer.tokenizer)
        else:
            save_lora_hf(trainer.model, sd, trainer.model_cfg, cfg.lora_cfg, path, tokenizer=trainer.tokenizer)
        ckpt.point_symlink(exp_dir / "hf-latest", path)
        exports = sorted(exp_dir.glob("hf-[0-9]*"), key=lambda p: int(p.name.split("-")[1]))
        ckpt.prune(exports, cfg.hf_max_keep)
        _update_meta(trainer, hf=True)
        trainer.logger.info(f"HF model saved: {path}")
    barrier()
    call_hooks(hooks, "on_save", trainer.state, path, "hf", control)
    return path


def export_gguf(trainer: "Trainer", hooks: list[Hook], path: str | Path | None = None,
                outtype: str = "f16") -> Path | None:
    """Collective: this step's HF export (written first when missing) converted to GGUF on rank 0 (see
    `xtuner_nb.model.export_gguf`); returns the file on rank 0, None elsewhere."""
    from ..model.gguf_export import export_gguf as convert

    hf = trainer.exp_dir / f"hf-{trainer.cur_step}"
    if not (hf / "config.json").is_file():
        hf = export_hf(trainer, hooks, Control())
    out = convert(hf, path, outtype) if trainer.dist.is_main else None
    barrier()
    return out


def _update_meta(trainer: "Trainer", hf: bool = False) -> None:
    meta = ckpt.read_meta(trainer.work_dir)
    exp = next((e for e in meta["exps"] if e["exp_dir"] == str(trainer.exp_dir)), None)
    if exp is None:
        return
    exp["checkpoint_list"] = [str(p) for p in ckpt.list_checkpoints(trainer.exp_dir)]
    if hf:
        exp["hf_checkpoint_list"] = [str(p) for p in sorted(trainer.exp_dir.glob("hf-[0-9]*"))]
    exp["cur_step"], exp["cur_epoch"] = trainer.cur_step, trainer.cur_epoch
    exp["consumed_tokens"] = trainer.consumed_tokens
    ckpt.write_meta(trainer.work_dir, meta)


def _config_json(cfg: TrainerConfig) -> str | None:
    try:
        return cfg.to_json()
    except Exception:  # a config holding an unserialisable object (a custom tokenize fn, say)
        return None
