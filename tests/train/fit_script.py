"""A training script run by the subprocess tests, alone or under torchrun: the same file works both ways.

usage: python fit_script.py TINY_CKPT WORK_DIR JSON_OVERRIDES [STEP_SLEEP_SECONDS]
Prints `LOSS <step> <loss>` per step on rank 0, under torchrun the device mesh of the embedding
(`MESH <shape> <dim names> <placements>`), and under QLoRA the 4-bit codes rank 0 holds of the first q_proj
(`NF4SHARD q_proj <held> of <all> 4-bit codes`).
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.helpers import small_config  # noqa: E402
from xtuner_nb.train import Hook, Trainer  # noqa: E402
from xtuner_nb.train.distributed import teardown_distributed  # noqa: E402


class PrintLoss(Hook):
    def __init__(self, sleep: float):
        self.sleep = sleep

    def on_step_end(self, state, metrics, control):
        print(f"LOSS {state.step} {metrics['loss/reduced_llm_loss']:.10f}", flush=True)
        time.sleep(self.sleep)  # widen the window in which a signal can land


def main() -> None:
    tiny, work_dir, over = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    sleep = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    trainer = Trainer.from_config(small_config(tiny, work_dir, **over), hooks=[PrintLoss(sleep)])
    model = trainer.model
    if trainer.dist.rank == 0:  # a tied lm_head must stay the embedding's tensor after sharding and loading
        print(f"TIED {model.get_output_embeddings().weight is model.get_input_embeddings().weight}", flush=True)
        quantized = [m.weight for n, m in model.named_modules() if n.endswith("q_proj.base_layer")
                     and type(getattr(m.weight, "_local_tensor", m.weight)).__name__ == "NF4Tensor"]
        if quantized:  # QLoRA: the 4-bit codes rank 0 holds of the first q_proj, against the whole weight
            local = getattr(quantized[0], "_local_tensor", quantized[0])
            print(f"NF4SHARD q_proj {2 * local.quantized_data.numel()} of {quantized[0].numel()} 4-bit codes",
                  flush=True)
        weight = model.get_input_embeddings().weight
        if hasattr(weight, "device_mesh"):
            print(f"MESH {tuple(weight.device_mesh.shape)} {weight.device_mesh.mesh_dim_names} "
                  f"{tuple(weight.placements)}", flush=True)
    try:
        trainer.fit()
    finally:
        teardown_distributed()


if __name__ == "__main__":
    main()
