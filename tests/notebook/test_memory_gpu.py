"""On a GPU: the will-it-fit estimate against the peak the Trainer measures (`memory/max_memory_GB`)."""

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compares with a real peak)")


@pytest.mark.parametrize("loss_mode,recompute", [("chunk", 1.0), ("eager", 0.0)])
def test_estimate_brackets_measured_peak(tmp_path, loss_mode, recompute):
    from xtuner_nb.config import FSDPConfig
    from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
    from xtuner_nb.datasets.demo import demo_data_path
    from xtuner_nb.loss import CELossConfig
    from xtuner_nb.model import Qwen3Dense0P6BConfig
    from xtuner_nb.train.memory import GiB, estimate_memory
    from xtuner_nb.train import Trainer

    model_cfg, pack = Qwen3Dense0P6BConfig(), 4096
    dl = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=demo_data_path("train")),
                          "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=pack)}],
                          pack_max_length=pack)
    trainer = Trainer(model_cfg=model_cfg, dataloader_cfg=dl, loss_cfg=CELossConfig(mode=loss_mode),
                      fsdp_cfg=FSDPConfig(recompute_ratio=recompute), total_step=3, work_dir=tmp_path,
                      device="cuda", debug_skip_save=True, show_dashboard=False)
    trainer.fit()
    measured = float(trainer.history["memory/max_memory_GB"].max()) * GiB  # max_memory_allocated, no CUDA context
    est = estimate_memory(model_cfg, pack, recompute_ratio=recompute, loss_mode=loss_mode)
    expected = est.total - est.overhead
    trainer.close()
    print(f"{loss_mode}/recompute {recompute}: measured {measured / GiB:.2f} GiB, estimate {expected / GiB:.2f} GiB "
          f"({ {k: round(v, 2) for k, v in est.gib().items()} })")
    # conservative by design (all parts added), but not wildly: within [0.6, 1.1] of the measured peak
    assert 0.6 * expected <= measured <= 1.1 * expected
