"""Faults a real machine brings: a damaged checkpoint, a disk that fills up during a save, and a hook that fails
after the run already did (the first error must stay the one raised)."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.full_disk_script import RUN  # the same run on a full disk as here
from tests.train.helpers import losses, small_config

SCRIPT = Path(__file__).with_name("full_disk_script.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fourteen_steps(tiny_ckpt, tmp_path_factory):
    """An uninterrupted run of 14 steps, checkpoints every 4: its losses, and its experiment folder (which only
    the damaged-checkpoint test changes)."""
    from xtuner_nb.train import Trainer

    trainer = Trainer.from_config(small_config(tiny_ckpt, tmp_path_factory.mktemp("fourteen"), **RUN),
                                  show_dashboard=False)
    trainer.fit()
    ran = losses(trainer), trainer.exp_dir, trainer.work_dir
    trainer.close()
    return ran


def _cut_largest_file_in_half(checkpoint):
    largest = max((p for p in checkpoint.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    os.truncate(largest, largest.stat().st_size // 2)
    return largest.relative_to(checkpoint).as_posix()


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tiny_ckpt, fourteen_steps):
    """The run died during step 13 (ckpt-step-14 never written) and a full disk cut ckpt-step-12's largest file in
    half: auto_resume names the damage, resumes from ckpt-step-8 and trains steps 9-14 exactly as the run did."""
    from xtuner_nb.train import LoadCheckpointConfig, ResumeConfig, Trainer
    from xtuner_nb.train.checkpoint import run_dir
    from xtuner_nb.train.checkpoint.manifest import DamagedCheckpointError, find_damage

    reference, exp, work_dir = fourteen_steps
    ckpts = exp / "checkpoints"
    shutil.rmtree(ckpts / "ckpt-step-14")
    cut = _cut_largest_file_in_half(ckpts / "ckpt-step-12")
    assert cut == "weights/__0_0.distcp"
    assert find_damage(ckpts / "ckpt-step-12").startswith(f"{cut} has ")

    again = Trainer.from_config(small_config(tiny_ckpt, work_dir, auto_resume=True, **RUN), show_dashboard=False)
    assert again.exp_dir == exp and again.cur_step == 8
    warning = (exp / "logs/rank0.log").read_text()
    assert f"checkpoint {ckpts / 'ckpt-step-12'} is damaged: {cut} has " in warning
    assert f"auto_resume goes back to the newest intact checkpoint, {ckpts / 'ckpt-step-8'}" in warning
    assert (ckpts / "ckpt-step-12.damaged").is_dir()  # set aside, not deleted
    again.fit()
    assert losses(again) == reference  # exactly the uninterrupted run's
    assert find_damage(ckpts / "ckpt-step-12") is None  # step 12 written again, intact

    # a checkpoint named explicitly is refused when damaged, naming it and the file
    damaged = ckpts / "ckpt-step-12.damaged"
    explicit = small_config(tiny_ckpt, work_dir / "explicit", load_checkpoint_cfg=LoadCheckpointConfig(
        checkpoint_path=damaged), **RUN)
    with pytest.raises(DamagedCheckpointError, match=rf"checkpoint {damaged} is damaged: {cut} has \d+ bytes"):
        Trainer.from_config(explicit, show_dashboard=False)
    xtuner_style = small_config(tiny_ckpt, work_dir / "xtuner", resume_cfg=ResumeConfig(resume_from=damaged), **RUN)
    with pytest.raises(DamagedCheckpointError, match=rf"{damaged} is damaged: {cut}"):
        run_dir.resume_checkpoint(xtuner_style, exp, again.dist, again.logger)
    again.close()

    # bits changed in place (the size is right): the checksum finds it
    weights = ckpts / "ckpt-step-4" / "weights" / "__0_0.distcp"
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        f.write(b"\0" * 64)
    assert find_damage(ckpts / "ckpt-step-4").startswith("weights/__0_0.distcp is not what the save wrote (checksum ")


def _in_its_own_small_disk(tiny_ckpt, disk):
    """Run full_disk_script.py with `disk` a 22 MB tmpfs, mounted in a user and mount namespace of the child's
    own (`unshare`: no root needed where user namespaces are allowed, nothing left mounted if it dies)."""
    disk.mkdir()
    try:
        probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                                f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(disk))}"],
                               capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no `unshare` command here (util-linux): a small tmpfs cannot be mounted for this test")
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here ({probe.stderr.strip()})")
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                          'mount -t tmpfs -o size=22m tmpfs "$1" && exec "$2" "$3" "$4" "$1"', "sh",
                          str(disk), sys.executable, str(SCRIPT), str(tiny_ckpt)],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    reports = [line for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert run.returncode == 0 and reports, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    return json.loads(reports[-1].removeprefix("REPORT ")), run.stderr


@pytest.mark.slow  # a run of 20 steps in a subprocess: about 40 s on 2 idle cores
def test_a_real_full_disk_warns_before_the_save_then_says_it_is_full(tiny_ckpt, tmp_path, fourteen_steps):
    """work_dir on a tmpfs that holds one checkpoint but not two: a warning before ckpt-step-8, then the disk-full
    error (not torch's "unexpected pos"), not hidden by a tracker that cannot write its file on the same full
    disk; the partial save is gone and ckpt-step-4 intact; the trained state stays in the Trainer, so once the
    disk grows `save_checkpoint()` saves step 8 and `fit()` trains on exactly as the uninterrupted run."""
    report, console = _in_its_own_small_disk(tiny_ckpt, tmp_path / "small_disk")
    checkpoints = Path(report["checkpoints"])
    text = report["error"]

    warning = f"free in {checkpoints}, and checkpoint ckpt-step-8 needs about 14."
    assert warning in console and console.index(warning) < console.index("after the error that ended the run")

    assert report["error_type"] == "DiskFullError" and report["errno"] == errno.ENOSPC
    assert text.startswith(f"The disk is full: checkpoint ckpt-step-8 could not be written in {checkpoints} "
                           f"(it needs about 14.")
    assert re.search(r"; [\d.]+ MB were free when the save began\)\. ", text)
    assert f"The newest intact checkpoint is {checkpoints / 'ckpt-step-4'}." in text
    assert "No space left on device" in text and "unexpected pos" not in text
    assert report["cur_step"] == 8
    assert report["left"] == ["ckpt-step-4"] and report["step_4_damage"] is None  # the partial .tmp is gone

    # the hook that failed afterwards is logged beside the error and noted on it, never raised instead of it
    later = "hook WritesAtTheEnd.on_fit_end failed: OSError(28, 'No space left on device')"
    assert any(later in note for note in report["notes"])
    assert f"{later} (after the error that ended the run: DiskFullError)" in console

    assert report["saved"] == "ckpt-step-8" and report["saved_damage"] is None
    assert report["losses"] == fourteen_steps[0]


def test_after_a_good_run_the_first_failing_end_hook_is_raised_and_every_hook_still_ends(tiny_ckpt, tmp_path):
    """No error before on_fit_end: every hook still gets it; the first failure is raised, the next one noted."""
    from xtuner_nb.train import Hook, Trainer
    from xtuner_nb.train.hooks.events import HookError

    ended = []

    class Fails(Hook):
        def __init__(self, name):
            self.name = name

        def on_fit_end(self, state, reason, control):
            ended.append(self.name)
            raise RuntimeError(f"{self.name} could not close its file")

    class Ends(Hook):
        def on_fit_end(self, state, reason, control):
            ended.append(reason)

    trainer = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=1, debug_skip_save=True,
                                               default_hooks=[]), hooks=[Fails("first"), Fails("second"), Ends()])
    with pytest.raises(HookError, match="first could not close its file") as raised:
        trainer.fit()
    assert ended == ["first", "second", "finished"]
    assert any("second could not close its file" in note for note in raised.value.__notes__)


def test_after_a_failed_step_a_hook_that_fails_at_the_end_does_not_replace_the_error(tiny_ckpt, tmp_path):
    """A step fails; then, while that error unwinds, an on_fit_end hook fails too: the step's error is raised, the
    hook's is logged beside it and noted on it."""
    from xtuner_nb.train import Hook, Trainer
    from xtuner_nb.train.hooks.events import HookError

    class BadStep(Hook):
        def on_step_end(self, state, metrics, control):
            raise ValueError(f"step {state.step} produced a bad row")

    class FailsAtTheEnd(Hook):
        def on_fit_end(self, state, reason, control):
            raise RuntimeError(f"cannot close the events file after a run that ended with {reason!r}")

    trainer = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=2, debug_skip_save=True,
                                               default_hooks=[]), hooks=[BadStep(), FailsAtTheEnd()])
    with pytest.raises(HookError, match=r"BadStep.on_step_end failed: ValueError\('step 1 produced") as raised:
        trainer.fit()
    later = "hook FailsAtTheEnd.on_fit_end failed: RuntimeError(\"cannot close the events file after a run that " \
            "ended with 'error'\")"
    assert raised.value.__notes__ == [f"Afterwards: {later}"]
    assert f"{later} (after the error that ended the run: HookError)" in (trainer.log_dir / "rank0.log").read_text()
