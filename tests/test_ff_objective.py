"""Hinton's Forward-Forward (arXiv:2212.13345): label overlay, goodness, loss, gradient, one layer.

Expected values are written by hand from the paper's formulas, never produced by the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from fwdlearn.nn.ff_layer import FFLinear
from fwdlearn.objectives.ff import (
    FFLossTerms,
    classify_by_goodness,
    ff_goodness,
    ff_loss,
    ff_loss_gradient,
    length_normalize,
    overlay_label,
    overlay_neutral,
    wrong_labels,
)


# ---------------------------------------------------------------- label overlay (section 3.3)

def test_overlay_writes_one_hot_into_first_entries_and_keeps_the_rest():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3) + 10.0   # D = 6
    out = overlay_label(x, torch.tensor([2, 0]), num_classes=3, value=0.5)
    assert out.shape == (2, 6)
    assert out[:, :3].tolist() == [[0.0, 0.0, 0.5], [0.5, 0.0, 0.0]]
    assert out[:, 3:].tolist() == [[13.0, 14.0, 15.0], [19.0, 20.0, 21.0]]
    assert x.flatten(1)[:, :3].tolist() == [[10.0, 11.0, 12.0], [16.0, 17.0, 18.0]]   # input untouched


def test_neutral_overlay_spreads_value_over_label_entries():
    x = torch.full((3, 8), 7.0)
    out = overlay_neutral(x, num_classes=4, value=2.0)
    assert out[:, :4].tolist() == [[0.5] * 4] * 3
    assert out[:, :4].sum(1).tolist() == [2.0, 2.0, 2.0]
    assert out[:, 4:].tolist() == [[7.0] * 4] * 3


@pytest.mark.parametrize("overlay", [lambda x: overlay_label(x, torch.tensor([0]), 4),
                                     lambda x: overlay_neutral(x, 4)])
def test_overlay_needs_room_beyond_the_label(overlay):
    with pytest.raises(ValueError, match="num_classes"):
        overlay(torch.zeros(1, 4))


def test_wrong_labels_never_true_reproducible_and_uniform_over_the_others():
    labels = torch.randint(0, 5, (6000,), generator=torch.Generator().manual_seed(0))
    a = wrong_labels(labels, 5, torch.Generator().manual_seed(1))
    b = wrong_labels(labels, 5, torch.Generator().manual_seed(1))
    c = wrong_labels(labels, 5, torch.Generator().manual_seed(2))
    assert a.dtype == torch.long and a.shape == labels.shape
    assert not (a == labels).any()
    assert ((a >= 0) & (a < 5)).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    offsets = torch.bincount((a - labels) % 5, minlength=5)   # r in 1..4, each with probability 1/4
    assert offsets[0] == 0
    assert ((offsets[1:] - 1500).abs() < 150).all()


# ---------------------------------------------------------------- normalisation, goodness, loss

def test_length_normalize_gives_unit_norm_and_keeps_direction():
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    out = length_normalize(x)
    assert torch.allclose(out, torch.tensor([[0.6, 0.8], [0.0, -1.0]]))
    y = torch.randn(16, 10, generator=torch.Generator().manual_seed(0)) * 5.0
    out = length_normalize(y)
    assert torch.allclose(out.norm(dim=1), torch.ones(16), atol=1e-6)
    assert torch.allclose(torch.cosine_similarity(out, y, dim=1), torch.ones(16), atol=1e-6)


def test_goodness_is_sum_of_squares_per_sample():
    y = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    assert ff_goodness(y).tolist() == [10.0, 4.0]   # 1 + 9, 0 + 4


def test_ff_loss_matches_hand_computation():
    g_pos, g_neg = torch.tensor([5.0, 3.0]), torch.tensor([2.0, 7.0])
    terms = ff_loss(g_pos, g_neg, theta=4.0)
    # softplus(a) = log(1 + e^a):
    #   positives: softplus(4 - 5) = 0.3132617, softplus(4 - 3) = 1.3132617 -> mean 0.8132617
    #   negatives: softplus(2 - 4) = 0.1269280, softplus(7 - 4) = 3.0485874 -> mean 1.5877577
    assert isinstance(terms, FFLossTerms)
    assert terms.loss.item() == pytest.approx(2.4010194, abs=1e-6)
    assert terms.goodness_pos.item() == pytest.approx(4.0)
    assert terms.goodness_neg.item() == pytest.approx(4.5)
    assert not terms.goodness_pos.requires_grad and not terms.goodness_neg.requires_grad


def test_ff_loss_is_minus_log_sigmoid_form():
    # -log sigma(G_pos - theta) - log sigma(theta - G_neg), one sample each, written out.
    terms = ff_loss(torch.tensor([1.5]), torch.tensor([0.25]), theta=1.0)
    expected = -math.log(1 / (1 + math.exp(-(1.5 - 1.0)))) - math.log(1 / (1 + math.exp(-(1.0 - 0.25))))
    assert terms.loss.item() == pytest.approx(expected, rel=1e-6)


def test_autograd_gradient_equals_closed_form():
    gen = torch.Generator().manual_seed(0)
    y_pos = (torch.rand(5, 7, generator=gen, dtype=torch.float64) * 0.8).requires_grad_()
    y_neg = (torch.rand(3, 7, generator=gen, dtype=torch.float64) * 0.8).requires_grad_()
    theta = 1.2                                   # goodness ~ 7 * 0.21: sigmoids far from saturation
    ff_loss(ff_goodness(y_pos), ff_goodness(y_neg), theta).loss.backward()
    grad_pos, grad_neg = ff_loss_gradient(y_pos.detach(), y_neg.detach(), theta)
    assert grad_pos.shape == y_pos.shape and grad_neg.shape == y_neg.shape
    assert torch.allclose(y_pos.grad, grad_pos, rtol=1e-12, atol=1e-14)
    assert torch.allclose(y_neg.grad, grad_neg, rtol=1e-12, atol=1e-14)
    assert (grad_pos <= 0).all() and (grad_neg >= 0).all()   # push positive goodness up, negative down
    # one entry by hand: dL/dy_pos[0, 0] = -sigma(theta - G_pos[0]) * 2 y / N_pos
    g0 = float((y_pos.detach()[0] ** 2).sum())
    by_hand = -1 / (1 + math.exp(-(theta - g0))) * 2 * float(y_pos.detach()[0, 0]) / 5
    assert float(grad_pos[0, 0]) == pytest.approx(by_hand, rel=1e-12)


def test_classify_by_goodness_picks_highest_label():
    g = torch.tensor([[0.1, 3.0, 2.0], [5.0, 4.0, -1.0]])
    assert classify_by_goodness(g).tolist() == [1, 0]


# ---------------------------------------------------------------- the layer (section 2.1)

def test_layer_normalises_input_only_when_asked():
    x = torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]]])           # [2, 1, 2]
    assert torch.allclose(FFLinear(2, 3).prepare(x), 2 ** 0.5 * torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    assert FFLinear(2, 3, normalize_input=False).prepare(x).tolist() == [[3.0, 4.0], [0.0, 2.0]]


def test_layer_forward_is_relu_of_linear_and_passes_activity_on():
    torch.manual_seed(0)
    layer = FFLinear(4, 6)
    x = torch.randn(5, 4) * 3.0
    y = layer(x)
    expected = torch.relu(2.0 * x / x.norm(dim=1, keepdim=True) @ layer.linear.weight.T + layer.linear.bias)  # length sqrt(4)
    assert torch.allclose(y, expected, atol=1e-6)
    assert torch.allclose(layer(x * 10.0), y, atol=1e-5)    # only the orientation of the input counts
    assert torch.equal(layer.passed(y), y) and torch.equal(layer.tap(y), y)
    assert torch.allclose(layer.goodness(y), (y ** 2).sum(1))


# ---------------------------------------------------------------- learning

NUM_CLASSES, IN_FEATURES = 4, 20


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototype plus noise in entries ``C:``; the first ``C`` entries are blank for the label."""
    protos = torch.randn(NUM_CLASSES, IN_FEATURES - NUM_CLASSES, generator=torch.Generator().manual_seed(123))
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    noise = 0.5 * torch.randn(n, IN_FEATURES - NUM_CLASSES, generator=gen)
    return torch.cat([torch.zeros(n, NUM_CLASSES), protos[labels] + noise], dim=1), labels


