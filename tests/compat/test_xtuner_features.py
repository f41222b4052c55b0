"""XTuner TrainerConfig features implemented here, in real runs of a tiny model: TensorBoard event files read back
with tensorboard's own reader, a torch.profiler trace, HooksConfig callbacks with XTuner's signatures, a custom
BaseLossConfig / BaseLossContext loss, load_optimizer_args, and Trainer(backend=...)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tests.train.helpers import small_config

from xtuner_nb.loss import BaseLossConfig
from xtuner_nb.loss.base_loss_ctx import BaseLossContext, BaseLossKwargs


class TokenMeanCELossKwargs(BaseLossKwargs):
    shifted_labels: torch.Tensor
    loss_weight: torch.Tensor | None = None


class TokenMeanCELossContext(BaseLossContext):
    """A custom loss written as XTuner's loss tutorial says: weights calibrated over the step in build_batches."""

    @staticmethod
    def build_batches(loss_ctx_list, cu_seq_lens_list=None, sp_mesh=None):
        masks = [(c.loss_kwargs.shifted_labels != c.loss_cfg.ignore_idx).float() for c in loss_ctx_list]
        total = sum(m.sum() for m in masks)
        for ctx, m in zip(loss_ctx_list, masks):
            ctx.loss_kwargs.loss_weight = m / total
        return BaseLossContext.build_batches(loss_ctx_list)

    def loss_fn(self, hidden_states, head_weight, head_bias, loss_kwargs):
        logits = F.linear(hidden_states, head_weight).float().flatten(0, 1)
        ce = F.cross_entropy(logits, loss_kwargs.shifted_labels.flatten(), reduction="none",
                             ignore_index=self.loss_cfg.ignore_idx)
        return (ce * loss_kwargs.loss_weight.flatten()).sum(), (None, {})


class TokenMeanCELossConfig(BaseLossConfig):
    @property
    def loss_ctx_cls(self):
        return TokenMeanCELossContext

    def build(self, data, sp_mesh=None):
        return TokenMeanCELossContext(self, TokenMeanCELossKwargs(shifted_labels=data["shifted_labels"]))


class CountingCheckpointHook:
    def __init__(self):
        self.trainer, self.calls = None, []

    def connect_trainer(self, trainer):
        self.trainer = trainer

    def __call__(self, checkpoint, step, epoch, total_step, total_epoch):
        self.calls.append((checkpoint.name, step, total_step))


def test_tensorboard_profiler_and_hooks_in_one_run(tiny_ckpt, tmp_path):
    pytest.importorskip("tensorboard", reason="exp_tracker='tensorboard' needs the tensorboard package")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from xtuner_nb.train import HooksConfig, Trainer

    steps = []

    def after_train_step(train_step_info, step, epoch, total_step, total_epoch):
        steps.append((step, total_step, round(train_step_info["loss/reduced_llm_loss"], 6)))

    on_ckpt, on_hf = CountingCheckpointHook(), CountingCheckpointHook()
    cfg = small_config(tiny_ckpt, tmp_path, total_step=2, exp_tracker="tensorboard", profile_step=2,
                       checkpoint_interval=1, hooks_config=HooksConfig(after_train_step=after_train_step,
                                                                       after_save_dcp=[on_ckpt], after_save_hf=on_hf))
    trainer = Trainer(trainer_cfg=cfg, backend="gloo", default_hooks=[]).fit()
    assert trainer.config.dist_backend == "gloo"
    losses = [round(x, 6) for x in trainer.history["loss/reduced_llm_loss"]]
    assert steps == [(1, 2, losses[0]), (2, 2, losses[1])]
    assert on_ckpt.trainer is trainer and [c[1:] for c in on_ckpt.calls] == [(1, 2), (2, 2)]
    assert on_hf.calls == [("hf-2", 2, 2)]

    run_dir = trainer.log_dir / "exp_tracking" / "rank0"
    events = EventAccumulator(str(run_dir)).Reload()
    loss = events.Scalars("loss/reduced_llm_loss")
    assert [e.step for e in loss] == [1, 2]
    assert [round(e.value, 5) for e in loss] == [round(x, 5) for x in trainer.history["loss/reduced_llm_loss"]]
    assert "lr" in events.Tags()["scalars"] and "grad_norm" in events.Tags()["scalars"]

    traces = list((trainer.exp_dir / "profiling_time" / "step-2").glob("rank0_trace*.json"))
    assert len(traces) == 1
    trace = json.loads(traces[0].read_text())
    assert any("aten::" in e.get("name", "") for e in trace["traceEvents"])  # the step's ops were recorded
    assert not (trainer.exp_dir / "profiling_time" / "step-1").exists()
    trainer.close()


