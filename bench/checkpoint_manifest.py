"""What the checkpoint manifest costs: its checksum of every file against the save that writes them, and the check
before a resume against the load; and the checksum it uses (XXH3-64) against zlib's CRC-32 on the same files.

    .venv/bin/python bench/checkpoint_manifest.py                 # 50 M fp32 parameters + AdamW: a 600 MB checkpoint
    .venv/bin/python bench/checkpoint_manifest.py --params 200e6 --dir /data/scratch

A stack of Linear layers takes one AdamW step, then `folder.save_checkpoint` writes it (DCP weights + optimizer,
the small files, train_state.json and the manifest) into a temporary folder on the disk of `--dir`. Measured in
the same run, files as a save leaves them (in the page cache):
- manifest: `manifest.write_manifest` again on the saved folder (the checksum of every file), against the whole save;
- check: `manifest.find_damage` (sizes, then every checksum), against `folder.load_checkpoint`;
- peer: zlib.crc32 over the same files read the same way, against `manifest.checksum_of`.
Each is the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from xtuner_nb.train.checkpoint import folder, manifest  # noqa: E402
from xtuner_nb.train.checkpoint.disk import folder_bytes, size_text  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def crc32_of(path: Path) -> str:
    """The peer: zlib's CRC-32, over the file mapped as `manifest.checksum_of` maps it."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return f"{0:08x}"
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return f"{zlib.crc32(mapped):08x}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=float, default=50e6, help="fp32 parameters of the model")
    ap.add_argument("--dir", default=None, help="where to write the checkpoint (default: the system's temp folder)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    width = 2048
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(max(1, int(args.params) // width**2))])
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    model(torch.ones(1, width)).sum().backward()
    optimizer.step()
    parts = dict(model=model, optimizer=optimizer, scheduler=scheduler, rank=0)

    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        path = Path(root) / "ckpt-step-1"

        def save():
            shutil.rmtree(path, ignore_errors=True)
            folder.save_checkpoint(path, loader_state={}, train_state={"cur_step": 1}, config_json=None, **parts)

        t_save = best(save, args.repeat)
        t_manifest = best(lambda: manifest.write_manifest(path, 0, 1), args.repeat)
        t_load = best(lambda: folder.load_checkpoint(path, **parts), args.repeat)
        t_check = best(lambda: manifest.find_damage(path), args.repeat)
        files = [p for p in path.rglob("*") if p.is_file()]
        t_xxh3 = best(lambda: [manifest.checksum_of(p) for p in files], args.repeat)
        t_crc32 = best(lambda: [crc32_of(p) for p in files], args.repeat)
        size = folder_bytes(path)
    print(f"checkpoint: {size_text(size)} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M fp32 parameters "
          f"+ AdamW), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"save (with manifest): {t_save:.2f} s; manifest alone: {t_manifest:.2f} s "
          f"({size / t_manifest / 1e9:.2f} GB/s) = {t_manifest / t_save:.2f} of the save")
    print(f"load: {t_load:.2f} s; check before it: {t_check:.2f} s = {t_check / t_load:.2f} of the load")
    print(f"checksum of every file: xxh3_64 {size / t_xxh3 / 1e9:.2f} GB/s, zlib.crc32 {size / t_crc32 / 1e9:.2f} GB/s: "
          f"xxh3_64 takes {t_xxh3 / t_crc32:.2f} of crc32's time")


if __name__ == "__main__":
    main()
