"""Goodness and the SCFF loss against values computed by hand from the paper's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from fwdlearn.objectives import goodness, scff_loss


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_goodness_is_mean_square_over_units():
    y = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    assert goodness(y).tolist() == [5.0, 2.0]          # (1 + 9) / 2, (0 + 4) / 2


def test_goodness_of_feature_map_is_per_position_over_channels():
    y = torch.zeros(1, 2, 1, 2)
    y[0, :, 0, 0] = torch.tensor([1.0, 1.0])
    y[0, :, 0, 1] = torch.tensor([2.0, 0.0])
    assert goodness(y).tolist() == [[[1.0, 2.0]]]     # [B, H, W]


def test_mlp_loss_matches_hand_computation():
    g_pos, g_neg = torch.tensor([5.0, 3.0]), torch.tensor([2.0, 7.0])
    terms = scff_loss(g_pos, g_neg, theta_pos=4.0, theta_neg=6.0, penalty=0.1)
    expected = ((softplus(4 - 5) + softplus(4 - 3)) / 2      # -log sigma(G_pos - theta_pos)
                + (softplus(2 - 6) + softplus(7 - 6)) / 2    # -log sigma(theta_neg - G_neg)
                + 0.1 * (5 + 3) / 2)                         # lambda * ||G_pos||, one value per sample
    assert terms.loss.item() == pytest.approx(expected, rel=1e-6)
    assert terms.goodness_pos.item() == pytest.approx(4.0)
    assert terms.goodness_neg.item() == pytest.approx(4.5)


def test_map_loss_averages_positions_and_penalises_frobenius_norm():
    g_pos = torch.tensor([[[3.0, 4.0]]])                     # one sample, a 1x2 goodness map
    g_neg = torch.tensor([[[1.0, 1.0]]])
    terms = scff_loss(g_pos, g_neg, theta_pos=0.0, theta_neg=1.0, penalty=0.5)
    expected = (softplus(-3) + softplus(-4)) / 2 + (softplus(0) + softplus(0)) / 2 + 0.5 * 5.0   # ||(3, 4)|| = 5
    assert terms.loss.item() == pytest.approx(expected, rel=1e-6)


def test_loss_is_stable_for_large_goodness():
    terms = scff_loss(torch.tensor([1e4]), torch.tensor([1e4]), 1.0, 1.0)
    assert torch.isfinite(terms.loss)
    assert terms.loss.item() == pytest.approx(1e4 - 1.0, rel=1e-6)   # softplus(x) -> x for large x


def test_gradient_wrt_preactivation_matches_closed_form():
    """dL/dz = (dL/dG) * 2 relu(z) / U / B with dL/dG_pos = -sigma(theta - G) + lambda, dL/dG_neg = sigma(G - theta)."""
    torch.manual_seed(0)
    z_pos = torch.randn(4, 6, requires_grad=True)
    z_neg = torch.randn(4, 6, requires_grad=True)
    theta_pos, theta_neg, lam = 0.5, 0.8, 0.3
    g_pos, g_neg = goodness(torch.relu(z_pos)), goodness(torch.relu(z_neg))
    scff_loss(g_pos, g_neg, theta_pos, theta_neg, lam).loss.backward()
    with torch.no_grad():
        b, u = z_pos.shape
        d_pos = (-torch.sigmoid(theta_pos - g_pos) + lam)[:, None] * 2 * torch.relu(z_pos) / u / b
        d_neg = torch.sigmoid(g_neg - theta_neg)[:, None] * 2 * torch.relu(z_neg) / u / b
    torch.testing.assert_close(z_pos.grad, d_pos)
    torch.testing.assert_close(z_neg.grad, d_neg)
