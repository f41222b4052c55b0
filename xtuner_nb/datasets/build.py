"""From configs to a loader, XTuner's way: `build_datasets` (one `JsonlDataset` per data file) then
`build_dataloader` (pack, sample, collate), with XTuner's signatures (`xtuner.v1.datasets.build`).

`DataloaderConfig.build(tokenizer, dp_mesh, global_batch_size, micro_batch_size, seed)` is the two in a row;
XTuner's `build_dataloader(dataloader_config=, datasets=, ...)` takes datasets already built, this project's or any
objects with `num_tokens`, `__len__` and `__getitem__` returning `{"input_ids", "labels", "num_tokens"}`. Both end in
`make_loader`, the one place a loader is put together.
"""

from __future__ import annotations

import logging
import math
import random
from typing import TYPE_CHECKING, Any

from .dataloader import PackedDataLoader
from .packing import ExpandSoftPackDataset, HardPackDataset, OnePerPackDataset, PackedDatasets
from .sampler import LengthGroupedSampler, ParallelSampler, dp_rank_size
from .stats import loader_stats
from .tokenized import show_progress

if TYPE_CHECKING:
    from .config import DataloaderConfig
    from .jsonl import JsonlDataset

logger = logging.getLogger("xtuner_nb.datasets")


def resolve_pad_token_id(cfg_pad: int | None, tokenizer) -> int:
    for candidate in (cfg_pad, getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(candidate, int):
            return candidate
    return 0


def build_datasets(dataset_config: list[dict], tokenizer, tokenizer_hash: str | None = None, *,
                   seed: int | None = None, progress: bool | None = None) -> list["JsonlDataset"]:
    """One `JsonlDataset` per data file of every `{"dataset": DatasetConfig, "tokenize_fn": ...}` entry (a folder:
    its files, sorted). `seed` draws fractional `sample_ratio` subsets (None: the `random` module, as XTuner)."""
    from .jsonl import JsonlDataset
    from .sources import find_data_files
    from .tokenize_fn import tokenizer_hash as hash_of

    if not dataset_config:
        raise ValueError("DataloaderConfig.dataset_config_list is empty: add "
                         '{"dataset": DatasetConfig(anno_path=...), "tokenize_fn": '
                         'OpenaiTokenizeFunctionConfig(chat_template=...)}')
    if tokenizer_hash is None and any(e["dataset"].cache_dir for e in dataset_config):
        tokenizer_hash = hash_of(tokenizer)  # once, not per file
    rng = random.Random(seed) if seed is not None else None
    out = []
    for entry in dataset_config:
        ds = entry["dataset"]
        fn = entry["tokenize_fn"].build(tokenizer, tokenizer_hash=tokenizer_hash, anno_name=ds.name)
        out += [JsonlDataset(path, sample_ratio=ds.sample_ratio, tokenize_fn=fn, name=ds.name,
                             cache_dir=ds.cache_dir, cache_tag=ds.cache_tag,
                             enable_sequential_sampler=ds.enable_sequential_sampler,
                             enable_mmap_shared=ds.enable_mmap_shared, disable_filter=ds.disable_filter,
                             skip_bad_lines=ds.skip_bad_lines, data_format=ds.data_format, progress=progress, rng=rng)
                for path in find_data_files(ds.anno_path)]
    return out


def build_dataloader(dataloader_config: "DataloaderConfig", datasets: list, global_batch_size: int,
                     micro_batch_size: int, seed: int, dp_mesh: Any = None, shuffle: bool = True) -> PackedDataLoader:
    """XTuner's `build_dataloader`: pack `datasets` as `dataloader_config` says; `micro_batch_size` packs per batch
    on each rank, rounded up to whole `global_batch_size`s (padding id: the config's, else 0, as XTuner)."""
    rank, size = dp_rank_size(dp_mesh)
    return make_loader(dataloader_config, datasets, global_batch_size, micro_batch_size, seed, rank, size, shuffle,
                       pad_token_id=dataloader_config.pad_token_id or 0)


def pack_datasets(cfg: "DataloaderConfig", datasets: list, seed: int, progress: bool | None = None
                  ) -> PackedDatasets:
    """The pack dataset `cfg.pack_level` asks for."""
    n = sum(len(d) for d in datasets)
    if cfg.pack_level == "soft":
        return ExpandSoftPackDataset(datasets, cfg.pack_max_length, cfg.global_pack, cfg.pack_extra_buffer_size,
                                     cfg.pack_chunk_size, cfg.pack_workers, seed,
                                     progress=bool(progress) if progress is not None else show_progress(n // 20))
    if cfg.pack_level == "hard":
        return HardPackDataset(datasets, cfg.pack_max_length, cfg.global_pack, seed, cfg.pack_workers,
                               cfg.pack_chunk_size)
    return OnePerPackDataset(datasets, cfg.pack_max_length, cfg.global_pack, seed)


def make_loader(cfg: "DataloaderConfig", datasets: list, global_batch_size: int | None, micro_batch_size: int,
                seed: int, dp_rank: int, dp_size: int, shuffle: bool = True, pad_token_id: int = 0,
                progress: bool | None = None) -> PackedDataLoader:
    """The loader over `datasets`; `global_batch_size` None = `micro_batch_size * dp_size` (one batch per step)."""
    gbs = global_batch_size if global_batch_size is not None else micro_batch_size * dp_size
    if micro_batch_size < 1 or gbs % dp_size:
        raise ValueError(f"need micro_batch_size >= 1 and global_batch_size divisible by the {dp_size} ranks "
                         f"(got micro_batch_size {micro_batch_size}, global_batch_size {gbs})")
    if sum(len(d) for d in datasets) == 0:
        raise ValueError("no usable samples: every line was empty, skipped or filtered out "
                         f"({', '.join(str(getattr(d, 'path', d)) for d in datasets)})")
    packed = pack_datasets(cfg, datasets, seed, progress)
    if len(packed) == 0:
        raise ValueError(f"no packs: the data has {int(packed.lengths.sum())} tokens, fewer than pack_max_length="
                         f"{cfg.pack_max_length} needed for one hard pack")
    if cfg.group_by_length:
        if not shuffle:
            raise ValueError("group_by_length=True orders the packs by a seeded shuffle: shuffle=False needs "
                             "group_by_length=False (as XTuner)")
        sampler = LengthGroupedSampler(packed, gbs, seed=seed, round_up=cfg.round_up, dp_rank=dp_rank,
                                       dp_size=dp_size)
    else:
        sampler = ParallelSampler(packed, gbs, shuffle=shuffle, seed=seed, round_up=cfg.round_up, dp_rank=dp_rank,
                                  dp_size=dp_size)
    stats = loader_stats(packed, cfg.pack_level, math.ceil(sampler.num_samples / micro_batch_size))
    if stats.cut_to_pack_max_length:
        logger.warning("%d of %d samples are longer than pack_max_length=%d and were cut to it (longest: %d "
                       "tokens); raise pack_max_length or set the tokenize function's max_length.",
                       stats.cut_to_pack_max_length, len(packed.lengths), cfg.pack_max_length,
                       int(packed.lengths.max()))
    return PackedDataLoader(packed, sampler, micro_batch_size=micro_batch_size, global_batch_size=gbs,
                            dp_rank=dp_rank, dp_size=dp_size, seed=seed, pad_token_id=pad_token_id,
                            pack_to_max_length=cfg.pack_to_max_length, collator=cfg.collator,
                            num_workers=cfg.num_workers, stats=stats)
