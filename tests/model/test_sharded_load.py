"""Sharded loading under torchrun with shards of unequal size (3 ranks, dimensions that 3 does not divide)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("sharded_load_script.py")
REPO = Path(__file__).resolve().parents[2]


def test_three_ranks_read_their_own_rows_of_uneven_tensors(tmp_path):
    from xtuner_nb.model import MHAConfig, Qwen3DenseTinyConfig, make_tiny_checkpoint

    # vocab 2045 = 682 + 682 + 681 rows, intermediate 385 = 129 + 129 + 127; untied, so lm_head is its own tensor
    cfg = Qwen3DenseTinyConfig(vocab_size=2045, intermediate_size=385, tie_word_embeddings=False,
                               attention=MHAConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=32))
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3",
                           str(SCRIPT), str(ckpt), str(out)], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = {int(f.stem.removeprefix("rank-")): float(f.read_text()) for f in out.glob("rank-*.txt")}
    assert sorted(found) == [0, 1, 2]
    assert all(d == 0.0 for d in found.values()), found  # fp32 file into fp32 shards: bit-exact
