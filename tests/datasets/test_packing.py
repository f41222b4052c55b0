"""Packing plans (soft/hard/none) and the collator's pack format."""

import numpy as np
import pytest
import torch

from xtuner_nb.datasets import sft_llm_collator
from xtuner_nb.datasets.packing import plan_hard, plan_none, plan_soft

from .conftest import loader_cfg


def _lengths(n=500, seed=0):
    return np.random.default_rng(seed).integers(1, 300, size=n).astype(np.int64)


def test_soft_uses_every_sample_once_and_fits():
    lengths = _lengths()
    plan = plan_soft(lengths, [np.arange(len(lengths))], pack_max_length=1024, seed=42, pack_chunk_size=200)
    assert sorted(plan.sample.tolist()) == list(range(len(lengths)))
    assert (plan.pack_tokens() <= 1024).all()
    assert (plan.start == 0).all() and (plan.end == lengths[plan.sample]).all()
    # gap filling from the look-ahead buffer packs tightly
    assert plan.pack_tokens().sum() / (len(plan) * 1024) > 0.9
    loose = plan_soft(lengths, [np.arange(len(lengths))], 1024, 42, 200, pack_extra_buffer_size=0)
    assert len(plan) <= len(loose)


def test_soft_deterministic_per_seed():
    lengths = _lengths()
    a = plan_soft(lengths, [np.arange(500)], 1024, seed=7)
    b = plan_soft(lengths, [np.arange(500)], 1024, seed=7)
    c = plan_soft(lengths, [np.arange(500)], 1024, seed=8)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_soft_overlong_sample_alone_and_cut():
    lengths = np.array([10, 5000, 20, 30], dtype=np.int64)
    plan = plan_soft(lengths, [np.arange(4)], 1024, seed=0)
    (big,) = [p for p in range(len(plan)) if 1 in [s for s, _, _ in plan.pieces(p)]]
    assert plan.pieces(big) == [(1, 0, 1024)]


def test_hard_exact_windows():
    lengths = _lengths(200)
    plan = plan_hard(lengths, [np.arange(200)], pack_max_length=777, seed=3)
    assert len(plan) == lengths.sum() // 777
    assert (plan.pack_tokens() == 777).all()
    # consecutive windows continue the same shuffled stream: a split sample resumes where it stopped
    for p in range(len(plan) - 1):
        last, first = plan.pieces(p)[-1], plan.pieces(p + 1)[0]
        if last[0] == first[0]:
            assert last[2] == first[1]


def test_none_one_sample_per_pack():
    lengths = np.array([3, 2000, 5], dtype=np.int64)
    plan = plan_none(lengths, [np.arange(3)], 1024)
    assert [plan.pieces(p) for p in range(3)] == [[(0, 0, 3)], [(1, 0, 1024)], [(2, 0, 5)]]


def test_collator_shift_segments_positions_and_padding():
    items = [{"input_ids": [11, 12, 13], "labels": [-100, 12, 13], "num_tokens": 3},
             {"input_ids": [21, 22], "labels": [-100, 22], "num_tokens": 2}]
    (p,) = sft_llm_collator([items], pack_max_length=8, padding_token_idx=0)
    # shift over the whole pack: the last token of sample 1 predicts sample 2's (masked) first label
    assert p["input_ids"].tolist() == [[11, 12, 13, 21, 0, 0, 0, 0]]
    assert p["shifted_labels"].tolist() == [[12, 13, -100, 22, -100, -100, -100, -100]]
    assert p["cu_seq_lens"].tolist() == [0, 3, 4, 8] and p["cu_seq_lens"].dtype == torch.int32
    assert p["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1, 2, 3]]
    assert (p["max_length"], p["num_padding"]) == (4, 4)
    assert p["input_ids"].dtype == p["shifted_labels"].dtype == p["position_ids"].dtype == torch.long


def test_collator_long_padding_split_in_256_segments_and_no_padding_mode():
    items = [{"input_ids": list(range(100)), "labels": list(range(100)), "num_tokens": 100}]
    (p,) = sft_llm_collator([items], pack_max_length=700, padding_token_idx=5)
    assert p["cu_seq_lens"].tolist() == [0, 99, 355, 611, 700] and p["max_length"] == 256
    assert p["num_padding"] == 601 and p["position_ids"][0, 99:101].tolist() == [0, 1]
    (q,) = sft_llm_collator([items], pack_max_length=700, padding_token_idx=5, pack_to_max_length=False)
    assert q["input_ids"].shape == (1, 99) and q["cu_seq_lens"].tolist() == [0, 99] and q["num_padding"] == 0


def test_collator_drops_single_token_tail_segment():
    items = [{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "num_tokens": 3},
             {"input_ids": [9], "labels": [9], "num_tokens": 1}]
    (p,) = sft_llm_collator([items], pack_max_length=4, padding_token_idx=0, pack_to_max_length=False)
    assert p["input_ids"].tolist() == [[1, 2, 3]] and p["shifted_labels"].tolist() == [[2, 3, 9]]
    assert p["cu_seq_lens"].tolist() == [0, 3]


@pytest.mark.parametrize("level", ["soft", "hard", "none"])
def test_loader_packs_match_the_samples(varied_jsonl, tiny_tok, level):
    kw = {"group_by_length": False} if level == "none" else {}
    loader = loader_cfg(varied_jsonl, pack_level=level, pack_max_length=128, **kw).build(tiny_tok, seed=1)
    for p in range(loader.num_packs):
        (packed,) = loader.collate([p])
        items = loader.pack_items(p)
        ids = np.concatenate([it["input_ids"] for it in items])
        labels = np.concatenate([it["labels"] for it in items])
        n = len(ids) - 1
        assert packed["input_ids"][0, :n].tolist() == ids[:-1].tolist()
        assert packed["shifted_labels"][0, :n].tolist() == labels[1:].tolist()
        assert packed["input_ids"].shape == (1, 128)
        assert (packed["shifted_labels"][0, n:] == -100).all()
        seg = np.diff(packed["cu_seq_lens"].numpy())
        assert seg.sum() == 128 and packed["max_length"] == seg.max()
    if level == "hard":
        assert (loader.pack_lengths() == 128).all()
    if level == "none":
        assert loader.num_packs == loader.stats.samples
