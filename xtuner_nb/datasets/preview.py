"""Look at tokenized data before training: the first samples of a dataset, and their trained/untrained spans."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class FileSummary:
    """What one data file became: the format it was read in, the template, how much is trained, and which
    conversations were truncated or lost content to the template (1-based lines, or rows of a table)."""

    path: str
    data_format: str
    chat_template: str | None
    samples: int
    tokens: int
    trained_tokens: int
    unit: str = "line"
    truncated_lines: list[int] = field(default_factory=list)
    dropped_lines: list[tuple[int, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    samples_shown: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trained_share(self) -> float:
        return self.trained_tokens / max(self.tokens, 1)


def summarize_dataset(dataloader_cfg, tokenizer, n: int = 3, dataset_index: int = 0) -> list[FileSummary]:
    """Tokenize one dataset entry as training will (through its cache) and summarize each file, with its first
    `n` samples. `dataloader_cfg` may also be one `{"dataset": ..., "tokenize_fn": ...}` entry."""
    entry = dataloader_cfg if isinstance(dataloader_cfg, dict) else dataloader_cfg.dataset_config_list[dataset_index]
    ds, fn_cfg = entry["dataset"], entry["tokenize_fn"]
    template = getattr(fn_cfg, "chat_template", None)
    out = []
    for tf in ds.build(fn_cfg.build(tokenizer, anno_name=ds.name), progress=False):
        shown = [tf.sample(i) for i in range(len(tf)) if tf.lengths[i] > 0][:n]
        out.append(FileSummary(
            path=tf.path, data_format=tf.data_format, chat_template=template if isinstance(template, str) else None,
            samples=len(tf), tokens=int(tf.lengths.sum()), trained_tokens=int(tf.loss_counts.sum()), unit=tf.unit,
            truncated_lines=list(tf.truncated_lines), dropped_lines=list(tf.dropped_lines), dropped=dict(tf.dropped),
            skipped=list(tf.skipped), samples_shown=shown))
    return out


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
