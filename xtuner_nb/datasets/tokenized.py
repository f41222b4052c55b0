"""Read a data file and tokenize every record once (`tokenize_records` -> a `TokenizedFile`).

Records come from `sources.py` (jsonl, json arrays, parquet, a `datasets.Dataset`) and are converted from the
file's format (ShareGPT, Alpaca, LLaMA-Factory, OpenAI: `formats.py`) before the tokenize function sees them.
Every problem found here is a `DataFormatError` naming the file and the 1-based line (or row), raised before
training starts; with `skip_bad_lines=True` the bad lines are collected (number and reason) instead. The result,
a `TokenizedFile`, keeps all samples' ids and labels in flat int32 arrays, which is also what the cache stores,
and what was truncated or left out by the template, which is reported once per file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataFormatError
from .formats import FORMATS, convert, detect_format
from .sources import bad_record, count_hint, iter_records

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
    data_format: str = "openai"  # the format the records were read in (detected or chosen)
    truncated_lines: list[int] = field(default_factory=list)
    dropped_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, what the template left out)
    dropped: dict[str, int] = field(default_factory=dict)  # assistant turns with content left out, by kind

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sample(self, i: int) -> dict[str, Any]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        line = int(self.lines[i])
        return {"input_ids": self.input_ids[a:b].tolist(), "labels": self.labels[a:b].tolist(),
                "num_tokens": b - a, "line": line, "path": self.path,
                "truncated": line in set(self.truncated_lines),
                "dropped": [what for no, what in self.dropped_lines if no == line]}

    @property
    def unit(self) -> str:
        from .sources import unit_of

        return unit_of(self.path)


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_format(fn, data_format: str, first_record: Any) -> str:
    """The format this file is read in: the one chosen, or (with "auto") the one its first record has, for tokenize
    functions that read messages; any other tokenize function gets the records as written."""
    if data_format not in FORMATS:
        raise ValueError(f"unknown data_format {data_format!r}; choose one of {', '.join(FORMATS)}")
    if data_format != "auto":
        return data_format
    return detect_format(first_record) if getattr(fn, "reads_messages", False) else "openai"


def tokenize_records(path, data: bytes | None, fn, skip_bad_lines: bool, limit: int | None = None,
                     progress: bool | None = None, data_format: str = "auto") -> TokenizedFile:
    """Tokenize the records of one source (batched when the function is segment-based)."""
    skipped: list[tuple[int, str]] = []
    ids_parts, label_parts, lens, line_nos = [], [], [], []
    truncated_lines, dropped_lines, dropped = [], [], {}
    longest = 0
    fmt = None
    total = count_hint(path, data)
    bar = None
    name = Path(str(path)).name
    if progress if progress is not None else show_progress(total or 0):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"Tokenizing {name}", unit="records", leave=False)
    encode_state = getattr(fn, "_encode_state", {})

    def flush(batch):
        nonlocal longest
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
                bad_record(path, no, _describe(e), skip_bad_lines, skipped)
                continue
            if "num_tokens_before_truncation" in out:
                truncated_lines.append(no)
                longest = max(longest, int(out["num_tokens_before_truncation"]))
            for what, n in (out.get("dropped") or {}).items():
                dropped[what] = dropped.get(what, 0) + n
                dropped_lines.append((no, "tool schemas not rendered" if what == "tools" else
                                      f"{what} of {n} assistant turn{'s' if n > 1 else ''} not rendered"))
            flat_ids.extend(ids)
            flat_labels.extend(labels)
            lens.append(len(ids))
            line_nos.append(no)
        ids_parts.append(np.asarray(flat_ids, dtype=np.int32))
        label_parts.append(np.asarray(flat_labels, dtype=np.int32))

    batch: list = []
    seen = 0
    for no, rec in iter_records(path, data, skip_bad_lines, skipped, limit):
        try:
            if fmt is None:
                fmt = file_format(fn, data_format, rec)
            rec = convert(rec, fmt)
            segs = fn.segments(rec) if hasattr(fn, "segments") else None
        except Exception as e:  # noqa: BLE001
            bad_record(path, no, _describe(e) + _format_hint(fmt, data_format), skip_bad_lines, skipped)
            continue
        batch.append((no, rec, segs))
        if len(batch) >= CHUNK_LINES:
            flush(batch)
            batch = []
        if bar is not None:
            bar.update(no - seen if str(path).endswith(".jsonl") else 1)  # jsonl: blank lines count too
            seen = no
    if batch:
        flush(batch)
    if bar is not None:
        bar.close()
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lens, dtype=np.int64), out=offsets[1:])
    labels = np.concatenate(label_parts) if label_parts else np.zeros(0, np.int32)
    return TokenizedFile(
        path=str(path), input_ids=np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int32),
        labels=labels, offsets=offsets, lines=np.asarray(line_nos, dtype=np.int32),
        loss_counts=count_per_sample(labels != -100, offsets), num_lines=len(line_nos) + len(skipped),
        skipped=skipped, truncated=len(truncated_lines), longest_before_truncation=longest,
        data_format=fmt or (data_format if data_format != "auto" else "openai"), truncated_lines=truncated_lines,
        dropped_lines=dropped_lines, dropped=dropped)


def _format_hint(fmt: str | None, chosen: str) -> str:
    if fmt in (None, "openai") and chosen == "auto":
        return ""
    how = "chosen in DatasetConfig.data_format" if chosen != "auto" else "detected from the first record"
    return f" (read as {fmt}: {how})"


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
