"""The built loader: packs planned once, collated per step, exact mid-epoch resume (see docs/dev/CONTRACTS.md).

`len(loader)` is the number of batches (optimizer steps for the Trainer) per epoch; each iteration yields this
rank's `micro_batch_size` packs, collated (`collator.py`: this project's keys plus XTuner's `seq_ctx`). The pack
plan depends only on the data and `seed`, the order of packs only on `seed + epoch`, so the saved state is just
where the epoch stands, and `load_state_dict()` + `iter()` yields exactly the remaining batches. The state holds
XTuner's layout (`sampler`, `dataset`, `total_consumed_samples`) and this project's (`epoch`, `step`, and what
must match to resume); either one loads.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any, Iterator

import numpy as np

from .collator import collator_by_name
from .packing import PackedDatasets, PackPlan
from .sampler import ParallelSampler
from .stats import LoaderStats

logger = logging.getLogger("xtuner_nb.datasets")


class PackedDataLoader:
    """Iterate batches of packs; see the module docstring. `dataset` is the pack dataset (item `p` = the pieces of
    pack `p`), `sampler` orders the packs of each epoch for this rank."""

    def __init__(self, dataset: PackedDatasets, sampler: ParallelSampler, *, micro_batch_size: int,
                 global_batch_size: int, dp_rank: int, dp_size: int, seed: int, pad_token_id: int,
                 pack_to_max_length: bool, collator: str, num_workers: int, stats: LoaderStats):
        self.dataset, self.sampler = dataset, sampler
        self.micro_batch_size = self.batch_size = micro_batch_size
        self.global_batch_size, self.dp_rank, self.dp_size, self.seed = global_batch_size, dp_rank, dp_size, seed
        self.pad_token_id, self.pack_max_length = pad_token_id, dataset.pack_max_length
        self.pack_to_max_length, self.num_workers, self.collator_name = pack_to_max_length, num_workers, collator
        self._collate = _resolve_collator(collator, self.pack_max_length, pad_token_id, pack_to_max_length)
        self.stats = stats
        self.epoch = 0
        self._step = 0  # batches of this epoch consumed (by the running/last iterator)
        self._resume_step = 0  # where the next iterator starts
        self._total_consumed = 0  # packs of all ranks delivered since the start of training (XTuner's count)

    # ---- sizes -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return math.ceil(self.sampler.num_samples / self.micro_batch_size)

    @property
    def plan(self) -> PackPlan:
        return self.dataset.plan

    @property
    def num_packs(self) -> int:
        return len(self.dataset)

    def sample_lengths(self) -> np.ndarray:
        """Token count of every packed sample (for a length histogram)."""
        return self.dataset.lengths.copy()

    def pack_lengths(self) -> np.ndarray:
        return self.plan.pack_tokens()

    def sample(self, i: int) -> dict[str, Any]:
        """Packed sample `i`: unshifted `input_ids`/`labels`, `num_tokens`, source `path` and 1-based `line`."""
        return self.dataset.sample(i)

    # ---- epochs and resume ---------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)
        self._step = self._resume_step = 0

    def _packs_per_batch(self) -> int:
        return self.micro_batch_size * self.dp_size

    def get_state_dict(self) -> dict[str, Any]:
        """Where this epoch stands, in XTuner's layout and this project's (see the module docstring)."""
        consumed = self._step * self._packs_per_batch()
        sampler = {**self.sampler.get_state_dict(consumed), "epoch": self.epoch}
        return {"sampler": sampler, "dataset": self.dataset.get_state_dict(),
                "total_consumed_samples": self._total_consumed,
                "epoch": self.epoch, "step": self._step, "consumed_packs": consumed, "seed": self.seed,
                "global_batch_size": self.global_batch_size, "micro_batch_size": self.micro_batch_size,
                "num_packs": self.num_packs, "plan_fingerprint": self.plan.fingerprint(),
                **{k: v for k, v in sampler.items() if k not in ("epoch", "step")}}

    state_dict = get_state_dict  # this project's name (the Trainer's checkpoints)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue where the state was taken: the next iterator yields exactly the remaining batches of its
        epoch."""
        state = state_dict
        for key, mine in (("seed", self.seed), ("global_batch_size", self.global_batch_size),
                          ("num_packs", self.num_packs), ("plan_fingerprint", self.plan.fingerprint())):
            if key in state and state[key] != mine:
                raise ValueError(f"cannot resume the dataloader: {key} was {state[key]!r} in the checkpoint but is "
                                 f"{mine!r} now (the data, packing settings, batch size or seed changed)")
        if isinstance(state.get("dataset"), dict):
            self.dataset.load_state_dict(state["dataset"])
        sampler = state["sampler"] if isinstance(state.get("sampler"), dict) else {}
        if "epoch" in state:  # this project's layout
            self.epoch, self._step = int(state["epoch"]), int(state["step"])
        else:  # XTuner's: the sampler's position in packs of all ranks
            self.epoch = int(sampler["epoch"])
            self._step, rest = divmod(int(sampler["step"]), self._packs_per_batch())
            if rest:
                logger.warning("resuming %d packs into epoch %d, not a whole number of batches of %d packs: "
                               "starting at the batch before", int(sampler["step"]), self.epoch,
                               self._packs_per_batch())
        self.sampler.set_epoch(self.epoch)
        self._resume_step = self._step
        self._total_consumed = int(state.get("total_consumed_samples", self._step * self._packs_per_batch()))
        saved_group, group = state.get("group_size", sampler.get("group_size")), getattr(self.sampler, "group_size",
                                                                                           None)
        if None not in (saved_group, group) and saved_group != group and 0 < self._step < len(self):
            logger.warning(
                "resuming mid-epoch on %d ranks a checkpoint taken on %d: the length-grouped sampler orders the packs "
                "of epoch %d in groups of the rank count, so the rest of this epoch may repeat some packs and skip "
                "others (the next epochs are whole). group_by_length=False gives every layout the same packs.",
                group, saved_group, self.epoch)

    # ---- iteration -----------------------------------------------------------------------------------------------
    def pack_items(self, p: int) -> list[dict[str, Any]]:
        """The DataItems (`input_ids`, `labels`, `num_tokens`) of pack `p`."""
        return self.dataset[p]

    def collate(self, pack_indices: list[int]) -> list[dict[str, Any]]:
        return self._collate([self.dataset[p] for p in pack_indices])

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
            batches = (self.collate(packs) for packs in steps)
        else:
            import torch

            batches = torch.utils.data.DataLoader(self.dataset, batch_sampler=steps, num_workers=self.num_workers,
                                                  collate_fn=self._collate, multiprocessing_context="fork")
        for k, batch in enumerate(batches):
            self._step = start + k + 1
            self._total_consumed += self._packs_per_batch()
            yield batch

    def __repr__(self) -> str:
        return (f"PackedDataLoader({self.num_packs} packs, {len(self)} batches/epoch, micro_batch_size="
                f"{self.micro_batch_size}, dp {self.dp_rank}/{self.dp_size}, epoch {self.epoch}, step {self._step})")


def _resolve_collator(name: str, pack_max_length: int, pad_id: int, pack_to_max_length: bool):
    fn = collator_by_name(name)
    kwargs = {"pack_max_length": pack_max_length, "padding_token_idx": pad_id}
    if "pack_to_max_length" in inspect.signature(fn).parameters:
        kwargs["pack_to_max_length"] = pack_to_max_length
    return _Collate(fn, kwargs)


class _Collate:
    def __init__(self, fn, kwargs):
        self.fn, self.kwargs = fn, kwargs

    def __call__(self, instances):
        return self.fn(instances, **self.kwargs)
