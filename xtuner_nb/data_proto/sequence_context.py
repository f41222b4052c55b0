"""`SequenceContext`: how the tokens of one pack are laid out, as XTuner v1's models and loaders pass it around
(`xtuner.v1.data_proto.sequence_context`).

A pack is one row `input_ids` [1, L] holding several samples back to back; `cu_seq_lens_q/k` are the int32
boundaries of the samples ([0, n1, n1+n2, ..., L], padding included as pseudo-samples at the end) and
`max_length_q/k` the longest of them, which is what a varlen attention kernel needs. This project's collator puts
one beside its own keys in every pack (`pack["seq_ctx"]`, sharing the tensors), so code written against XTuner's
batches reads it there. Sequence parallelism and the multimodal / MoE fields are not supported: they must stay at
their defaults.
"""

from __future__ import annotations

from typing import Any

import torch

from .._unsupported import unsupported

DSATopKCacheState = unsupported(
    "DSATopKCacheState", "it caches DeepSeek sparse-attention top-k indices between the layers of MoE models, "
                         "which are not supported (dense models only)", __name__)

_SP = "sequence parallelism is not implemented"
_VL = "vision-language models are not supported (dense text models only)"
_MOE = "MoE models are not supported (dense text models only)"
# XTuner's arguments that only sequence parallelism, vision-language or MoE models use -> why they are refused
_REFUSED = {
    "sequence_parallel_mesh": _SP, "raw_input_ids": _SP, "raw_inputs_embeds": _SP,
    "block_table": "paged KV caches belong to XTuner's RL rollouts, which are not supported",
    "image_grid_thw": _VL, "deepstack_visual_embeds": _VL, "visual_pos_masks": _VL, "pixel_values": _VL,
    "num_img_tokens": _VL, "rollout_routed_experts": _MOE, "dsa_topk_cache": _MOE,
}


