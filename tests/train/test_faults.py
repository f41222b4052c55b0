"""Faults a real machine brings: a damaged checkpoint, a disk that fills up during a save, and a hook that fails
after the run already did (the first error must stay the one raised)."""

from __future__ import annotations

import pytest

from tests.train.helpers import small_config


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
