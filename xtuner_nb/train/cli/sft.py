"""`xtuner-nb sft ...`: XTuner's `train/cli/sft.py` arguments, or `--config file.py` defining
`trainer = TrainerConfig(...)`.

Runs the same way with `python -m xtuner_nb.train.cli sft ...` and
`torchrun --nproc-per-node N -m xtuner_nb.train.cli sft ...`.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from ..config import TrainerConfig
from ..launch_events import LAUNCH_DIR_ENV

DEFAULTS = dict(chat_template=None, tokenize_fn="openai", max_length=4096, lr=6e-5, optim="AdamW",
                lr_min=1e-6, scheduler_type="cosine", warmup_ratio=0.03, work_dir="work_dir", seed=42)
# XTuner's `xtuner sft` defaults of its nested configs: TrainingArguments.dataloader_cfg / loss_config
CLI_CONFIG_DEFAULTS = {"dataloader_cfg": {"pack_max_length": 4096}, "loss_config": {"mode": "chunk", "chunk_size": 1024}}


def add_sft_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sft", help="supervised fine-tuning")
    add_sft_arguments(s)
    s.set_defaults(run=run_sft)


def add_sft_arguments(s: argparse.ArgumentParser) -> None:
    """XTuner's `sft` flags, spelled as its cyclopts CLI spells them (plus this project's own, marked)."""
    from ...config import FSDPConfig
    from ...datasets import DataloaderConfig
    from ...loss import CELossConfig

    s.add_argument("--config", type=Path, help="a .py file defining `trainer = TrainerConfig(...)`, or a TrainerConfig "
                                                "saved as .yaml/.json (no other flags)")
    s.add_argument("--load-from", type=Path, help="HF model folder (config.json + *.safetensors) or hub id org/name; "
                                                   "Qwen3, Qwen2/Qwen2.5 or Llama")
    s.add_argument("--model-cfg", help="a preset name (qwen3-8B, qwen3-tiny, ...) or a .py file defining `model`; "
                                       "default: read from --load-from")
    s.add_argument("--tokenizer-path", type=Path, help="default: --load-from")
    s.add_argument("--dataset", type=Path, help="a jsonl file, a folder of *.jsonl, or a .py file defining `datasets`")
    s.add_argument("--chat-template", "--chat_template", dest="chat_template", help="qwen3 | llama3 | hf | ...")
    s.add_argument("--tokenize-fn", choices=["openai", "ftdp", "pretrain"], help="ftdp is refused (XTuner's "
                                                                                 "internal format); pretrain: ours")
    s.add_argument("--cache-dir", type=Path)
    s.add_argument("--cache-tag", help="with --cache-dir: trust the cache of a run with this tag")
    s.add_argument("--max-length", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--optim", choices=["AdamW", "Muon"], help="Muon is refused (not implemented)")
    s.add_argument("--lr-min", type=float)
    s.add_argument("--scheduler-type", choices=["cosine", "linear", "constant"])
    s.add_argument("--warmup-ratio", type=float)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--total-step", type=int)
    g.add_argument("--epoch-num", type=int)
    s.add_argument("--work-dir", type=Path)
    s.add_argument("--global-batch-size", type=int)
    for flag in ("load-model", "load-optimizer-states", "load-optimizer-args", "load-dataset", "load-scheduler",
                 "async-checkpoint"):
        s.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--float8-config", help="refused: float8 training is not implemented")
    # nested configs, as cyclopts names them: DataloaderConfig flattened, --loss-config.*, --fsdp-config.*
    _config_flags(s, DataloaderConfig, "", "dataloader_cfg", skip=("dataset_config_list",))
    _config_flags(s, CELossConfig, "loss-config.", "loss_config")
    _config_flags(s, FSDPConfig, "fsdp-config.", "fsdp_config")
    # this project's own flags
    s.add_argument("--loss-mode", choices=["eager", "chunk"], help="(xtuner_nb) = --loss-config.mode")
    s.add_argument("--chunk-size", type=int, help="(xtuner_nb) = --loss-config.chunk-size")
    s.add_argument("--recompute-ratio", type=float, help="(xtuner_nb) = --fsdp-config.recompute-ratio")
    s.add_argument("--checkpoint-interval", type=int)
    s.add_argument("--hf-interval", type=int)
    s.add_argument("--auto-resume", action="store_true", default=None)
    s.add_argument("--seed", type=int)
    s.add_argument("--device", choices=["auto", "cpu", "cuda"])
    s.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="let the tokenizer folder run the Python code it ships (off by default)")


def _config_flags(s: argparse.ArgumentParser, cls, prefix: str, group: str, skip: tuple = ()) -> None:
    """One flag per field of `cls` (values are validated by the config class itself)."""
    for name, info in cls.model_fields.items():
        if name in skip:
            continue
        flag = "--" + prefix + name.replace("_", "-")
        kw = dict(action=argparse.BooleanOptionalAction) if info.annotation is bool else dict(metavar="VALUE")
        s.add_argument(flag, dest=f"{group}.{name}", default=None, help=info.description, **kw)


def _nested(given: dict, group: str) -> dict:
    """The values given for one nested config (`--fsdp-config.cpu-offload` -> {'cpu_offload': True})."""
    out = dict(CLI_CONFIG_DEFAULTS.get(group, {}))
    out.update({k.split(".", 1)[1]: v for k, v in given.items() if k.startswith(group + ".")})
    return {k: (None if v == "None" else v) for k, v in out.items()}


def config_from_args(args: argparse.Namespace) -> TrainerConfig:
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("command", "config", "run")}
    if args.config is not None:
        if given:
            raise ValueError(f"--config cannot be mixed with other arguments (got {sorted(given)})")
        if args.config.suffix in (".yaml", ".yml", ".json"):  # data, as launch() writes it
            return TrainerConfig.from_yaml(args.config)
        scope = runpy.run_path(str(args.config))
        if not isinstance(scope.get("trainer"), TrainerConfig):
            raise ValueError(f"{args.config}: must define `trainer = TrainerConfig(...)`")
        return scope["trainer"]
    a = {**DEFAULTS, **given}
    for required in ("dataset", "chat_template"):
        if a.get(required) is None and not (required == "chat_template" and a["tokenize_fn"] == "pretrain"):
            raise ValueError(f"--{required.replace('_', '-')} is required (or use --config)")
    if a.get("float8_config") is not None:
        raise ValueError("--float8-config is not supported by xtuner_nb: float8 training is not implemented")
    if a["tokenize_fn"] == "ftdp":
        raise ValueError("--tokenize-fn ftdp is not supported by xtuner_nb (XTuner's internal FTDP format); "
                         "use openai (messages jsonl) or pretrain")
    if a.get("load_model") is False:
        raise ValueError("--no-load-model is not supported by xtuner_nb: a checkpoint always restores the model")
    from ...config import AdamWConfig, FSDPConfig, LRConfig, MuonConfig
    from ...datasets import DataloaderConfig
    from ...loss import CELossConfig
    from ..config import LoadCheckpointConfig

    loss = _nested(given, "loss_config")
    if a.get("loss_mode") is not None:
        loss["mode"] = a["loss_mode"]
    if a.get("chunk_size") is not None:
        loss["chunk_size"] = a["chunk_size"]
    fsdp = _nested(given, "fsdp_config")
    if a.get("recompute_ratio") is not None:
        fsdp["recompute_ratio"] = a["recompute_ratio"]
    load = {k: a[k] for k in ("load_optimizer_states", "load_optimizer_args", "load_dataset", "load_scheduler")
            if a.get(k) is not None}
    return TrainerConfig(
        model_cfg=_model_cfg(a.get("model_cfg"), a.get("load_from")),
        load_from=a.get("load_from"), tokenizer_path=a.get("tokenizer_path") or a.get("load_from"),
        dataloader_cfg=DataloaderConfig(dataset_config_list=_datasets(a), **_nested(given, "dataloader_cfg")),
        optim_cfg=AdamWConfig(lr=a["lr"], foreach=False) if a["optim"] == "AdamW" else MuonConfig(lr=a["lr"]),
        lr_cfg=LRConfig(lr_type=a["scheduler_type"], lr_min=a["lr_min"], warmup_ratio=a["warmup_ratio"]),
        loss_cfg=CELossConfig(**loss), fsdp_cfg=FSDPConfig(**fsdp),
        global_batch_size=a.get("global_batch_size"), total_step=a.get("total_step"), total_epoch=a.get("epoch_num"),
        work_dir=a["work_dir"], seed=a["seed"], auto_resume=bool(a.get("auto_resume")),
        load_checkpoint_cfg=LoadCheckpointConfig(**load), async_checkpoint=bool(a.get("async_checkpoint")),
        checkpoint_interval=a.get("checkpoint_interval", -1), hf_interval=a.get("hf_interval"),
        device=a.get("device", "auto"), trust_remote_code=bool(a.get("trust_remote_code")),
    )


def _datasets(a: dict) -> list[dict]:
    """XTuner's --dataset: a .py file defining `datasets`, or jsonl files (one dataset per file of a folder)."""
    from ...datasets import DatasetConfig, OpenaiTokenizeFunctionConfig, PretrainTokenizeFunctionConfig

    path = Path(a["dataset"])
    if path.suffix == ".py":
        scope = runpy.run_path(str(path))
        if "datasets" not in scope:
            raise ValueError(f"{path}: a dataset config file must define `datasets`")
        return scope["datasets"]
    tok_fn = (OpenaiTokenizeFunctionConfig(chat_template=a["chat_template"], max_length=a["max_length"])
              if a["tokenize_fn"] == "openai" else PretrainTokenizeFunctionConfig())
    return [{"dataset": DatasetConfig(anno_path=path, cache_dir=a.get("cache_dir"), cache_tag=a.get("cache_tag")),
             "tokenize_fn": tok_fn}]


