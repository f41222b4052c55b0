"""Run by tests/train/test_distributed_hazards.py, alone or under torchrun: the default FSDPConfig, a dataset cache,
and (optionally) a hook on rank 0 that asks for a checkpoint at one step.

usage: python hazards_script.py TINY_CKPT WORK_DIR CACHE_DIR OUT_DIR SAVE_AT_STEP(0: none)
Each rank writes OUT_DIR/rank<r>.json: its losses and whether its data came from the cache.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.helpers import small_config  # noqa: E402
from xtuner_nb.config import FSDPConfig  # noqa: E402
from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig  # noqa: E402
from xtuner_nb.datasets.demo import demo_data_path  # noqa: E402
from xtuner_nb.train import Hook, Trainer  # noqa: E402
from xtuner_nb.train.distributed import teardown_distributed  # noqa: E402


class SaveAt(Hook):
    """A notebook-style hook: main_process_only (the default), so it runs on rank 0 only."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state, metrics, control):
        if state.step == self.step:
            control.request_save()


class Record(Hook):
    main_process_only = False

    def __init__(self):
        self.losses = {}

    def on_step_end(self, state, metrics, control):
        self.losses[state.step] = metrics["loss/reduced_llm_loss"]


def main() -> None:
    tiny, work_dir, cache, out = (Path(a) for a in sys.argv[1:5])
    save_at = int(sys.argv[5])
    dl = DataloaderConfig(
        dataset_config_list=[{"dataset": DatasetConfig(anno_path=demo_data_path("train"), cache_dir=str(cache)),
                              "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=256)}],
        pack_max_length=256)
    record = Record()
    cfg = small_config(tiny, work_dir, dataloader_cfg=dl, fsdp_cfg=FSDPConfig(), total_step=2, global_batch_size=4,
                       checkpoint_interval=None, hf_interval=1000)
    trainer = Trainer.from_config(cfg, hooks=[record] + ([SaveAt(save_at)] if save_at else []))
    try:
        trainer.fit()
        info = {"losses": record.losses, "from_cache": [d.from_cache for d in trainer.loader.stats.datasets],
                "recompute": trainer.fsdp_cfg.recompute_ratio}
        (out / f"rank{trainer.dist.rank}.json").write_text(json.dumps(info))
    finally:
        teardown_distributed()


if __name__ == "__main__":
    main()
