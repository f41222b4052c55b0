"""Chunk loss inside an FSDP2 (fully_shard) forward, 2 real CPU ranks over gloo: grads equal unsharded eager."""

import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("fsdp2_chunk_loss_worker.py")


def test_chunk_loss_under_fsdp2_two_ranks(tmp_path):
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), "2", str(store)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out}"
        assert f"rank {rank}: grads match" in out
