"""Room on the disk for a checkpoint: what a save needs, the warning before a save that cannot fit, and the error
that says the disk is full when a save ran out of space.

torch does not say it: DCP's zip writer turns the OSError(ENOSPC) of a full disk into "[enforce fail at
inline_container.cc:672] unexpected pos 704 vs 598" (the OSError survives only as the exception's context, and
inside DCP's CheckpointException, per rank). `space_error` digs it out.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.api import CheckpointException

_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(OSError):
    """A save ran out of disk space (a full disk or a quota). The message names the folder, the space the
    checkpoint needed and what was free, and the intact checkpoint that remains."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


def free_bytes(path: Path) -> int:
    """Free space for this user on the filesystem that holds `path` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def tensor_bytes(tree: Any) -> int:
    """Bytes of the tensors in nested dicts/lists, as this rank holds them (a DTensor: its local shard)."""
    if isinstance(tree, torch.Tensor):
        local = tree.to_local() if hasattr(tree, "to_local") else tree
        return local.numel() * local.element_size()
    if isinstance(tree, dict):
        return sum(tensor_bytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(tensor_bytes(v) for v in tree)
    return 0


def size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def space_error(exc: BaseException) -> OSError | None:
    """The OSError of a full disk or a quota behind `exc`: itself, its cause or context, or a rank's failure inside
    DCP's CheckpointException (at any depth); None when space was not the problem."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _SPACE_ERRNOS:
            return e
        todo += [e.__cause__, e.__context__]
        for failure in (getattr(e, "failures", None) or {}).values():  # {rank: exception or (exception, trace)}
            todo.append(failure[0] if isinstance(failure, tuple) else failure)
    return None


def short_space_warning(name: str, folder: Path, needed: int, free: int) -> str | None:
    """The warning before a save, when what is free is below what the checkpoint needs; None when it fits."""
    if free >= needed:
        return None
    return (f"Only {size_text(free)} free in {folder}, and checkpoint {name} needs about {size_text(needed)}: this "
            f"save will fail for lack of space. Free space on that disk (while it saves, a run needs room for one "
            f"checkpoint more than checkpoint_maxkeep keeps: the oldest is removed once the new one is complete).")


def disk_full_error(name: str, folder: Path, needed: int, free: int, intact: Path | None,
                    cause: BaseException) -> DiskFullError:
    """The error of a save that ran out of space: what was needed and free, what remains, how to go on."""
    remains = (f"The newest intact checkpoint is {intact}." if intact is not None
               else "No earlier checkpoint of this run exists.")
    resume = f"; a new Trainer with auto_resume=True continues from {intact.name}" if intact is not None else ""
    said = space_error(cause) or cause
    return DiskFullError(
        f"The disk is full: checkpoint {name} could not be written in {folder} (it needs about "
        f"{size_text(needed)}; {size_text(free)} were free when the save began). {remains} The partial "
        f"{name}.tmp was removed. The trained state is still in the Trainer: free space on that disk (or move "
        f"work_dir), then `trainer.save_checkpoint()` saves it and `trainer.fit()` goes on{resume}. "
        f"({type(said).__name__}: {str(said).strip()[:200]})")


class SaveRoom:
    """The disk space of one save into `tmp`: the warning before it, and `guard()`, which turns a failure for lack
    of space into `DiskFullError` and removes the partial folder. What the save needs is the size of `intact`, the
    newest checkpoint of the run (each save of a run writes the same files), else `tensors`, the bytes of every
    rank's tensors (DCP's headers add a few per cent)."""

    def __init__(self, tmp: Path, tensors: int, intact: Path | None, rank: int):
        self.tmp, self.intact, self.rank = tmp, intact, rank
        self.needed = folder_bytes(intact) if intact is not None else tensors
        self.name = tmp.name.removesuffix(".tmp")
        self.free = free_bytes(tmp)

    def warn_if_short(self, logger: logging.Logger) -> None:
        message = short_space_warning(self.name, self.tmp.parent, self.needed, self.free)
        if message:
            logger.warning(message)

    @contextlib.contextmanager
    def guard(self):
        try:
            yield
        except (Exception, CheckpointException) as exc:  # DCP's is a BaseException
            if space_error(exc) is None and self.free >= self.needed:
                raise
            if self.rank == 0:  # give the space back at once: the user frees the rest
                shutil.rmtree(self.tmp, ignore_errors=True)
            raise disk_full_error(self.name, self.tmp.parent, self.needed, self.free, self.intact, exc) from exc
