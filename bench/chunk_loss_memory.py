"""Peak memory of one forward + backward of the LM loss (hidden -> lm_head -> CE), eager vs chunk mode.

    .venv/bin/python bench/chunk_loss_memory.py [--tokens 16384] [--vocab 151936] [--hidden 256] [--chunk-size 1024]

Measured: the peak extra memory above what the inputs (hidden, lm_head weight, labels) already take.
CUDA: torch.cuda.max_memory_allocated in this process. CPU: each (mode, tokens) runs in a fresh subprocess and
reports peak RSS (getrusage ru_maxrss) minus the RSS after the inputs were allocated. On CPU the eager run at the
full token count may not fit in RAM (about 3 copies of the fp32 [tokens, vocab] logits), so eager is measured at the
largest token count whose estimate fits a third of the available memory, and its peak is extrapolated linearly
(the eager peak is proportional to tokens x vocab; the small per-token terms are negligible).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xtuner_nb.loss import CELossConfig, lm_loss, loss_weights  # noqa: E402

MiB = 2**20


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(mode: str, tokens: int, vocab: int, hidden: int, chunk_size: int, device: str, dtype: torch.dtype) -> int:
    """Peak bytes above the inputs for one forward + backward of the loss."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, tokens, hidden, generator=g).to(device, dtype).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=g) * 0.02).to(device, dtype).requires_grad_()
    labels = torch.randint(0, vocab, (1, tokens), generator=g).to(device)
    labels[0, ::7] = -100
    weights = loss_weights(labels, torch.tensor([0, tokens], dtype=torch.int32), "token")
    cfg = CELossConfig(mode=mode, chunk_size=chunk_size)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = rss_bytes()
    lm_loss(h, w, labels, weights, weights.sum(), cfg).backward()
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def measure_in_subprocess(mode: str, tokens: int, args) -> int:
    cmd = [sys.executable, __file__, "--child", mode, "--tokens", str(tokens), "--vocab", str(args.vocab),
           "--hidden", str(args.hidden), "--chunk-size", str(args.chunk_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info["MemAvailable"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--eager-tokens", type=int, default=None, help="CPU: tokens for the eager run (default: auto)")
    p.add_argument("--child", choices=["eager", "chunk"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    if args.child:  # one measurement on CPU, fp32, in this fresh process
        peak = measure(args.child, args.tokens, args.vocab, args.hidden, args.chunk_size, "cpu", torch.float32)
        print(json.dumps({"peak_bytes": peak}))
        return

    logits_bytes = lambda n: n * args.vocab * 4  # noqa: E731  fp32 [n, vocab]
    print(f"loss forward+backward, vocab {args.vocab}, hidden {args.hidden}, chunk_size {args.chunk_size}; "
          f"fp32 [tokens, vocab] logits at {args.tokens} tokens = {logits_bytes(args.tokens) / MiB:.0f} MiB")
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name()
        eager = measure("eager", args.tokens, args.vocab, args.hidden, args.chunk_size, "cuda", torch.bfloat16)
        chunk = measure("chunk", args.tokens, args.vocab, args.hidden, args.chunk_size, "cuda", torch.bfloat16)
        print(f"device {dev}, bf16 inputs, torch.cuda.max_memory_allocated above the inputs, {args.tokens} tokens:")
        print(f"  eager {eager / MiB:10.1f} MiB\n  chunk {chunk / MiB:10.1f} MiB\n  eager/chunk = {eager / chunk:.1f}x")
        return

    n_eager = args.eager_tokens
    if n_eager is None:  # the eager peak is about 3 fp32 logits copies; keep the estimate under 1/3 of free RAM
        n_eager = args.tokens
        while n_eager > args.chunk_size and 4 * logits_bytes(n_eager) > available_bytes() / 3:
            n_eager //= 2
    print(f"device CPU ({torch.get_num_threads()} threads), fp32 inputs, peak RSS above the inputs, "
          f"one fresh subprocess per run:")
    eager = measure_in_subprocess("eager", n_eager, args)
    chunk_same = measure_in_subprocess("chunk", n_eager, args)
    print(f"  eager @ {n_eager:6d} tokens: {eager / MiB:10.1f} MiB  ({eager / logits_bytes(n_eager):.2f}x the logits)")
    print(f"  chunk @ {n_eager:6d} tokens: {chunk_same / MiB:10.1f} MiB  -> eager/chunk = {eager / chunk_same:.1f}x")
    if n_eager != args.tokens:
        chunk = measure_in_subprocess("chunk", args.tokens, args)
        eager_full = eager * args.tokens / n_eager
        print(f"  chunk @ {args.tokens:6d} tokens: {chunk / MiB:10.1f} MiB  (measured)")
        print(f"  eager @ {args.tokens:6d} tokens: {eager_full / MiB:10.1f} MiB  (extrapolated x{args.tokens / n_eager:g}"
              f" from {n_eager} tokens{'' if args.eager_tokens else ': too big to run safely here'})")
        print(f"  eager/chunk @ {args.tokens} tokens = {eager_full / chunk:.1f}x (extrapolated eager / measured chunk)")


if __name__ == "__main__":
    main()
