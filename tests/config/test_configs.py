"""Configs: XTuner defaults, strict validation naming the field, round-trips, code preview, LR schedule maths."""

import math

import pytest
from pydantic import ValidationError

from xtuner_nb.config import AdamWConfig, FSDPConfig, LRConfig
from xtuner_nb.loss import CELossConfig
from xtuner_nb.model import MODEL_PRESETS, Qwen3_8BConfig, Qwen3Dense8BConfig, Qwen3DenseConfig, TransformerConfig


def test_xtuner_defaults():
    o = AdamWConfig()
    assert (o.lr, o.weight_decay, o.betas, o.eps, o.max_grad_norm, o.skip_grad_norm_threshold) == (
        1e-5, 0.01, (0.9, 0.95), 1e-8, 1.0, None)
    lr = LRConfig()
    assert (lr.lr_type, lr.warmup_ratio, lr.lr_min) == ("constant", 0.03, 1e-6)
    loss = CELossConfig()
    assert (loss.mode, loss.chunk_size, loss.loss_reduction, loss.ignore_idx) == ("eager", 1024, "token", -100)
    f = FSDPConfig()
    assert (f.recompute_ratio, f.param_dtype, f.reduce_dtype, f.cpu_offload, f.reshard_after_forward) == (
        1.0, "bfloat16", "bfloat16", False, True)


def test_unknown_field_and_bad_value_name_the_field():
    with pytest.raises(ValidationError, match="epoch_num"):
        AdamWConfig(epoch_num=3)
    with pytest.raises(ValidationError, match="lr_type"):
        LRConfig(lr_type="cosin")
    with pytest.raises(ValidationError, match="lr"):
        AdamWConfig(lr=-1)


def test_fsdp_accepts_torch_dtype():
    import torch

    assert FSDPConfig(param_dtype=torch.float32).param_dtype == "float32"


@pytest.mark.parametrize("cfg", [AdamWConfig(lr=6e-5), LRConfig(lr_type="cosine", lr_min=1e-6),
                                 CELossConfig(mode="chunk"), FSDPConfig(recompute_ratio=0.5),
                                 Qwen3Dense8BConfig(num_hidden_layers=16)])
def test_round_trip_dict_json_yaml(cfg):
    cls = type(cfg)
    assert cls.from_dict(cfg.to_dict()) == cfg
    assert cls.from_json(cfg.to_json()) == cfg
    assert cls.from_yaml(cfg.to_yaml()) == cfg
    # the base class restores the exact preset class
    if isinstance(cfg, Qwen3DenseConfig):
        back = Qwen3DenseConfig.from_yaml(cfg.to_yaml())
        assert type(back) is Qwen3Dense8BConfig and back == cfg


def test_a_saved_config_does_not_switch_on_torch_compile(tmp_path):
    # torch_compile acts only when set explicitly (parallel.py); a saved config read back by a torchrun script
    # (docs: config.save + from_yaml) had every field set, and a 2-rank run spent 91 s compiling its first step
    for fsdp, compiled in ((FSDPConfig(), False), (FSDPConfig(recompute_ratio=0.5), False),
                           (FSDPConfig(torch_compile=True), True), (FSDPConfig(torch_compile=False), False)):
        for back in (FSDPConfig.from_yaml(fsdp.save(tmp_path / "f.yaml")), FSDPConfig.from_json(fsdp.to_json())):
            assert ("torch_compile" in back.model_fields_set) is ("torch_compile" in fsdp.model_fields_set)
            assert (back.torch_compile and "torch_compile" in back.model_fields_set) is compiled
            assert back.recompute_ratio == fsdp.recompute_ratio


def test_code_preview_shows_only_changes():
    assert Qwen3Dense8BConfig(num_hidden_layers=16).to_python() == "Qwen3Dense8BConfig(num_hidden_layers=16)"
    assert AdamWConfig(lr=6e-5).to_python() == "AdamWConfig(lr=6e-05)"
    assert LRConfig().to_python() == "LRConfig()"
    assert Qwen3_8BConfig is Qwen3Dense8BConfig


def _ref_sequential_lr(lr_cfg, total, base_lr=1.0):
    """torch's own SequentialLR([LambdaLR warmup, Cosine/Linear], milestones=[W]) as XTuner builds it."""
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    w = lr_cfg.warmup_steps(total)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda x: x / w if x < w else 1)
    if lr_cfg.lr_type == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - w, eta_min=lr_cfg.lr_min)
    elif lr_cfg.lr_type == "linear":
        main = torch.optim.lr_scheduler.LinearLR(opt, 1.0, lr_cfg.lr_min / base_lr, total_iters=total - w)
    else:
        main = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=1)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, main], milestones=[w])
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("lr_type", ["cosine", "linear", "constant"])
@pytest.mark.parametrize("warmup", [0.1, 3])
def test_lr_schedule_matches_torch_sequential_lr(lr_type, warmup):
    import torch

    cfg = LRConfig(lr_type=lr_type, warmup_ratio=warmup, lr_min=1e-3)
    total = 40
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = cfg.build(opt, total)
    ours = []
    for _ in range(total):
        ours.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ref = _ref_sequential_lr(cfg, total)
    assert ours[0] == 0.0  # XTuner: the first warmup step runs at lr 0
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(ours, ref)), (ours, ref)


def test_warmup_ratio_rule():
    assert LRConfig(warmup_ratio=0.03).warmup_steps(1000) == 30
    assert LRConfig(warmup_ratio=5).warmup_steps(1000) == 5


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_every_preset_validates_and_round_trips(name):
    cfg = MODEL_PRESETS[name]()
    back = TransformerConfig.from_dict(cfg.to_dict())  # the shared base restores the preset's own class
    assert type(back) is type(cfg) and back == cfg
