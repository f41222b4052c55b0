"""What a device has for a run: free device memory, host RAM, its compute capability and how many GPUs the node has.

Measured on the machine by `measure_budget(device)`; given explicitly (`DeviceBudget(...)`) to plan for another
machine, e.g. a T4 (capability 7.5, no bf16) from a CPU laptop, or in tests. On a CPU the device *is* the host:
the run may use the RAM available now plus what the process already holds, because the CPU estimate counts the
process's own resident memory as its overhead (`estimate.estimate_run`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .estimate import GiB

# nominal memory (GiB) and compute capability of common training GPUs: `show_fit(est, "T4")` plans for one
GPUS: dict[str, tuple[float, tuple[int, int]]] = {
    "T4": (16, (7, 5)), "L4": (24, (8, 9)), "RTX 4090": (24, (8, 9)), "A100 40GB": (40, (8, 0)),
    "A100 80GB": (80, (8, 0)), "H100 80GB": (80, (9, 0)), "H200": (141, (9, 0))}
_ALIASES = {"4090": "RTX 4090", "A100-40": "A100 40GB", "A100-40GB": "A100 40GB", "A100-80": "A100 80GB",
            "A100-80GB": "A100 80GB", "A100": "A100 80GB", "H100": "H100 80GB", "H100-80GB": "H100 80GB"}


@dataclass(frozen=True)
class DeviceBudget:
    """The memory a run may use. `device_bytes` is compared with the estimate's total, `host_bytes` (None: not
    known) with what the run keeps in host memory besides the device (`MemoryEstimate.host_bytes`) times
    `processes_per_node` (torchrun starts one process per GPU, and they share the host)."""

    device: torch.device
    name: str  # what the verdict names: "cpu", "NVIDIA L4", "T4"
    device_bytes: int
    host_bytes: int | None
    capability: tuple[int, int] | None = None  # CUDA only; None on a CPU
    gpus: int = 0  # GPUs on this node: what torchrun could use
    processes_per_node: int = 1
    process_bytes: int = 0  # CPU: the process's resident memory now, part of the estimate (its overhead)
    what: str = ""  # how device_bytes was measured, for the message

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def fits(self, est) -> bool:
        host_ok = self.host_bytes is None or not self.on_gpu or \
            est.host_bytes * self.processes_per_node <= self.host_bytes
        return est.total <= self.device_bytes and host_ok


def host_memory() -> tuple[int, int]:
    """(bytes of RAM available now, total RAM): /proc/meminfo's MemAvailable, which counts reclaimable page cache."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)
    except ImportError:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return int(info["MemAvailable"].split()[0]) * 1024, int(info["MemTotal"].split()[0]) * 1024


def process_resident_bytes() -> int:
    """This process's resident memory now (VmRSS): the CPU estimate's overhead."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # no procfs (macOS): the peak so far, which is at least what is held now
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def measure_budget(device: torch.device, processes_per_node: int = 1, held_by_this_run: int = 0) -> DeviceBudget:
    """The budget of `device` now. `held_by_this_run`: device memory this process holds for the run being priced,
    counted as usable (the OOM message prices a run whose model is still allocated)."""
    available, total_ram = host_memory()
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        name = torch.cuda.get_device_name(device)
        return DeviceBudget(device, name, int(free) + held_by_this_run, available,
                            torch.cuda.get_device_capability(device), torch.cuda.device_count(), processes_per_node,
                            what=f"free of {total / GiB:.1f} GiB on {name}")
    rss = process_resident_bytes()
    return DeviceBudget(device, "cpu", available + rss, available, None, 0, processes_per_node, process_bytes=rss,
                        what=f"RAM available ({available / GiB:.1f} of {total_ram / GiB:.1f} GiB) plus what this "
                             f"process holds ({rss / GiB:.1f} GiB)")


def planned_budget(gpu: str | float, host_bytes: int | None = None) -> DeviceBudget:
    """The budget of a GPU by name from `GPUS` ("T4", "H100", ...) or of `gpu` GiB, for planning on any machine."""
    if isinstance(gpu, (int, float)):
        return DeviceBudget(torch.device("cuda", 0), f"{gpu:g} GiB GPU", int(gpu * GiB), host_bytes, None, 1,
                            what=f"the memory of a {gpu:g} GiB GPU")
    norm = lambda s: s.lower().replace(" ", "").replace("-", "")  # noqa: E731
    lookup = {norm(k): k for k in GPUS} | {norm(k): v for k, v in _ALIASES.items()}
    name = lookup.get(norm(str(gpu).strip()))
    if name is None:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of {list(GPUS)} or give the memory in GiB")
    gib, capability = GPUS[name]
    return DeviceBudget(torch.device("cuda", 0), name, int(gib * GiB), host_bytes, capability, 1,
                        what=f"the memory of a {name}")
