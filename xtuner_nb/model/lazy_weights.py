"""Weights written one tensor at a time: a `LazyWeight` is a tensor not computed yet (its shape, and how to make it),
and `write_safetensors` writes a safetensors file from tensors and lazy weights alike, making, casting, writing and
freeing one tensor before the next.

Why: a merged LoRA/QLoRA export computes a new weight for every adapted linear (base + scaling·B@A), and QLoRA's
reads each 16-bit base weight back from the checkpoint (its 4-bit copy cannot give it back). Made all at once, then
cast shard by shard, that held the whole decoder two or three times over (QLoRA's export peak was above its training
peak); made one at a time, the export adds a few copies of one linear to what training held.

The file format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header size, a JSON header of
name -> dtype, shape and [begin, end) byte offsets into the data that follows (padded with spaces to 8 bytes, as
safetensors writes it), then the raw little-endian bytes. safetensors has no streaming writer; the header needs only
shapes and dtypes, which are known before any tensor is made.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Union

import torch

SAFETENSORS_DTYPE = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                     torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                     torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


@dataclass(frozen=True)
class LazyWeight:
    """A weight made when it is written: `make()` returns a tensor of `shape`."""
    shape: tuple[int, ...]
    make: Callable[[], torch.Tensor]

    def numel(self) -> int:
        return math.prod(self.shape)


Weight = Union[torch.Tensor, LazyWeight]


def materialize(w: Weight) -> torch.Tensor:
    return w.make() if isinstance(w, LazyWeight) else w


def write_safetensors(tensors: Mapping[str, Weight], file: str | Path, dtype: torch.dtype,
                      metadata: Mapping[str, str] | None = None) -> None:
    """`file`: the tensors, each cast to `dtype`, in the given order; one tensor in memory at a time beyond those
    `tensors` already holds. Loads with `safetensors.safe_open` and transformers like a `save_file` output."""
    if dtype not in SAFETENSORS_DTYPE:
        raise ValueError(f"write_safetensors: no safetensors dtype for {dtype}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, t in tensors.items():
        nbytes = math.prod(t.shape) * itemsize
        header[name] = {"dtype": SAFETENSORS_DTYPE[dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, w in tensors.items():
            t = materialize(w).detach().to(device="cpu", dtype=dtype).contiguous()
            if tuple(t.shape) != tuple(w.shape):
                raise ValueError(f"write_safetensors: {name} was announced as {tuple(w.shape)}, made {tuple(t.shape)}")
            f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            del t
