"""Which packs each rank gets in each epoch (XTuner's samplers, with XTuner's arguments).

Both samplers are pure functions of `(seed, epoch)`: the order is computed again on resume, never stored.
With `round_up` the order is padded by repeating its beginning to whole global batches, so every step has
`micro_batch_size` packs on every rank; rank r takes `order[r::dp_size]`. The loader reads `indices(epoch)`;
iterating a sampler (XTuner's way) yields the same, from where `load_state_dict` put it.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any, Iterator

logger = logging.getLogger("xtuner_nb.datasets")


def dp_rank_size(dp_mesh: Any = None, dp_rank: int | None = None, dp_size: int | None = None) -> tuple[int, int]:
    """This rank's place among the data-parallel ranks: from XTuner's `dp_mesh` (a torch DeviceMesh: its local rank
    and size), from `dp_rank`/`dp_size` (the Trainer's), or (0, 1)."""
    if dp_mesh is not None:
        rank, size = dp_mesh.get_local_rank(), dp_mesh.size()
        if (dp_rank is not None and dp_rank != rank) or (dp_size is not None and dp_size != size):
            raise ValueError(f"dp_mesh says rank {rank} of {size}, dp_rank/dp_size say {dp_rank} of {dp_size}")
        return rank, size
    rank, size = dp_rank or 0, dp_size or 1
    if not 0 <= rank < size:
        raise ValueError(f"need 0 <= dp_rank < dp_size (got rank {rank}, size {size})")
    return rank, size


class ParallelSampler:
    """Seeded permutation (`torch.randperm(seed + epoch)`) of `dataset`'s items, rounded up, strided over ranks.
    `seed=None` draws one (one rank only: XTuner syncs a drawn seed across ranks, which needs a process group)."""

    def __init__(self, dataset, global_batch_size: int, dp_mesh: Any = None, shuffle: bool = True,
                 seed: int | None = None, round_up: bool = True, *, dp_rank: int | None = None,
                 dp_size: int | None = None):
        rank, size = dp_rank_size(dp_mesh, dp_rank, dp_size)
        if global_batch_size % size:
            raise ValueError(f"global_batch_size {global_batch_size} is not divisible by dp_size {size}")
        if seed is None:
            if size > 1:
                raise ValueError("ParallelSampler(seed=None) on several ranks: give a seed, so that every rank "
                                 "draws the same order")
            seed = random.randrange(2 ** 31)
        self.dataset, self.num_items, self.global_batch_size = dataset, len(dataset), global_batch_size
        self.rank, self.world_size = rank, size
        self.seed, self.round_up, self.shuffle = seed, round_up, shuffle
        self.epoch = self.step = 0  # XTuner's iteration state: the epoch, and the packs of it already consumed
        if round_up:
            self.num_samples = math.ceil(self.num_items / global_batch_size) * global_batch_size // size
            self.total_size = self.num_samples * size
        else:  # every pack once; the last global batch may be short (XTuner drops it)
            self.num_samples = math.ceil((self.num_items - rank) / size)
            self.total_size = self.num_items

    def _order(self, epoch: int) -> list[int]:
        import torch

        if not self.shuffle:
            return list(range(self.num_items))
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=g).tolist()

    def indices(self, epoch: int) -> list[int]:
        """This rank's pack indices for `epoch`, in order."""
        order = self._order(epoch)
        if self.round_up and order:
            order = (order * (self.total_size // len(order) + 1))[: self.total_size]
        return order[self.rank: self.total_size: self.world_size]

    def __iter__(self) -> Iterator[int]:
        skip, self.step = self.step // self.world_size, 0
        yield from self.indices(self.epoch)[skip:]

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def get_state_dict(self, total_consumed_steps: int) -> dict:
        """XTuner's sampler state: the epoch and the position in it, in packs of all ranks."""
        return {"epoch": self.epoch, "step": total_consumed_steps % max(self.total_size, 1),
                "world_size": self.world_size, "shuffle": self.shuffle, "round_up": self.round_up,
                "num_samples": self.num_samples, "total_size": self.total_size}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict.get("shuffle", self.shuffle) != self.shuffle:
            raise ValueError(f"cannot resume the sampler: shuffle was {state_dict['shuffle']} in the checkpoint but "
                             f"is {self.shuffle} now")
        self.epoch, self.step = int(state_dict["epoch"]), int(state_dict["step"])


class LengthGroupedSampler(ParallelSampler):
    """Megabatches of similar-cost packs (`dataset.longest`) so that ranks stepping together do similar work (a
    seeded shuffle on 1 rank). Megabatch = `min(len // (gbs * 4), 50) * gbs` packs (at least gbs), sorted by cost
    descending, cut into groups of `dp_size`, groups shuffled."""

    GROUP_BATCH_FACTOR = 4
    MAX_GROUP_BATCH_SIZE = 50

    def __init__(self, dataset, global_batch_size: int, dp_mesh: Any = None, seed: int | None = None,
                 round_up: bool = True, *, dp_rank: int | None = None, dp_size: int | None = None):
        super().__init__(dataset, global_batch_size, dp_mesh, True, seed, round_up, dp_rank=dp_rank, dp_size=dp_size)
        self.longest = [int(x) for x in dataset.longest]
        mult = min(len(self.longest) // (global_batch_size * self.GROUP_BATCH_FACTOR), self.MAX_GROUP_BATCH_SIZE)
        self.group_batch_size = max(mult, 1) * global_batch_size
        self.group_size = self.world_size

    def _order(self, epoch: int) -> list[int]:
        import torch

        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        rnd = random.Random(self.seed + epoch)
        perm = torch.randperm(self.num_items, generator=g)
        out: list[int] = []
        for i in range(0, self.num_items, self.group_batch_size):
            mega = sorted(perm[i: i + self.group_batch_size].tolist(), key=lambda k: self.longest[k], reverse=True)
            groups = [mega[j: j + self.group_size] for j in range(0, len(mega), self.group_size)]
            rnd.shuffle(groups)
            for grp in groups:
                out.extend(grp)
        return out

    def get_state_dict(self, total_consumed_steps: int) -> dict:
        return {**super().get_state_dict(total_consumed_steps), "group_batch_size": self.group_batch_size,
                "group_size": self.group_size}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("group_size", self.group_size) != self.group_size:
            logger.warning("the sampler state was taken on %s ranks, this one runs on %d: the packs of the rest of "
                           "epoch %d are grouped differently", state_dict["group_size"], self.group_size, self.epoch)
