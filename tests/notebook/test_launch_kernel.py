"""`launch(config, 2)` from a real kernel (nbclient), 2 gloo ranks on CPU under real torchrun (issue 26).

One kernel runs, cell by cell: a 1-process run and a 2-rank launch of the same global batch (the losses must agree);
a launch stopped by the kernel's interrupt (SIGINT to the kernel, as ■ sends) after step 2, which must end with one
checkpoint and resume exactly, in 2 processes and in 1; the run loaded back in the kernel; a launch whose rank 1
raises, whose error must name rank 1 with its traceback, and one whose rank 1 is killed; a launch under
`await alaunch(...)` stopped by ■ too. A second kernel starts a long launch and is shut down: its
processes must go with it. After every case, each pid the run had is checked to be gone.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from tests.notebook.kernel_frames import recording_client

pytest.importorskip("nbclient")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FAULT = REPO / "tests" / "train" / "launch_fault"  # its sitecustomize makes one worker raise (env-selected)

SETUP = f"""\
import json, os, shutil, signal, sys, threading, time
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from tests.train.eval_script import eval_fields
from tests.train.helpers import small_config
from xtuner_nb.model import make_tiny_checkpoint
from xtuner_nb.train import Trainer
from xtuner_nb.train.launcher import Launch, launch

tiny = make_tiny_checkpoint(Path("tiny"), seed=0)
def cfg(name, **over):
    return small_config(tiny, Path(name), **{{"total_step": 6, "global_batch_size": 2, **over}})
def losses(rows):
    return {{r["step"]: r["loss/reduced_llm_loss"] for r in rows if "loss/reduced_llm_loss" in r}}
def interrupt_after(work_dir, step):
    # the kernel's ■: SIGINT to the kernel process, once rank 0 has reported `step`
    def watch():
        while True:
            for events in Path(work_dir).glob("launches/*/events/rank0.jsonl"):
                if any(f'"step": {{step}},' in line for line in events.read_text().splitlines()):
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            time.sleep(0.02)
    threading.Thread(target=watch, daemon=True).start()
"""
ONE = """\
one = Trainer.from_config(cfg("one"), show_dashboard=False).fit()
print("ONE", json.dumps(losses(one.rows)))
one.close()
"""
TWO = """\
two = launch(cfg("two", **eval_fields()), 2)  # evaluated at its last step, after the training
print("TWO", json.dumps({"losses": losses(two.rows), "pids": sorted(two.pids), "reason": two.end_reason,
                         "ranks": two.history["ranks/tokens_per_s"].iloc[-1],
                         "eval_loss": two.history["eval/loss"].iloc[-1]}))
"""
STOP = """\
interrupt_after("stopped", 2)
stopped = launch(cfg("stopped"), 2)
print("STOP", json.dumps({"reason": stopped.end_reason, "step": stopped.state.step, "pids": sorted(stopped.pids),
                          "ckpts": sorted(p.name for p in stopped.exp_dir.glob("checkpoints/ckpt-step-*"))}))
"""
RESUME = """\
from xtuner_nb.train import LoadCheckpointConfig
# in one process, from the checkpoint the 2 ranks wrote (resharded); then in 2 processes with auto_resume
ckpt = next(stopped.exp_dir.glob("checkpoints/ckpt-step-*"))
alone = Trainer.from_config(cfg("stopped_one", load_checkpoint_cfg=LoadCheckpointConfig(checkpoint_path=ckpt)),
                            show_dashboard=False)
first = alone.cur_step
alone.fit()
resumed = launch(cfg("stopped", auto_resume=True), 2)
print("RESUME", json.dumps({"two": losses(resumed.rows), "one": losses(alone.rows), "one_from": first,
                            "pids": sorted(resumed.pids)}))
alone.close()
"""
AFTER = """\
back = two.load_trainer(show_dashboard=False)
hf = back.export_hf()
evaluated = back.evaluate()
from xtuner_nb.notebook import chat
answer = chat(two.exp_dir / "hf-latest", prompt="Hi", max_new_tokens=4)
print("AFTER", json.dumps({"step": back.cur_step, "history": len(two.history), "hf": str(hf),
                           "plot": type(two.plot()).__name__, "answer": str(answer)[:40],
                           "eval_loss": evaluated["eval/loss"]}))
