"""torchrun with 2 CPU ranks and the default FSDPConfig (recompute_ratio=1.0): a save requested by a rank-0 hook is
agreed by both ranks, rank 0 alone tokenizes into an empty cache, and the losses equal one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("hazards_script.py")
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(REPO)}


def _run(args):
    return subprocess.run(args, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=400)


@pytest.mark.slow
def test_rank0_save_request_cache_and_default_recompute_under_torchrun(tiny_ckpt, tmp_path):
    one_out, two_out = tmp_path / "one_out", tmp_path / "two_out"
    one_out.mkdir(), two_out.mkdir()
    one = _run([sys.executable, str(SCRIPT), str(tiny_ckpt), str(tmp_path / "one"), str(tmp_path / "cache1"),
                str(one_out), "0"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(SCRIPT),
                str(tiny_ckpt), str(tmp_path / "two"), str(tmp_path / "cache2"), str(two_out), "1"])
    assert two.returncode == 0, two.stderr[-3000:]  # no hang in the save barrier, a clean teardown
    r0, r1 = (json.loads((two_out / f"rank{r}.json").read_text()) for r in (0, 1))
    ref = json.loads((one_out / "rank0.json").read_text())
    assert r0["recompute"] == 1.0
    # the hook ran on rank 0 only, yet the checkpoint of step 1 is complete (both ranks wrote their shards)
    from xtuner_nb.train.checkpoint.run_dir import list_checkpoints

    exp = next((tmp_path / "two").glob("2*"))
    assert [p.name for p in list_checkpoints(exp)] == ["ckpt-step-1"]
    # rank 0 tokenized into the empty cache; rank 1 waited and read it
    assert (r0["from_cache"], r1["from_cache"]) == ([False], [True])
    assert sorted(r0["losses"]) == ["1", "2"]
    for step, loss in ref["losses"].items():
        assert r0["losses"][step] == pytest.approx(loss, abs=1e-4), step
