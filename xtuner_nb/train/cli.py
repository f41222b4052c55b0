"""`xtuner-nb sft ...`: XTuner's `cli/sft.py` arguments, or `--config file.py` defining `trainer = TrainerConfig(...)`.

Runs the same way with `python -m xtuner_nb.train.cli sft ...` and `torchrun --nproc-per-node N -m xtuner_nb.train.cli sft ...`.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from ..start_cli import add_commands as add_start_commands
from .cli_export import add_export_gguf_parser
from .config import TrainerConfig

DEFAULTS = dict(chat_template=None, tokenize_fn="openai", max_length=4096, pack_max_length=4096, lr=6e-5,
                lr_min=1e-6, scheduler_type="cosine", warmup_ratio=0.03, loss_mode="chunk", chunk_size=1024,
                work_dir="work_dir", seed=42, recompute_ratio=1.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xtuner-nb", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add_start_commands(sub)  # `notebooks`, `env` (xtuner_nb/start_cli.py)
    s = sub.add_parser("sft", help="supervised fine-tuning")
    s.add_argument("--config", type=Path, help="a .py file defining `trainer = TrainerConfig(...)` (no other flags)")
    s.add_argument("--load-from", type=Path, help="HF model folder (config.json + *.safetensors) or hub id org/name; "
                                                   "Qwen3, Qwen2/Qwen2.5 or Llama")
    s.add_argument("--model-cfg", help="a preset name (qwen3-8B, qwen3-tiny, ...) or a .py file defining `model`; "
                                       "default: read from --load-from")
    s.add_argument("--tokenizer-path", type=Path, help="default: --load-from")
    s.add_argument("--dataset", type=Path, help="a jsonl file or a folder of *.jsonl")
    s.add_argument("--chat-template", "--chat_template", dest="chat_template", help="qwen3 | llama3 | hf")
    s.add_argument("--tokenize-fn", choices=["openai", "pretrain"])
    s.add_argument("--cache-dir", type=Path)
    s.add_argument("--max-length", type=int)
    s.add_argument("--pack-max-length", type=int)
    s.add_argument("--global-batch-size", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--lr-min", type=float)
    s.add_argument("--scheduler-type", choices=["cosine", "linear", "constant"])
    s.add_argument("--warmup-ratio", type=float)
    s.add_argument("--loss-mode", choices=["eager", "chunk"])
    s.add_argument("--chunk-size", type=int)
    s.add_argument("--recompute-ratio", type=float)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--total-step", type=int)
    g.add_argument("--epoch-num", type=int)
    s.add_argument("--work-dir", type=Path)
    s.add_argument("--checkpoint-interval", type=int)
    s.add_argument("--hf-interval", type=int)
    s.add_argument("--auto-resume", action="store_true", default=None)
    s.add_argument("--seed", type=int)
    s.add_argument("--device", choices=["auto", "cpu", "cuda"])
    s.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="let the tokenizer folder run the Python code it ships (off by default)")
    add_export_gguf_parser(sub)
    return p


def config_from_args(args: argparse.Namespace) -> TrainerConfig:
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("command", "config")}
    if args.config is not None:
        if given:
            raise ValueError(f"--config cannot be mixed with other arguments (got {sorted(given)})")
        scope = runpy.run_path(str(args.config))
        if not isinstance(scope.get("trainer"), TrainerConfig):
            raise ValueError(f"{args.config}: must define `trainer = TrainerConfig(...)`")
        return scope["trainer"]
    a = {**DEFAULTS, **given}
    for required in ("dataset", "chat_template"):
        if a.get(required) is None:
            raise ValueError(f"--{required.replace('_', '-')} is required (or use --config)")
    from ..config import AdamWConfig, FSDPConfig, LRConfig
    from ..datasets import (DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig,
                            PretrainTokenizeFunctionConfig)
    from ..loss import CELossConfig

    tok_fn = (OpenaiTokenizeFunctionConfig(chat_template=a["chat_template"], max_length=a["max_length"])
              if a["tokenize_fn"] == "openai" else PretrainTokenizeFunctionConfig())
    datasets = [{"dataset": DatasetConfig(anno_path=a["dataset"], cache_dir=a.get("cache_dir")), "tokenize_fn": tok_fn}]
    return TrainerConfig(
        model_cfg=_model_cfg(a.get("model_cfg"), a.get("load_from")),
        load_from=a.get("load_from"), tokenizer_path=a.get("tokenizer_path") or a.get("load_from"),
        dataloader_cfg=DataloaderConfig(dataset_config_list=datasets, pack_max_length=a["pack_max_length"]),
        optim_cfg=AdamWConfig(lr=a["lr"]),
        lr_cfg=LRConfig(lr_type=a["scheduler_type"], lr_min=a["lr_min"], warmup_ratio=a["warmup_ratio"]),
        loss_cfg=CELossConfig(mode=a["loss_mode"], chunk_size=a["chunk_size"]),
        fsdp_cfg=FSDPConfig(recompute_ratio=a["recompute_ratio"]),
        global_batch_size=a.get("global_batch_size"), total_step=a.get("total_step"), total_epoch=a.get("epoch_num"),
        work_dir=a["work_dir"], seed=a["seed"], auto_resume=bool(a.get("auto_resume")),
        checkpoint_interval=a.get("checkpoint_interval", -1), hf_interval=a.get("hf_interval"),
        device=a.get("device", "auto"), trust_remote_code=bool(a.get("trust_remote_code")),
    )


def _model_cfg(spec: str | None, load_from: Path | None):
    from ..model import MODEL_PRESETS, get_model_config, model_config_from_hf

    if spec is None:
        if load_from is None:
            raise ValueError("give --load-from (the model config is read from it) or --model-cfg")
        return model_config_from_hf(load_from)
    if spec in MODEL_PRESETS:
        return get_model_config(spec)
    if spec.endswith(".py"):
        return runpy.run_path(spec)["model"]
    raise ValueError(f"--model-cfg {spec!r}: not a preset ({sorted(MODEL_PRESETS)}) nor a .py file")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "run"):  # a command that brings its own runner (start_cli, cli_export)
        return args.run(args)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"xtuner-nb: error: {exc}", file=sys.stderr)
        return 2
    from .dist import teardown_distributed
    from .trainer import Trainer

    try:
        Trainer.from_config(cfg).fit()
    finally:
        teardown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