back.close()
"""
CRASH = f"""\
os.environ.update(PYTHONPATH={str(FAULT)!r}, XTUNER_NB_TEST_CRASH_RANK="1", XTUNER_NB_TEST_CRASH_STEP="3")
launch(cfg("crash"), 2)
"""
CRASH_PIDS = """\
for k in ("PYTHONPATH", "XTUNER_NB_TEST_CRASH_RANK", "XTUNER_NB_TEST_CRASH_STEP"):
    os.environ.pop(k)
print("CRASH", json.dumps({"pids": sys.last_value.pids, "rank": sys.last_value.rank}))
"""
KILL = """\
killed_at = []
def kill_rank_after(work_dir, rank, step):
    def watch():
        while True:
            events = {int(f.stem[4:]): f.read_text() for f in Path(work_dir).glob("launches/*/events/rank*.jsonl")}
            if f'"step": {step},' in events.get(0, "") and rank in events:
                pid = json.loads(events[rank].splitlines()[0])["pid"]
                os.kill(pid, signal.SIGKILL)
                killed_at.append(time.time())
                return
            time.sleep(0.02)
    threading.Thread(target=watch, daemon=True).start()
kill_rank_after("killed", 1, 2)
try:
    launch(cfg("killed", total_step=500), 2)
finally:
    ended_at = time.time()
"""
KILL_PIDS = """\
print("KILL", json.dumps({"pids": sys.last_value.pids, "rank": sys.last_value.rank,
                          "seconds": ended_at - killed_at[0]}))
"""
ASTOP = """\
from xtuner_nb.train import alaunch
interrupt_after("astop", 2)  # under `await alaunch(...)`, where ■ would otherwise cancel the cell's task
astop = await alaunch(cfg("astop"), 2)
print("ASTOP", json.dumps({"reason": astop.end_reason, "step": astop.state.step, "pids": sorted(astop.pids),
                           "ckpts": sorted(p.name for p in astop.exp_dir.glob("checkpoints/ckpt-step-*"))}))
"""
LONG = """\
long = Launch(cfg("long", total_step=500), 2)
while len(long.rows) < 2:
    assert not long.poll(), "the long run ended early"
    time.sleep(0.1)
