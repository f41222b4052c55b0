"""Trainer.fit() in this process on CPU: layout, logs, XTuner step semantics, resume, NaN skip, saves."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.train.helpers import losses, reference_token_mean, small_config

TRACKER_KEYS = {"step", "lr", "grad_norm", "loss/reduced_llm_loss", "loss/local_loss", "time/step_time",
                "time/data_time", "time/eta_seconds", "runtime_info/text_tokens", "runtime_info/tgs",
                "runtime_info/exp_tgs", "memory/max_memory_GB", "runtime_info/mfu"}


def test_fit_layout_logs_history_and_hf_export(tiny_ckpt, tmp_path):
    from transformers import AutoModelForCausalLM

    from xtuner_nb.train import Trainer

    trainer = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=3, checkpoint_interval=2))
    trainer.fit()
    exp = trainer.exp_dir
    assert exp.parent == tmp_path and (tmp_path / ".xtuner").is_file()
    rows = [json.loads(line) for line in (exp / "logs/exp_tracking/rank0/tracker.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert TRACKER_KEYS <= set(rows[0])
    assert (exp / "logs/rank0.log").read_text().count("reduced_llm_loss") == 3
    assert list(trainer.history["step"]) == [1, 2, 3]
    assert (exp / "logs/curves.png").stat().st_size > 1000  # the curves, written outside a notebook too
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == ["ckpt-step-2", "ckpt-step-3"]
    for name in ("weights", "dataloader.pt", "lr_scheduler.pt", "rng_rank0.pt", "train_state.json",
                 "trainer_config.json"):
        assert (exp / "checkpoints/ckpt-step-3" / name).exists(), name
    assert (exp / "hf-latest").resolve() == (exp / "hf-3").resolve()
    hf = AutoModelForCausalLM.from_pretrained(exp / "hf-latest", dtype="auto")  # what config.json records (4.x: fp32)
    assert hf.dtype == torch.bfloat16
    trained = {k: v for k, v in trainer.model.state_dict().items()}
    ref = trained["model.layers.0.mlp.down_proj.weight"].to(torch.bfloat16)
    assert torch.equal(hf.model.layers[0].mlp.down_proj.weight.data, ref)


def test_first_step_loss_equals_transformers_token_mean(tiny_ckpt, tmp_path):
    """Step-1 loss == token-mean CE of transformers' own Qwen3 run on each packed sample alone."""
    from xtuner_nb.train import Trainer

    cfg = small_config(tiny_ckpt, tmp_path, total_step=1, global_batch_size=3)
    trainer = Trainer.from_config(cfg)
    trainer.loader.set_epoch(1)
    packs = next(iter(trainer.loader))  # the exact packs step 1 will see
    trainer.fit()
    assert losses(trainer)[0] == pytest.approx(reference_token_mean(tiny_ckpt, packs), abs=1e-5)


def _one_pack(packs: list[dict]) -> dict:
    """The packs of a step joined into one long pack (each sample keeps its own positions and attention span)."""
    offsets, cu = 0, [torch.zeros(1, dtype=torch.int32)]
    for p in packs:
        cu.append(p["cu_seq_lens"][1:] + offsets)
        offsets += int(p["cu_seq_lens"][-1])
    return {"input_ids": torch.cat([p["input_ids"] for p in packs], 1),
            "shifted_labels": torch.cat([p["shifted_labels"] for p in packs], 1),
            "position_ids": torch.cat([p["position_ids"] for p in packs], 1), "cu_seq_lens": torch.cat(cu),
            "max_length": max(int(p["max_length"]) for p in packs),
            "num_padding": sum(int(p["num_padding"]) for p in packs)}


