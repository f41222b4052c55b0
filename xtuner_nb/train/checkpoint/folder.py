"""Checkpoints that survive a crash or a kill: write into `<name>.tmp`, then rename.

A checkpoint directory `checkpoints/ckpt-step-N/` holds
  weights/             model + optimizer (torch DCP: sharded under FSDP2, one file set in a single process)
  dataloader.pt        data position (epoch and steps consumed in it)
  lr_scheduler.pt      scheduler state
  rng_rank{r}.pt       python / torch (and CUDA) RNG states of every rank
  trainer_config.json  the run's config
  train_state.json     step, epoch, tokens, time: no train_state.json, no checkpoint
  manifest.json        every other file with its size and checksum, written last (`manifest.py`)
A half-written checkpoint is a `*.tmp` directory, ignored when resuming and removed at the next save; one that ran
out of disk space is removed at once and the save raises `disk.DiskFullError`. Where checkpoints live in a run,
when they are written and which one a run resumes from is `run_dir.py`.

Every `.pt` file holds tensors and plain containers only and is read with `torch.load(weights_only=True)`, so a
checkpoint folder from someone else cannot run code when it is resumed (the DCP weights are tensors; the rest is
JSON). A file that needs more than that is refused with `UnsafeCheckpointError`.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import pickle
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from ..distributed import all_gather_object, barrier
from . import disk
from .manifest import write_manifest

class UnsafeCheckpointError(ValueError):
    """A checkpoint file holds Python objects that only an unrestricted unpickler could build."""


def load_pt(path: Path) -> Any:
    """`torch.load(path, weights_only=True)`: tensors and plain containers, never arbitrary code."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1][:300]
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain containers, which could "
            f"run code when unpickled (torch.load weights_only=True said: {first}). Only resume checkpoints you wrote "
            "yourself with this version of xtuner_nb.") from None