class SequenceContext:
    """The layout of one pack; see the module docstring. `max_length_q/k` are kept as CPU tensors (as XTuner)."""

    def __init__(self, input_ids: torch.Tensor | None, cu_seq_lens_q: torch.Tensor, cu_seq_lens_k: torch.Tensor,
                 max_length_q: torch.Tensor | int, max_length_k: torch.Tensor | int, num_padding: int = 0,
                 sequence_parallel_mesh: Any = None, block_table: torch.Tensor | None = None,
                 device: str | torch.device = "cpu", position_ids: torch.Tensor | None = None,
                 image_grid_thw: torch.Tensor | None = None, deepstack_visual_embeds: list | None = None,
                 visual_pos_masks: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                 inputs_embeds: torch.Tensor | None = None, num_img_tokens: list | None = None,
                 rollout_routed_experts: torch.Tensor | None = None, offload_rollout_routed_experts: bool = False,
                 dsa_topk_cache: Any = None, raw_input_ids: torch.Tensor | None = None,
                 raw_inputs_embeds: torch.Tensor | None = None, shard_start: int = 0, shard_size: int = 0):
        given = dict(locals())
        for name, why in _REFUSED.items():
            value = given[name]
            if value is not None and not (name == "sequence_parallel_mesh" and value.size() == 1):
                raise NotImplementedError(f"SequenceContext({name}=...) is not supported by xtuner_nb: {why}")
        if offload_rollout_routed_experts or shard_start or shard_size:
            raise NotImplementedError("SequenceContext: MoE routing replay and sequence-parallel shards are not "
                                      "supported by xtuner_nb")
        self.input_ids, self.inputs_embeds = input_ids, inputs_embeds
        self.cu_seq_lens_q, self.cu_seq_lens_k = cu_seq_lens_q, cu_seq_lens_k
        self.max_length_q = torch.tensor(max_length_q) if isinstance(max_length_q, int) else max_length_q
        self.max_length_k = torch.tensor(max_length_k) if isinstance(max_length_k, int) else max_length_k
        self.num_padding, self.device = num_padding, device
        self.sequence_parallel_mesh = None
        if position_ids is None:  # positions restart at 0 in every sample (XTuner: k - q .. k per sample)
            seg = self.seq_lens_k
            position_ids = (torch.arange(int(cu_seq_lens_k[-1])) - torch.repeat_interleave(cu_seq_lens_k[:-1].long(),
                            seg.long())).view(1, -1).to(device)
        self.position_ids = position_ids

    @classmethod
    def from_input_ids(cls, input_ids: tuple[torch.Tensor, ...], block_table: torch.Tensor | None = None,
                       sp_mesh: Any = None, device: str = "cuda") -> "SequenceContext":
        """One pack from several [1, n_i] samples (XTuner's default device is cuda)."""
        if any(ids.shape[0] != 1 for ids in input_ids):
            raise ValueError("SequenceContext.from_input_ids: every input_ids must have batch size 1")
        cu = torch.cumsum(torch.tensor([0] + [x.numel() for x in input_ids]), dim=0).int().to(device)
        longest = int((cu[1:] - cu[:-1]).max())
        return cls(torch.cat(list(input_ids), dim=1).to(device), cu, cu, longest, longest, block_table=block_table,
                   sequence_parallel_mesh=sp_mesh, device=device)

    @classmethod
    def cat(cls, sequence_context_list: list["SequenceContext"]) -> "SequenceContext":
        """Several packs as one (boundaries shifted, paddings added up)."""
        first = sequence_context_list[0]
        cu_q = [first.cu_seq_lens_q] + [c.cu_seq_lens_q[1:] for c in sequence_context_list[1:]]
        cu_k = [first.cu_seq_lens_k] + [c.cu_seq_lens_k[1:] for c in sequence_context_list[1:]]
        for parts in (cu_q, cu_k):
            for i in range(1, len(parts)):
                parts[i] = parts[i] + parts[i - 1][-1]
        ids = [c.input_ids for c in sequence_context_list if c.input_ids is not None]
        embeds = [c.inputs_embeds for c in sequence_context_list if c.inputs_embeds is not None]
        return cls(torch.cat(ids, dim=1) if ids else None, torch.cat(cu_q), torch.cat(cu_k),
                   max(int(c.max_length_q) for c in sequence_context_list),
                   max(int(c.max_length_k) for c in sequence_context_list),
                   num_padding=sum(c.num_padding for c in sequence_context_list), device=first.device,
                   position_ids=torch.cat([c.position_ids for c in sequence_context_list], dim=-1),
                   inputs_embeds=torch.cat(embeds, dim=1) if embeds else None)

    def chunk(self, num_chunks: int) -> list["SequenceContext"]:
        """The samples split into `num_chunks` contexts of as many samples each (XTuner's intra-layer micro
        batches)."""
        n = len(self.seq_lens_q)
        if n < num_chunks:
            raise ValueError(f"SequenceContext.chunk: {n} samples cannot make {num_chunks} chunks")
        per = n // num_chunks
        q_lens = torch.chunk(self.seq_lens_q, num_chunks)
        ids = torch.split(self.input_ids, [int(c.sum()) for c in q_lens], dim=1)
        out = []
        for i in range(num_chunks):
            cu_q = self.cu_seq_lens_q[i * per: (i + 1) * per + 1] - self.cu_seq_lens_q[i * per]
            cu_k = self.cu_seq_lens_k[i * per: (i + 1) * per + 1] - self.cu_seq_lens_k[i * per]
            out.append(type(self)(ids[i], cu_q, cu_k, int((cu_q[1:] - cu_q[:-1]).max()),
                                  int((cu_k[1:] - cu_k[:-1]).max()), device=self.device))
        return out

    def copy(self, **overrides) -> "SequenceContext":
        """A shallow copy with some attributes replaced."""
        fields = {"input_ids": self.input_ids, "cu_seq_lens_q": self.cu_seq_lens_q,
                  "cu_seq_lens_k": self.cu_seq_lens_k, "max_length_q": self.max_length_q,
                  "max_length_k": self.max_length_k, "num_padding": self.num_padding, "device": self.device,
                  "position_ids": self.position_ids, "inputs_embeds": self.inputs_embeds}
        return type(self)(**{**fields, **overrides})

    def set_sp_mesh(self, sp_mesh: Any) -> "SequenceContext":
        if sp_mesh is not None and sp_mesh.size() > 1:
            raise NotImplementedError(f"SequenceContext.set_sp_mesh: {_SP}")
        return self

    def split(self, sequence_parallel_mesh: Any = None) -> "SequenceContext":
        """Unchanged without sequence parallelism (which is not supported)."""
        return self.set_sp_mesh(sequence_parallel_mesh)

    @property
    def seq_lens_q(self) -> torch.Tensor:
        return self.cu_seq_lens_q[1:] - self.cu_seq_lens_q[:-1]

    @property
    def seq_lens_k(self) -> torch.Tensor:
        return self.cu_seq_lens_k[1:] - self.cu_seq_lens_k[:-1]

    @property
    def mask(self) -> torch.Tensor:
        """True on the real tokens, False on the padding at the end."""
        shape = self.input_ids.shape if self.input_ids is not None else self.inputs_embeds.shape[:-1]
        mask = torch.ones(shape, dtype=torch.bool)
        if self.num_padding > 0:
            mask[..., -self.num_padding:] = False
        return mask

    @property
    def raw_input_ids(self) -> torch.Tensor | None:
        return self.input_ids  # no sequence-parallel shards here

    @property
    def sp_rank(self) -> int:
        return 0

    def to(self, device: torch.device | str) -> "SequenceContext":
        """The tensors moved to `device` (in place, as XTuner; returns self). `max_length_q/k` stay on the CPU."""
        for name in ("input_ids", "inputs_embeds", "cu_seq_lens_q", "cu_seq_lens_k", "position_ids"):
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        self.device = device
        return self

    def __repr__(self) -> str:
        length = None if self.input_ids is None else tuple(self.input_ids.shape)
        return (f"SequenceContext(input_ids={length}, samples={len(self.cu_seq_lens_k) - 1}, "
                f"max_length={int(self.max_length_k)}, num_padding={self.num_padding})")
