"""Positive and negative example construction (section 3.1, Appendix C) and the tied-weight layer."""

from __future__ import annotations

import torch

from fwdlearn.data.transforms import standardize
from fwdlearn.nn import PairedLinear
from fwdlearn.objectives.scff import carry_pairs, data_pairs, repair


def test_first_layer_pairs_without_translation(images):
    batch = data_pairs(images, torch.Generator().manual_seed(1))
    n = images.shape[0]
    assert torch.equal(batch.views, images)
    assert torch.equal(batch.pos_left, torch.arange(n)) and torch.equal(batch.pos_right, torch.arange(n))
    shift = (batch.neg_right - batch.neg_left) % n
    assert torch.all(shift == shift[0]) and 1 <= int(shift[0]) <= n - 1   # one shift s per batch, never 0


def test_shift_is_random_across_batches(images):
    generator = torch.Generator().manual_seed(2)
    shifts = {int((data_pairs(images, generator).neg_right[0]) % 16) for _ in range(40)}
    assert len(shifts) > 5 and 0 not in shifts


def test_translated_pairs_use_two_views_of_the_same_image(images):
    batch = data_pairs(images, torch.Generator().manual_seed(3), translate=1)
    n = images.shape[0]
    assert batch.views.shape[0] == 2 * n
    assert torch.equal(batch.pos_left, torch.arange(n)) and torch.equal(batch.pos_right, torch.arange(n) + n)
    assert torch.all(batch.neg_right >= n) and torch.all(batch.neg_right - n != batch.neg_left)


def test_algorithm_1_carries_positive_and_negative_outputs():
    y_pos, y_neg = torch.rand(5, 3), torch.rand(5, 3)
    batch = carry_pairs(y_pos, y_neg)
    assert batch.pos_right is None and batch.neg_right is None
    assert torch.equal(batch.views[batch.pos_left], y_pos) and torch.equal(batch.views[batch.neg_left], y_neg)


def test_algorithm_2_repairs_positive_outputs():
    y_pos = torch.rand(6, 3)
    batch = repair(y_pos, torch.Generator().manual_seed(0))
    assert torch.equal(batch.views, y_pos)
    assert torch.equal(batch.pos_left, batch.pos_right)
    assert torch.all(batch.neg_left != batch.neg_right)


def test_tied_weights_equal_a_doubled_input_layer():
    """W a + W b + 2 bias == [W, W] std([a, b]) + 2 bias (Appendix A; standardisation of the whole pair)."""
    torch.manual_seed(0)
    layer = PairedLinear(10, 4, paired=True)
    a, b = torch.randn(3, 10) * 3 + 1, torch.randn(3, 10) - 2
    projections = layer.project(torch.cat([a, b]))
    z = layer.combine(projections, torch.arange(3), torch.arange(3, 6))
    doubled = torch.cat([layer.linear.weight, layer.linear.weight], dim=1)
    pair = standardize(torch.cat([standardize(a), standardize(b)], dim=1))
    torch.testing.assert_close(z, pair @ doubled.T + 2 * layer.linear.bias, rtol=1e-5, atol=1e-5)


def test_inference_forward_is_the_positive_pair():
    torch.manual_seed(0)
    layer = PairedLinear(10, 4, paired=True)
    x = torch.randn(3, 10)
    z_pair = layer.combine(layer.project(x), torch.arange(3), torch.arange(3))
    torch.testing.assert_close(layer(x), z_pair)
    unpaired = PairedLinear(10, 4, paired=False)
    torch.testing.assert_close(unpaired(x), standardize(x) @ unpaired.linear.weight.T + unpaired.linear.bias)