@pytest.fixture
def one_thread():
    """Tiny matrices gain nothing from intra-op threads, and on a busy CPU they cost seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_one_ff_layer_learns_to_separate_and_classify(one_thread):
    torch.manual_seed(0)
    theta = 2.0
    layer = FFLinear(IN_FEATURES, 32)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    x, labels = _synthetic(256, seed=1)
    gen = torch.Generator().manual_seed(2)
    for _ in range(200):
        pos = overlay_label(x, labels, NUM_CLASSES)
        neg = overlay_label(x, wrong_labels(labels, NUM_CLASSES, gen), NUM_CLASSES)
        terms = ff_loss(layer.goodness(layer(pos)), layer.goodness(layer(neg)), theta)
        opt.zero_grad()
        terms.loss.backward()
        opt.step()

    x_test, y_test = _synthetic(512, seed=3)                  # held-out samples
    with torch.no_grad():
        g_pos = layer.goodness(layer(overlay_label(x_test, y_test, NUM_CLASSES)))
        g_neg = layer.goodness(layer(overlay_label(x_test, wrong_labels(y_test, NUM_CLASSES, gen), NUM_CLASSES)))
        per_label = torch.stack([layer.goodness(layer(overlay_label(x_test, torch.full_like(y_test, c), NUM_CLASSES)))
                                 for c in range(NUM_CLASSES)], dim=1)
    assert g_pos.mean() > theta > g_neg.mean()
    accuracy = (classify_by_goodness(per_label) == y_test).float().mean().item()
    assert accuracy > 0.9                                     # chance is 0.25
