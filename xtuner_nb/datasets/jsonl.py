"""Read a jsonl file and tokenize every line once (XTuner's `JsonlDataset`, minus runtime re-tokenization).

Every problem found here is a `DataFormatError` naming the file and the 1-based line, raised before training
starts; with `skip_bad_lines=True` the bad lines are collected (number and reason) instead. The result, a
`TokenizedFile`, keeps all samples' ids and labels in flat int32 arrays, which is also what the cache stores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import cache as _cache
from .errors import DataFormatError

logger = logging.getLogger("xtuner_nb.datasets")

CHUNK_LINES = 2048  # lines tokenized per batched call
PROGRESS_MIN_LINES = 5000  # smaller files tokenize in well under a second: no progress bar


def show_progress(total: int) -> bool:
    env = os.environ.get("XTUNER_NB_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "False", "")
    return total >= PROGRESS_MIN_LINES


@dataclass
class TokenizedFile:
    """All samples of one jsonl file: sample i is `input_ids[offsets[i]:offsets[i+1]]` from line `lines[i]`."""

    path: str
    input_ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    lines: np.ndarray
    loss_counts: np.ndarray  # tokens with a label (!= -100) per sample
    num_lines: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    truncated: int = 0
    longest_before_truncation: int = 0
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sample(self, i: int) -> dict[str, Any]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return {"input_ids": self.input_ids[a:b].tolist(), "labels": self.labels[a:b].tolist(),
                "num_tokens": b - a, "line": int(self.lines[i]), "path": self.path}


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iter_records(path: Path, data: bytes, skip_bad_lines: bool, skipped: list, limit: int | None = None):
    """Yield `(line_no, record)` for every non-blank line, 1-based; bad JSON/UTF-8 raise or land in `skipped`."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        lines = data.decode("utf-8").split("\n")
        raw = None
    except UnicodeDecodeError:
        raw = data.split(b"\n")
        lines = None
    count = 0
    for no in range(1, len(lines if lines is not None else raw) + 1):
        if lines is not None:
            text = lines[no - 1]
        else:
            try:
                text = raw[no - 1].decode("utf-8")
            except UnicodeDecodeError as e:
                bad = raw[no - 1][e.start:e.start + 1].hex()
                _bad_line(path, no, f"not valid UTF-8 (byte 0x{bad} at byte {e.start + 1} of the line); "
                                    "save the file as UTF-8", skip_bad_lines, skipped)
                continue
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            _bad_line(path, no, f"invalid JSON ({e.msg} at column {e.colno})", skip_bad_lines, skipped)
            continue
        yield no, record
        count += 1
        if limit is not None and count >= limit:
            return


def _bad_line(path, no, detail, skip_bad_lines, skipped):
    if not skip_bad_lines:
        raise DataFormatError(path, no, detail)
    skipped.append((no, detail))


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataFormatError(path, None, "is a folder, expected a .jsonl file") from None
    except OSError as e:
        raise DataFormatError(path, None, f"cannot read ({e.strerror})") from None


def tokenize_records(path: Path, data: bytes, fn, skip_bad_lines: bool, limit: int | None = None,
                     progress: bool | None = None) -> TokenizedFile:
    """Tokenize the lines of one file (batched when the function is segment-based)."""
    skipped: list[tuple[int, str]] = []
    ids_parts, label_parts, lens, line_nos = [], [], [], []
    truncated, longest = 0, 0
    total_lines = data.count(b"\n") + 1
    bar = None
    if progress if progress is not None else show_progress(total_lines):
        from tqdm.auto import tqdm

        bar = tqdm(total=total_lines, desc=f"Tokenizing {path.name}", unit="lines", leave=False)
    encode_state = getattr(fn, "_encode_state", {})

    def flush(batch):
        nonlocal truncated, longest
        texts = [t for _no, _rec, segs in batch if segs is not None for t, _ in segs]
        from .tokenize_fn import encode_texts

        encoded = iter(encode_texts(fn.tokenizer, texts, encode_state)) if texts else iter(())
        flat_ids, flat_labels = [], []
        for no, rec, segs in batch:
            try:
                if segs is None:
                    out = fn(rec)
                else:
                    out = fn.assemble(rec, [next(encoded) for _ in segs], segs)
                ids, labels = list(out["input_ids"]), list(out["labels"])
                if len(ids) != len(labels):
                    raise ValueError(f"tokenize_fn returned {len(ids)} input_ids but {len(labels)} labels")
            except DataFormatError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure is reported against its line
                _bad_line(path, no, _describe(e), skip_bad_lines, skipped)
                continue
            if "num_tokens_before_truncation" in out:
                truncated += 1
                longest = max(longest, int(out["num_tokens_before_truncation"]))
            flat_ids.extend(ids)
            flat_labels.extend(labels)
            lens.append(len(ids))
            line_nos.append(no)
        ids_parts.append(np.asarray(flat_ids, dtype=np.int32))
        label_parts.append(np.asarray(flat_labels, dtype=np.int32))

    batch: list = []
    last_no = 0
    for no, rec in iter_records(path, data, skip_bad_lines, skipped, limit):
        try:
            segs = fn.segments(rec) if hasattr(fn, "segments") else None
        except Exception as e:  # noqa: BLE001
            _bad_line(path, no, _describe(e), skip_bad_lines, skipped)
            continue
        batch.append((no, rec, segs))
        if len(batch) >= CHUNK_LINES:
            flush(batch)
            batch = []
            if bar is not None:
                bar.update(no - last_no)
                last_no = no
    if batch:
        flush(batch)
    if bar is not None:
        bar.update(total_lines - last_no)
        bar.close()
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lens, dtype=np.int64), out=offsets[1:])
    labels = np.concatenate(label_parts) if label_parts else np.zeros(0, np.int32)
    return TokenizedFile(
        path=str(path), input_ids=np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int32),
        labels=labels, offsets=offsets, lines=np.asarray(line_nos, dtype=np.int32),
        loss_counts=count_per_sample(labels != -100, offsets), num_lines=len(line_nos) + len(skipped),
        skipped=skipped, truncated=truncated, longest_before_truncation=longest)


