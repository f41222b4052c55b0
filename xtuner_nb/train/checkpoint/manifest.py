"""What a complete checkpoint holds, and the check of a checkpoint against it before it is loaded.

`manifest.json` is the last file written into a checkpoint folder (after train_state.json, before the `.tmp`
folder is renamed). It lists every other file of the folder with its size and its XXH3-64 checksum:

    {"format": 1, "files": {"train_state.json": {"size": 133, "xxh3_64": "5d8f0a1c93e2b417"},
                            "weights/__0_0.distcp": {"size": 13958506, "xxh3_64": "0b7e22f4a1c06d59"}, ...}}

XXH3 (xxhash), not a cryptographic hash: it finds what real faults leave behind (a file cut short by a full disk or
a killed copy, a block of zeros, flipped bits) at GB/s per core, hashed from the file's mapped pages: about 5 % of
a save's time, where zlib's CRC-32 takes three times as long (`bench/checkpoint_manifest.py` measures both). It is
no guard against someone who edits a checkpoint on purpose; `folder.load_pt` and the restricted unpickler make
loading one safe.

Under torchrun each rank describes, and later checks, the files it wrote: its DCP shard `__<rank>_<n>.distcp` and
its `rng_rank<rank>.pt`; rank 0 the rest. Rank 0 writes the manifest, and every rank gets the same verdict.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from pathlib import Path

import xxhash

from ..distributed import all_gather_object

MANIFEST = "manifest.json"
CHECKSUM = "xxh3_64"
_RANK_IN_NAME = re.compile(r"^(?:__(\d+)_\d+\.distcp|rng_rank(\d+)\.pt)$")


class DamagedCheckpointError(ValueError):
    """A checkpoint's files are not what its save wrote (the message names the checkpoint and the file)."""


def checksum_of(path: Path) -> str:
    """XXH3-64 of a file, hashed straight from its mapped pages: no copy through a read buffer, which took three
    quarters of the time."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:  # an empty file cannot be mapped
            return xxhash.xxh3_64().hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return xxhash.xxh3_64(mapped).hexdigest()


def _owner(relpath: str, world_size: int) -> int:
    """The rank that describes and checks a file: the writer of a rank's own file, rank 0 for the shared ones.
    Read with fewer ranks than wrote it, the files of the missing ranks are spread over the others."""
    m = _RANK_IN_NAME.match(Path(relpath).name)
    return int(m.group(1) or m.group(2)) % world_size if m else 0


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, rank: int, world_size: int) -> None:
    """Collective, once every other file of `folder` is written: each rank records its own files, rank 0 writes
    manifest.json."""
    mine = {rel: {"size": (folder / rel).stat().st_size, CHECKSUM: checksum_of(folder / rel)}
            for rel in _files(folder) if _owner(rel, world_size) == rank}
    files: dict[str, dict] = {}
    for part in all_gather_object(mine):
        files.update(part)
    if rank == 0:
        text = json.dumps({"format": 1, "files": dict(sorted(files.items()))}, indent=1)
        (folder / MANIFEST).write_text(text, encoding="utf-8")


def has_manifest(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def find_damage(folder: Path, rank: int = 0, world_size: int = 1) -> str | None:
    """Collective: what is wrong with the checkpoint `folder` (the first problem, the same on every rank), or None
    when every file is what the save wrote. A folder without a manifest (saved before checkpoints recorded one)
    cannot be checked: None; `has_manifest` tells them apart."""
    problems = [p for p in all_gather_object(_damage_seen_by(Path(folder), rank, world_size)) if p]
    return problems[0] if problems else None


def _damage_seen_by(folder: Path, rank: int, world_size: int) -> str | None:
    if not has_manifest(folder):
        return None
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        mine = {rel: (int(f["size"]), str(f[CHECKSUM])) for rel, f in files.items() if _owner(rel, world_size) == rank}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{MANIFEST} cannot be read ({type(exc).__name__}: {exc})"
    for rel, (size, _) in sorted(mine.items()):  # sizes first: a file cut short is found without reading it
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} has {path.stat().st_size} bytes where the save wrote {size}"
    for rel, (_, recorded) in sorted(mine.items()):
        found = checksum_of(folder / rel)
        if found != recorded:
            return f"{rel} is not what the save wrote (checksum {found}, recorded {recorded})"
    return None
