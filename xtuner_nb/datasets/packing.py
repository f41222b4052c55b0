"""Plan which samples go into which pack, once, at build time (XTuner's pack datasets).

A plan is a flat list of pieces `(sample, start, end)` grouped into packs. soft/none packs hold whole samples;
hard packs cut the shuffled token stream into exact `pack_max_length` windows, so samples split at the edges.
The concatenation itself happens in the collator.

- soft (`ExpandSoftPackDataset`): seeded `torch.randperm`, chunks of `pack_chunk_size`; pop from the end while the
  pack still fits; on overflow fill the gap with the shortest of the last `pack_extra_buffer_size` indices; an
  over-long sample becomes a pack of its own (cut to `pack_max_length`). Every sample is used exactly once.
- hard (`HardPackDataset`): the samples shuffled by `np.random.RandomState(seed)` (XTuner's generator, so the
  windows are XTuner's), then `floor(total_tokens / pack_max_length)` windows; the tail remainder is dropped.
- none: one sample per pack (cut to `pack_max_length`), in dataset order (the sampler shuffles).
`longest` is the sampler's cost key: the sum of the members' `proxy_attn_flops` (soft; `round(n/128)**2` for this
project's datasets, as XTuner's), the longest member otherwise.

The pack datasets at the end (`ExpandSoftPackDataset`, `HardPackDataset`, with XTuner's arguments) hold a plan
over a list of datasets (this project's `JsonlDataset`s or any object with `num_tokens`, `__len__` and
`__getitem__` returning `{"input_ids", "labels", "num_tokens"}`); item `p` is the list of the pieces of pack `p`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLASH_ATTN_BLOCK = 128


@dataclass
class PackPlan:
    pack_ptr: np.ndarray  # int64 [num_packs + 1]: pack p owns pieces pack_ptr[p]:pack_ptr[p+1]
    sample: np.ndarray  # int64 [num_pieces]: global sample index of each piece
    start: np.ndarray  # int64 [num_pieces]: first token of the piece within its sample
    end: np.ndarray  # int64 [num_pieces]: one past the last token
    longest: np.ndarray  # int64 [num_packs]

    def __len__(self) -> int:
        return len(self.pack_ptr) - 1

    def pieces(self, p: int) -> list[tuple[int, int, int]]:
        a, b = int(self.pack_ptr[p]), int(self.pack_ptr[p + 1])
        return list(zip(self.sample[a:b].tolist(), self.start[a:b].tolist(), self.end[a:b].tolist()))

    def pack_tokens(self) -> np.ndarray:
        per_piece = self.end - self.start
        csum = np.concatenate([[0], np.cumsum(per_piece)])
        return csum[self.pack_ptr[1:]] - csum[self.pack_ptr[:-1]]

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for arr in (self.pack_ptr, self.sample, self.start, self.end):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def _from_packs(packs: list[list[int]], lengths: np.ndarray, longest: list[int], limit: int) -> PackPlan:
    sizes = np.fromiter((len(p) for p in packs), dtype=np.int64, count=len(packs))
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    sample = np.fromiter((i for p in packs for i in p), dtype=np.int64, count=int(ptr[-1]))
    end = np.minimum(lengths[sample], limit).astype(np.int64)
    return PackPlan(ptr, sample, np.zeros_like(sample), end, np.asarray(longest, dtype=np.int64))


def attention_cost(lengths, block: int = FLASH_ATTN_BLOCK) -> np.ndarray:
    """XTuner's proxy of a sample's attention FLOPs, `round(n / 128) ** 2` (round half to even, like Python's
    round): what soft packing balances between packs and the length-grouped sampler sorts by."""
    return np.rint(np.asarray(lengths) / block).astype(np.int64) ** 2


def _soft_chunk(inds: list[int], lengths: list[int], costs: list[int], target: int, extra: int, out: list,
                longest: list) -> None:
    buf: list[int] = []
    buf_sum = cost = 0
    while inds:
        i = inds.pop()
        n = lengths[i]
        if n + buf_sum <= target:
            buf.append(i)
            buf_sum += n
            cost += costs[i]
            continue
        if buf:
            if buf_sum != target and extra > 0 and inds:
                window = inds[-extra:]
                wl = [lengths[j] for j in window]
                room, acc, chosen = target - buf_sum, 0, []
                for k in np.argsort(np.asarray(wl)).tolist():  # shortest first, while they still fit
                    acc += wl[k]
                    if acc <= room:
                        chosen.append(k)
                    if acc >= room:
                        break
                for k in chosen:
                    buf.append(window[k])
                    cost += costs[window[k]]
                base = len(inds) - len(window)
                for pos in sorted((base + k for k in chosen), reverse=True):
                    inds.pop(pos)
            out.append(buf)
            longest.append(cost)
        buf, buf_sum, cost = [i], n, costs[i]
    if buf:
        out.append(buf)
        longest.append(cost)


def plan_soft(lengths: np.ndarray, groups: list[np.ndarray], pack_max_length: int, seed: int | None,
              pack_chunk_size: int = 10000, pack_extra_buffer_size: int = 100, progress: bool = False,
              costs: np.ndarray | None = None) -> PackPlan:
    """`groups`: global sample indices packed together (one group = global_pack; one per dataset otherwise);
    `costs`: each sample's attention cost (default `round(n/128)**2`)."""
    import torch

    g = torch.Generator()
    g.manual_seed(seed) if seed is not None else g.seed()
    packs: list[list[int]] = []
    longest: list[int] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(sum(len(x) for x in groups)), desc="Packing", unit="samples", leave=False)
    length_list = lengths.tolist()
    costs = (attention_cost(lengths) if costs is None else np.asarray(costs)).tolist()
    for group in groups:
        perm = group[torch.randperm(len(group), generator=g).numpy()].tolist()
        for c in range(0, len(perm), pack_chunk_size):
            chunk = perm[c:c + pack_chunk_size]
            _soft_chunk(list(chunk), length_list, costs, pack_max_length, pack_extra_buffer_size, packs, longest)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    plan = _from_packs(packs, lengths, longest, pack_max_length)
    used = np.sort(plan.sample)
    expected = np.sort(np.concatenate(groups)) if groups else used
    assert np.array_equal(used, expected), "soft packing must use every sample exactly once"
    return plan