def count_per_sample(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """`mask[offsets[i]:offsets[i+1]].sum()` for every sample i, in one pass."""
    counts = np.zeros(len(offsets) - 1, dtype=np.int64)
    nonempty = np.nonzero(offsets[1:] > offsets[:-1])[0]
    if len(nonempty):
        counts[nonempty] = np.add.reduceat(mask, offsets[:-1][nonempty], dtype=np.int64)
    return counts


def _describe(e: Exception) -> str:
    if isinstance(e, ValueError):  # our own validation messages (and pydantic's) read well as they are
        return str(e)
    return f"tokenize_fn raised {type(e).__name__}: {e}"


def load_tokenized(path: str | Path, fn, *, cache_dir: str | Path | None = None, cache_tag: str | None = None,
                   skip_bad_lines: bool = False, progress: bool | None = None) -> TokenizedFile:
    """Tokenize one jsonl file with `fn`, through the cache when `cache_dir` is set."""
    path = Path(path)
    fn_hash = None
    if cache_dir is not None:
        if not callable(getattr(fn, "hash", None)):
            raise ValueError(f"cache_dir is set but the tokenize function {type(fn).__name__} has no hash(); "
                             "subclass CachableTokenizeFunction and implement hash() (or drop cache_dir)")
        fn_hash = str(fn.hash())
    data = None
    fhash = _cache.tag_lookup(cache_dir, cache_tag, path, fn_hash) if cache_dir and cache_tag else None
    if fhash is None:
        data = read_bytes(path)
        fhash = file_hash(data)
    if cache_dir is not None:
        entry = _cache.entry_dir(cache_dir, fhash, fn_hash)
        hit = _cache.load_entry(entry)
        if hit is not None:
            arrays, meta = hit
            tf = TokenizedFile(path=str(path), **arrays, num_lines=meta["num_lines"],
                               skipped=[tuple(s) for s in meta["skipped"]], truncated=meta["truncated"],
                               longest_before_truncation=meta["longest_before_truncation"], from_cache=True)
            if tf.skipped and not skip_bad_lines:  # cached under skip_bad_lines=True: same error as a fresh read
                raise DataFormatError(path, tf.skipped[0][0], tf.skipped[0][1])
            _report(tf, fn)
            return tf
        if data is None:  # tagged hash pointed at a missing entry
            data = read_bytes(path)
            fhash = file_hash(data)
            entry = _cache.entry_dir(cache_dir, fhash, fn_hash)
    tf = tokenize_records(path, data, fn, skip_bad_lines, progress=progress)
    if cache_dir is not None:
        _cache.save_entry(entry, {k: getattr(tf, k) for k in _cache.ARRAYS},
                          {"file": str(path), "file_hash": fhash, "fn_hash": fn_hash, "num_lines": tf.num_lines,
                           "skipped": tf.skipped, "truncated": tf.truncated,
                           "longest_before_truncation": tf.longest_before_truncation})
        if cache_tag:
            _cache.tag_store(cache_dir, cache_tag, path, fn_hash, fhash)
    _report(tf, fn)
    return tf


def _report(tf: TokenizedFile, fn) -> None:
    if tf.truncated:
        logger.warning("%s: %d of %d samples were longer than max_length=%s tokens and were truncated "
                       "(longest: %d tokens).", tf.path, tf.truncated, len(tf), getattr(fn, "max_length", None),
                       tf.longest_before_truncation)
    if tf.skipped:
        shown = ", ".join(str(no) for no, _ in tf.skipped[:20]) + (" ..." if len(tf.skipped) > 20 else "")
        logger.warning("%s: skipped %d bad line(s) (skip_bad_lines=True): lines %s. First problem: line %d: %s",
                       tf.path, len(tf.skipped), shown, tf.skipped[0][0], tf.skipped[0][1])


def find_jsonl_files(anno_path: str | Path) -> list[Path]:
    """A file, or every `*.jsonl` under a folder (recursively, sorted), as XTuner's DatasetConfig."""
    p = Path(anno_path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.jsonl") if f.is_file())
        if not files:
            raise DataFormatError(p, None, "folder contains no *.jsonl files")
        return files
    if not p.exists():
        kind = "folder" if str(anno_path).endswith(("/", os.sep)) or not p.suffix else "file"
        raise DataFormatError(p, None, f"{kind} not found")
    return [p]
