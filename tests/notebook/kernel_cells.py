"""Source of notebook cells that the kernel-side tests (nbclient, the JupyterLab browser test) run."""

from __future__ import annotations

import string

_TINY_TRAINER = string.Template("""\
from pathlib import Path
from xtuner_nb.config import AdamWConfig, FSDPConfig, LRConfig
from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
from xtuner_nb.datasets.demo import demo_data_path
from xtuner_nb.model import Qwen3DenseConfig, make_tiny_checkpoint
from xtuner_nb.train import Trainer

tiny = make_tiny_checkpoint(Path("tiny"), seed=0)
dl = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=demo_data_path("train")),
                      "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=$pack_len)}],
                      pack_max_length=$pack_len)
trainer = Trainer(model_cfg=Qwen3DenseConfig.from_hf(tiny), load_from=tiny, tokenizer_path=tiny,
                  dataloader_cfg=dl, optim_cfg=AdamWConfig(lr=1e-3), lr_cfg=LRConfig(warmup_ratio=0),
                  fsdp_cfg=FSDPConfig(recompute_ratio=0.0), total_step=$total_step, work_dir=Path("work_dir"),
                  device="cpu", hf_interval=None)
""")


def tiny_trainer_cell(pack_len: int, total_step: int) -> str:
    """A cell that builds a Trainer (no saving of HF folders) on a tiny local checkpoint and the demo data, on CPU."""
    return _TINY_TRAINER.substitute(pack_len=pack_len, total_step=total_step)
