"""One rank of the FSDP2 check in test_fsdp2.py: `python fsdp2_chunk_loss_worker.py RANK WORLD STORE_FILE`.

A tiny tied-embedding LM whose root forward takes `self.lm_head.weight` (the all-gathered, unsharded tensor inside
an FSDP2 forward) into the chunked loss; its gradients must equal an unsharded eager reference's.
"""

import sys
import warnings

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from xtuner_nb.loss import CELossConfig, lm_loss, loss_weights

V, H, L = 64, 16, 40
warnings.filterwarnings("ignore", message=".*returned a view tensor")


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.body = nn.Linear(H, H)
        self.lm_head = nn.Linear(H, V, bias=False)
        self.lm_head.weight = self.embed.weight  # tied

    def forward(self, ids, labels, w, denominator, cfg):
        hidden = torch.tanh(self.body(self.embed(ids)))
        return lm_loss(hidden, self.lm_head.weight, labels, w, denominator, cfg)


def full_grads(model):
    return {n: p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad for n, p in model.named_parameters()}


def main(rank: int, world: int, store: str):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.manual_seed(0)  # same data on every rank: FSDP's gradient averaging then leaves the reference unchanged
    ids, labels = torch.randint(0, V, (1, L)), torch.randint(0, V, (1, L))
    labels[0, :5] = -100
    w = loss_weights(labels, torch.tensor([0, L], dtype=torch.int32), "sample")
    ref, sharded = TinyLM(), TinyLM()
    sharded.load_state_dict(ref.state_dict())
    ref(ids, labels, w, w.sum(), CELossConfig(mode="eager")).backward()
    fully_shard(sharded.body)
    fully_shard(sharded)
    sharded(ids, labels, w, w.sum(), CELossConfig(mode="chunk", chunk_size=7)).backward()
    assert isinstance(sharded.embed.weight, DTensor)
    got, want = full_grads(sharded), full_grads(ref)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-5, msg=name)
    print(f"rank {rank}: grads match for {sorted(want)}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
