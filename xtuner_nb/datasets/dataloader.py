"""The built loader: packs planned once, collated per step, exact mid-epoch resume (see docs/dev/CONTRACTS.md).

`len(loader)` is the number of optimizer steps per epoch; each iteration yields this rank's `micro_batch_size`
packs of one step. The pack plan depends only on the data and `seed`; the order of packs only on `seed + epoch`;
so `state_dict()` is just the epoch and the number of steps consumed, and `load_state_dict()` + `iter()` yields
exactly the remaining steps.
"""

from __future__ import annotations

import inspect
import logging
import math
import pydoc
import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from .collator import sft_llm_collator
from .jsonl import TokenizedFile, show_progress
from .packing import PackPlan, plan_hard, plan_none, plan_soft
from .sampler import LengthGroupedSampler, ParallelSampler

if TYPE_CHECKING:
    from .config import DataloaderConfig

logger = logging.getLogger("xtuner_nb.datasets")


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
    loss_tokens: int
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
    loss_tokens: int  # of which have a label
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
                 f"{self.tokens} tokens, {self.loss_tokens} with loss ({self.loss_tokens / max(self.tokens, 1):.1%})"]
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


class PackedDataLoader:
    """Iterate steps of packed batches; see the module docstring."""

    def __init__(self, files: list[TokenizedFile], names: list[str], sample_file: np.ndarray,
                 sample_local: np.ndarray, lengths: np.ndarray, plan: PackPlan, sampler: ParallelSampler, *,
                 micro_batch_size: int, dp_rank: int, dp_size: int, seed: int, pad_token_id: int,
                 pack_max_length: int, pack_to_max_length: bool, collator: str, num_workers: int,
                 stats: LoaderStats):
        self.files, self.names = files, names
        self.sample_file, self.sample_local, self._lengths = sample_file, sample_local, lengths
        self.plan, self.sampler = plan, sampler
        self.micro_batch_size, self.dp_rank, self.dp_size, self.seed = micro_batch_size, dp_rank, dp_size, seed
        self.global_batch_size = micro_batch_size * dp_size
        self.pad_token_id, self.pack_max_length, self.pack_to_max_length = pad_token_id, pack_max_length, \
            pack_to_max_length
        self.num_workers = num_workers
        self.collator_name = collator
        self._collate = _resolve_collator(collator, pack_max_length, pad_token_id, pack_to_max_length)
        self.stats = stats
        self.epoch = 0
        self._step = 0  # steps of this epoch consumed (by the running/last iterator)
        self._resume_step = 0  # where the next iterator starts

    # ---- sizes -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return math.ceil(self.sampler.num_samples / self.micro_batch_size)

    @property
    def num_packs(self) -> int:
        return len(self.plan)

    def sample_lengths(self) -> np.ndarray:
        """Token count of every packed sample (for a length histogram)."""
        return self._lengths.copy()

    def pack_lengths(self) -> np.ndarray:
        return self.plan.pack_tokens()

    def sample(self, i: int) -> dict[str, Any]:
        """Packed sample `i`: unshifted `input_ids`/`labels`, `num_tokens`, source `path` and 1-based `line`."""
        return self.files[int(self.sample_file[i])].sample(int(self.sample_local[i]))

    # ---- epochs and resume ---------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._step = self._resume_step = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self._step, "consumed_packs": self._step * self.global_batch_size,
                "seed": self.seed, "global_batch_size": self.global_batch_size,
                "micro_batch_size": self.micro_batch_size, "num_packs": self.num_packs,
                "plan_fingerprint": self.plan.fingerprint(), **self.sampler.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where `state` was taken: the next iterator yields exactly the remaining steps of its epoch."""
        for key, mine in (("seed", self.seed), ("global_batch_size", self.global_batch_size),
                          ("num_packs", self.num_packs), ("plan_fingerprint", self.plan.fingerprint())):
            if key in state and state[key] != mine:
                raise ValueError(f"cannot resume the dataloader: {key} was {state[key]!r} in the checkpoint but is "
                                 f"{mine!r} now (the data, packing settings, batch size or seed changed)")
        self.epoch = int(state["epoch"])
        self._step = self._resume_step = int(state["step"])
        saved_group, group = state.get("group_size"), getattr(self.sampler, "group_size", None)
        if None not in (saved_group, group) and saved_group != group and 0 < self._step < len(self):
            logger.warning(
                "resuming mid-epoch on %d ranks a checkpoint taken on %d: the length-grouped sampler orders the packs "
                "of epoch %d in groups of the rank count, so the rest of this epoch may repeat some packs and skip "
                "others (the next epochs are whole). group_by_length=False gives every layout the same packs.",
                group, saved_group, self.epoch)

    # ---- iteration -----------------------------------------------------------------------------------------------
    def pack_items(self, p: int) -> list[dict[str, Any]]:
        """The DataItems (`input_ids`, `labels` as numpy slices, `num_tokens`) of pack `p`."""
        items = []
        for s, a, b in self.plan.pieces(p):
            tf = self.files[int(self.sample_file[s])]
            off = int(tf.offsets[int(self.sample_local[s])])
            items.append({"input_ids": tf.input_ids[off + a: off + b], "labels": tf.labels[off + a: off + b],
                          "num_tokens": b - a})
        return items

    def collate(self, pack_indices: list[int]) -> list[dict[str, Any]]:
        return self._collate([self.pack_items(p) for p in pack_indices])

    def _steps(self, start: int) -> list[list[int]]:
        order = self.sampler.indices(self.epoch)
        mbs = self.micro_batch_size
        return [order[s * mbs:(s + 1) * mbs] for s in range(start, len(self))]

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        start = self._resume_step
        self._resume_step = 0
        self._step = start
        steps = self._steps(start)
        if self.num_workers == 0:
            for k, packs in enumerate(steps):
                batch = self.collate(packs)
                self._step = start + k + 1
                yield batch
            return
        import torch

        dl = torch.utils.data.DataLoader(_PackView(self), batch_sampler=steps, num_workers=self.num_workers,
                                         collate_fn=self._collate, multiprocessing_context="fork")
        for k, batch in enumerate(dl):
            self._step = start + k + 1
            yield batch

    def __repr__(self) -> str:
        return (f"PackedDataLoader({self.num_packs} packs, {len(self)} steps/epoch, micro_batch_size="
                f"{self.micro_batch_size}, dp {self.dp_rank}/{self.dp_size}, epoch {self.epoch}, step {self._step})")


class _PackView:
    """Map-style dataset of packs for torch DataLoader workers (forked, so nothing is pickled)."""

    def __init__(self, loader: PackedDataLoader):
        self.loader = loader

    def __len__(self) -> int:
        return self.loader.num_packs

    def __getitem__(self, p: int) -> list[dict[str, Any]]:
        return self.loader.pack_items(p)


def _resolve_collator(name: str, pack_max_length: int, pad_id: int, pack_to_max_length: bool):
    fn = sft_llm_collator if name == "sft_llm_collator" else pydoc.locate(name)
    if not callable(fn):
        raise ValueError(f"collator {name!r} is neither 'sft_llm_collator' nor an importable function")
    kwargs = {"pack_max_length": pack_max_length, "padding_token_idx": pad_id}
    if "pack_to_max_length" in inspect.signature(fn).parameters:
        kwargs["pack_to_max_length"] = pack_to_max_length
    return _Collate(fn, kwargs)


class _Collate:
    def __init__(self, fn, kwargs):
        self.fn, self.kwargs = fn, kwargs

    def __call__(self, instances):
        return self.fn(instances, **self.kwargs)


# ---- build ---------------------------------------------------------------------------------------------------------
def resolve_pad_token_id(cfg_pad: int | None, tokenizer) -> int:
    for candidate in (cfg_pad, getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(candidate, int):
            return candidate
    return 0


def tokenize_datasets(cfg: "DataloaderConfig", tokenizer, progress: bool | None = None):
    """`[(dataset_cfg, [TokenizedFile, ...]), ...]` for every entry of `dataset_config_list`."""
    from .tokenize_fn import tokenizer_hash

    if not cfg.dataset_config_list:
        raise ValueError("DataloaderConfig.dataset_config_list is empty: add "
                         '{"dataset": DatasetConfig(anno_path=...), "tokenize_fn": '
                         'OpenaiTokenizeFunctionConfig(chat_template=...)}')
    tok_hash = cfg.tokenizer_hash
    if tok_hash is None and any(e["dataset"].cache_dir for e in cfg.dataset_config_list):
        tok_hash = tokenizer_hash(tokenizer)  # once, not per file
    out = []
    for entry in cfg.dataset_config_list:
        ds = entry["dataset"]
        fn = entry["tokenize_fn"].build(tokenizer, tokenizer_hash=tok_hash, anno_name=ds.name)
        out.append((ds, ds.build(fn, progress=progress)))
    return out


def _ratio_indices(valid: np.ndarray, ratio: float, sequential: bool, rnd: random.Random) -> np.ndarray:
    whole = int(math.floor(ratio))
    parts = [valid] * whole
    extra = int(round((ratio - whole) * len(valid)))
    if extra:
        parts.append(valid[:extra] if sequential else np.sort(np.asarray(rnd.sample(valid.tolist(), extra))))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def build_dataloader(cfg: "DataloaderConfig", tokenizer, *, dp_rank: int = 0, dp_size: int = 1,
                     micro_batch_size: int = 1, seed: int = 42, progress: bool | None = None) -> PackedDataLoader:
    if not (0 <= dp_rank < dp_size) or micro_batch_size < 1:
        raise ValueError(f"need 0 <= dp_rank < dp_size and micro_batch_size >= 1 (got rank {dp_rank}, "
                         f"size {dp_size}, micro_batch_size {micro_batch_size})")
    if tokenizer is None:  # as XTuner's Trainer without tokenizer_path
        from .toy_tokenizer import UTF8ByteTokenizer

        tokenizer = UTF8ByteTokenizer()
    datasets = tokenize_datasets(cfg, tokenizer, progress)
    P = cfg.pack_max_length
    rnd = random.Random(seed)
    files, names, s_file, s_local, groups, dstats = [], [], [], [], [], []
    n_total = 0
    for (ds, tfs), entry in zip(datasets, cfg.dataset_config_list):
        template = getattr(entry["tokenize_fn"], "chat_template", None)
        for tf in tfs:
            fid = len(files)
            files.append(tf)
            names.append(ds.name)
            lengths = tf.lengths
            valid = np.nonzero(lengths > 0)[0]
            local = _ratio_indices(valid, ds.sample_ratio, ds.enable_sequential_sampler, rnd)
            s_file.append(np.full(len(local), fid, dtype=np.int64))
            s_local.append(local)
            groups.append(np.arange(n_total, n_total + len(local), dtype=np.int64))
            n_total += len(local)
            loss = tf.loss_counts
            dstats.append(DatasetStats(
                name=ds.name, path=tf.path, lines=tf.num_lines, samples=len(local),
                dropped_empty=int(len(tf) - len(valid)), truncated=tf.truncated,
                skipped_lines=[no for no, _ in tf.skipped], tokens=int(lengths[local].sum()),
                loss_tokens=int(loss[local].sum()), from_cache=tf.from_cache, data_format=tf.data_format,
                chat_template=template if isinstance(template, str) else None, dropped_content=dict(tf.dropped)))
    sample_file = np.concatenate(s_file) if s_file else np.zeros(0, np.int64)
    sample_local = np.concatenate(s_local) if s_local else np.zeros(0, np.int64)
    if n_total == 0:
        raise ValueError("no usable samples: every line was empty, skipped or filtered out "
                         f"({', '.join(d.path for d in dstats)})")
    lengths = np.concatenate([files[f].lengths[sample_local[sample_file == f]] for f in range(len(files))])
    if cfg.global_pack:
        groups = [np.arange(n_total, dtype=np.int64)]
    if cfg.pack_level == "soft":
        plan = plan_soft(lengths, groups, P, seed, cfg.pack_chunk_size, cfg.pack_extra_buffer_size,
                         progress=bool(progress) if progress is not None else show_progress(n_total // 20))
    elif cfg.pack_level == "hard":
        plan = plan_hard(lengths, groups, P, seed)
    else:
        plan = plan_none(lengths, groups, P)
    if len(plan) == 0:
        raise ValueError(f"no packs: the data has {int(lengths.sum())} tokens, fewer than pack_max_length={P} "
                         "needed for one hard pack")
    gbs = micro_batch_size * dp_size
    if cfg.group_by_length:
        sampler = LengthGroupedSampler(plan.longest, gbs, dp_rank, dp_size, seed, cfg.round_up)
    else:
        sampler = ParallelSampler(len(plan), gbs, dp_rank, dp_size, seed, cfg.round_up)
    pad_id = resolve_pad_token_id(cfg.pad_token_id, tokenizer)
    stats = _loader_stats(cfg, files, sample_file, sample_local, lengths, plan, dstats,
                          math.ceil(sampler.num_samples / micro_batch_size))
    if stats.cut_to_pack_max_length:
        logger.warning("%d of %d samples are longer than pack_max_length=%d and were cut to it (longest: %d "
                       "tokens); raise pack_max_length or set the tokenize function's max_length.",
                       stats.cut_to_pack_max_length, len(lengths), P, int(lengths.max()))
    return PackedDataLoader(files, names, sample_file, sample_local, lengths, plan, sampler,
                            micro_batch_size=micro_batch_size, dp_rank=dp_rank, dp_size=dp_size, seed=seed,
                            pad_token_id=pad_id, pack_max_length=P, pack_to_max_length=cfg.pack_to_max_length,
                            collator=cfg.collator, num_workers=cfg.num_workers, stats=stats)


def _loader_stats(cfg, files, sample_file, sample_local, lengths, plan: PackPlan, dstats, steps) -> LoaderStats:
    tokens = int(plan.pack_tokens().sum())
    # labelled tokens inside the planned pieces: whole samples from the per-sample counts, cut pieces counted
    loss_tokens = 0
    piece_file, piece_local = sample_file[plan.sample], sample_local[plan.sample]
    whole = (plan.start == 0) & (plan.end == lengths[plan.sample])
    for fid, tf in enumerate(files):
        sel = (piece_file == fid) & whole
        loss_tokens += int(tf.loss_counts[piece_local[sel]].sum())
    for k in np.nonzero(~whole)[0].tolist():
        tf = files[int(piece_file[k])]
        off = int(tf.offsets[int(piece_local[k])])
        loss_tokens += int(np.count_nonzero(tf.labels[off + int(plan.start[k]): off + int(plan.end[k])] != -100))
    cut = int((lengths > cfg.pack_max_length).sum()) if cfg.pack_level != "hard" else 0
    tail = int(lengths.sum()) - tokens if cfg.pack_level == "hard" else 0
    return LoaderStats(
        samples=len(lengths), packs=len(plan), steps_per_epoch=steps, tokens=tokens, loss_tokens=loss_tokens,
        fill_ratio=tokens / (len(plan) * cfg.pack_max_length), dropped_empty=sum(d.dropped_empty for d in dstats),
        truncated=sum(d.truncated for d in dstats), cut_to_pack_max_length=cut, dropped_tail_tokens=tail,
        skipped_lines=sum(len(d.skipped_lines) for d in dstats), pack_level=cfg.pack_level,
        pack_max_length=cfg.pack_max_length, datasets=dstats)