def test_custom_loss_config_trains_like_the_builtin_cross_entropy(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Trainer

    runs = []
    for name, loss_cfg in (("builtin", None), ("custom", TokenMeanCELossConfig())):
        over = dict(total_step=2, debug_skip_save=True, default_hooks=[])
        if loss_cfg is not None:
            over["loss_cfg"] = loss_cfg
        t = Trainer(trainer_cfg=small_config(tiny_ckpt, tmp_path / name, **over)).fit()
        runs.append(list(t.history["loss/reduced_llm_loss"]))
        t.close()
    assert runs[1] == pytest.approx(runs[0], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("load_args", [True, False])
def test_load_optimizer_args(tiny_ckpt, tmp_path, load_args):
    from xtuner_nb.config import AdamWConfig
    from xtuner_nb.train import LoadCheckpointConfig, Trainer

    first = Trainer(trainer_cfg=small_config(tiny_ckpt, tmp_path / "a", total_step=1, default_hooks=[],
                                             optim_cfg=AdamWConfig(lr=1e-3, weight_decay=0.01))).fit()
    ckpt = sorted((first.exp_dir / "checkpoints").glob("ckpt-step-*"))[-1]
    first.close()
    again = Trainer(trainer_cfg=small_config(
        tiny_ckpt, tmp_path / "b", total_step=2, default_hooks=[], optim_cfg=AdamWConfig(lr=5e-4, weight_decay=0.1),
        load_checkpoint_cfg=LoadCheckpointConfig(checkpoint_path=ckpt, load_optimizer_args=load_args)))
    group = again.optimizer.param_groups[0]
    assert group["weight_decay"] == (0.01 if load_args else 0.1)
    assert group["initial_lr"] == (1e-3 if load_args else 5e-4)
    assert again.optimizer.state  # the AdamW moments were loaded either way
    again.close()


def test_async_checkpoint_and_snapshots_resume(tiny_ckpt, tmp_path):
    from xtuner_nb.train import HooksConfig, Trainer

    snaps = CountingCheckpointHook()
    cfg = small_config(tiny_ckpt, tmp_path, total_step=3, default_hooks=[], async_checkpoint=True,
                       checkpoint_interval=2, snapshot_interval=1, hf_interval=10,
                       hooks_config=HooksConfig(after_save_snapshot=snaps))
    first = Trainer(trainer_cfg=cfg).fit()
    root = first.exp_dir / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-step-2", "ckpt-step-3", "snapshot-step-1"]
    assert all((root / n / "train_state.json").is_file() for n in ("ckpt-step-2", "ckpt-step-3"))
    assert [c[:2] for c in snaps.calls] == [("snapshot-step-1", 1)]  # steps 2, 3 have a checkpoint already
    losses = list(first.history["loss/reduced_llm_loss"])
    first.close()
    # resume from the step-2 checkpoint (written asynchronously): step 3 is the same step again
    again = Trainer(trainer_cfg=cfg.model_copy(update={"async_checkpoint": False}),
                    load_checkpoint_cfg={"checkpoint_path": root / "ckpt-step-2"}).fit()
    assert list(again.history["loss/reduced_llm_loss"])[-1] == pytest.approx(losses[-1], rel=1e-6)
    again.close()
