"""Host memory per rank under torchrun: loading a checkpoint shard by shard against building the whole model.

    .venv/bin/python bench/sharded_load_memory.py [--hidden 1024] [--layers 12] [--ranks 2]

Both sides are the Trainer under `torchrun --nproc-per-node=N` on CPU (gloo), same model config and data:
  sharded  load_from=<checkpoint>: the model is built on the meta device, fully_shard'ed, each rank allocates only
           its own shards (`to_empty`) and fills them from the safetensors files, one tensor at a time;
  full     no load_from: every rank builds and initialises the whole fp32 model on the CPU, then fully_shard keeps
           its shards (what a script that calls `from_pretrained` and then `fully_shard` on every rank also does).
Measured per rank: the peak of anonymous resident memory (RssAnon, sampled every millisecond) while the Trainer is
built, minus its value right before (imports, the process group); the model's fp32 size is printed beside it.
ru_maxrss is printed too: it also counts the page cache of the mmap'ed checkpoint while a rank reads its rows.
With N ranks the sharded side should hold about 1/N of the model (plus one tensor in flight), the full side at least
the whole model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (puts the repo root on sys.path too)

GiB = common.GiB


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--child", choices=("sharded", "full"), help=argparse.SUPPRESS)
    p.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _anon_gib() -> float:
    """Anonymous resident memory (RssAnon): what the process itself allocated. ru_maxrss also counts the pages of
    the mmap'ed safetensors files while they are read; those are the kernel's shared, reclaimable page cache."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakSampler:
    """The largest RssAnon seen, sampled every millisecond by a thread (the kernel keeps no anonymous peak)."""

    def __init__(self):
        import threading

        self.peak, self._stop = _anon_gib(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _anon_gib())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _anon_gib())


def child(args) -> None:
    import torch.distributed as dist

    from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
    from xtuner_nb.datasets.demo import demo_data_path
    from xtuner_nb.model import Qwen3DenseConfig
    from xtuner_nb.train import Trainer
    from xtuner_nb.train.distributed import teardown_distributed

    dist.init_process_group("gloo")  # the Trainer reuses it; its memory is part of the baseline
    before, maxrss_before = _anon_gib(), common.peak_rss_gib()
    sampler = PeakSampler()
    trainer = Trainer(
        model_cfg=Qwen3DenseConfig.from_hf(args.ckpt), load_from=args.ckpt if args.child == "sharded" else None,
        tokenizer_path=args.ckpt, device="cpu", total_step=1, work_dir=args.out.parent / f"work-{args.child}",
        dataloader_cfg=DataloaderConfig(
            dataset_config_list=[{"dataset": DatasetConfig(anno_path=demo_data_path("train")),
                                  "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3",
                                                                              max_length=256)}],
            pack_max_length=256),
        show_dashboard=False, debug_skip_save=True)
    peak = sampler.stop()
    maxrss_growth = common.peak_rss_gib() - maxrss_before
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in trainer.model.parameters())
    rank = dist.get_rank()
    (args.out.parent / f"{args.child}-{rank}.json").write_text(json.dumps(
        {"rank": rank, "before_gib": before, "peak_gib": peak, "growth_gib": peak - before,
         "maxrss_growth_gib": maxrss_growth, "local_params_gib": local * 4 / GiB}))
    teardown_distributed()


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    import torch

    from xtuner_nb.model import Qwen3DenseTinyConfig, make_tiny_checkpoint

    cfg = Qwen3DenseTinyConfig(hidden_size=args.hidden, num_hidden_layers=args.layers, vocab_size=args.vocab,
                               intermediate_size=3 * args.hidden, tie_word_embeddings=False)
    cfg = cfg.model_copy(update={"attention": cfg.attention.model_copy(update={
        "num_attention_heads": args.hidden // 64, "num_key_value_heads": args.hidden // 128, "head_dim": 64})})
    model_gib = cfg.num_params() * 4 / GiB
    with tempfile.TemporaryDirectory(prefix="sharded_load-") as tmp:
        wd = Path(tmp)
        print(f"writing a random fp32 checkpoint: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, "
              f"{cfg.num_params() / 1e6:.0f} M params = {model_gib:.2f} GiB ...", flush=True)
        make_tiny_checkpoint(wd / "ckpt", cfg, dtype=torch.float32)
        results = {}
        for mode in ("sharded", "full", "sharded", "full"):  # interleaved, two runs each
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.ranks}",
                   str(Path(__file__).resolve()), "--child", mode, "--ckpt", str(wd / "ckpt"), "--out",
                   str(wd / "out")]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-6000:])
                raise SystemExit(f"{mode} failed with exit code {proc.returncode}")
            ranks = [json.loads((wd / f"{mode}-{r}.json").read_text()) for r in range(args.ranks)]
            worst = max(r["growth_gib"] for r in ranks)
            results.setdefault(mode, []).append(worst)
            growth = ", ".join(f"{r['growth_gib']:.2f}" for r in ranks)
            maxrss = ", ".join(f"{r['maxrss_growth_gib']:.2f}" for r in ranks)
            print(f"  {mode:<8} per-rank peak anonymous memory growth {growth} GiB (ru_maxrss growth {maxrss}) "
                  f"(local parameters {ranks[0]['local_params_gib']:.2f} GiB)", flush=True)
    s, f = min(results["sharded"]), min(results["full"])
    print(f"\nmodel {model_gib:.2f} GiB fp32, {args.ranks} ranks: largest per-rank growth (best of 2) sharded "
          f"{s:.2f} GiB = {s / model_gib:.2f} x model, full {f:.2f} GiB = {f / model_gib:.2f} x model; "
          f"full / sharded = {f / s:.2f}")


if __name__ == "__main__":
    main()