@pytest.mark.parametrize("reduction", ["sample"])  # per-sample weights: the stricter case
def test_accumulating_four_packs_equals_one_step_on_the_four_joined(tiny_ckpt, tmp_path, reduction):
    """global_batch_size=4 on one rank: the Trainer's step (4 forward/backwards of 1 pack each, gradients
    accumulated into one update) gives the same step loss and the same gradients -- hence the same AdamW update --
    as 1 forward/backward of the 4 packs joined into one pack."""
    from xtuner_nb.loss import CELossConfig
    from xtuner_nb.train import Trainer
    from xtuner_nb.train.step import forward_backward

    cfg = small_config(tiny_ckpt, tmp_path, global_batch_size=4, total_step=1, debug_skip_save=True,
                       loss_cfg=CELossConfig(loss_reduction=reduction), default_hooks=[], do_clip=False)
    accumulated, joined = Trainer.from_config(cfg), Trainer.from_config(cfg)
    joined.loader.set_epoch(1)
    packs = next(iter(joined.loader))
    assert len(packs) == 4 and accumulated.micro_batch_size == 4
    grads = []  # what the AdamW step of the Trainer's loop receives
    accumulated.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: grads.append([p.grad.clone() for p in accumulated.model.parameters()]))
    accumulated.fit()

    res = forward_backward(joined.model, [_one_pack(packs)], cfg.loss_cfg, joined.dist.device, 1, None)
    assert losses(accumulated)[0] == pytest.approx(res.reduced_loss, rel=1e-6)
    for (name, p), g in zip(joined.model.named_parameters(), grads[0]):
        torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_chunk_loss_trains_as_eager(tiny_ckpt, tmp_path):
    """gbs=4 as one step of 4 packs; the same packs give the same loss and update with chunk loss too."""
    from xtuner_nb.loss import CELossConfig
    from xtuner_nb.train import Trainer

    a = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "a", global_batch_size=4, total_step=2))
    a.fit()
    b = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "b", global_batch_size=4, total_step=2,
                                         loss_cfg=CELossConfig(mode="chunk", chunk_size=64)))
    b.fit()
    assert losses(a) == pytest.approx(losses(b), abs=1e-5)


def test_recompute_gives_identical_training(tiny_ckpt, tmp_path):
    from xtuner_nb.config import FSDPConfig
    from xtuner_nb.train import Trainer

    a = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "a", total_step=3))
    a.fit()
    b = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "b", total_step=3,
                                         fsdp_cfg=FSDPConfig(recompute_ratio=1.0)))
    assert "recompute 4/4" in (b.log_dir / "rank0.log").read_text()
    b.fit()
    assert losses(a) == pytest.approx(losses(b), abs=1e-6)


def test_nan_grad_skips_the_update(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Hook, Trainer

    trainer = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=3))
    w = trainer.model.model.layers[0].mlp.down_proj.weight
    poison = {"on": False}
    w.register_hook(lambda g: g * float("nan") if poison["on"] else g)

    class PoisonSecondStep(Hook):
        def on_step_end(self, state, metrics, control):
            poison["on"] = state.step == 1  # step 2's backward produces NaN grads
            snapshots.append(w.detach().clone())

    snapshots = []
    trainer.hooks.append(PoisonSecondStep())
    trainer.fit()
    rows = trainer.history.to_dict("records")
    assert math.isnan(rows[1]["grad_norm"]) and rows[1].get("skipped_update") is True
    assert torch.equal(snapshots[0], snapshots[1])  # step 2 changed nothing
    assert not torch.equal(snapshots[1], snapshots[2]) and torch.isfinite(w).all()


def test_stop_request_then_fit_again_continues_in_the_same_kernel(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Hook, Trainer

    ref = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "ref", total_step=4))
    ref.fit()

    class StopAt2(Hook):
        def on_step_end(self, state, metrics, control):
            if state.step == 2:
                control.request_stop("test")

    t = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "run", total_step=4), hooks=[StopAt2()])
    t.fit()
    assert t.cur_step == 2 and (t.exp_dir / "checkpoints/ckpt-step-2/train_state.json").is_file()
    t.hooks.clear()
    t.fit()
    assert losses(t) == pytest.approx(losses(ref), abs=1e-6)


def test_auto_resume_in_a_new_trainer_is_exact(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Trainer

    ref = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "ref", total_step=5, global_batch_size=2))
    ref.fit()
    first = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "run", total_step=5, global_batch_size=2,
                                             checkpoint_interval=3))
    first.total_step = 3  # run the first 3 steps only, as if the kernel died after the step-3 checkpoint
    first.fit()
    first.close()
    again = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "run", total_step=5, global_batch_size=2,
                                             checkpoint_interval=3, auto_resume=True))
    assert again.cur_step == 3 and again.exp_dir == first.exp_dir
    again.fit()
    assert losses(again)[3:] == pytest.approx(losses(ref)[3:], abs=1e-6)
    assert len(losses(again)) == 5


