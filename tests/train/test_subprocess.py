"""Real processes: SIGINT at a random step, torchrun with 2 CPU ranks (FSDP2 + gloo), the command line."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("fit_script.py")
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _losses(text: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in re.findall(r"^LOSS (\d+) (\S+)$", text, re.M)}


def _run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600, **kw)


def test_sigint_at_a_random_step_saves_and_resume_matches(tiny_ckpt, tmp_path):
    over = {"total_step": 8}
    ref = _run([sys.executable, str(SCRIPT), str(tiny_ckpt), str(tmp_path / "ref"), json.dumps(over)])
    assert ref.returncode == 0, ref.stderr
    ref_losses = _losses(ref.stdout)
    assert len(ref_losses) == 8

    seed = int(os.environ.get("XTUNER_NB_TEST_SEED", "17"))  # a fixed seed; set it to try other stop steps
    stop_after = random.Random(seed).randint(1, 5)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tiny_ckpt), str(tmp_path / "run"), json.dumps(over),
                             "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"LOSS {stop_after} "):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    out = "".join(seen) + out
    assert proc.returncode == 130, f"seed {seed}, SIGINT after step {stop_after}:\n{err}"  # non-zero after saving
    done = max(_losses(out))
    assert stop_after <= done < 8
    assert f"Training interrupted" in err and "auto_resume=True" in err
    ckpts = sorted((tmp_path / "run").glob("*/checkpoints/ckpt-step-*"))
    assert [p.name for p in ckpts] == [f"ckpt-step-{done}"]

    resumed = _run([sys.executable, str(SCRIPT), str(tiny_ckpt), str(tmp_path / "run"),
                    json.dumps({**over, "auto_resume": True})])
    assert resumed.returncode == 0, resumed.stderr
    after = _losses(resumed.stdout)
    assert sorted(after) == list(range(done + 1, 9))
    for step, loss in after.items():
        assert loss == pytest.approx(ref_losses[step], abs=1e-6), step


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_torchrun_two_cpu_ranks_matches_one_rank(tiny_ckpt, tmp_path, tied):
    """Under torchrun the model is built on the meta device and each rank loads only its shards; the losses must
    still equal one process's (which builds the whole model), with separate and with tied embeddings."""
    # the tiny model ties lm_head to the embedding (as Qwen3 0.6B-4B): the tie must survive the meta build,
    # sharding and to_empty; 8B and larger keep a separate lm_head
    if not tied:
        from xtuner_nb.model import Qwen3DenseTinyConfig, make_tiny_checkpoint

        tiny_ckpt = make_tiny_checkpoint(tmp_path / "untied", Qwen3DenseTinyConfig(tie_word_embeddings=False), seed=0)
    over = {"total_step": 3, "global_batch_size": 2}
    one = _run([sys.executable, str(SCRIPT), str(tiny_ckpt), str(tmp_path / "one"), json.dumps(over)])
    assert one.returncode == 0, one.stderr
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                str(SCRIPT), str(tiny_ckpt), str(tmp_path / "two"), json.dumps(over)])
    assert two.returncode == 0, two.stderr[-3000:]  # the exit code too: teardown must be clean
    assert "shard by shard (meta-device build, 2 ranks)" in two.stderr
    assert "shard by shard" not in one.stderr
    assert f"TIED {tied}" in one.stdout and f"TIED {tied}" in two.stdout
    l1, l2 = _losses(one.stdout), _losses(two.stdout)
    assert sorted(l2) == [1, 2, 3]
    assert l2[1] == pytest.approx(l1[1], abs=1e-5)  # step-1 loss does not depend on the rank count
    for s in (2, 3):
        assert l2[s] == pytest.approx(l1[s], abs=1e-4)
    assert list((tmp_path / "two").glob("*/hf-3/config.json"))


def test_cli_sft_and_config_file(tiny_ckpt, tmp_path):
    from xtuner_nb.datasets.demo import demo_data_path

    cli = [sys.executable, "-m", "xtuner_nb.train.cli", "sft"]
    r = _run(cli + ["--load-from", str(tiny_ckpt), "--dataset", str(demo_data_path("train")), "--chat-template",
                    "qwen3", "--total-step", "2", "--work-dir", str(tmp_path / "a"), "--pack-max-length", "256",
                    "--max-length", "256", "--device", "cpu"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Step 2/2" in r.stderr and list((tmp_path / "a").glob("*/hf-latest/model*.safetensors"))
    cfg_file = tmp_path / "run.py"
    cfg_file.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.train.helpers import small_config\n"
        f"trainer = small_config(__import__('pathlib').Path({str(tiny_ckpt)!r}), {str(tmp_path / 'b')!r}, total_step=1)\n")
    r = _run(cli + ["--config", str(cfg_file)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Step 1/1" in r.stderr
    bad = _run(cli + ["--config", str(cfg_file), "--total-step", "3"])
    assert bad.returncode == 2 and "cannot be mixed" in bad.stderr
