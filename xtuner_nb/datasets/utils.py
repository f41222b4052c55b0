"""XTuner v1's `xtuner.v1.datasets.utils` helpers for text data: the tokenize-function base class, the tokenizer
hashes and the file hashes. This project keys its cache with `tokenizer_hash` (`tokenize_fn.py`); XTuner's
`tokenizer_xxhash` is here for code that calls it."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from .tokenize_fn import CachableTokenizeFunction, tokenizer_hash


def calculate_file_sha256(path) -> str:
    """The sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _xxh64():
    try:
        import xxhash
    except ImportError as e:
        raise ImportError("XTuner's xxhash helpers need the xxhash package: pip install xxhash") from e
    return xxhash.xxh64()


def calculate_xxhash(data_bytes: bytes | memoryview) -> str:
    """The xxh64 of some bytes (needs `xxhash`, which `datasets` installs)."""
    h = _xxh64()
    h.update(bytes(data_bytes))
    return h.hexdigest()


def tokenizer_xxhash(tokenizer) -> str:
    """XTuner's tokenizer hash: the xxh64 of the files `save_pretrained` writes, in name order."""
    h = _xxh64()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for f in sorted(Path(tmp).iterdir()):
            h.update(f.read_bytes())
    return h.hexdigest()


__all__ = ["CachableTokenizeFunction", "calculate_file_sha256", "calculate_xxhash", "tokenizer_hash",
           "tokenizer_xxhash"]