class _MetadataUnpickler(pickle.Unpickler):
    """DCP's `.metadata` is a pickle: build only DCP's own metadata classes and torch's dtypes/layouts/sizes."""

    _TORCH = {"Size", "strided", "sparse_coo", "contiguous_format", "channels_last", "preserve_format"}

    def find_class(self, module: str, name: str) -> Any:
        torch_name = module == "torch" and (name in self._TORCH or isinstance(getattr(torch, name, None), torch.dtype))
        if module.startswith("torch.distributed.checkpoint.") or torch_name or (module, name) in (
                ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
                ("torch.serialization", "_get_layout")):  # a layout by name, e.g. "torch.strided"
            return super().find_class(module, name)
        # StorageMeta.checkpoint_id: a Path pickles under its class's module, `pathlib` up to Python 3.12 and
        # `pathlib._local` on 3.13; both resolve through `pathlib`, so a checkpoint reads on every Python.
        if module in ("pathlib", "pathlib._local") and name in ("PosixPath", "WindowsPath", "PurePosixPath",
                                                               "PureWindowsPath"):
            return getattr(pathlib, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in DCP metadata")


class SafeFileSystemReader(FileSystemReader):
    """torch DCP's reader, except that the `.metadata` pickle is read with `_MetadataUnpickler` (DCP itself
    unpickles it without restriction; its tensor files are already read with weights_only=True)."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        # DCP's own file names (`.metadata`, or `__{rank}.metadata` when every rank wrote one), spelled out here:
        # the method that builds them is private and only exists from torch 2.9.
        rank = kwargs.get("rank")
        path = self.fs.concat_path(self.path, ".metadata" if rank is None else f"__{rank}.metadata")
        with self.fs.create_stream(path, "rb") as f:
            try:
                metadata = _MetadataUnpickler(f).load()
            except pickle.UnpicklingError as exc:
                raise UnsafeCheckpointError(f"{path}: refused to load: {exc}; it could run code when unpickled. "
                                            "Only resume checkpoints you wrote yourself.") from None
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain containers (numpy's state is a tuple with an array: stored as a tensor)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    except ImportError:
        pass
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))


def save_checkpoint(path: Path, *, model, optimizer, scheduler, loader_state: dict, train_state: dict,
                    config_json: str | None, rank: int, world_size: int = 1, frozen_ok: bool = True,
                    async_save: bool = False, intact: Path | None = None, logger: logging.Logger | None = None):
    """Collective: every rank calls it. Returns the final directory, or with `async_save` (XTuner's
    async_checkpoint) a `finish()` function: the weights are copied to CPU memory and written by torch DCP's
    async_save in the background; `finish()` waits for them, then writes train_state.json and the manifest, and
    renames. A save that runs out of space raises `disk.DiskFullError` naming `intact`, the checkpoint that remains;
    `logger` warns first when the free space is below what the checkpoint needs."""
    tmp = path.with_name(path.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer, options=StateDictOptions(ignore_frozen_params=frozen_ok))
    model_sd = _without_frozen(model, model_sd, frozen_ok)
    small = {"dataloader.pt": loader_state, "lr_scheduler.pt": scheduler.state_dict()} if rank == 0 else {}
    room = disk.SaveRoom(tmp, sum(all_gather_object(disk.tensor_bytes([model_sd, optim_sd, small]))), intact, rank)
    room.warn_if_short(logger or logging.getLogger("xtuner_nb"))
    with room.guard():
        with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
            warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
            save = dcp.async_save if async_save else dcp.save
            pending = save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(tmp / "weights"))
        _save_pt(_rng_state(), tmp / f"rng_rank{rank}.pt")
        for name, obj in small.items():  # rank 0: small, and must be taken now (the loop moves on)
            _save_pt(obj, tmp / name)
        if rank == 0 and config_json is not None:
            (tmp / "trainer_config.json").write_text(config_json, encoding="utf-8")
    state_json = json.dumps({**train_state, "saved_at": time.time()})

    def finish() -> Path:
        with room.guard():
            if async_save:
                pending.result()
            barrier()
            if rank == 0:
                (tmp / "train_state.json").write_text(state_json, encoding="utf-8")
            write_manifest(tmp, rank, world_size)  # last: what a complete checkpoint holds
        if rank == 0:
            if path.exists():  # re-saving the same step (e.g. a stop right after a scheduled save)
                shutil.rmtree(path)
            os.replace(tmp, path)
        barrier()
        return path

    return finish if async_save else finish()


def _save_pt(obj: Any, path: Path) -> None:
    """torch.save through a Python file: a full disk then raises OSError(ENOSPC) rather than torch's zip writer's
    "file write failed"."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: Path, *, model, optimizer, scheduler, rank: int, load_optimizer: bool = True,
                    load_scheduler: bool = True, frozen_ok: bool = True,
                    load_optimizer_args: bool = True) -> dict[str, Any]:
    """Restore in place; returns {'train_state': ..., 'loader_state': ...}.

    `load_optimizer_args=False` (XTuner's LoadCheckpointConfig field): the optimizer's hyperparameters (lr, betas,
    eps, weight_decay) stay those of the current config, and the LR schedule restarts from the current lr."""
    current_args = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    path = Path(path)
    if not (path / "train_state.json").is_file():
        raise FileNotFoundError(f"{path}: not a complete checkpoint (no train_state.json)")
    frozen = _frozen_names(model) if frozen_ok else set()
    opts = StateDictOptions(ignore_frozen_params=frozen_ok, strict=not frozen)  # frozen weights come from load_from
    model_sd, optim_sd = get_state_dict(model, optimizer, options=opts)
    model_sd = _without_frozen(model, model_sd, frozen_ok)
    state = {"model": model_sd, "optimizer": optim_sd} if load_optimizer else {"model": model_sd}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        reader = SafeFileSystemReader(str(path / "weights"))
        reader.read_metadata()  # an unsafe .metadata is refused here, before DCP wraps the error in its own
        dcp.load(state, storage_reader=reader)
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optimizer"] if load_optimizer else optim_sd, options=opts)
    if load_scheduler:
        scheduler.load_state_dict(load_pt(path / "lr_scheduler.pt"))
    if not load_optimizer_args:
        for group, args in zip(optimizer.param_groups, current_args):
            group.update(args)
        scheduler.base_lrs = [a.get("initial_lr", a["lr"]) for a in current_args]
    rng_file = path / f"rng_rank{rank}.pt"
    if rng_file.exists():
        _set_rng_state(load_pt(rng_file))
    return {"train_state": json.loads((path / "train_state.json").read_text()),
            "loader_state": load_pt(path / "dataloader.pt")}


def _frozen_names(model) -> set[str]:
    return {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


def _without_frozen(model, model_sd: dict, frozen_ok: bool) -> dict:
    """DCP's ignore_frozen_params walks named_parameters(), which names a tied weight once: a frozen tied lm_head
    would still be saved in full (LoRA on a tied model). Drop every name of a frozen parameter."""
    if not frozen_ok:
        return model_sd
    frozen = _frozen_names(model)
    return {k: v for k, v in model_sd.items() if k not in frozen}


def is_complete(path: Path) -> bool:
    """A checkpoint folder counts once its train_state.json, written last, is there."""
    return (Path(path) / "train_state.json").is_file()
