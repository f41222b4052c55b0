"""Precision by device, loss scaling, and options that must not be ignored (the fit check: test_memory_fit.py)."""

from __future__ import annotations

import math

import pytest
import torch

from xtuner_nb.config import FSDPConfig
from xtuner_nb.train.precision import choose_precision

from .helpers import losses, small_config

CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize("cap, dtype, scaled", [((9, 0), torch.bfloat16, False), ((8, 0), torch.bfloat16, False),
                                                ((7, 5), torch.float16, True), ((7, 0), torch.float16, True),
                                                ((6, 1), torch.float32, False)],
                         ids=["H100", "A100", "T4", "V100", "P40"])
def test_precision_is_chosen_by_compute_capability(cap, dtype, scaled):
    p = choose_precision(FSDPConfig(), CUDA, capability=cap)
    assert (p.compute, p.loss_scaling) == (dtype, scaled)
    assert p.reduce == (torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)
    assert f"sm{cap[0]}{cap[1]}" in p.describe()


def test_precision_overrides_and_refusals():
    assert choose_precision(FSDPConfig(precision="float32"), CUDA, capability=(9, 0)).compute == torch.float32
    assert choose_precision(FSDPConfig(precision="float16"), CUDA, capability=(9, 0)).loss_scaling
    with pytest.raises(ValueError, match="no bf16"):
        choose_precision(FSDPConfig(precision="bfloat16"), CUDA, capability=(7, 5))
    cpu = torch.device("cpu")
    assert choose_precision(FSDPConfig(), cpu).compute == torch.float32
    assert choose_precision(FSDPConfig(precision="bfloat16"), cpu).autocast_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="needs a GPU"):
        choose_precision(FSDPConfig(precision="float16"), cpu)


def test_bf16_on_cpu_tracks_fp32_with_fp32_master_weights(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Trainer

    runs = {}
    for name in ("float32", "bfloat16"):
        t = Trainer.from_config(small_config(tiny_ckpt, tmp_path / name, total_step=20, debug_skip_save=True,
                                             fsdp_cfg=FSDPConfig(recompute_ratio=0.0, precision=name)),
                                show_dashboard=False)
        t.fit()
        assert all(p.dtype == torch.float32 for p in t.model.parameters())  # master weights stay fp32
        assert t.autocast_dtype == (torch.bfloat16 if name == "bfloat16" else None)
        runs[name] = losses(t)
    fp32, bf16 = runs["float32"], runs["bfloat16"]
    assert len(bf16) == 20 and all(math.isfinite(x) for x in bf16)
    assert fp32[-1] < fp32[0] - 0.5 and bf16[-1] < bf16[0] - 0.5  # both learn
    worst = max(abs(a - b) / abs(a) for a, b in zip(fp32, bf16))
    assert worst < 2e-2, worst  # bf16 has an 8-bit mantissa: relative 2**-8 per op, a few % after 20 steps
    assert bf16 != fp32  # the bf16 path really ran


def test_loss_scaling_skips_an_overflow_and_lowers_the_scale():
    from xtuner_nb.train.step import clip_and_step

    layer = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    before = layer.weight.detach().clone()
    scaler.scale(layer(torch.full((2, 4), 1e38)).sum() * 1e38).backward()  # overflows to inf
    norm, updated = clip_and_step(layer, opt, 1.0, True, None, grad_scaler=scaler)
    assert not updated and not math.isfinite(norm)
    assert torch.equal(layer.weight, before) and scaler.get_scale() == 2.0 ** 9
    scaler.scale(layer(torch.ones(2, 4)).sum()).backward()
    norm, updated = clip_and_step(layer, opt, 1.0, True, None, grad_scaler=scaler)
    assert updated and math.isfinite(norm) and not torch.equal(layer.weight, before)


@pytest.mark.parametrize("field, message", [("cpu_offload", "needs FSDP2")])
def test_options_that_one_process_cannot_honour_are_refused(tiny_ckpt, tmp_path, field, message):
    from xtuner_nb.train import Trainer

    with pytest.raises(ValueError, match=message):
        Trainer.from_config(small_config(tiny_ckpt, tmp_path, fsdp_cfg=FSDPConfig(**{field: True})),
                            show_dashboard=False)


def test_torch_compile_and_fp32_lm_head_are_applied(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Trainer
    from xtuner_nb.train.parallel import decoder_layers

    t = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=1, debug_skip_save=True,
                                         fsdp_cfg=FSDPConfig(recompute_ratio=0.0, torch_compile=True)),
                            show_dashboard=False)
    assert all(layer._compiled_call_impl is not None for layer in decoder_layers(t.model))

    # fp32_lm_head under bf16 autocast: the loss equals the one computed with an fp32 logits matmul
    from xtuner_nb.train.step import forward_backward

    t2 = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "b", total_step=1, debug_skip_save=True,
                                          fsdp_cfg=FSDPConfig(recompute_ratio=0.0, precision="bfloat16")),
                             show_dashboard=False)
    packs = next(iter(t2.loader))
    loss = {}
    for fp32 in (False, True):
        res = forward_backward(t2.model, packs, t2.config.loss_cfg, t2.dist.device, 1, torch.bfloat16,
                               fp32_lm_head=fp32)
        t2.model.zero_grad()
        loss[fp32] = res.reduced_loss
    assert loss[True] != loss[False]  # the head really ran in another precision


def test_attention_flops_count_no_padding():
    """MFU's attended length: the collator's padding pseudo-samples (256 tokens each) are left out."""
    from xtuner_nb.datasets.collator import collate_pack
    from xtuner_nb.train.flops import effective_attn_len
    from xtuner_nb.train.step import _sample_lengths

    items = [{"input_ids": list(range(n)), "labels": list(range(n)), "num_tokens": n} for n in (100, 41)]
    pack = collate_pack(items, 1024, pad_id=0)
    assert int(pack["num_padding"]) == 1024 - 140
    lens = _sample_lengths(pack)
    assert lens.tolist() == [100, 40]
    assert effective_attn_len(lens) == pytest.approx((100 ** 2 + 40 ** 2) / 140)
