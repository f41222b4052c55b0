"""XTuner's `JsonlDataset`: one data file, tokenized once through the cache (`load_tokenized`), its samples
selected by `sample_ratio`.

The reading and tokenizing is `tokenized.py` (a `TokenizedFile`: every sample's ids and labels in flat arrays,
what was truncated, skipped or left out by the template); `cache.py` stores that, keyed by the file's content and
the tokenize function's hash. Problems are reported once per file here.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

import numpy as np

from . import cache as _cache
from .errors import DataFormatError
from .sources import read_source
from .tokenized import TokenizedFile, show_progress, tokenize_records  # noqa: F401 - also imported from here

logger = logging.getLogger("xtuner_nb.datasets")


_META = ("num_lines", "skipped", "truncated", "longest_before_truncation", "data_format", "truncated_lines",
         "dropped_lines", "dropped")


def load_tokenized(path: str | Path, fn, *, cache_dir: str | Path | None = None, cache_tag: str | None = None,
                   skip_bad_lines: bool = False, progress: bool | None = None,
                   data_format: str = "auto") -> TokenizedFile:
    """Tokenize one source with `fn`, through the cache when `cache_dir` is set."""
    path = Path(path) if not str(path).startswith("hf-dataset:") else str(path)
    fn_hash = None
    if cache_dir is not None:
        if not callable(getattr(fn, "hash", None)):
            raise ValueError(f"cache_dir is set but the tokenize function {type(fn).__name__} has no hash(); "
                             "subclass CachableTokenizeFunction and implement hash() (or drop cache_dir)")
        fn_hash = f"{fn.hash()}_{data_format}"
    data = None
    tagged = cache_dir and cache_tag and isinstance(path, Path)
    fhash = _cache.tag_lookup(cache_dir, cache_tag, path, fn_hash) if tagged else None
    if fhash is None:
        data, fhash = read_source(path)
    if cache_dir is not None:
        entry = _cache.entry_dir(cache_dir, fhash, fn_hash)
        hit = _cache.load_entry(entry)
        if hit is not None:
            arrays, meta = hit
            tf = TokenizedFile(path=str(path), **arrays, from_cache=True,
                               **{k: meta[k] for k in _META if k in meta})
            tf.skipped = [tuple(s) for s in tf.skipped]
            tf.dropped_lines = [tuple(s) for s in tf.dropped_lines]
            if tf.skipped and not skip_bad_lines:  # cached under skip_bad_lines=True: same error as a fresh read
                raise DataFormatError(path, tf.skipped[0][0], tf.skipped[0][1], unit=tf.unit)
            _report(tf, fn)
            return tf
        if data is None and isinstance(path, Path):  # tagged hash pointed at a missing entry
            data, fhash = read_source(path)
            entry = _cache.entry_dir(cache_dir, fhash, fn_hash)
    tf = tokenize_records(path, data, fn, skip_bad_lines, progress=progress, data_format=data_format)
    if cache_dir is not None:
        _cache.save_entry(entry, {k: getattr(tf, k) for k in _cache.ARRAYS},
                          {"file": str(path), "file_hash": fhash, "fn_hash": fn_hash,
                           **{k: getattr(tf, k) for k in _META}})
        if tagged:
            _cache.tag_store(cache_dir, cache_tag, path, fn_hash, fhash)
    _report(tf, fn)
    return tf


def _report(tf: TokenizedFile, fn) -> None:
    if tf.truncated:
        logger.warning("%s: %d of %d samples were longer than max_length=%s tokens and were truncated "
                       "(longest: %d tokens).", tf.path, tf.truncated, len(tf), getattr(fn, "max_length", None),
                       tf.longest_before_truncation)
    if tf.dropped:
        lines = sorted({no for no, _ in tf.dropped_lines})
        shown = ", ".join(str(no) for no in lines[:20]) + (" ..." if len(lines) > 20 else "")
        what = ", ".join("tool schemas" if kind == "tools" else f"{kind} of {n} assistant turn{'s' if n > 1 else ''}"
                         for kind, n in tf.dropped.items())
        template = getattr(fn, "chat_template_name", None)
        advice = (" (XTuner's qwen3 template renders no reasoning; chat_template='hf' renders it the way the "
                  "model's own template does)" if template == "qwen3" and "reasoning" in tf.dropped else "")
        logger.warning("%s: the %r chat template does not render the %s, in %d conversation(s) (%ss %s); that "
                       "content is not trained%s.", tf.path, template, what, len(lines), tf.unit, shown, advice)
    if tf.skipped:
        shown = ", ".join(str(no) for no, _ in tf.skipped[:20]) + (" ..." if len(tf.skipped) > 20 else "")
        logger.warning("%s: skipped %d bad %s(s) (skip_bad_lines=True): %ss %s. First problem: %s %d: %s",
                       tf.path, len(tf.skipped), tf.unit, tf.unit, shown, tf.unit, tf.skipped[0][0],
                       tf.skipped[0][1])


def sample_indices(valid: np.ndarray, ratio: float, sequential: bool, rnd) -> np.ndarray:
    """`sample_ratio`: every index `floor(ratio)` times, plus the first (sequential) or a random subset of
    `round(frac * n)` indices drawn with `rnd.sample` (a `random.Random`, or the `random` module as XTuner)."""
    whole = int(math.floor(ratio))
    parts = [valid] * whole
    extra = int(round((ratio - whole) * len(valid)))
    if extra:
        parts.append(valid[:extra] if sequential else np.sort(np.asarray(rnd.sample(valid.tolist(), extra))))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


class JsonlDataset:
    """XTuner's `JsonlDataset`: the samples of one data file (XTuner's arguments; `tokenize_fn` is required here).

    The file is tokenized once (through the cache in `cache_dir`) into a `TokenizedFile`; empty samples are
    dropped, then `sample_ratio` repeats or subsamples them (`rng`: a `random.Random`; default the `random` module,
    as XTuner). Item `i` is XTuner's DataItem `{"input_ids", "labels", "num_tokens"}` (unshifted labels, -100 =
    no loss). XTuner re-reads and re-tokenizes a line at every access; here the token ids are kept, so an item costs
    no tokenization. `enable_mmap_shared` and `disable_filter` have no effect (see `DatasetConfig`).
    """

    def __init__(self, anno_path, sample_ratio: float = 1.0, tokenize_fn=None, name: str = "default",
                 cache_dir: str | Path | None = None, max_length: int | None = None, cache_tag: str | None = None,
                 enable_sequential_sampler: bool = False, enable_mmap_shared: bool = False,
                 disable_filter: bool = False, *, skip_bad_lines: bool = False, data_format: str = "auto",
                 progress: bool | None = None, rng=None):
        if tokenize_fn is None:
            raise ValueError(f"JsonlDataset({anno_path}): a tokenize_fn is required here (XTuner returns the raw "
                             "records without one, which no packer or collator here can use)")
        self.name, self.path, self.tokenize_fn = name, str(anno_path), tokenize_fn
        self.file = load_tokenized(anno_path, tokenize_fn, cache_dir=cache_dir, cache_tag=cache_tag,
                                   skip_bad_lines=skip_bad_lines, progress=progress, data_format=data_format)
        lengths = self.file.lengths
        valid = np.nonzero(lengths > 0)[0]
        self.dropped_empty = len(self.file) - len(valid)
        if max_length is not None:  # XTuner's dataset-level length filter
            longer = lengths[valid] > max_length
            if longer.any():
                logger.warning("%s: dropped %d samples longer than max_length=%d", self.path, int(longer.sum()),
                               max_length)
            valid = valid[~longer]
        self.sampled = sample_indices(valid, sample_ratio, enable_sequential_sampler,
                                      rng if rng is not None else random)

    def __len__(self) -> int:
        return len(self.sampled)

    @property
    def num_tokens(self) -> np.ndarray:
        return self.file.lengths[self.sampled]

    @property
    def proxy_attn_flops(self) -> np.ndarray:
        """XTuner's attention cost of each sample (`packing.attention_cost`)."""
        from .packing import attention_cost

        return attention_cost(self.num_tokens)

    @property
    def loss_counts(self) -> np.ndarray:
        return self.file.loss_counts[self.sampled]

    def piece(self, i: int, start: int, end: int) -> dict[str, Any]:
        """Tokens `start:end` of item `i` as numpy views (what the packs are made of)."""
        off = int(self.file.offsets[int(self.sampled[i])])
        return {"input_ids": self.file.input_ids[off + start: off + end],
                "labels": self.file.labels[off + start: off + end], "num_tokens": end - start}

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = int(self.file.lengths[int(self.sampled[i])])
        item = self.piece(i, 0, n)
        return {"input_ids": item["input_ids"].tolist(), "labels": item["labels"].tolist(), "num_tokens": n}

    def sample(self, i: int) -> dict[str, Any]:
        """Item `i` with where it comes from (`path`, 1-based `line`) and what its template left out."""
        return self.file.sample(int(self.sampled[i]))

    def stats(self):
        from .stats import DatasetStats

        local = self.sampled
        return DatasetStats(
            name=self.name, path=self.file.path, lines=self.file.num_lines, samples=len(local),
            dropped_empty=self.dropped_empty, truncated=self.file.truncated,
            skipped_lines=[no for no, _ in self.file.skipped], tokens=int(self.file.lengths[local].sum()),
            loss_tokens=int(self.file.loss_counts[local].sum()), from_cache=self.file.from_cache,
            data_format=self.file.data_format, chat_template=getattr(self.tokenize_fn, "chat_template_name", None),
            dropped_content=dict(self.file.dropped))

    def get_state_dict(self) -> dict:
        return {}  # the samples are fixed at build; nothing to resume

    def load_state_dict(self, state_dict: dict) -> None:
        pass

    def __repr__(self) -> str:
        return f"JsonlDataset({self.path!r}, name={self.name!r}, {len(self)} samples)"
