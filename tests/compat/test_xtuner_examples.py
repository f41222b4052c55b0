"""XTuner's own example configs (tests/compat/xtuner_examples, copied from InternLM/xtuner under Apache-2.0) load
with `xtuner.v1` renamed to `xtuner_nb`, and train a few steps once their model is shrunk to a tiny one."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

from xtuner_nb.model import MHAConfig

EXAMPLES = Path(__file__).parent / "xtuner_examples"


def renamed(name: str, out_dir: Path) -> Path:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    assert "xtuner.v1" in text
    path = out_dir / name
    path.write_text(text.replace("xtuner.v1", "xtuner_nb"), encoding="utf-8")
    return path


def shrunk(model_cfg, tokenizer, layers: int):
    """The same preset class and its other values, at a size that trains in seconds on a CPU."""
    return type(model_cfg)(num_hidden_layers=layers, hidden_size=64, intermediate_size=128,
                           vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id or 0,
                           eos_token_id=tokenizer.eos_token_id, max_window_layers=layers,
                           attention=MHAConfig(num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                               qk_norm=True))


def train(cfg) -> list[float]:
    from xtuner_nb.train import Trainer

    trainer = Trainer(trainer_cfg=cfg, show_dashboard=False).fit()
    losses = list(trainer.history["loss/reduced_llm_loss"])
    trainer.close()
    return losses


def test_pretrain_qwen3_tiny_example_loads_and_trains(tiny_ckpt, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from xtuner_nb.model import Qwen3Dense4BConfig
    from xtuner_nb.train import TrainerConfig

    # the example reads tests/resource/pretrain_example_data.jsonl ({"content": text}) from the current folder
    data = tmp_path / "tests" / "resource" / "pretrain_example_data.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("".join(json.dumps({"content": t}) + "\n" for t in
                            ["The quick brown fox jumps over the lazy dog.", "Packing puts short texts together."]))
    monkeypatch.chdir(tmp_path)
    cfg = runpy.run_path(str(renamed("pretrain_qwen3_tiny.py", tmp_path)))["trainer"]
    assert isinstance(cfg, TrainerConfig) and type(cfg.model_cfg) is Qwen3Dense4BConfig
    assert (cfg.loss_cfg.mode, cfg.loss_cfg.chunk_size, cfg.global_batch_size) == ("chunk", 1024, 8)
    assert [d["dataset"].sample_ratio for d in cfg.dataloader_cfg.dataset_config_list] == [10000.0, 20000.0]
    tok = AutoTokenizer.from_pretrained(tiny_ckpt)
    # shrunk: a tiny model, 512-token packs, and each sample repeated 10 / 20 times instead of 10000 / 20000
    # (as written, the 2 steps took 47 s on a 2-core VM: packing 30000 repeats of each line, and packs of ~270
    # samples each, whose attention runs sample by sample on a CPU)
    datasets = [{**d, "dataset": d["dataset"].model_copy(update={"sample_ratio": d["dataset"].sample_ratio / 1000})}
                for d in cfg.dataloader_cfg.dataset_config_list]
    small = TrainerConfig(**{**dict(cfg), "model_cfg": shrunk(cfg.model_cfg, tok, 2), "tokenizer_path": tiny_ckpt,
                             "total_epoch": None, "total_step": 2, "work_dir": tmp_path / "work", "device": "cpu",
                             "dataloader_cfg": cfg.dataloader_cfg.model_copy(
                                 update={"num_workers": 0, "pack_max_length": 512, "dataset_config_list": datasets})})
    losses = train(small)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_sft_qwen3_tiny_model_file_loads_through_the_cli_and_trains(tiny_ckpt, tmp_path):
    from transformers import AutoTokenizer

    from xtuner_nb.datasets.demo import demo_data_path
    from xtuner_nb.model import Qwen3Dense8BConfig
    from xtuner_nb.train import TrainerConfig
    from xtuner_nb.train.cli import build_parser, config_from_args

    model_file = renamed("sft_qwen3_tiny.py", tmp_path)
    args = build_parser().parse_args(
        ["sft", "--model-cfg", str(model_file), "--dataset", str(demo_data_path("train")), "--chat-template", "qwen3",
         "--tokenizer-path", str(tiny_ckpt), "--total-step", "2", "--work-dir", str(tmp_path / "work"),
         "--pack-max-length", "256", "--max-length", "256", "--global-batch-size", "1", "--device", "cpu"])
    cfg = config_from_args(args)
    assert type(cfg.model_cfg) is Qwen3Dense8BConfig
    assert (cfg.model_cfg.num_hidden_layers, cfg.model_cfg.hidden_size) == (3, 512)  # what the file sets
    tok = AutoTokenizer.from_pretrained(tiny_ckpt)
    losses = train(TrainerConfig(**{**dict(cfg), "model_cfg": shrunk(cfg.model_cfg, tok, 3)}))
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
