"""The fused linear-probe kernel against PyTorch autograd, and its counter-based dropout mask.

The reference loss is computed in float64 with ``F.cross_entropy(F.linear(...))`` and
differentiated by autograd, on the same rows and with the mask ``dropout_mask`` returns (the
kernel documents that it applies exactly that mask, scaled by ``1 / (1 - drop)``).
"""

from __future__ import annotations

import math

import numba
import pytest
import torch
import torch.nn.functional as F

from fwdlearn.kernels import dropout_mask, probe_gradients


def make_problem(n: int, d: int, classes: int, n_rows: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    rows = torch.randint(0, n, (n_rows,), generator=g)          # with repeats
    weight = torch.randn(classes, d, generator=g) * 0.5
    bias = torch.randn(classes, generator=g) * 0.5
    return features, labels, rows, weight, bias


def reference(features, rows, labels, weight, bias, drop, seed):
    """Autograd in float64 of the mean cross-entropy of Linear(mask * x / (1 - drop))."""
    mask = dropout_mask(len(rows), features.shape[1], drop, seed).double()
    x = features[rows].double() * mask / (1.0 - drop)
    w = weight.double().requires_grad_(True)
    b = bias.double().requires_grad_(True)
    loss = F.cross_entropy(F.linear(x, w, b), labels[rows])
    loss.backward()
    return w.grad, b.grad, float(loss.detach())


CASES = [  # (n, d, classes, n_rows)
    (40, 7, 3, 25),
    (30, 16, 10, 64),
    (50, 33, 2, 13),
    (10, 5, 4, 1),
]


@pytest.mark.parametrize("drop", [0.0, 0.3])
@pytest.mark.parametrize("n, d, classes, n_rows", CASES, ids=[f"d{c[1]}-k{c[2]}-rows{c[3]}" for c in CASES])
def test_probe_gradients_match_autograd(n, d, classes, n_rows, drop):
    """Weight and bias gradients and the loss equal PyTorch autograd's with the same mask."""
    features, labels, rows, weight, bias = make_problem(n, d, classes, n_rows, seed=d * 100 + classes)
    seed = 1234 + n_rows
    gw, gb, loss = probe_gradients(features, rows, labels, weight, bias, drop, seed)
    ref_gw, ref_gb, ref_loss = reference(features, rows, labels, weight, bias, drop, seed)
    assert gw.shape == (classes, d) and gb.shape == (classes,)
    assert gw.dtype == torch.float32 and gb.dtype == torch.float32
    tol = 1e-5 * max(1.0, float(ref_gw.abs().max()))
    torch.testing.assert_close(gw.double(), ref_gw, atol=tol, rtol=1e-4)
    torch.testing.assert_close(gb.double(), ref_gb, atol=1e-5, rtol=1e-4)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-5)


def test_dropout_actually_applied():
    """With drop=0.3 the gradients differ from the no-dropout ones (the mask is not ignored),
    and differ from the reference computed with another seed's mask."""
    features, labels, rows, weight, bias = make_problem(40, 20, 5, 32, seed=5)
    gw_drop, _, _ = probe_gradients(features, rows, labels, weight, bias, 0.3, 11)
    gw_none, _, _ = probe_gradients(features, rows, labels, weight, bias, 0.0, 11)
    other_gw, _, _ = reference(features, rows, labels, weight, bias, 0.3, 12)
    assert not torch.allclose(gw_drop, gw_none, atol=1e-3)
    assert not torch.allclose(gw_drop.double(), other_gw, atol=1e-3)


def test_probe_gradients_deterministic_and_inputs_untouched():
    """Two runs with the same seed give bit-identical results; inputs are not modified."""
    features, labels, rows, weight, bias = make_problem(60, 21, 10, 64, seed=9)
    copies = [t.clone() for t in (features, labels, rows, weight, bias)]
    first = probe_gradients(features, rows, labels, weight, bias, 0.3, 77)
    second = probe_gradients(features, rows, labels, weight, bias, 0.3, 77)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[2] == second[2]
    for before, after in zip(copies, (features, labels, rows, weight, bias)):
        assert torch.equal(before, after)


