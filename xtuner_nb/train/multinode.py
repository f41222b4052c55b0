"""What several nodes add to one: a work_dir that every node must see, and which node a rank runs on.

Checkpoints, the `.xtuner` registry and the HF export are written by some ranks and read by others (rank 0 writes
`train_state.json`, every rank its DCP shard; a resume reads them all), so `work_dir` must be one folder on storage
shared by every node. A node-local disk at the same path looks fine until the first resume reads a checkpoint half
of which is on another machine. So it is checked at start, not assumed.
"""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

from .dist import DistInfo, all_gather_object, broadcast_object, teardown_distributed

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
