"""XTuner v1's loader API: the hard-pack layout XTuner's seed gives, loaders built the way XTuner code builds them
(`DataloaderConfig.build(tokenizer, dp_mesh, global_batch_size, micro_batch_size, seed)`, `build_dataloader` over
any datasets), their batches (`seq_ctx` + `shifted_labels`), the order a seed fixes, and resume from
`get_state_dict()` in XTuner's layout or ours."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from xtuner_nb.datasets import (DataloaderConfig, DatasetConfig, FTDPTokenizeFnConfig, HardPackDataset,
                                LengthGroupedSampler, ParallelSampler, build_dataloader)

from .conftest import chat, write_jsonl


class SamplesInMemory:
    """A dataset as XTuner's loaders take one: `num_tokens`, `__len__`, `__getitem__` -> a DataItem. Token ids are
    `1000 * tag + position`, so every token says which sample and which position it is."""

    def __init__(self, tag: int, lengths: list[int]):
        self.items = [[1000 * (tag + i) + k for k in range(n)] for i, n in enumerate(lengths)]
        self.num_tokens = np.asarray(lengths)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"input_ids": self.items[i], "labels": self.items[i], "num_tokens": len(self.items[i])}


def _datasets(seed=0, n=4):
    rng = np.random.default_rng(seed)
    return [SamplesInMemory(100 * d, rng.integers(1, 90, size=30).tolist()) for d in range(n)]


@pytest.mark.parametrize("global_pack", [True, False])
def test_hard_packs_cut_xtuners_shuffled_stream_into_exact_windows(global_pack):
    datasets = _datasets()
    packed = HardPackDataset(datasets, pack_max_length=64, global_pack=global_pack, seed=10)
    stream = [t for p in range(len(packed)) for piece in packed[p] for t in piece["input_ids"]]
    assert all(sum(piece["num_tokens"] for piece in packed[p]) == 64 for p in range(len(packed)))
    # the order is numpy's RandomState(seed) shuffle of the sample indices, one generator over the datasets in turn
    # (all datasets as one when global_pack), which is how XTuner's HardPackDataset orders them; each packed group
    # drops its own last partial window
    rng, groups = np.random.RandomState(10), [[s for d in datasets for s in d.items]] if global_pack else \
        [d.items for d in datasets]
    expected = []
    for samples in groups:
        order = np.arange(len(samples))
        rng.shuffle(order)
        tokens = [t for i in order for t in samples[i]]
        expected += tokens[: len(tokens) // 64 * 64]
    assert stream == expected


@pytest.mark.parametrize("kind", [ParallelSampler, LengthGroupedSampler])
def test_samplers_iterate_and_resume_as_xtuners(kind):
    packed = HardPackDataset(_datasets(), pack_max_length=64, global_pack=True, seed=10)
    sampler = kind(packed, 4, seed=3)
    full = list(sampler)
    assert full == sampler.indices(0) and len(sampler) == len(full) == math.ceil(len(packed) / 4) * 4
    resumed = kind(packed, 4, seed=3)
    resumed.load_state_dict(sampler.get_state_dict(total_consumed_steps=8))  # 8 packs of the epoch consumed
    assert list(resumed) == full[8:] and list(resumed) == full  # the next iteration starts the epoch again
    sampler.set_epoch(1)
    assert sorted(set(sampler)) == sorted(set(full)) and list(sampler) != full
    with pytest.raises(ValueError, match="give a seed"):
        kind(packed, 4, seed=None, dp_rank=0, dp_size=2)


def test_build_dataloader_over_any_datasets_gives_xtuners_batches():
    cfg = DataloaderConfig(pack_max_length=256, pack_chunk_size=10)
    loader = build_dataloader(dataloader_config=cfg, datasets=_datasets(), global_batch_size=16, micro_batch_size=8,
                              seed=10)
    # the epoch is rounded up to whole global batches of 16 packs, served 8 at a time
    assert len(loader) == math.ceil(loader.num_packs / 16) * 16 // 8
    batches = list(loader)
    assert len(batches) == len(loader) and all(len(b) == 8 for b in batches)
    for pack in batches[0]:
        ctx = pack["seq_ctx"]
        assert ctx.input_ids.shape == pack["shifted_labels"].shape == (1, 256)
        assert int(ctx.cu_seq_lens_k[-1]) == 256 and int(ctx.seq_lens_k.max()) == int(ctx.max_length_k)
    assert loader.pad_token_id == 0 and loader.stats.loss_tokens is None  # these datasets count no labels
    again = build_dataloader(dataloader_config=cfg.model_copy(update={"pack_workers": 4}), datasets=_datasets(),
                             global_batch_size=16, micro_batch_size=8, seed=10)
    other = build_dataloader(dataloader_config=cfg, datasets=_datasets(), global_batch_size=16, micro_batch_size=8,
                             seed=11)
    assert _ids(again) == _ids(batches) and _ids(other) != _ids(batches)


def _ids(batches):
    return [[p["input_ids"].tolist() + p["cu_seq_lens"].tolist() for p in batch] for batch in batches]


@pytest.fixture
def ftdp_folder(tmp_path):
    """Conversations in nested folders (a dataset folder is read recursively, one dataset per file)."""
    for k, sub in enumerate(["a", "b/c", "b/d/e"]):
        write_jsonl(tmp_path / "data" / sub / "part.jsonl",
                    [chat(f"question {k}-{i} " + "x " * (i % 11), "answer " + "y " * (i * 7 % 29)) for i in range(40)])
    return tmp_path / "data"


def _config(folder, level, workers=0):
    return DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(folder)),
                                                  "tokenize_fn": FTDPTokenizeFnConfig(max_length=200)}],
                            pack_max_length=256, pack_level=level, num_workers=workers)


@pytest.mark.parametrize("level,workers", [("soft", 0), ("hard", 0), ("none", 0), ("soft", 2)])
def test_resume_from_either_state_layout_gives_the_remaining_batches(ftdp_folder, byte_tok, level, workers):
    def build():
        return _config(ftdp_folder, level, workers).build(byte_tok, dp_mesh=None, global_batch_size=4,
                                                          micro_batch_size=4, seed=3)

    first = build()
    assert len(first.dataset.datasets) == 3 and len(first) > 6
    it = iter(first)
    seen = [next(it) for _ in range(5)]
    state = first.get_state_dict()
    rest = list(it)
    xtuner_only = {k: state[k] for k in ("sampler", "dataset", "total_consumed_samples")}
    assert xtuner_only["total_consumed_samples"] == 5 * 4 and xtuner_only["sampler"]["step"] == 20
    for saved in (state, xtuner_only, json.loads(json.dumps(state))):
        resumed = build()
        resumed.load_state_dict(saved)
        assert _ids(resumed) == _ids(rest)
    # a new iterator over the same epoch (no set_epoch) replays it from the start
    assert _ids(list(iter(first))[:5]) == _ids(seen)


def test_a_changed_packing_refuses_to_resume(ftdp_folder, byte_tok):
    state = _config(ftdp_folder, "soft").build(byte_tok, None, 4, 4, 3).get_state_dict()
    hard = _config(ftdp_folder, "hard").build(byte_tok, None, 4, 4, 3)
    with pytest.raises(ValueError, match="cannot resume"):
        hard.load_state_dict(state)


def _rank_batches(rank, folder, store, out_dir):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from xtuner_nb.datasets.toy_tokenizer import UTF8ByteTokenizer

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        loader = _config(folder, "soft").build(UTF8ByteTokenizer(), init_device_mesh("cpu", (2,)),
                                               global_batch_size=4, micro_batch_size=2, seed=3)
        (out_dir / f"rank{rank}.json").write_text(json.dumps(_ids(loader)))
    finally:
        dist.destroy_process_group()


def test_dp_mesh_gives_each_rank_the_batches_of_its_dp_rank(ftdp_folder, byte_tok, tmp_path):
    torch.multiprocessing.start_processes(_rank_batches, args=(ftdp_folder, tmp_path / "store", tmp_path), nprocs=2,
                                          start_method="fork")
    for rank in (0, 1):
        expected = _config(ftdp_folder, "soft").build(byte_tok, global_batch_size=4, micro_batch_size=2, seed=3,
                                                      dp_rank=rank, dp_size=2)
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == _ids(expected)
