"""What the live dashboard costs, three ways.

    .venv/bin/python bench/dashboard_overhead.py [--steps 150] [--repeats 3] [--pack 512]
    .venv/bin/python bench/dashboard_overhead.py --renderer [--repeats 15]
    .venv/bin/python bench/dashboard_overhead.py --notebook notebooks/en/01_quickstart.ipynb [--notebook ...]

Default: the tiny model fitted N steps with and without `LiveDashboard`, same process. Runs alternate (without,
with, with, without, ...) after one warm-up fit of each, so drift of a shared machine hits both sides alike. Outside
a kernel the dashboard publishes into a sink that does what ipykernel does with every display message (format the
object into its mime bundle, JSON-encode it); the PNG rendering is the real one. Prints the median fit times (wall
and process CPU time), their ratios (target <= 1.02) and the share of wall time spent inside the hook, which is the
precise number: the difference of two noisy wall times on a busy CPU is not.

--renderer: one frame of a 120-step run drawn the way the dashboard drew every frame before (`CurvesFigure.draw` +
`savefig`), and the two kinds of `LiveFrames` frames (axes drawn again; lines blitted onto the kept axes), interleaved,
median wall and CPU milliseconds and PNG bytes, with the ratios to the former frame.

--notebook: a tutorial executed top to bottom in a real kernel (nbclient, as nbmake runs it). For each fit, the
dashboard's own account (frames, of which with the axes, seconds in the hook, the fit's wall time, their ratio:
the issue's targets are <= 2 % on the real-model notebook, <= 5 % with >= 5 frames on the quickstart) and, from the
kernel's messages, how many image updates the fit's cell sent and when the first one came.
"""

from __future__ import annotations

import argparse
import json
import os
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


def renderer_costs(repeats: int) -> None:
    """The former frame (a full draw + savefig) against LiveFrames' two kinds, interleaved, on a 120-step run."""
    import math

    from xtuner_nb.notebook.frames import LiveFrames
    from xtuner_nb.notebook.plots import CurveData, CurvesFigure

    rows = [{"step": s, "loss/reduced_llm_loss": 3 * math.exp(-s / 30) + 0.5 + 0.05 * math.sin(3 * s),
             "lr": 1e-3 * (0.55 + 0.45 * math.cos(math.pi * s / 120)), "grad_norm": 1 + 0.1 * math.sin(s),
             "runtime_info/tgs": 1000.0 + 10 * math.sin(s)} for s in range(1, 121)]
    data = CurveData.from_rows(rows + [{"step": 120, "eval/loss": 1.0}])
    former, live = CurvesFigure(dpi=80).warm_up(), LiveFrames(dpi=80).warm_up()

    def former_frame():
        former.draw(data, "run  step 120/120")
        return former.png()

    def axes_frame():
        live.reset()
        return live.render(data, "run  step 120/120", 120)

    def lines_frame():
        return live.render(data, "run  step 120/120", 120)

    kinds = {"former frame (draw + savefig)": former_frame, "LiveFrames, axes drawn": axes_frame,
             "LiveFrames, lines blitted": lines_frame}
    wall = {k: [] for k in kinds}
    cpu = {k: [] for k in kinds}
    size = {}
    for _ in range(repeats):
        for name, frame in kinds.items():
            t0, c0 = time.perf_counter(), time.process_time()
            size[name] = len(frame())
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    base = statistics.median(wall["former frame (draw + savefig)"])
    print(f"one frame of a 120-step run, 4 panels, dpi 80; median of {repeats}, interleaved")
    for name in kinds:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:30s} {1000 * w:6.1f} ms wall  {1000 * c:6.1f} ms CPU  {size[name] / 1024:5.1f} KiB PNG  "
              f"{w / base:.2f}x the former frame")


def notebook_fits(notebook: Path, timeout: int) -> None:
    """Execute `notebook` in a real kernel; after every cell, ask the kernel what each dashboard's last fit cost."""
    import shutil

    import nbformat

    from tests.notebook.kernel_frames import run_cells

    probe = ("import json as _json\n"
             "print('__DASHBOARDS__' + _json.dumps([{'id': id(_h), **_h.stats} for _v in list(globals().values())"
             " if type(_v).__name__ == 'Trainer' for _h in _v.hooks"
             " if type(_h).__name__ == 'LiveDashboard' and 'fit_seconds' in _h.stats]))")
    nb = nbformat.read(notebook, as_version=4)
    cells = []
    for cell in nb.cells:  # a probe after each code cell
        cells.append(cell)
        if cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(probe))
    nb.cells = cells
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / notebook.stem
        shutil.copytree(notebook.parent, work, ignore=shutil.ignore_patterns("work_dir", ".ipynb_checkpoints"))
        t0 = time.perf_counter()
        timelines = run_cells(nb, work, timeout=timeout)
        total = time.perf_counter() - t0
    seen: dict[int, dict] = {}
    print(f"{notebook}: executed in {total:.0f} s")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "__DASHBOARDS__" not in cell.source:
            continue
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        fits = json.loads(text.split("__DASHBOARDS__")[1].splitlines()[0])
        for fit in fits:
            if seen.get(fit["id"]) == fit:
                continue
            seen[fit["id"]] = fit
            line = timelines[index - 1]  # the cell that ran the fit
            offsets = line.frame_offsets()
            source = nb.cells[index - 1].source.strip().splitlines()[0]
            print(f"  fit in cell `{source[:50]}`: {fit['draws']} frames ({fit['axes_draws']} with the axes), "
                  f"{fit['hook_seconds']:.3f} s in the dashboard of {fit['fit_seconds']:.1f} s: "
                  f"{100 * fit['hook_seconds'] / fit['fit_seconds']:.2f} % of the fit's wall time")
            print(f"    the cell ran {line.seconds:.1f} s and sent {len(offsets)} image updates, the first "
                  + (f"{offsets[0]:.1f} s in ({100 * offsets[0] / line.seconds:.0f} % of the cell)" if offsets
                     else "never"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3, help="measured fits per side (--renderer: frames per kind)")
    ap.add_argument("--pack", type=int, default=512, help="pack_max_length (tokens per step)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is least disturbed by "
                                                           "other processes on a shared machine)")
    ap.add_argument("--renderer", action="store_true", help="the cost of one frame, per way of drawing it")
    ap.add_argument("--notebook", type=Path, action="append", help="a tutorial to execute in a real kernel")
    ap.add_argument("--timeout", type=int, default=1800, help="--notebook: seconds per cell at most")
    args = ap.parse_args()
    if args.renderer:
        renderer_costs(args.repeats)
    elif args.notebook:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the kernel's torch threads, as `make demo` sets them
        for notebook in args.notebook:
            notebook_fits(notebook.resolve(), args.timeout)
    else:
        fits_with_and_without(args)


def fits_with_and_without(args) -> None:
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