def plan_hard(lengths: np.ndarray, groups: list[np.ndarray], pack_max_length: int, seed: int | None) -> PackPlan:
    rng = np.random.RandomState(seed)  # one generator over the groups in order, as XTuner's HardPackDataset
    ptr, sample, start, end, longest = [0], [], [], [], []
    for group in groups:
        order = np.arange(len(group), dtype=np.int64)
        rng.shuffle(order)
        perm = group[order]
        lens = lengths[perm].astype(np.int64)
        cu = np.concatenate([[0], np.cumsum(lens)])
        for w in range(int(cu[-1] // pack_max_length)):
            begin, stop = w * pack_max_length, (w + 1) * pack_max_length
            s = int(np.searchsorted(cu, begin, side="right") - 1)
            e = int(np.searchsorted(cu, stop - 1, side="right") - 1)
            ks = np.arange(s, e + 1)
            st = np.where(ks == s, begin - cu[s], 0)
            en = np.where(ks == e, stop - cu[e], lens[ks])
            sample.extend(perm[ks].tolist())
            start.extend(st.tolist())
            end.extend(en.tolist())
            ptr.append(ptr[-1] + len(ks))
            longest.append(int((en - st).max()))
    as64 = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return PackPlan(as64(ptr), as64(sample), as64(start), as64(end), as64(longest))


def plan_none(lengths: np.ndarray, groups: list[np.ndarray], pack_max_length: int) -> PackPlan:
    order = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    return _from_packs([[int(i)] for i in order], lengths, np.minimum(lengths[order], pack_max_length).tolist(),
                       pack_max_length)


# ---- XTuner's pack datasets: a plan over a list of datasets -------------------------------------------------------
class PackedDatasets:
    """Packs of samples drawn from `datasets`; item `p` is the list of pack `p`'s pieces, each a DataItem
    (`input_ids`, `labels`, `num_tokens`) cut to the piece. Global sample `s` is item `sample_local[s]` of
    `datasets[sample_file[s]]`, in dataset order."""

    def __init__(self, datasets, pack_max_length: int, global_pack: bool, seed: int | None):
        self.datasets, self.pack_max_length, self.global_pack, self.seed = list(datasets), pack_max_length, \
            global_pack, seed
        sizes = [len(d) for d in self.datasets]
        self.sample_file = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        self.sample_local = np.concatenate([np.arange(n, dtype=np.int64) for n in sizes]) if sizes else \
            np.zeros(0, np.int64)
        self.lengths = np.concatenate([np.asarray(d.num_tokens, dtype=np.int64) for d in self.datasets]) if sizes \
            else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.groups = [np.arange(starts[-1], dtype=np.int64)] if global_pack else \
            [np.arange(a, b, dtype=np.int64) for a, b in zip(starts[:-1], starts[1:])]
        self.plan: PackPlan = self._plan()

    def _plan(self) -> PackPlan:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.plan)

    @property
    def longest(self) -> np.ndarray:
        return self.plan.longest

    def __getitem__(self, p: int) -> list[dict]:
        items = []
        for s, a, b in self.plan.pieces(p):
            ds, local = self.datasets[int(self.sample_file[s])], int(self.sample_local[s])
            if hasattr(ds, "piece"):  # this project's JsonlDataset: numpy views of its token arrays, no copy
                items.append(ds.piece(local, a, b))
            else:
                item = ds[local]
                items.append({"input_ids": item["input_ids"][a:b], "labels": item["labels"][a:b], "num_tokens": b - a})
        return items

    def sample(self, s: int) -> dict:
        """Packed sample `s` whole (with its `path` and 1-based `line` when its dataset knows them)."""
        ds, local = self.datasets[int(self.sample_file[s])], int(self.sample_local[s])
        return ds.sample(local) if hasattr(ds, "sample") else dict(ds[local])

    def get_state_dict(self) -> dict:
        return {"pack_max_length": self.pack_max_length, "seed": self.seed, "global_pack": self.global_pack}

    def load_state_dict(self, state_dict: dict) -> None:
        for key, mine in self.get_state_dict().items():
            if key in state_dict and state_dict[key] != mine:
                raise ValueError(f"cannot resume the packed data: {key} was {state_dict[key]!r} in the checkpoint "
                                 f"but is {mine!r} now (the packs would differ)")


def _flops(datasets, lengths: np.ndarray) -> np.ndarray | None:
    if datasets and all(hasattr(d, "proxy_attn_flops") for d in datasets):
        return np.concatenate([np.asarray(d.proxy_attn_flops) for d in datasets])
    return None


class ExpandSoftPackDataset(PackedDatasets):
    """XTuner's soft packing (see `plan_soft`); `pack_workers` has no effect (one process packs, same packs)."""

    def __init__(self, datasets, pack_max_length: int = 2048, global_pack: bool = False,
                 pack_extra_buffer_size: int = 1000, pack_chunk_size: int = 10000, pack_workers: int = 8,
                 seed: int | None = None, *, progress: bool = False):
        self.pack_extra_buffer_size, self.pack_chunk_size, self.pack_workers = pack_extra_buffer_size, \
            pack_chunk_size, pack_workers
        self.progress = progress
        super().__init__(datasets, pack_max_length, global_pack, seed)

    def _plan(self) -> PackPlan:
        return plan_soft(self.lengths, self.groups, self.pack_max_length, self.seed, self.pack_chunk_size,
                         self.pack_extra_buffer_size, self.progress, costs=_flops(self.datasets, self.lengths))


class HardPackDataset(PackedDatasets):
    """XTuner's hard packing (see `plan_hard`); `pack_workers` and `pack_chunk_size` have no effect."""

    def __init__(self, datasets, pack_max_length: int = 2048, global_pack: bool = False, seed: int | None = None,
                 pack_workers: int = 1, pack_chunk_size: int = 10000):
        self.pack_workers, self.pack_chunk_size = pack_workers, pack_chunk_size
        super().__init__(datasets, pack_max_length, global_pack, seed)

    def _plan(self) -> PackPlan:
        return plan_hard(self.lengths, self.groups, self.pack_max_length, self.seed)


class OnePerPackDataset(PackedDatasets):
    """`pack_level="none"`: every sample alone (cut to `pack_max_length`), in dataset order (XTuner concatenates
    the datasets; its collator cuts)."""

    def _plan(self) -> PackPlan:
        return plan_none(self.lengths, self.groups, self.pack_max_length)
