"""Which packs each rank gets in each epoch (XTuner's samplers).

Both samplers are pure functions of `(seed, epoch)`: the order is computed again on resume, never stored.
With `round_up` the order is padded by repeating its beginning to whole global batches, so every step has
`micro_batch_size` packs on every rank; rank r takes `order[r::dp_size]`.
"""

from __future__ import annotations

import math
import random

import numpy as np


class ParallelSampler:
    """Seeded permutation (`torch.randperm(seed + epoch)`), rounded up, strided over ranks."""

    def __init__(self, num_items: int, global_batch_size: int, dp_rank: int = 0, dp_size: int = 1, seed: int = 42,
                 round_up: bool = True, shuffle: bool = True):
        if global_batch_size % dp_size:
            raise ValueError(f"global_batch_size {global_batch_size} is not divisible by dp_size {dp_size}")
        self.num_items, self.global_batch_size = num_items, global_batch_size
        self.rank, self.world_size = dp_rank, dp_size
        self.seed, self.round_up, self.shuffle = seed, round_up, shuffle
        if round_up:
            self.num_samples = math.ceil(num_items / global_batch_size) * global_batch_size // dp_size
            self.total_size = self.num_samples * dp_size
        else:
            self.num_samples = math.ceil((num_items - dp_rank) / dp_size)
            self.total_size = num_items

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

    def state(self) -> dict:
        return {"kind": type(self).__name__, "world_size": self.world_size, "round_up": self.round_up,
                "num_samples": self.num_samples, "total_size": self.total_size, "shuffle": self.shuffle}


class LengthGroupedSampler(ParallelSampler):
    """Megabatches of similar-cost packs so that ranks stepping together do similar work (a seeded shuffle on 1
    rank). Megabatch = `min(len // (gbs * 4), 50) * gbs` packs (at least gbs), sorted by `longest` descending,
    cut into groups of `dp_size`, groups shuffled."""

    GROUP_BATCH_FACTOR = 4
    MAX_GROUP_BATCH_SIZE = 50

    def __init__(self, longest: np.ndarray | list[int], global_batch_size: int, dp_rank: int = 0, dp_size: int = 1,
                 seed: int = 42, round_up: bool = True):
        super().__init__(len(longest), global_batch_size, dp_rank, dp_size, seed, round_up, shuffle=True)
        self.longest = [int(x) for x in longest]
        mult = min(len(self.longest) // (global_batch_size * self.GROUP_BATCH_FACTOR), self.MAX_GROUP_BATCH_SIZE)
        self.group_batch_size = max(mult, 1) * global_batch_size
        self.group_size = dp_size

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

    def state(self) -> dict:
        return {**super().state(), "group_batch_size": self.group_batch_size, "group_size": self.group_size}
