"""What the loader built: per-dataset and per-loader statistics (`loader.stats`, shown by `show_dataset`).

Numbers come from the datasets themselves: this project's `JsonlDataset` knows its file's lines, truncations,
skipped lines and label counts; any other dataset (XTuner-style objects given to `build_dataloader`) only its
sample lengths, so its label counts are None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .packing import PackedDatasets


@dataclass
class DatasetStats:
    name: str
    path: str
    lines: int  # non-blank lines read
    samples: int  # tokenized samples that are packed (after empty-filtering and sample_ratio)
    dropped_empty: int
    truncated: int  # cut to max_length by the tokenize function
    skipped_lines: list[int]  # 1-based line numbers skipped with skip_bad_lines=True
    tokens: int
    loss_tokens: int | None  # None: a dataset that gives no per-sample label counts (not this project's)
    from_cache: bool
    data_format: str = "openai"  # the format the file was read in (detected or chosen)
    chat_template: str | None = None  # of the tokenize function, when it has one
    dropped_content: dict[str, int] = field(default_factory=dict)  # assistant turns with content not rendered


@dataclass
class LoaderStats:
    samples: int
    packs: int
    steps_per_epoch: int
    tokens: int  # tokens inside packs (before padding)
    loss_tokens: int | None  # of which have a label (None: a dataset gave no label counts)
    fill_ratio: float  # tokens / (packs * pack_max_length)
    dropped_empty: int
    truncated: int
    cut_to_pack_max_length: int  # samples longer than pack_max_length, cut (soft/none)
    dropped_tail_tokens: int  # hard packing drops the last partial window
    skipped_lines: int
    pack_level: str
    pack_max_length: int
    datasets: list[DatasetStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.samples} samples -> {self.packs} packs of <= {self.pack_max_length} tokens "
                 f"({self.pack_level}), {self.steps_per_epoch} steps/epoch; fill {self.fill_ratio:.1%}; "
                 f"{self.tokens} tokens, " + (f"{self.loss_tokens} with loss ({self.loss_tokens / max(self.tokens, 1):.1%})"
                                              if self.loss_tokens is not None else "labels not counted")]
        notes = [f"{self.dropped_empty} empty dropped" if self.dropped_empty else "",
                 f"{self.truncated} truncated to max_length" if self.truncated else "",
                 f"{self.cut_to_pack_max_length} cut to pack_max_length" if self.cut_to_pack_max_length else "",
                 f"{self.skipped_lines} bad lines skipped" if self.skipped_lines else "",
                 f"{self.dropped_tail_tokens} tail tokens dropped (hard)" if self.dropped_tail_tokens else ""]
        if any(notes):
            lines.append("; ".join(n for n in notes if n))
        for d in self.datasets:
            skipped = f", skipped lines {d.skipped_lines[:10]}{'...' if len(d.skipped_lines) > 10 else ''}" \
                if d.skipped_lines else ""
            how = d.data_format + (f", template {d.chat_template}" if d.chat_template else "")
            dropped = "".join(f", {kind} of {n} assistant turns not rendered" if kind != "tools" else
                              ", tool schemas not rendered" for kind, n in d.dropped_content.items())
            lines.append(f"  {d.name}: {d.path} ({how}): {d.samples} samples, {d.tokens} tokens"
                         f"{' (cached)' if d.from_cache else ''}{skipped}{dropped}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def dataset_stats(ds) -> DatasetStats:
    """A dataset's own statistics (`JsonlDataset.stats()`), or what any dataset's lengths tell."""
    if hasattr(ds, "stats"):
        return ds.stats()
    lengths = np.asarray(ds.num_tokens, dtype=np.int64)
    return DatasetStats(name=str(getattr(ds, "name", type(ds).__name__)), path=str(getattr(ds, "path", "")),
                        lines=len(ds), samples=len(ds), dropped_empty=0, truncated=0, skipped_lines=[],
                        tokens=int(lengths.sum()), loss_tokens=None, from_cache=False, data_format="items")


def packed_loss_tokens(packed: PackedDatasets) -> int | None:
    """Labelled tokens inside the planned pieces: whole samples from their datasets' per-sample counts, cut pieces
    counted in their slice; None when a dataset gives no counts."""
    if not all(hasattr(d, "loss_counts") for d in packed.datasets):
        return None
    plan, lengths = packed.plan, packed.lengths
    piece_file, piece_local = packed.sample_file[plan.sample], packed.sample_local[plan.sample]
    whole = (plan.start == 0) & (plan.end == lengths[plan.sample])
    total = 0
    for fid, ds in enumerate(packed.datasets):
        total += int(ds.loss_counts[piece_local[(piece_file == fid) & whole]].sum())
    for k in np.nonzero(~whole)[0].tolist():
        piece = packed.datasets[int(piece_file[k])].piece(int(piece_local[k]), int(plan.start[k]), int(plan.end[k]))
        total += int(np.count_nonzero(np.asarray(piece["labels"]) != -100))
    return total


def loader_stats(packed: PackedDatasets, pack_level: str, steps: int) -> LoaderStats:
    dstats = [dataset_stats(d) for d in packed.datasets]
    plan, lengths, limit = packed.plan, packed.lengths, packed.pack_max_length
    tokens = int(plan.pack_tokens().sum())
    cut = int((lengths > limit).sum()) if pack_level != "hard" else 0
    tail = int(lengths.sum()) - tokens if pack_level == "hard" else 0
    return LoaderStats(
        samples=len(lengths), packs=len(plan), steps_per_epoch=steps, tokens=tokens,
        loss_tokens=packed_loss_tokens(packed), fill_ratio=tokens / (len(plan) * limit),
        dropped_empty=sum(d.dropped_empty for d in dstats), truncated=sum(d.truncated for d in dstats),
        cut_to_pack_max_length=cut, dropped_tail_tokens=tail, skipped_lines=sum(len(d.skipped_lines) for d in dstats),
        pack_level=pack_level, pack_max_length=limit, datasets=dstats)
