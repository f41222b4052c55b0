"""What the live dashboard costs: the tiny model fitted N steps with and without `LiveDashboard`, same process.

    .venv/bin/python bench/dashboard_overhead.py [--steps 150] [--repeats 3] [--pack 512]

Runs alternate (without, with, with, without, ...) after one warm-up fit of each, so drift of a shared machine hits
both sides alike. Outside a kernel the dashboard publishes into a sink that does what ipykernel does with every
display message (format the object into its mime bundle, JSON-encode it); the PNG rendering is the real one.
Prints the median fit times (wall and process CPU time), their ratios (target <= 1.02) and the share of wall time
spent inside the hook, which is the precise number: the difference of two noisy wall times on a busy CPU is not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class KernelLikeSink:
    """`display(obj, display_id=...)` that formats and serialises like a kernel, then drops the message."""

    def __init__(self):
        from IPython.core.formatters import DisplayFormatter

        self.formatter = DisplayFormatter()
        self.messages = 0
        self.bytes = 0

    def publish(self, obj):
        data, metadata = self.formatter.format(obj)
        self.bytes += len(json.dumps({"data": data, "metadata": metadata}))
        self.messages += 1

    def __call__(self, obj, display_id=False):
        self.publish(obj)
        return _Handle(self) if display_id else None


class _Handle:
    def __init__(self, sink):
        self.sink = sink

    def update(self, obj):
        self.sink.publish(obj)


def build_trainer(tiny: Path, work_dir: Path, steps: int, pack: int, hooks):
    from xtuner_nb.config import AdamWConfig, FSDPConfig, LRConfig
    from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
    from xtuner_nb.datasets.demo import demo_data_path
    from xtuner_nb.model import Qwen3DenseConfig
    from xtuner_nb.train import Trainer, TrainerConfig

    dl = DataloaderConfig(
        dataset_config_list=[{"dataset": DatasetConfig(anno_path=demo_data_path("train")),
                              "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=pack)}],
        pack_max_length=pack)
    cfg = TrainerConfig(model_cfg=Qwen3DenseConfig.from_hf(tiny), load_from=tiny, tokenizer_path=tiny,
                        dataloader_cfg=dl, optim_cfg=AdamWConfig(lr=1e-3), lr_cfg=LRConfig(warmup_ratio=0),
                        fsdp_cfg=FSDPConfig(recompute_ratio=0.0), total_step=steps, work_dir=work_dir,
                        device="cpu", debug_skip_save=True, checkpoint_interval=None)
    return Trainer(trainer_cfg=cfg, hooks=hooks, show_dashboard=False)


def timed_fit(tiny, work_dir, steps, pack, with_dashboard: bool):
    from xtuner_nb.notebook.dashboard import LiveDashboard

    sink = KernelLikeSink()
    dash = LiveDashboard(display=sink) if with_dashboard else None
    trainer = build_trainer(tiny, work_dir, steps, pack, [dash] if dash else [])
    from xtuner_nb.train.logs import set_console_level

    set_console_level(30)  # no per-step log lines on either side (printing costs time too)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    trainer.close()
    return wall, cpu, dash, sink


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3, help="measured fits per side")
    ap.add_argument("--pack", type=int, default=512, help="pack_max_length (tokens per step)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is least disturbed by "
                                                           "other processes on a shared machine)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from xtuner_nb.model import make_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = make_tiny_checkpoint(tmp / "tiny", seed=0)
        run = 0

        def fit(with_dashboard, steps):
            nonlocal run
            run += 1
            return timed_fit(tiny, tmp / f"run{run}", steps, args.pack, with_dashboard)

        fit(False, 10)  # warm-up: imports, tokenizer cache, matplotlib fonts
        fit(True, 10)
        times = {False: [], True: []}
        cpus = {False: [], True: []}
        shares, draws, msgs = [], [], []
        for r in range(args.repeats):
            for side in ((False, True) if r % 2 == 0 else (True, False)):
                wall, cpu, dash, sink = fit(side, args.steps)
                times[side].append(wall)
                cpus[side].append(cpu)
                if dash is not None:
                    shares.append(dash.stats["hook_seconds"] / wall)
                    draws.append(dash.stats["draws"])
                    msgs.append(sink.messages)
                print(f"  fit {'with   ' if side else 'without'} dashboard: {wall:7.2f} s wall, {cpu:7.2f} s CPU"
                      + (f"  (hook {dash.stats['hook_seconds']:.3f} s, {dash.stats['draws']} frames, "
                         f"{sink.messages} display messages)" if dash else ""), flush=True)
        base, dash_t = statistics.median(times[False]), statistics.median(times[True])
        print(f"steps {args.steps}, pack {args.pack}, {args.repeats} fits per side, torch threads "
              f"{torch.get_num_threads()}")
        print(f"median fit without dashboard: {base:.2f} s ({base / args.steps * 1000:.0f} ms/step)")
        print(f"median fit with dashboard:    {dash_t:.2f} s")
        cpu_ratio = statistics.median(cpus[True]) / statistics.median(cpus[False])
        print(f"ratio with/without (wall): {dash_t / base:.4f}  (target <= 1.02; wall-time noise of this machine "
              f"included)")
        print(f"ratio with/without (process CPU time): {cpu_ratio:.4f}")
        print(f"time inside the dashboard hook: {100 * statistics.median(shares):.2f}% of fit wall time "
              f"(median; {statistics.median(draws):.0f} frames, {statistics.median(msgs):.0f} display messages "
              f"per fit)")


if __name__ == "__main__":
    main()
