"""What this CPU's matmuls reach, measured: the peak CPU MFU divides by, and the reason CPU training stays fp32.

No datasheet gives a virtual machine's FLOP/s: its cores are shared and its vector units are whatever the host has
(AVX2 only, AVX-512 with bf16, AMX). So the peak is measured: `torch.mm` on square fp32 and bf16 matrices with the
threads torch uses, the best of a few repeats, once per process (about 0.2 s), kept in the asset cache
(`$XTUNER_NB_CACHE/cpu_peak.json`) per machine (CPU model, threads, torch version) as the best this machine has
shown. Why the best and not the first: a figure measured while other jobs share the cores reads low, never high, and
a cached low peak made every later run's MFU read high (a 2-core Xeon's cache held an fp32 peak of 116 GFLOP/s taken
under load, against 219 measured on the idle machine); now the next quiet start heals it.

bf16 is timed on a small matrix first, beside fp32 on the same matrix: where the CPU has no bf16 instructions torch
emulates them at about 0.5 GFLOP/s, a hundred times slower than fp32 (an AVX2 VM), and a large one would take
seconds. The ratio decides, not an absolute speed: a busy machine slows both alike (a fixed threshold once took a
native-bf16 Xeon's loaded 0.56 GFLOP/s for emulation).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from pathlib import Path

import torch

SIZE = 1024  # 2 GFLOP a product: long enough to time, short enough for a first run (about 20 ms in fp32 here)
EMULATED_RATIO = 10  # bf16 this many times slower than fp32 on a small matrix: emulated, skip the large one


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mm_flops(dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    # its own generator: a measurement that drew from the global one would move every later dropout mask, and a
    # process that measures (a torchrun worker, a resumed run) would train differently from one that did not
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).to(dtype) for _ in range(2))
    torch.mm(a, b)  # the first call builds oneDNN's kernel for this shape
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _measure() -> dict[str, float]:
    small = _mm_flops(torch.bfloat16, 128, repeats=3)
    emulated = small * EMULATED_RATIO < _mm_flops(torch.float32, 128, repeats=3)
    bf16 = small if emulated else _mm_flops(torch.bfloat16, SIZE)
    return {"float32": _mm_flops(torch.float32, SIZE), "bfloat16": bf16}


def _cache_file() -> Path:
    from ..assets import cache_root

    return cache_root() / "cpu_peak.json"


def _read() -> dict[str, dict[str, float]]:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _store(known: dict[str, dict[str, float]]) -> None:
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # ranks measuring at once each write a whole file
    tmp.write_text(json.dumps(known, indent=1))
    os.replace(tmp, path)


@functools.cache
def _cached(key: str) -> dict[str, float]:
    """This process's measurement merged with the stored one: the higher of the two, per dtype."""
    known, now = _read(), _measure()
    best = {dtype: max(flops, known.get(key, {}).get(dtype, 0.0)) for dtype, flops in now.items()}
    if best != known.get(key):
        known[key] = best
        _store(known)
    return best


def measured_cpu_peak(refresh: bool = False) -> dict[str, float]:
    """{"float32": FLOP/s, "bfloat16": FLOP/s} of this CPU's matmuls with torch's current thread count."""
    key = f"{cpu_model()} | threads={torch.get_num_threads()} | torch {torch.__version__}"
    if refresh:
        _cached.cache_clear()
        known = _read()
        if known.pop(key, None) is not None:
            _store(known)
    return _cached(key)


def cpu_precision_reason() -> str:
    """Why the CPU default is fp32, in this machine's measured figures."""
    peak = measured_cpu_peak()
    fp32, bf16 = peak["float32"] / 1e9, peak["bfloat16"] / 1e9
    if bf16 < fp32:
        return (f"CPU default: bf16 matmuls measured {bf16:.1f} GFLOP/s here against fp32's {fp32:.0f} "
                "(slower than fp32 on this CPU)")
    return (f"CPU default: bf16 matmuls measured {bf16 / fp32:.1f}x fp32's here ({bf16:.0f} against {fp32:.0f} "
            "GFLOP/s), but the CPU bf16 path is not yet checked for loss quality; FSDPConfig(precision='bfloat16') "
            "asks for it")
