"""A training run with evaluation, alone or under torchrun (run by tests/train/test_eval.py).

usage: python eval_script.py TINY_CKPT WORK_DIR JSON_OVERRIDES
Evaluates before training, then trains; rank 0 prints `LOSS <step> <loss>` per step and `EVAL <json row>` per eval.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.helpers import small_config  # noqa: E402
from xtuner_nb.train import Hook, Trainer  # noqa: E402
from xtuner_nb.train.distributed import teardown_distributed  # noqa: E402


def eval_fields(**over) -> dict:
    """The demo's held-out split in packs of 128 tokens (3 packs: uneven over 2 ranks) and two prompts."""
    from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig, demo_prompts
    from xtuner_nb.datasets.demo import demo_data_path

    ev = DataloaderConfig(
        dataset_config_list=[{"dataset": DatasetConfig(anno_path=demo_data_path("eval")),
                              "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=256)}],
        pack_max_length=128)
    return {"eval_dataloader_cfg": ev, "eval_prompts": demo_prompts()[:2], "eval_max_new_tokens": 6, **over}


class Print(Hook):
    def on_step_end(self, state, metrics, control):
        print(f"LOSS {state.step} {metrics['loss/reduced_llm_loss']:.10f}", flush=True)

    def on_eval_end(self, state, metrics, control):
        print(f"EVAL {json.dumps(metrics, ensure_ascii=False)}", flush=True)


def main() -> None:
    tiny, work_dir, over = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    trainer = Trainer.from_config(small_config(tiny, work_dir, **eval_fields(), **over), hooks=[Print()])
    try:
        row = trainer.evaluate()
        if trainer.dist.is_main:
            print(f"EVAL {json.dumps(row, ensure_ascii=False)}", flush=True)
        trainer.fit()
    finally:
        teardown_distributed()


if __name__ == "__main__":
    main()
