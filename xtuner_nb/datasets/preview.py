"""Look at tokenized data before training: the first samples of a dataset, and their trained/untrained spans."""

from __future__ import annotations

from typing import Any

from .jsonl import tokenize_records
from .sources import find_data_files, read_source


def tokenize_samples(dataloader_cfg, tokenizer, n: int = 8, dataset_index: int = 0) -> list[dict[str, Any]]:
    """Tokenize only the first `n` usable lines of one dataset (no cache, no packing) for a data viewer.

    Each sample: `input_ids`, unshifted `labels` (-100 = no loss), `num_tokens`, `path`, 1-based `line`,
    `truncated` and `dropped` (what the chat template left out). `dataloader_cfg` may also be one
    `{"dataset": ..., "tokenize_fn": ...}` entry.
    """
    entry = dataloader_cfg if isinstance(dataloader_cfg, dict) else dataloader_cfg.dataset_config_list[dataset_index]
    ds, fn = entry["dataset"], entry["tokenize_fn"].build(tokenizer, anno_name=entry["dataset"].name)
    out: list[dict[str, Any]] = []
    for path in find_data_files(ds.anno_path):
        tf = tokenize_records(path, read_source(path)[0], fn, ds.skip_bad_lines, limit=n - len(out), progress=False,
                              data_format=ds.data_format)
        out.extend({**tf.sample(i), "data_format": tf.data_format} for i in range(len(tf)) if tf.lengths[i] > 0)
        if len(out) >= n:
            break
    return out[:n]


def label_spans(tokenizer, input_ids, labels) -> list[tuple[str, bool]]:
    """Decode a sample into runs of `(text, trained)`, e.g. `[("<|im_start|>user\\nHi...", False), ("Hello!<|im_end|>",
    True), ("\\n", False)]`: what the model reads and what it is trained to write."""
    ids = list(input_ids)
    flags = [lab != -100 for lab in labels]
    spans: list[tuple[str, bool]] = []
    start = 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or flags[k] != flags[start]:
            spans.append((_decode(tokenizer, ids[start:k]), flags[start]))
            start = k
    return spans


def _decode(tokenizer, ids: list[int]) -> str:
    try:
        return tokenizer.decode(ids, skip_special_tokens=False)
    except TypeError:
        return tokenizer.decode(ids)
