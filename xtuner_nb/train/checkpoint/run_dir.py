"""The run folder, as XTuner v1 lays it out, and when things are written into it.

    work_dir/
      .xtuner                      registry of the experiments (JSON): exp_dir, checkpoint and HF lists, step
      <YYYYmmddHHMMSS>/            one experiment (exp_dir); auto_resume continues the newest
        checkpoints/ckpt-step-N/   a checkpoint (`folder.py` writes and reads one, `manifest.py` checks one)
        checkpoints/ckpt-step-N.damaged/   one that auto_resume found damaged, set aside (never counted again)
        checkpoints/snapshot-step-N/   XTuner's snapshot_interval saves (only the newest is kept)
        hf-N/, hf-latest           HF exports (`export.py`)
        logs/                      rank logs and exp_tracking/rank0/tracker.jsonl

Plain functions of paths and config values; the Trainer calls them and keeps what they return.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..distributed import DistInfo, barrier, broadcast_object, check_shared_work_dir
from .folder import is_complete
from .manifest import DamagedCheckpointError, find_damage, has_manifest

CKPT_RE = re.compile(r"^ckpt-step-(\d+)$")
SNAPSHOT_RE = re.compile(r"^snapshot-step-(\d+)$")
META_FILE = ".xtuner"


def open_experiment(cfg: Any, dist: DistInfo) -> tuple[Path, Path, Path]:
    """(work_dir, exp_dir, log_dir): a new time-stamped exp_dir, or with auto_resume the latest one of work_dir.
    Collective under torchrun (rank 0 decides, and first checks that every node sees work_dir)."""
    work_dir = Path(cfg.work_dir or Path.cwd() / "work_dir").resolve()
    check_shared_work_dir(work_dir, dist)
    exp_dir = None
    if dist.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        meta = read_meta(work_dir)
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
        write_meta(work_dir, meta)
    exp_dir = Path(broadcast_object(exp_dir))
    log_dir = Path(cfg.log_dir or exp_dir / "logs")
    exp_dir.mkdir(parents=True, exist_ok=True)
    return work_dir, exp_dir, log_dir


# ---- what is in an experiment ------------------------------------------------------------------------------------
def checkpoint_dir(exp_dir: Path, step: int, snapshot: bool = False) -> Path:
    return Path(exp_dir) / "checkpoints" / (f"snapshot-step-{step}" if snapshot else f"ckpt-step-{step}")


def list_checkpoints(exp_dir: Path, pattern: re.Pattern = CKPT_RE) -> list[Path]:
    """Complete checkpoints (or, with SNAPSHOT_RE, snapshots) of an experiment, oldest first."""
    root = Path(exp_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if pattern.match(p.name) and is_complete(p)]
    return sorted(done, key=lambda p: int(pattern.match(p.name).group(1)))


def step_of(path: Path) -> int:
    return int((CKPT_RE.match(path.name) or SNAPSHOT_RE.match(path.name)).group(1))


def latest_checkpoint(exp_dir: Path) -> Path | None:
    found = list_checkpoints(exp_dir)
    return found[-1] if found else None


def list_hf_exports(exp_dir: Path) -> list[Path]:
    return sorted(Path(exp_dir).glob("hf-[0-9]*"), key=lambda p: int(p.name.split("-")[1]))


def resume_candidates(exp_dir: Path) -> list[Path]:
    """Complete checkpoints and snapshots of an experiment, newest first (a checkpoint before a snapshot of the
    same step): what auto_resume tries, in this order."""
    found = list_checkpoints(exp_dir) + list_checkpoints(exp_dir, SNAPSHOT_RE)
    return sorted(found, key=step_of, reverse=True)


def resume_checkpoint(cfg: Any, exp_dir: Path, dist: DistInfo, logger: logging.Logger) -> Path | None:
    """What a new Trainer starts from, checked against its manifest before anything is loaded. Collective: every
    rank checks its own files and all get the same answer.

    With auto_resume: the newest intact checkpoint or snapshot of exp_dir; each newer one that is damaged is named
    in a warning with what is wrong, and set aside as `<name>.damaged`. Otherwise (or when exp_dir has none)
    `load_checkpoint_cfg.checkpoint_path`, which must be intact. None: a fresh start."""
    damaged: list[tuple[Path, str]] = []
    for path in broadcast_object(resume_candidates(exp_dir) if cfg.auto_resume else []):
        problem = find_damage(path, dist.rank, dist.world_size)
        if problem is None:
            _set_aside(damaged, path, dist, logger)
            return _checked(path, logger)
        damaged.append((path, problem))
    if damaged:
        raise DamagedCheckpointError(
            f"auto_resume: every checkpoint of {exp_dir} is damaged: "
            + "; ".join(f"{p.name}: {why}" for p, why in damaged)
            + ". Move them out of the checkpoints folder to train this experiment again from the start, or build the "
              "Trainer without auto_resume for a new experiment.")
    path = cfg.load_checkpoint_cfg.checkpoint_path
    if path is None:
        return None
    problem = find_damage(Path(path), dist.rank, dist.world_size)
    if problem is not None:
        raise DamagedCheckpointError(f"checkpoint {path} is damaged: {problem}. It cannot be loaded: point "
                                     "load_checkpoint_cfg.checkpoint_path (resume_cfg.resume_from) at another one.")
    return _checked(Path(path), logger)


def _checked(path: Path, logger: logging.Logger) -> Path:
    if not has_manifest(path):
        logger.info(f"{path}: no manifest.json (saved before checkpoints recorded one), loaded without a check")
    return path


def _set_aside(damaged: list[tuple[Path, str]], intact: Path, dist: DistInfo, logger: logging.Logger) -> None:
    """Warn about each damaged checkpoint and rename it `<name>.damaged`: it no longer counts as saved, so the run
    writes that step again, and nothing is deleted."""
    if not damaged:
        return
    asides = [_unused_name(path.with_name(path.name + ".damaged")) for path, _ in damaged]
    barrier()  # every rank has named them before rank 0 renames
    for (path, problem), aside in zip(damaged, asides):
        logger.warning(f"checkpoint {path} is damaged: {problem}. auto_resume goes back to the newest intact "
                       f"checkpoint, {intact}; the damaged one is kept as {aside.name} (delete it once you have "
                       "looked).")
        if dist.is_main:
            path.rename(aside)
    barrier()


def _unused_name(path: Path) -> Path:
    n, name = 1, path
    while name.exists():
        name, n = path.with_name(f"{path.name}-{n}"), n + 1
    return name


# ---- when to write -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SavesDue:
    hf: bool
    checkpoint: bool
    snapshot: bool


def saves_due(cfg: Any, step: int, total_step: int, requested: bool = False) -> SavesDue:
    """Which saves XTuner's intervals ask for after `step` (checkpoint_interval -1: at the end only; None: never;
    hf_interval None: at the end; snapshot_interval: every N steps); `requested`: a hook asked for a checkpoint."""
    if cfg.debug_skip_save or step == 0:
        return SavesDue(False, False, False)
    last = step == total_step
    every = cfg.checkpoint_interval
    checkpoint = requested or (every is not None and (last or (every > 0 and step % every == 0)))
    hf = step % (cfg.hf_interval or total_step) == 0 or last
    snapshot = bool(cfg.snapshot_interval) and step % cfg.snapshot_interval == 0
    return SavesDue(hf, checkpoint, snapshot)


# ---- keeping the folder tidy ---------------------------------------------------------------------------------------
def prune(paths: list[Path], maxkeep: int | None) -> list[Path]:
    """Delete the oldest entries beyond `maxkeep` (<=0 or None keeps all); returns the ones removed."""
    if not maxkeep or maxkeep <= 0 or len(paths) <= maxkeep:
        return []
    doomed = paths[: len(paths) - maxkeep]
    for p in doomed:
        if p.is_symlink():
            p.unlink()
        else:
            shutil.rmtree(p, ignore_errors=True)
    return doomed


def remove_stale_tmp(exp_dir: Path) -> None:
    root = Path(exp_dir) / "checkpoints"
    if root.is_dir():
        for p in root.glob("*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def point_symlink(link: Path, target: Path) -> None:
    """Re-point `hf-latest` atomically (a relative link, so the work_dir can move)."""
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


# ---- the work_dir registry (.xtuner) -----------------------------------------------------------------------------
def read_meta(work_dir: Path) -> dict[str, Any]:
    f = Path(work_dir) / META_FILE
    if not f.is_file():
        return {"exps": []}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {"exps": []}


def write_meta(work_dir: Path, meta: dict[str, Any]) -> None:
    path = Path(work_dir) / META_FILE
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def record_in_meta(work_dir: Path, exp_dir: Path, progress: dict[str, Any], hf: bool = False) -> None:
    """The registry entry of `exp_dir` after a save: its checkpoints (and HF exports), step, epoch and tokens."""
    meta = read_meta(work_dir)
    exp = next((e for e in meta["exps"] if e["exp_dir"] == str(exp_dir)), None)
    if exp is None:
        return
    exp["checkpoint_list"] = [str(p) for p in list_checkpoints(exp_dir)]
    if hf:
        exp["hf_checkpoint_list"] = [str(p) for p in sorted(Path(exp_dir).glob("hf-[0-9]*"))]
    exp.update(progress)
    write_meta(work_dir, meta)
