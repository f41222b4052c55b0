"""Run under torchrun by test_sharded_load.py: meta build -> fully_shard -> to_empty -> load_hf_weights, then every
rank gathers the full state dict and compares it with the checkpoint file.

usage: sharded_load_script.py CKPT OUT_DIR; each rank writes its max abs difference to OUT_DIR/rank-<r>.txt (a file per
rank, not stdout: the ranks share torchrun's stdout, and the test must see every rank's result)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402

from xtuner_nb.model import Qwen3DenseConfig, load_hf_weights  # noqa: E402


def main() -> None:
    ckpt, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    dist.init_process_group("gloo")
    model = Qwen3DenseConfig.from_hf(ckpt).build(device="meta", dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    model.to_empty(device="cpu")
    load_hf_weights(model, ckpt)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    ref = load_file(str(ckpt / "model.safetensors"))
    assert set(ref) <= set(full), sorted(set(ref) - set(full))
    diff = max((full[k].float() - ref[k].float()).abs().max().item() for k in ref)
    (out_dir / f"rank-{dist.get_rank()}.txt").write_text(repr(diff))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