def test_probe_gradients_independent_of_thread_count():
    """One thread and all threads agree (same mask; only the summation order may differ)."""
    features, labels, rows, weight, bias = make_problem(60, 19, 4, 50, seed=3)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = probe_gradients(features, rows, labels, weight, bias, 0.3, 5)
    finally:
        numba.set_num_threads(saved)
    many = probe_gradients(features, rows, labels, weight, bias, 0.3, 5)
    torch.testing.assert_close(one[0], many[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(one[1], many[1], atol=1e-6, rtol=1e-5)
    assert one[2] == pytest.approx(many[2], rel=1e-6)


def test_probe_gradients_accepts_non_contiguous_features():
    """A transposed (non-contiguous) feature matrix gives the same result as its contiguous copy."""
    features, labels, rows, weight, bias = make_problem(30, 12, 3, 20, seed=4)
    strided = features.t().contiguous().t()
    assert not strided.is_contiguous()
    a = probe_gradients(strided, rows, labels, weight, bias, 0.3, 8)
    b = probe_gradients(features, rows, labels, weight, bias, 0.3, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# --------------------------------------------------------------------------------------------
# dropout_mask


@pytest.mark.parametrize("drop", [0.1, 0.3, 0.5])
def test_dropout_mask_keep_rate(drop):
    """Keep rate of a 1000x1000 mask is within 5 binomial standard deviations of 1 - drop,
    per column within 5 sigma too, and neighbouring elements are independent."""
    n = d = 1000
    mask = dropout_mask(n, d, drop, seed=2024)
    assert mask.shape == (n, d) and mask.dtype == torch.bool
    keep = 1.0 - drop
    sigma = math.sqrt(keep * drop / (n * d))
    assert abs(mask.double().mean().item() - keep) < 5 * sigma
    col_sigma = math.sqrt(keep * drop / n)
    assert (mask.double().mean(0) - keep).abs().max().item() < 5.5 * col_sigma
    assert (mask.double().mean(1) - keep).abs().max().item() < 5.5 * col_sigma
    # adjacent elements: P(both kept) ~ keep^2 (a counter-based hash must not correlate neighbours)
    both = (mask[:, 1:] & mask[:, :-1]).double().mean().item()
    pair_sigma = math.sqrt(keep**2 * (1 - keep**2) / (n * (d - 1)))
    assert abs(both - keep**2) < 6 * pair_sigma


def test_dropout_mask_seeds():
    """Same seed -> identical mask; different seeds -> different masks; drop 0 keeps everything."""
    a = dropout_mask(64, 100, 0.3, seed=1)
    assert torch.equal(a, dropout_mask(64, 100, 0.3, seed=1))
    assert not torch.equal(a, dropout_mask(64, 100, 0.3, seed=2))
    assert not torch.equal(a, dropout_mask(64, 100, 0.3, seed=123456789))
    assert bool(dropout_mask(64, 100, 0.0, seed=1).all())


def test_dropout_mask_rows_differ():
    """Different rows of one mask get different patterns (the row index enters the hash)."""
    mask = dropout_mask(8, 256, 0.5, seed=0)
    assert len({tuple(row.tolist()) for row in mask}) == 8


# --------------------------------------------------------------------------------------------
# invalid input


def test_float64_features_rejected():
    """float64 features raise ValueError."""
    features, labels, rows, weight, bias = make_problem(10, 4, 3, 5, seed=0)
    with pytest.raises(ValueError):
        probe_gradients(features.double(), rows, labels, weight, bias, 0.0, 0)


def test_one_dimensional_features_rejected():
    """1-D features raise ValueError."""
    features, labels, rows, weight, bias = make_problem(10, 4, 3, 5, seed=0)
    with pytest.raises(ValueError):
        probe_gradients(features[:, 0].contiguous(), rows, labels, weight, bias, 0.0, 0)


@pytest.mark.parametrize("drop", [1.0, 1.5, -0.1])
def test_invalid_drop_rejected(drop):
    """A drop probability outside [0, 1) raises ValueError, in the kernel and in dropout_mask."""
    features, labels, rows, weight, bias = make_problem(10, 4, 3, 5, seed=0)
    with pytest.raises(ValueError):
        probe_gradients(features, rows, labels, weight, bias, drop, 0)
    with pytest.raises(ValueError):
        dropout_mask(4, 4, drop, 0)


@pytest.mark.parametrize("shape, dim", [((6, 9), 1), ((3, 5, 4, 4), 1), ((7, 11), -1)])
def test_relu_goodness_equals_the_composed_form_in_value_and_gradient(shape, dim):
    from fwdlearn.kernels import relu_goodness
    from fwdlearn.objectives import goodness

    z = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    torch.testing.assert_close(relu_goodness(z, dim), goodness(torch.relu(z), dim))
    assert torch.autograd.gradcheck(lambda t: relu_goodness(t, dim), (z,))


def test_relu_goodness_keeps_only_the_preactivations_for_backward():
    from fwdlearn.kernels import relu_goodness
    from fwdlearn.objectives import goodness

    def saved_bytes(fn):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            fn(torch.randn(64, 128, requires_grad=True))
        return sum(saved)

    one_tensor = 64 * 128 * 4
    assert saved_bytes(lambda z: relu_goodness(z)) == one_tensor
    assert saved_bytes(lambda z: goodness(torch.relu(z))) >= 2 * one_tensor
