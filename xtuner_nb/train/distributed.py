"""Process groups that work the same in a notebook kernel (one process, no torchrun) and under torchrun, on one
node or several.

One process: no process group at all, every collective below is the identity. Under torchrun: gloo on CPU,
nccl on CUDA, and a deliberate teardown (barrier, then destroy) because gloo processes that exit with a live
group abort with "terminate called without an active exception" (measured: 2 of 3 runs).

Several nodes: checkpoints, the `.xtuner` registry and the HF export are written by some ranks and read by others
(rank 0 writes `train_state.json`, every rank its DCP shard; a resume reads them all), so `work_dir` must be one
folder on storage shared by every node. A node-local disk at the same path looks fine until the first resume reads
a checkpoint half of which is on another machine. So it is checked at start (`check_shared_work_dir`), not assumed.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    node_rank: int = 0  # torchrun's GROUP_RANK: which node (machine) this process runs on
    local_world_size: int = 1  # processes on this node

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Pick the device and, under torchrun, join the process group (idempotent, so a re-run cell is fine)."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    want_cuda = torch.cuda.is_available() if device in (None, "auto") else str(device).startswith("cuda")
    dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1)) if want_cuda else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not launched_by_torchrun():
        return DistInfo(0, 1, 0, dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend or ("cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"),
                                device_id=dev if dev.type == "cuda" else None)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev,
                    node_rank=int(os.environ.get("GROUP_RANK", 0)),
                    local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())))


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is True on any (a hook on rank 0 asked to save, say)."""
    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    return bool(all_reduce_max(torch.tensor(float(flag), device=device)).item())


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_object(obj) -> list:
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ---- several nodes ----------------------------------------------------------------------------------------------
MARKER_PREFIX = ".xtuner_shared_check_"
# how long a rank waits for rank 0's marker: NFS and Lustre can take a moment to show another client's new file
VISIBLE_WITHIN_S = 5.0


class SharedStorageError(RuntimeError):
    """Some ranks do not see the work_dir that rank 0 writes to."""


def describe_node(info: DistInfo) -> str:
    return (f"rank {info.rank}/{info.world_size} on node {info.node_rank} ({socket.gethostname()}), "
            f"local rank {info.local_rank}/{info.local_world_size}")


def check_shared_work_dir(work_dir: Path, info: DistInfo) -> None:
    """Collective under torchrun (every rank calls it; no-op in one process): rank 0 writes a marker file with a
    fresh token into `work_dir`, every rank looks for it in *its* `work_dir`, and all agree on the outcome. If any
    rank cannot read the token, every rank tears the process group down and raises, so the job ends with a
    non-zero exit code on every node instead of hanging in a later collective."""
    if not info.distributed:
        return
    work_dir = Path(work_dir)
    token = None
    if info.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        (work_dir / f"{MARKER_PREFIX}{token}").write_text(token, encoding="utf-8")
    token = broadcast_object(token)
    marker = work_dir / f"{MARKER_PREFIX}{token}"
    seen = _read_within(marker, token, VISIBLE_WITHIN_S)
    blind = [b for b in all_gather_object(None if seen else describe_node(info)) if b is not None]
    if info.is_main:
        marker.unlink(missing_ok=True)
    if blind:
        teardown_distributed()
        raise SharedStorageError(
            f"work_dir must be on storage shared by all nodes: rank 0 ({socket.gethostname()}) wrote {marker} and "
            f"these ranks did not see it in their work_dir within {VISIBLE_WITHIN_S:.0f} s: {'; '.join(blind)}. "
            f"Mount one shared filesystem (NFS, Lustre, ...) at the same path on every node and point work_dir at it.")


def _read_within(marker: Path, token: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if marker.read_text(encoding="utf-8") == token:
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
