"""`sft_llm_collator`: samples of a pack -> one packed row (XTuner's collator).

Per pack: concatenate the samples, shift over the *whole* pack (`input_ids = ids[:-1]`, `shifted_labels =
labels[1:]`; the last token of sample i predicts the first label of sample i+1, normally -100), segments = sample
lengths with the last one reduced by 1, then pad with `pad_token_id` / -100 to `pack_max_length` as pseudo-segments
of at most 256 tokens. Position ids restart at 0 in every segment; `cu_seq_lens` isolates the samples.

A pack dict: `input_ids` Long[1,L], `shifted_labels` Long[1,L], `position_ids` Long[1,L], `cu_seq_lens` Int32[n+1],
`max_length`, `num_padding` (what the Trainer reads), and `seq_ctx`, XTuner's `SequenceContext` over the same
tensors (what XTuner code reads: `batch[i]["seq_ctx"]` and `batch[i]["shifted_labels"]`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger("xtuner_nb.datasets")

IGNORE_INDEX = -100
PAD_SEGMENT = 256  # padding is split into pseudo-samples this long, so it never inflates max_length


def sft_llm_collator(instances: list[list[dict[str, Any]]], pack_max_length: int, padding_token_idx: int,
                     pack_to_max_length: bool = True, pad_chunk_size: int = PAD_SEGMENT) -> list[dict[str, Any]]:
    """`instances`: one list of DataItems (`input_ids`, `labels`, `num_tokens`) per pack (or one DataItem, a pack
    of one sample) -> one dict per pack."""
    return [collate_pack(items, pack_max_length, padding_token_idx, pack_to_max_length, pad_chunk_size)
            for items in instances]


def fake_collator(instances: list, **kwargs) -> list:
    """XTuner's collator that returns the items as they are (to look at what a loader samples)."""
    return instances


def collate_pack(items: list[dict[str, Any]] | dict[str, Any], pack_max_length: int, pad_id: int,
                 pack_to_max_length: bool = True, pad_chunk_size: int = PAD_SEGMENT) -> dict[str, Any]:
    """One pack dict: this project's keys (see the module docstring) and XTuner's `seq_ctx`, a `SequenceContext`
    over the same tensors."""
    import torch

    from ..data_proto.sequence_context import SequenceContext

    items = _fit([items] if isinstance(items, dict) else items, pack_max_length)
    ids = np.concatenate([np.asarray(it["input_ids"], dtype=np.int64) for it in items])
    labels = np.concatenate([np.asarray(it["labels"], dtype=np.int64) for it in items])
    input_ids, shifted = ids[:-1], labels[1:]
    segments = [int(it["num_tokens"]) for it in items]
    if segments[-1] == 1:
        segments.pop()
    else:
        segments[-1] -= 1
    length = len(input_ids)
    pad = pack_max_length - length if pack_to_max_length else 0
    if length + pad == 0:  # a lone 1-token sample leaves nothing: keep one padding token so shapes stay valid
        pad = 1
    if pad:
        input_ids = np.concatenate([input_ids, np.full(pad, pad_id, dtype=np.int64)])
        shifted = np.concatenate([shifted, np.full(pad, IGNORE_INDEX, dtype=np.int64)])
        segments += [pad_chunk_size] * (pad // pad_chunk_size) + ([pad % pad_chunk_size] if pad % pad_chunk_size else [])
    seg = np.asarray(segments, dtype=np.int64)
    cu = np.concatenate([[0], np.cumsum(seg)])
    position_ids = np.arange(cu[-1], dtype=np.int64) - np.repeat(cu[:-1], seg)
    pack = {
        "input_ids": torch.from_numpy(input_ids).view(1, -1),
        "shifted_labels": torch.from_numpy(shifted).view(1, -1),
        "position_ids": torch.from_numpy(position_ids).view(1, -1),
        "cu_seq_lens": torch.from_numpy(cu.astype(np.int32)),
        "max_length": int(seg.max()),
        "num_padding": int(pad),
    }
    pack["seq_ctx"] = SequenceContext(pack["input_ids"], pack["cu_seq_lens"], pack["cu_seq_lens"], pack["max_length"],
                                      pack["max_length"], num_padding=pack["num_padding"],
                                      position_ids=pack["position_ids"])
    return pack


def collator_by_name(name: str):
    """The collate function a `DataloaderConfig.collator` names: 'sft_llm_collator', 'fake_collator' or the dotted
    path of a function (XTuner's rule)."""
    import pydoc

    fn = {"sft_llm_collator": sft_llm_collator, "fake_collator": fake_collator}.get(name) or pydoc.locate(name)
    if not callable(fn):
        raise ValueError(f"collator {name!r} is neither 'sft_llm_collator', 'fake_collator' nor an importable "
                         "function")
    return fn


def _fit(items: list[dict[str, Any]], pack_max_length: int) -> list[dict[str, Any]]:
    """Drop trailing samples (or cut a lone sample) when a pack exceeds pack_max_length (planned packs never do)."""
    total = sum(int(it["num_tokens"]) for it in items)
    if total <= pack_max_length:
        return items
    logger.warning("A pack of %d tokens exceeds pack_max_length=%d; dropping samples from its end.", total,
                   pack_max_length)
    kept = list(items)
    while len(kept) > 1 and total > pack_max_length:
        total -= int(kept.pop()["num_tokens"])
    if total > pack_max_length:
        it = kept[0]
        kept = [{"input_ids": it["input_ids"][:pack_max_length], "labels": it["labels"][:pack_max_length],
                 "num_tokens": pack_max_length}]
    return kept
