"""Several nodes on loopback: each "node" is its own torchrun agent (c10d rendezvous on 127.0.0.1, gloo on CPU).

Two nodes x one process train like one process and resume exactly; HSDP (2 replicas x 2 shards) trains like one
process and its checkpoint resumes on other layouts; a node that cannot see work_dir stops the whole job.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.helpers import small_config

SCRIPT = Path(__file__).with_name("fit_script.py")
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
# the same global batch everywhere: 4 packs per step, spread over 1, 2 or 4 processes. The length-grouped sampler
# (the default) orders packs by groups of `dp_size`, so its steps differ between layouts by design; the plain
# seeded permutation gives every layout the same packs in each step.
OVER = {"total_step": 3, "global_batch_size": 4, "checkpoint_interval": 2, "group_by_length": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes(tiny_ckpt: Path, work_dirs: list[Path], over: dict, nproc_per_node: int = 1, timeout: float = 300):
    """Start one torchrun agent per work_dir (a node each), all joining one c10d rendezvous; wait for every one.
    Returns [(exit code, (stdout, stderr))] per node."""
    endpoint = f"127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={len(work_dirs)}",
           f"--nproc_per_node={nproc_per_node}", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}",
           "--rdzv_id=loopback", str(SCRIPT), str(tiny_ckpt)]
    procs = [subprocess.Popen(cmd + [str(w), json.dumps(over)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV, cwd=REPO) for w in work_dirs]
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
        return [(p.returncode, out) for p, out in zip(procs, outputs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _losses(text: str) -> dict[int, str]:
    return {int(s): v for s, v in re.findall(r"^LOSS (\d+) (\S+)$", text, re.M)}


def _all_ok(runs) -> tuple[str, str]:
    for code, (out, err) in runs:
        assert code == 0, err[-3000:]  # the exit code of every node: teardown must be clean
    return "".join(r[1][0] for r in runs), "".join(r[1][1] for r in runs)


@pytest.fixture(scope="module")
def one_process(tiny_ckpt, tmp_path_factory):
    """The reference: one process, the 4 packs of each step accumulated."""
    from xtuner_nb.train import Trainer

    trainer = Trainer.from_config(small_config(tiny_ckpt, tmp_path_factory.mktemp("one"), **OVER),
                                  show_dashboard=False)
    trainer.fit()
    rows = trainer.history.set_index("step")
    trainer.close()
    return rows


def _assert_same_losses(got: dict[int, str], ref, steps) -> None:
    assert sorted(got) == list(steps)
    for step in steps:
        tol = 1e-5 if step == 1 else 1e-4  # step 1: same weights, only the sum order differs; later: fp32 noise
        assert float(got[step]) == pytest.approx(ref.loc[step, "loss/reduced_llm_loss"], abs=tol), step


@pytest.mark.slow
def test_two_nodes_on_loopback_train_like_one_process_and_resume_exactly(tiny_ckpt, tmp_path, one_process):
    work = tmp_path / "shared"
    out, err = _all_ok(_nodes(tiny_ckpt, [work, work], OVER))
    first = _losses(out)
    _assert_same_losses(first, one_process, [1, 2, 3])
    exp = next(work.glob("[0-9]*"))
    # one tracker (global rank 0); every rank its own log file, which says which node it ran on
    assert sorted(p.name for p in (exp / "logs/exp_tracking").iterdir()) == ["rank0"]
    logs = {r: (exp / f"logs/rank{r}.log").read_text() for r in (0, 1)}
    assert {re.search(r"rank \d/2 on node (\d)", logs[r]).group(1) for r in (0, 1)} == {"0", "1"}
    # throughput over both nodes, per device: the two ranks' tokens add up to the one process's
    rows = [json.loads(line) for line in (exp / "logs/exp_tracking/rank0/tracker.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["runtime_info/total_text_tokens"] == one_process.loc[row["step"], "runtime_info/text_tokens"]
        assert row["runtime_info/text_tokens"] < row["runtime_info/total_text_tokens"]
        assert row["runtime_info/tgs"] == pytest.approx(
            row["runtime_info/total_text_tokens"] / row["time/step_time"] / 2, rel=1e-6)

    # the job died while saving step 3 and rank 1's shard of ckpt-step-3 is cut short: rank 1 finds it, both nodes
    # go back to ckpt-step-2 together, and auto_resume replays step 3 bit for bit
    shard = exp / "checkpoints/ckpt-step-3/weights/__1_0.distcp"
    os.truncate(shard, shard.stat().st_size // 2)
    out, err = _all_ok(_nodes(tiny_ckpt, [work, work], {**OVER, "auto_resume": True}))
    assert f"checkpoint {exp / 'checkpoints/ckpt-step-3'} is damaged: weights/__1_0.distcp has " in err
    assert "resumed from" in err and "ckpt-step-2 at step 2" in err
    assert _losses(out) == {3: first[3]}
    assert (exp / "checkpoints/ckpt-step-3.damaged").is_dir()
    assert "weights/__1_0.distcp" in (exp / "logs/rank1.log").read_text()  # every rank knows why


@pytest.mark.slow
def test_hsdp_two_replicas_of_two_shards_then_resume_on_other_layouts(tiny_ckpt, tmp_path, one_process):
    from xtuner_nb.train import Trainer

    hsdp = {**OVER, "fsdp_cfg": {"recompute_ratio": 0.0, "hsdp_sharding_size": 2}}
    # two nodes of two processes: shards within a node, replicas across the nodes
    out, err = _all_ok(_nodes(tiny_ckpt, [tmp_path / "hsdp"] * 2, hsdp, nproc_per_node=2))
    assert "MESH (2, 2) ('hsdp_replicate', 'hsdp_shard') (Replicate(), Shard(dim=0))" in out
    first = _losses(out)
    _assert_same_losses(first, one_process, [1, 2, 3])
    ckpt2 = next((tmp_path / "hsdp").glob("*/checkpoints/ckpt-step-2"))

    # the same checkpoint on 1 replica x 4 shards (one node of four processes)
    four = {**OVER, "fsdp_cfg": {"recompute_ratio": 0.0, "hsdp_sharding_size": 4},
            "load_checkpoint_cfg": {"checkpoint_path": str(ckpt2)}}
    out, err = _all_ok(_nodes(tiny_ckpt, [tmp_path / "four"], four, nproc_per_node=4))
    assert "MESH (1, 4) ('hsdp_replicate', 'hsdp_shard') (Replicate(), Shard(dim=0))" in out
    assert f"resumed from {ckpt2} at step 2" in err
    _assert_same_losses(_losses(out), one_process, [3])
    assert float(_losses(out)[3]) == pytest.approx(float(first[3]), abs=1e-5)

    # and in one process (this one)
    cfg = small_config(tiny_ckpt, tmp_path / "single", **{**OVER, "load_checkpoint_cfg": {"checkpoint_path": ckpt2}})
    single = Trainer.from_config(cfg, show_dashboard=False).fit()
    assert list(single.history["step"]) == [3]
    resumed = single.history.set_index("step").loc[3, "loss/reduced_llm_loss"]
    single.close()
    assert resumed == pytest.approx(float(first[3]), abs=1e-5)
    assert resumed == pytest.approx(one_process.loc[3, "loss/reduced_llm_loss"], abs=1e-4)


def test_a_node_that_cannot_see_work_dir_stops_the_job(tiny_ckpt, tmp_path):
    """Each node gets its own folder, as with a node-local disk: every node exits non-zero with the message."""
    runs = _nodes(tiny_ckpt, [tmp_path / "node_a", tmp_path / "node_b"], {"total_step": 1}, timeout=120)
    for code, (out, err) in runs:
        assert code != 0
        assert "work_dir must be on storage shared by all nodes" in err, err[-3000:]
    assert "LOSS" not in "".join(r[1][0] for r in runs)


def test_mfu_counts_every_device():
    """In one process the sum over ranks is this rank's numbers: tgs and MFU are then divided by the devices."""
    import torch

    from xtuner_nb.model import Qwen3DenseTinyConfig
    from xtuner_nb.train.flops import flops_per_token
    from xtuner_nb.train.metrics import step_throughput

    cfg = Qwen3DenseTinyConfig()
    got = step_throughput(1000, 100.0, 2.0, cfg, world_size=4, peak_flops=1e12, device=torch.device("cpu"))
    assert got["runtime_info/total_text_tokens"] == 1000
    assert got["runtime_info/tgs"] == pytest.approx(1000 / 2.0 / 4)
    assert got["runtime_info/mfu"] == pytest.approx(1000 * flops_per_token(cfg, 100.0) / 2.0 / (4 * 1e12))
    assert step_throughput(1000, 100.0, 2.0, cfg, 4, None, torch.device("cpu"))["runtime_info/mfu"] is None
