"""Chunk mode never allocates the [L, vocab] logits (nor their gradient); eager does, so the check can fail."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from xtuner_nb.loss import CELossConfig, lm_loss, loss_weights

L, V, H, CHUNK = 512, 1000, 32, 64


class LargestAllocation(TorchDispatchMode):
    """Records the largest storage (bytes) behind any tensor an aten op returns: forward and backward ops alike."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


def largest_allocation(mode: str) -> int:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, L, H, generator=g, requires_grad=True)
    weight = torch.randn(V, H, generator=g, requires_grad=True)
    labels = torch.randint(0, V, (1, L), generator=g)
    w = loss_weights(labels, torch.tensor([0, L], dtype=torch.int32), "token")
    with LargestAllocation() as tracker:
        lm_loss(hidden, weight, labels, w, w.sum(), CELossConfig(mode=mode, chunk_size=CHUNK)).backward()
    assert hidden.grad is not None and weight.grad is not None
    return tracker.largest


@pytest.mark.parametrize("mode", ["eager", "chunk"])
def test_full_logits_exist_only_in_eager(mode):
    full_logits = L * V * 4  # fp32 bytes
    largest = largest_allocation(mode)
    if mode == "eager":
        assert largest >= full_logits
    else:
        assert largest < full_logits / 4, f"chunk mode allocated {largest} bytes; [L, V] logits are {full_logits}"
        assert largest <= max(CHUNK * V, V * H) * 4  # one chunk of fp32 logits, or the [V, H] weight gradient
