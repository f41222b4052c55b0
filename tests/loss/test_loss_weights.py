"""Per-token loss weights for the token / sample / square reductions, checked against hand-computed values."""

import math

import pytest
import torch

from xtuner_nb.loss import loss_weights

X = -100
# Three samples of lengths 4, 3, 3 and a padding segment of 2:
#   sample A: 2 loss tokens, sample B: 3, sample C: none (prompt only), padding: none.
LABELS = torch.tensor([[X, X, 5, 6, 7, 8, 9, X, X, X, X, X]])
CU = torch.tensor([0, 4, 7, 10, 12], dtype=torch.int32)


def test_token_weights_are_the_loss_mask():
    w = loss_weights(LABELS, CU, "token")
    assert w.dtype == torch.float32 and w.shape == (12,)
    assert w.tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_sample_weights_give_each_sample_weight_one():
    w = loss_weights(LABELS, CU, "sample")
    expected = [0, 0, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0, 0]
    torch.testing.assert_close(w, torch.tensor(expected))
    assert w.sum().item() == pytest.approx(2.0)  # two samples carry loss; C and the padding count for nothing


def test_square_weights_are_one_over_sqrt_of_loss_tokens():
    w = loss_weights(LABELS.view(-1), CU, "square")  # [L] labels work as well as [1, L]
    a, b = 1 / math.sqrt(2), 1 / math.sqrt(3)
    torch.testing.assert_close(w, torch.tensor([0, 0, a, a, b, b, b, 0, 0, 0, 0, 0]))
    assert w.sum().item() == pytest.approx(2 * a + 3 * b)


def test_custom_ignore_idx():
    labels = torch.tensor([-1, 3, 4, -1])
    w = loss_weights(labels, torch.tensor([0, 2, 4], dtype=torch.int32), "sample", ignore_idx=-1)
    assert w.tolist() == [0, 1, 1, 0]


def test_cu_seq_lens_must_cover_the_labels():
    with pytest.raises(ValueError, match="cu_seq_lens must rise from 0 to the number of labels \\(12\\)"):
        loss_weights(LABELS, torch.tensor([0, 4, 10], dtype=torch.int32), "sample")
    with pytest.raises(ValueError, match="loss reduction"):
        loss_weights(LABELS, CU, "mean")
