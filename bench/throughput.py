"""Training throughput on CPU: xtuner_nb's Trainer against TRL's SFTTrainer, same model, data and optimizer.

    .venv/bin/python bench/throughput.py            # hidden 512, 8 layers, 32k vocab: about 10 min on 2 quiet cores
    .venv/bin/python bench/throughput.py --hidden 256 --layers 4 --samples 16 --reps 1   # a quick look (2 min)
    .venv/bin/python bench/throughput.py --model smollm2-135m-instruct    # the real pretrained model, full and LoRA
    .venv/bin/python bench/throughput.py --model smollm2-135m-instruct --samples 12 --max-steps 4 --reps 1 \
        --eval-samples 0                                                 # a short look (~7 min)

Systems, each trained for one epoch over the same conversations, from the same fp32 random-init checkpoint:
  ours         xtuner_nb Trainer: soft packing to --pack-len, varlen attention (one SDPA per sample on CPU),
               chunked CE (no [tokens, vocab] logits), recompute_ratio 0, one pack per optimizer step.
  trl_padding  TRL SFTTrainer, default collator (pads each batch to its longest sample); batch size chosen so a
               step holds as many real tokens as one of our packs.
  trl_packing  TRL SFTTrainer, packing=True (default "bfd" strategy, which switches padding-free on), max_length =
               --pack-len, batch 1: one pack per step, as ours.
Real-model mode (--model smollm2-135m-instruct): the pretrained SmolLM2-135M-Instruct from
`xtuner_nb.model.fetch_pretrained` instead of a random init, its own tokenizer (see real_model.py), the same data
generator; systems ours and trl_packing (padding-free), each in full and with LoRA (`*_lora`: rank --lora-r on every
linear layer, alpha 2r; TRL gets the same adapters as a peft_config). Ratios pair ours with TRL in the same mode.
Common settings: fp32, AdamW (lr, betas 0.9/0.95, weight decay 0.01, eps 1e-8), clip 1.0, constant LR without
warm-up, loss on assistant tokens only (TRL: assistant_only_loss=True, the tokenizer's template marks them),
no activation checkpointing, no eval, no saving, report_to=[], dataloader workers 0, transformers' sdpa attention
for TRL's model (the attention transformers uses by default; flash-attention does not exist on CPU).

Measured the same way for every system: wall time from the end of step 1 to the end of the last step, over the
non-padding tokens of steps 2..n (step 1 is the warm-up); peak memory = peak RSS of the process (each run is a fresh
subprocess); final loss = the last step's training loss; eval loss = the same held-out function for every model.
Runs are interleaved (A B C A B C ...) and medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import real_model  # noqa: E402

BASE_SYSTEMS = ("ours", "trl_padding", "trl_packing")
SYSTEMS = BASE_SYSTEMS + tuple(f"{s}_lora" for s in BASE_SYSTEMS)
LABELS = {"ours": "xtuner_nb Trainer (packed, varlen, chunk CE)", "trl_padding": "TRL SFTTrainer, padding (default)",
          "trl_packing": "TRL SFTTrainer, packing bfd (padding-free)"}
LABELS.update({f"{s}_lora": f"{label}, LoRA" for s, label in LABELS.items()})
TARGETS = {"trl_padding": 1.5, "trl_packing": 1.1}
REAL_TARGETS = {"trl_padding": 1.5, "trl_packing": 1.3}  # issue 13: >= 1.3x TRL padding-free on SmolLM2-135M
REAL_SYSTEMS = "ours,trl_packing,ours_lora,trl_packing_lora"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=24, help="training conversations (one epoch)")
    p.add_argument("--eval-samples", type=int, default=4, help="held-out conversations for the eval loss")
    p.add_argument("--reps", type=int, default=2, help="interleaved repetitions of every system")
    p.add_argument("--pack-len", type=int, default=2048, help="tokens per pack (ours, TRL packing)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--min-len", type=int, default=50)
    p.add_argument("--max-len", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="a pretrained model for xtuner_nb.model.fetch_pretrained "
                                                  "(smollm2-135m-instruct) instead of the random Qwen3 of --hidden/--layers/--vocab")
    p.add_argument("--max-steps", type=int, default=None, help="stop every system after this many steps "
                                                                 "(default: one epoch)")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank of the *_lora systems (alpha = 2r)")
    p.add_argument("--systems", default=None, help="comma-separated subset of " + ",".join(SYSTEMS) +
                   f" (default: {','.join(BASE_SYSTEMS)}; with --model: {REAL_SYSTEMS})")
    p.add_argument("--work-dir", type=Path, default=None, help="keep setup and results here (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write every run and the medians to this file")
    p.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--trl-batch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- setup (parent) -----------------------------------------------------------------------------------------------
def setup(args, wd: Path) -> dict:
    import statistics

    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    tok_dir, init = wd / "tokenizer", wd / "init"
    if args.model:
        tok = real_model.prepare_init(args.model, init)
    else:
        common.make_tokenizer(tok_dir, vocab_size=args.vocab, seed=args.seed)
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
    lengths = common.make_sft_jsonl(wd / "train.jsonl", tok, args.samples, seed=args.seed,
                                    min_len=args.min_len, max_len=args.max_len)
    common.make_sft_jsonl(wd / "eval.jsonl", tok, args.eval_samples, seed=args.seed + 7,
                          min_len=args.min_len, max_len=args.max_len)
    cfg = _model_cfg(args)
    if not args.model:
        common.save_init_checkpoint(init, cfg, tok, seed=args.seed)
    packs = _count_our_packs(init, wd / "train.jsonl", args.pack_len)
    per_pack = sum(lengths) / packs
    trl_batch = max(1, round(per_pack / statistics.mean(lengths)))
    info = {"samples": len(lengths), "tokens": sum(lengths), "min_len": min(lengths),
            "median_len": statistics.median(lengths), "mean_len": statistics.mean(lengths), "max_len": max(lengths),
            "our_packs": packs, "tokens_per_pack": per_pack, "trl_padding_batch": trl_batch,
            "params_M": cfg.num_params() / 1e6, "setup_seconds": time.perf_counter() - t0,
            "model": real_model.REAL_MODELS[args.model] if args.model else
            f"Qwen3-shaped, hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, random init"}
    (wd / "setup.json").write_text(json.dumps(info))
    return info


def _model_cfg(args):
    if args.model:
        return real_model.model_config(args.work_dir / "init")
    return common.model_config(args.hidden, args.layers, args.vocab, max_pos=max(args.pack_len, 4096))


def _count_our_packs(init: Path, jsonl: Path, pack_len: int) -> int:
    from transformers import AutoTokenizer

    from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig

    tok = AutoTokenizer.from_pretrained(str(init))
    cfg = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(jsonl)),
                                                 "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="hf",
                                                                                             max_length=pack_len)}],
                           pack_max_length=pack_len, pad_token_id=tok.pad_token_id)
    return len(cfg.build(tok, progress=False))


# ---- one run (child process) --------------------------------------------------------------------------------------
def child(args) -> None:
    from transformers import AutoTokenizer

    wd = args.work_dir
    init = wd / "init"
    cfg = _model_cfg(args)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{args.child}-", dir=wd))
    system = args.child.removesuffix("_lora")
    ours_lora, trl_lora = real_model.lora_configs(args.lora_r) if args.child.endswith("_lora") else (None, None)
    if system == "ours":
        res = common.run_ours(init, wd / "train.jsonl", cfg, pack_len=args.pack_len, lr=args.lr, work_dir=run_dir,
                              total_step=args.max_steps, lora_cfg=ours_lora)
    else:
        mode = "padding" if system == "trl_padding" else "packing"
        res = common.run_trl(init, wd / "train.jsonl", mode=mode, pack_len=args.pack_len, model_cfg=cfg,
                             batch_size=args.trl_batch if mode == "padding" else 1, lr=args.lr, out_dir=run_dir,
                             max_length=args.pack_len if mode == "packing" else args.max_len,
                             max_steps=args.max_steps, peft_config=trl_lora)
    model = res.pop("model")
    res.pop("trainer")
    tok = AutoTokenizer.from_pretrained(str(init))
    held_out = [common.chat_ids(tok, r["messages"]) for r in common.read_jsonl(wd / "eval.jsonl")]
    res["eval_loss"] = common.eval_loss(model, held_out) if held_out else float("nan")
    res["system"] = args.child
    args.result.write_text(json.dumps(res))
    shutil.rmtree(run_dir, ignore_errors=True)


def run_child(args, system: str, trl_batch: int, wd: Path, rep: int) -> dict:
    result = wd / f"result-{system}-{rep}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", system, "--work-dir", str(wd),
           "--result", str(result), "--pack-len", str(args.pack_len), "--hidden", str(args.hidden),
           "--layers", str(args.layers), "--vocab", str(args.vocab), "--lr", str(args.lr),
           "--max-len", str(args.max_len), "--trl-batch", str(trl_batch), "--lora-r", str(args.lora_r),
           *(["--model", args.model] if args.model else []),
           *(["--max-steps", str(args.max_steps)] if args.max_steps else [])]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"{system} (rep {rep + 1}) failed with exit code {proc.returncode}")
    res = json.loads(result.read_text())
    res["wall_seconds"] = time.perf_counter() - t0
    res["rep"] = rep
    return res


# ---- report -------------------------------------------------------------------------------------------------------
def report(runs: list[dict], systems: list[str], info: dict, args, elapsed: float) -> dict:
    med = {}
    for s in systems:
        rs = [r for r in runs if r["system"] == s]
        med[s] = {k: common.median([r[k] for r in rs]) for k in
                  ("tokens_per_s", "tokens_per_cpu_s", "peak_rss_gib", "final_loss", "eval_loss", "timed_tokens",
                   "timed_steps", "rss_before_train_gib", "model_tflops_per_s")}
        med[s]["all_tokens_per_s"] = [round(r["tokens_per_s"], 1) for r in rs]
        # model FLOP/s over the peak: a CPU's measured here in the run's dtype (train/cpu_peak.py), a GPU's datasheet
        mfus = [r["mfu"] for r in rs if r.get("mfu") is not None]
        med[s]["mfu"] = common.median(mfus) if mfus else None
    print()
    print(f"model: {info['model']}, {info['params_M']:.1f} M params, fp32"
          + (f"; LoRA rank {args.lora_r} (alpha {2 * args.lora_r}) on every linear layer"
             if any(s.endswith("_lora") for s in systems) else ""))
    print(f"data: {info['samples']} conversations, {info['tokens']} tokens, length min/median/mean/max "
          f"{info['min_len']}/{info['median_len']:.0f}/{info['mean_len']:.0f}/{info['max_len']}; "
          f"ours: {info['our_packs']} packs of <= {args.pack_len} ({info['tokens_per_pack']:.0f} tokens/pack); "
          f"TRL padding batch {info['trl_padding_batch']}")
    print(f"runs: {args.reps} interleaved repetition(s), medians; torch threads {_threads()}"
          + (f"; at most {args.max_steps} steps per run" if args.max_steps else ""))
    print()
    head = (f"{'system':<52} {'tokens/s':>9} {'runs':>13} {'tok/CPU-s':>9} {'peak RSS':>9} {'final loss':>10} "
            f"{'eval loss':>9} {'MFU':>6}")
    print(head)
    print("-" * len(head))
    for s in systems:
        m = med[s]
        runs_txt = "/".join(f"{v:.0f}" for v in m["all_tokens_per_s"])
        print(f"{LABELS[s]:<52} {m['tokens_per_s']:>9.1f} {runs_txt:>13} {m['tokens_per_cpu_s']:>9.1f} "
              f"{m['peak_rss_gib']:>7.2f} G {m['final_loss']:>10.4f} {m['eval_loss']:>9.4f} "
              f"{'-' if m['mfu'] is None else format(m['mfu'], '6.1%'):>6}")
    verdicts = {}
    targets = REAL_TARGETS if args.model else TARGETS
    pairs = [(s, "ours_lora" if s.endswith("_lora") else "ours") for s in systems if s.startswith("trl")]
    pairs = [(s, o) for s, o in pairs if o in med]
    if pairs:
        print()
    for s, o in pairs:
        target = targets[s.removesuffix("_lora")]
        speed = med[o]["tokens_per_s"] / med[s]["tokens_per_s"]
        mem = med[o]["peak_rss_gib"] / med[s]["peak_rss_gib"]
        ok_speed, ok_mem = speed >= target, mem <= 1.0
        cpu = med[o]["tokens_per_cpu_s"] / med[s]["tokens_per_cpu_s"]
        verdicts[s] = {"vs": o, "speed_ratio": speed, "memory_ratio": mem, "speed_target": target,
                       "speed_met": ok_speed, "memory_met": ok_mem, "cpu_time_ratio": cpu}
        print(f"{o + ' vs ' + s:<30} tokens/s {speed:5.2f}x (target >= {target}x: {'met' if ok_speed else 'MISSED'})"
              f"   peak RSS {mem:5.2f}x (target <= 1.00x: {'met' if ok_mem else 'MISSED'})"
              f"   tokens per CPU-second {cpu:5.2f}x")
    print(f"\nwhole script: {elapsed / 60:.1f} min; machine: {platform.machine()} {os.cpu_count()} cores, "
          f"{_mem_total_gib():.0f} GiB; load average at the end {os.getloadavg()[0]:.1f}")
    return {"medians": med, "ratios": verdicts, "setup": info, "runs": runs, "elapsed_seconds": elapsed,
            "args": {k: str(v) for k, v in vars(args).items()}}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) / 2**20
    except OSError:
        return float("nan")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    chosen = args.systems or (REAL_SYSTEMS if args.model else ",".join(BASE_SYSTEMS))
    systems = [s.strip() for s in chosen.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}; choose from {SYSTEMS}")
    t0 = time.perf_counter()
    temp = args.work_dir is None
    wd = Path(tempfile.mkdtemp(prefix="xtuner_nb_throughput-")) if temp else args.work_dir.resolve()
    wd.mkdir(parents=True, exist_ok=True)
    args.work_dir = wd
    try:
        print(f"setup in {wd} ...", flush=True)
        info = setup(args, wd)
        print(f"setup: {info['samples']} conversations, {info['tokens']} tokens, {info['our_packs']} packs, "
              f"TRL padding batch {info['trl_padding_batch']} ({info['setup_seconds']:.0f} s)", flush=True)
        runs = []
        for rep in range(args.reps):
            for s in systems:
                r = run_child(args, s, info["trl_padding_batch"], wd, rep)
                runs.append(r)
                print(f"  rep {rep + 1} {s:<16} {r['tokens_per_s']:8.1f} tokens/s "
                      f"({r['tokens_per_cpu_s']:.1f}/CPU-s)  peak RSS "
                      f"{r['peak_rss_gib']:.2f} GiB  final loss {r['final_loss']:.4f}  eval {r['eval_loss']:.4f}  "
                      f"({r['timed_steps']} timed steps, {r['wall_seconds']:.0f} s, load {os.getloadavg()[0]:.1f})",
                      flush=True)
        out = report(runs, systems, info, args, time.perf_counter() - t0)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    finally:
        if temp:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
