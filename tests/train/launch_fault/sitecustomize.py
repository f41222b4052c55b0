"""Put on PYTHONPATH by the launch tests: makes one worker of a launched run raise at a given step.

XTUNER_NB_TEST_CRASH_RANK=1 XTUNER_NB_TEST_CRASH_STEP=2: rank 1 raises RuntimeError before it trains step 2. Only
processes started by torchrun (they have RANK) look; the kernel and torchrun itself do not.
"""

import os

if os.environ.get("RANK") is not None and os.environ.get("XTUNER_NB_TEST_CRASH_RANK") == os.environ["RANK"]:
    import xtuner_nb.train.trainer as _trainer

    _crash_step = int(os.environ.get("XTUNER_NB_TEST_CRASH_STEP", "2"))
    _train_one_step = _trainer.Trainer._train_one_step

    def _crashing_step(self, *args, **kwargs):
        if self.cur_step + 1 == _crash_step:
            raise RuntimeError(f"injected fault: rank {os.environ['RANK']} fails at step {_crash_step}")
        return _train_one_step(self, *args, **kwargs)

    _trainer.Trainer._train_one_step = _crashing_step
