"""What XTuner's documentation pages call, run here: the loss page's `CELossContext.build_batches_loss_kwargs`
(global loss calibration over the packs of a step) and the float8 page's imports (float8 is refused, saying why)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xtuner_nb.loss.ce_loss import CELossConfig, CELossContext, CELossContextInputItem


def _packs():
    torch.manual_seed(0)
    labels = [torch.tensor([[-100, 3, 1, -100, 4, 0]]), torch.tensor([[2, -100, -100, 5]])]
    hidden = [torch.randn(1, lab.shape[1], 8) for lab in labels]
    return labels, hidden, torch.randn(6, 8)


@pytest.mark.parametrize("mode", ["eager", "chunk"])
def test_loss_page_calibrates_the_packs_of_a_step_together(mode):
    labels, hidden, head = _packs()
    cfg = CELossConfig(mode=mode, chunk_size=3, loss_reduction="token")
    kwargs = CELossContext.build_batches_loss_kwargs([CELossContextInputItem(shifted_labels=lab) for lab in labels],
                                                     cfg)
    losses = [CELossContext(cfg, kw).forward(h, head)[0] for kw, h in zip(kwargs, hidden)]
    # each pack's share sums to the token mean over the whole step, as one big batch would give
    whole = F.cross_entropy(torch.cat([h[0] @ head.T for h in hidden]), torch.cat([lab[0] for lab in labels]))
    assert torch.allclose(sum(losses), whole, atol=1e-6)
    # the contexts' own build_batches gives the same weights (one calibration)
    ctxs = CELossContext.build_batches([cfg.build({"shifted_labels": lab}) for lab in labels])
    assert all(torch.equal(c.loss_kwargs.loss_weight, kw.loss_weight) for c, kw in zip(ctxs, kwargs))


def test_loss_page_sample_reduction_weighs_every_sample_alike():
    labels, hidden, head = _packs()
    cfg = CELossConfig(loss_reduction="sample")
    cu = [torch.tensor([0, 3, 6], dtype=torch.int32), torch.tensor([0, 4], dtype=torch.int32)]
    kwargs = CELossContext.build_batches_loss_kwargs([CELossContextInputItem(shifted_labels=lab) for lab in labels],
                                                     cfg, cu_seq_lens_list=cu)
    total = sum(CELossContext(cfg, kw).forward(h, head)[0] for kw, h in zip(kwargs, hidden))
    per_sample = [F.cross_entropy(h[0, a:b] @ head.T, lab[0, a:b]) for lab, h, c in zip(labels, hidden, cu)
                  for a, b in zip(c[:-1].tolist(), c[1:].tolist())]
    assert torch.allclose(total, sum(per_sample) / len(per_sample), atol=1e-6)


def test_float8_page_imports_and_refuses_with_the_reason():
    from xtuner_nb.float8 import TileWiseFloat8GroupedLinear, TileWiseFloat8Linear
    from xtuner_nb.float8.config import Float8Config, ScalingGranularity
    from xtuner_nb.model import Qwen3Dense8BConfig

    with pytest.raises(ValueError, match="Float8Config is not supported by xtuner_nb: float8 training needs"):
        Float8Config(scaling_granularity_gemm=ScalingGranularity.TILEWISE,
                     scaling_granularity_grouped_gemm=ScalingGranularity.TILEWISE)
    for layer in (TileWiseFloat8Linear, TileWiseFloat8GroupedLinear):
        with pytest.raises(NotImplementedError, match="is not supported by xtuner_nb: float8 training needs"):
            layer(in_features=16, out_features=32, bias=False)
    off = Float8Config()  # XTuner's default (no granularity) turns nothing on; a model still takes only None
    assert not off.enable_float8
    with pytest.raises(ValueError, match="float8_cfg=.* is not supported by xtuner_nb"):
        Qwen3Dense8BConfig(float8_cfg=off)