def _model_cfg(spec: str | None, load_from: Path | None):
    from ...model import MODEL_PRESETS, get_model_config, model_config_from_hf

    if spec is None:
        if load_from is None:
            raise ValueError("give --load-from (the model config is read from it) or --model-cfg")
        return model_config_from_hf(load_from)
    if spec in MODEL_PRESETS:
        return get_model_config(spec)
    if spec.endswith(".py"):
        return runpy.run_path(spec)["model"]
    raise ValueError(f"--model-cfg {spec!r}: not a preset ({sorted(MODEL_PRESETS)}) nor a .py file")


def run_sft(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"xtuner-nb: error: {exc}", file=sys.stderr)
        return 2
    from torch.distributed.elastic.multiprocessing.errors import record

    record(_fit)(cfg)  # under torchrun, a failure's traceback goes to the rank's error file (launch() shows it)
    return 0


def _fit(cfg: TrainerConfig) -> None:
    import os

    from ..distributed import teardown_distributed
    from ..trainer import Trainer

    hooks = []
    if os.environ.get(LAUNCH_DIR_ENV):  # started by launch() in a notebook kernel
        from ..launcher import die_with_parent
        from ..launch_events import LaunchEventWriter

        die_with_parent()  # torchrun gone (the kernel died): this worker goes too
        if os.getppid() == 1:  # it was gone before the line above
            raise SystemExit("the launcher of this worker exited before it started")
        hooks.append(LaunchEventWriter(Path(os.environ[LAUNCH_DIR_ENV]), int(os.environ.get("RANK", 0))))
    Trainer.from_config(cfg, hooks=hooks).fit()
    # after a good run only: a rank that failed must not wait in a barrier for ranks still inside a step's
    # collectives (they would all hang); it exits, and torchrun stops the others
    teardown_distributed()