def test_fp16_loss_scale_is_checkpointed_and_restored(tiny_ckpt, tmp_path):
    """The dynamic loss scale of fp16 runs (CUDA sm70-75) is part of the checkpoint: a resume must not restart it
    from 65536 and skip steps on overflow again. CPU has no fp16 path, so a CPU GradScaler stands in: it scales,
    unscales and grows exactly as the CUDA one does, and the Trainer's step code is the same."""
    from xtuner_nb.train import Trainer

    cfg = dict(total_step=2, checkpoint_interval=2)
    first = Trainer.from_config(small_config(tiny_ckpt, tmp_path, **cfg))
    first.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    first.fit()
    assert first.grad_scaler.get_scale() == 2.0**12  # two finite steps, each one doubles it
    saved = json.loads((first.exp_dir / "checkpoints" / "ckpt-step-2" / "train_state.json").read_text())
    assert saved["grad_scaler"]["scale"] == 2.0**12 and saved["grad_scaler"]["_growth_tracker"] == 0
    first.close()
    again = Trainer.from_config(small_config(tiny_ckpt, tmp_path, auto_resume=True, **cfg))
    again.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=1)
    again._resume_if_asked()  # with the stand-in scaler in place, resume again
    assert again.cur_step == 2 and again.grad_scaler.get_scale() == 2.0**12


def test_half_written_checkpoint_is_ignored_and_maxkeep_prunes(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Trainer

    t = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=4, checkpoint_interval=1,
                                         checkpoint_maxkeep=2))
    t.fit()
    ckdir = t.exp_dir / "checkpoints"
    assert sorted(p.name for p in ckdir.iterdir()) == ["ckpt-step-3", "ckpt-step-4"]
    # a crash in the middle of saving step 5 leaves a .tmp folder and no train_state.json
    (ckdir / "ckpt-step-5.tmp" / "weights").mkdir(parents=True)
    (ckdir / "ckpt-step-6").mkdir()  # torn rename target without train_state.json
    t.close()
    again = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=4, auto_resume=True))
    assert again.cur_step == 4


def test_config_overrides_default_hooks_off_and_a_new_trainer_closes_nothing(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Trainer

    cfg = small_config(tiny_ckpt, tmp_path, total_step=4, debug_skip_save=True)
    with pytest.raises(TypeError, match="totl_step"):
        Trainer(trainer_cfg=cfg, totl_step=1)
    first = Trainer(trainer_cfg=cfg, total_step=1, default_hooks=[])
    assert first.config.total_step == first.total_step == 1 and cfg.total_step == 4
    second = Trainer.from_config(cfg, total_step=1)
    first.fit()  # building `second` left `first` whole: two runs can be compared in one kernel
    assert first.model is not None and list(first.history["step"]) == [1]
    assert not (first.log_dir / "curves.png").exists()  # default_hooks=[]: no curves.png hook
    assert "CurvesPng" in [type(h).__name__ for h in second.hooks] and first.hooks == []


def test_hooks_are_resolved_once_into_trainer_hooks(tiny_ckpt, tmp_path):
    """`trainer.hooks` is every hook of the run, decided when the Trainer is built: yours, then XTuner's
    config-driven ones, then the defaults (one of a class: a hook you give replaces the default of its class);
    fit() runs exactly that list, whatever it holds by then."""
    from xtuner_nb.train import Hook, Trainer

    class Counting(Hook):
        def __init__(self):
            self.begins = 0

        def on_fit_begin(self, state, control):
            self.begins += 1

    mine = Counting()
    trainer = Trainer(trainer_cfg=small_config(tiny_ckpt, tmp_path, total_step=2, debug_skip_save=True,
                                               profile_step=3, default_hooks=["curves_png"]), hooks=[mine])
    assert [type(h).__name__ for h in trainer.hooks] == ["Counting", "StepProfiler", "CurvesPng"]
    resolved = list(trainer.hooks)
    late = Counting()
    trainer.hooks.append(late)
    trainer.fit()
    trainer.fit()  # at total_step already: no step, but the same hooks see the fit begin and end
    assert trainer.hooks == [*resolved, late] and (mine.begins, late.begins) == (2, 2)
    curves = type(resolved[-1])(trainer.log_dir)
    again = Trainer(trainer_cfg=small_config(tiny_ckpt, tmp_path, total_step=1, debug_skip_save=True,
                                             default_hooks=["curves_png"]), hooks=[curves])
    assert again.hooks == [curves]
