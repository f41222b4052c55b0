"""On-disk cache of tokenized files: `<cache_dir>/<file content hash>/<tokenize_fn.hash()>/`.

Unlike XTuner (which caches lengths and re-tokenizes at runtime), the token ids themselves are stored, so a second
start only hashes the file and loads arrays. Entries are written to a temporary folder and renamed into place, so
a crash never leaves a half-written entry under the real name; `meta.json` records every array's shape, dtype
and CRC32, and an entry that does not match is reported, deleted and rebuilt, never trusted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("xtuner_nb.datasets")

CACHE_FORMAT = 2
ARRAYS = ("input_ids", "labels", "offsets", "lines", "loss_counts")
_SAFE = re.compile(r"^[A-Za-z0-9_.=-]{1,120}$")


def entry_dir(cache_dir: str | Path, file_hash: str, fn_hash: str) -> Path:
    import hashlib

    fn_key = fn_hash if _SAFE.match(fn_hash) else hashlib.sha256(fn_hash.encode()).hexdigest()[:32]
    return Path(cache_dir) / file_hash[:32] / fn_key


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(arr).view(np.uint8)) & 0xFFFFFFFF


def save_entry(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        info = {}
        for name in ARRAYS:
            arr = np.ascontiguousarray(arrays[name])
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, arr, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            info[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "crc32": _crc(arr)}
        with open(tmp / "meta.json", "w") as f:  # written last: its presence means the arrays are complete
            json.dump({**meta, "format": CACHE_FORMAT, "arrays": info}, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # a stale/corrupt entry, or another process finished first
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:  # lost a race to a concurrent writer: theirs is equally valid
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_entry(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and meta of a valid entry; None when there is none; a broken entry is deleted (and None)."""
    if not path.exists():
        return None
    try:
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {meta.get('format')} != {CACHE_FORMAT}")
        arrays = {}
        for name in ARRAYS:
            want = meta["arrays"][name]
            arr = np.load(path / f"{name}.npy", allow_pickle=False)
            if list(arr.shape) != want["shape"] or str(arr.dtype) != want["dtype"]:
                raise ValueError(f"{name}.npy has shape {list(arr.shape)} {arr.dtype}, expected "
                                 f"{want['shape']} {want['dtype']}")
            if _crc(arr) != want["crc32"]:
                raise ValueError(f"{name}.npy checksum mismatch")
            arrays[name] = arr
        n = len(arrays["lines"])
        off = arrays["offsets"]
        if len(off) != n + 1 or len(arrays["loss_counts"]) != n or off[0] != 0 or \
                off[-1] != len(arrays["input_ids"]) or len(arrays["labels"]) != len(arrays["input_ids"]) or \
                (n and np.any(np.diff(off) < 0)):
            raise ValueError("inconsistent offsets/lengths")
    except Exception as e:  # noqa: BLE001 - anything wrong with an entry means: rebuild it
        logger.warning("Dataset cache entry %s is corrupted or incomplete (%s); rebuilding it.", path, e)
        shutil.rmtree(path, ignore_errors=True)
        return None
    return arrays, meta


# ---- cache_tag: (tag, file path, tokenize hash) -> file content hash, so a tagged start skips hashing the file ----
def tag_lookup(cache_dir: str | Path, tag: str, file: Path, fn_hash: str) -> str | None:
    reg = Path(cache_dir) / "tags.json"
    try:
        return json.loads(reg.read_text())[tag][str(file.resolve())][fn_hash]
    except (OSError, KeyError, ValueError, TypeError):
        return None


def tag_store(cache_dir: str | Path, tag: str, file: Path, fn_hash: str, file_hash: str) -> None:
    reg = Path(cache_dir) / "tags.json"
    try:
        data = json.loads(reg.read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault(tag, {}).setdefault(str(file.resolve()), {})[fn_hash] = file_hash
    tmp = reg.with_name(f".tags.json.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, reg)
