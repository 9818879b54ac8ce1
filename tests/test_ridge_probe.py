"""The closed-form ridge read-out that scores a network after every epoch of a study (``eval.ridge_probe``)."""

from __future__ import annotations

import pytest
import torch

from fwdlearn.eval.ridge_probe import ridge_readout_accuracy


def _blobs(n: int, d: int, classes: int, seed: int, spread: float = 0.3):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.randint(0, classes, (n,), generator=generator)
    return centres[y] + spread * torch.randn(n, d, generator=generator), y


def test_separable_classes_are_read_out_and_random_labels_are_not():
    x, y = _blobs(600, 20, 5, seed=0)
    tx, ty = _blobs(400, 20, 5, seed=1)
    assert ridge_readout_accuracy(x, y, tx, ty, 5) > 0.97
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(2))]
    assert ridge_readout_accuracy(x, shuffled, tx, ty, 5) < 0.4           # chance is 0.2


def test_more_features_than_samples_uses_the_dual_form_with_the_same_answer():
    """With d > n the dual system is solved; its read-out equals the primal one (checked by a direct solve)."""
    x, y = _blobs(80, 200, 4, seed=3, spread=12.0)
    tx, ty = _blobs(300, 200, 4, seed=4, spread=12.0)
    xd = x.double()
    mean, scale = xd.mean(0), xd.std(0, unbiased=False)
    z = (xd - mean) / scale
    targets = torch.nn.functional.one_hot(y, 4).double()
    bias = targets.mean(0)
    gram = z.T @ z
    alpha = 1e-2 * gram.diagonal().mean()
    weight = torch.linalg.solve(gram + alpha * torch.eye(200, dtype=torch.double), z.T @ (targets - bias))
    primal = (((((tx.double() - mean) / scale) @ weight + bias).argmax(1)) == ty).double().mean().item()
    assert ridge_readout_accuracy(x, y, tx, ty, 4) == pytest.approx(primal)
    assert 0.5 < primal < 1.0


def test_mismatched_features_are_refused():
    with pytest.raises(ValueError, match="same width"):
        ridge_readout_accuracy(torch.zeros(5, 3), torch.zeros(5), torch.zeros(5, 4), torch.zeros(5), 2)