print("LONG", json.dumps({"pids": sorted(long.pids), "kernel": os.getpid()}))
"""


def _printed(nb, index: int, tag: str) -> dict:
    text = "".join(o.get("text", "") for o in nb.cells[index].outputs if o.get("output_type") == "stream")
    line = next(l for l in text.splitlines() if l.startswith(tag + " "))
    return json.loads(line[len(tag) + 1:])


def _gone(pids: list[int], within: float = 15.0) -> list[int]:
    """The pids among `pids` still running after `within` seconds (zombies count as gone: they hold nothing)."""
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _kernel_run(tmp_path, cells: list[str], expect_error: set[int] = frozenset(), kill_kernel: bool = False):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = recording_client(nb, tmp_path, timeout=600)
    errors, seconds = {}, {}
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            t0 = time.monotonic()
            try:
                client.execute_cell(cell, i, execution_count=i + 1)
            except Exception as exc:  # nbclient's CellExecutionError
                if i not in expect_error:
                    raise
                errors[i] = str(exc)
            seconds[i] = round(time.monotonic() - t0, 1)
        if kill_kernel:  # a kernel that dies at once (SIGKILL: no Python code runs), as a hung one restarted
            os.kill(_printed(nb, len(cells) - 1, "LONG")["kernel"], 9)
    return nb, client, errors, seconds


def test_launch_from_a_kernel_trains_like_one_process_stops_resumes_and_fails_cleanly(tmp_path):
    cells = [SETUP, ONE, TWO, STOP, RESUME, AFTER, CRASH, CRASH_PIDS, KILL, KILL_PIDS, ASTOP]
    nb, client, errors, seconds = _kernel_run(tmp_path, cells, expect_error={6, 8})
    print("cell seconds", seconds)

    one = {int(k): v for k, v in _printed(nb, 1, "ONE").items()}
    two = _printed(nb, 2, "TWO")
    two_losses = {int(k): v for k, v in two["losses"].items()}
    print("1 process:", one, "\n2 ranks:  ", two_losses)
    assert sorted(two_losses) == list(range(1, 7)) and two["reason"] == "finished"
    for step in one:  # the same global batch: the same losses (as tests/train/test_subprocess.py allows)
        assert two_losses[step] == pytest.approx(one[step], abs=1e-4), step
    assert len(two["ranks"]) == 2 and all(r is not None for r in two["ranks"])
    assert two["eval_loss"] > 0  # the workers' evaluation reached the kernel (on_eval_end, replayed)
    assert not _gone(two["pids"]), "processes of the finished launch left behind"
    # the dashboard drew the launched run in its cell: frames, and every rank's figures on the progress line
    outputs = nb.cells[2].outputs
    assert any("image/png" in (o.get("data") or {}) for o in outputs)
    html = " ".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "rank 0:" in html and "rank 1:" in html and "tok/s" in html

    stop = _printed(nb, 3, "STOP")
    print("stopped:", stop)
    assert stop["reason"] == "stopped" and 2 <= stop["step"] < 6
    assert stop["ckpts"] == [f"ckpt-step-{stop['step']}"]  # one checkpoint, written by both ranks together
    assert not _gone(stop["pids"])

    resume = _printed(nb, 4, "RESUME")
    resumed = {int(k): v for k, v in resume["two"].items()}
    alone = {int(k): v for k, v in resume["one"].items() if int(k) > stop["step"]}
    print("resumed in 2:", resumed, "\nresumed in 1:", alone)
    assert sorted(resumed)[0] <= stop["step"] + 1 and max(resumed) == 6  # history up to the stop, then the rest
    for step in range(stop["step"] + 1, 7):
        assert resumed[step] == pytest.approx(two_losses[step], abs=1e-6), step  # exactly the uninterrupted run
        assert alone[step] == pytest.approx(two_losses[step], abs=1e-4), step  # in one process: same global batch
    assert resume["one_from"] == stop["step"]
    assert not _gone(resume["pids"])

    after = _printed(nb, 5, "AFTER")
    assert after["step"] == 6 and after["history"] == 6 and after["plot"] == "Figure"
    assert Path(after["hf"], "config.json").exists()
    # evaluate() in the kernel, on the model loaded from the 2-rank checkpoint: the eval loss the ranks measured
    assert after["eval_loss"] == pytest.approx(two["eval_loss"], abs=1e-4)

    crash = _printed(nb, 7, "CRASH")
    assert crash["rank"] == 1
    assert "rank 1 exited with code 1" in errors[6] and "injected fault: rank 1 fails at step 3" in errors[6]
    assert not _gone(crash["pids"]), "a process of the crashed launch was left behind"

    kill = _printed(nb, 9, "KILL")
    print("killed rank 1:", kill, errors[8][-600:])
    assert kill["rank"] == 1 and "rank 1 was killed by signal 9 (SIGKILL)" in errors[8]
    assert kill["seconds"] < 30  # torchrun stopped rank 0 and the cell returned
    assert not _gone(kill["pids"]), "a process of the launch whose rank 1 was killed was left behind"
    astop = _printed(nb, 10, "ASTOP")
    print("stopped under alaunch:", astop)
    assert astop["reason"] == "stopped" and 2 <= astop["step"] < 6 and astop["ckpts"] == [f"ckpt-step-{astop['step']}"]
    assert not _gone(astop["pids"])
    print("no orphans: finished", two["pids"], "stopped", stop["pids"], "resumed", resume["pids"],
          "crashed", crash["pids"], "killed", kill["pids"])


@pytest.mark.parametrize("end", ["shutdown", "SIGKILL"])
def test_a_kernel_that_shuts_down_or_dies_ends_the_launched_workers(tmp_path, end):
    nb, client, _, seconds = _kernel_run(tmp_path, [SETUP, LONG], kill_kernel=end == "SIGKILL")
    pids = _printed(nb, 1, "LONG")["pids"]
    t0 = time.monotonic()
    assert len(pids) >= 3  # torchrun and its 2 workers
    alive = _gone(pids, within=20)
    assert not psutil.pid_exists(_printed(nb, 1, "LONG")["kernel"]) or end == "shutdown"
    print(f"kernel {end}: pids {pids} gone {time.monotonic() - t0:.1f} s after it returned; cells {seconds}")
    assert not alive, f"left running after the kernel shut down: {alive}"
    steps = [json.loads(l)["step"] for l in next(tmp_path.glob("long/launches/*/events/rank0.jsonl")).read_text()
             .splitlines() if '"step_end"' in l]
    assert max(steps) < 500  # it was killed mid-run, not finished
