"""A run whose work_dir is on a disk too small for two checkpoints; run by test_faults.py, inside a mount namespace of
its own (`unshare`) that holds the small tmpfs, so nothing is mounted on the machine running the tests.

usage: python full_disk_script.py TINY_CKPT DISK
DISK is a tmpfs of 22 MB: room for one checkpoint of the tiny model (14 MB) and the logs, not for two. The run
saves ckpt-step-4, fails to save ckpt-step-8, and a hook that writes a big file at the end fails on the same full
disk. Then the user makes room (the tmpfs is grown), `save_checkpoint()` saves step 8 and `fit()` goes on.
Prints one line `REPORT <json>` with what each stage left.
"""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.helpers import losses, small_config  # noqa: E402
from xtuner_nb.train import Hook, Trainer  # noqa: E402
from xtuner_nb.train.checkpoint.manifest import find_damage  # noqa: E402

RUN = dict(total_step=14, checkpoint_interval=4)


class WritesAtTheEnd(Hook):
    """Writes its file when the run ends (as TensorBoard's or a tracker's would), on the same disk."""

    def __init__(self, path: Path, nbytes: int):
        self.path, self.nbytes = path, nbytes

    def on_fit_end(self, state, reason, control):
        with open(self.path, "wb") as f:
            f.write(b"\0" * self.nbytes)


def main() -> None:
    tiny, disk = Path(sys.argv[1]), Path(sys.argv[2])
    tracker = WritesAtTheEnd(disk / "events.bin", 32 << 20)
    trainer = Trainer.from_config(small_config(tiny, disk, **RUN), hooks=[tracker], show_dashboard=False)
    checkpoints = trainer.exp_dir / "checkpoints"
    try:
        trainer.fit()
        raised = None
    except BaseException as exc:  # noqa: BLE001 -- the test asserts what it was
        raised = exc
    report = {"checkpoints": str(checkpoints), "cur_step": trainer.cur_step,
              "error_type": type(raised).__name__, "error": str(raised), "errno": getattr(raised, "errno", None),
              "notes": getattr(raised, "__notes__", []),
              "left": sorted(p.name for p in checkpoints.iterdir()),
              "step_4_damage": find_damage(checkpoints / "ckpt-step-4")}

    subprocess.run(["mount", "-o", "remount,size=96m", str(disk)], check=True)  # the user made room
    trainer.hooks.remove(tracker)
    saved = trainer.save_checkpoint()
    report.update(saved=saved.name, saved_damage=find_damage(saved))
    trainer.fit()
    report["losses"] = losses(trainer)
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
