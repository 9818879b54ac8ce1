"""VICReg's variance-invariance-covariance loss (Bardes et al. 2022, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", Eqs. 1-6; summarised in Gori slides, "VICReg").

    v(Z) = 1/d sum_j max(0, gamma - sqrt(Var(z^j) + eps))                                  (Eqs. 1-2)
    c(Z) = 1/d sum_{i != j} C(Z)_ij^2,  C(Z) = 1/(n-1) sum_i (z_i - mean)(z_i - mean)^T    (Eqs. 3-4)
    s(Z, Z') = mean squared difference                                                      (Eq. 5)
    l = lambda s + mu v + nu c,  lambda = mu = 25, nu = 1                                   (Eq. 6)

Normalisation follows the authors' released code, which the 25/25/1 weights were tuned with: the
invariance is the MSE over all ``n*d`` entries (Eq. 5 sums over the ``d`` dimensions instead), the variance
term is the *average* of ``v(Z)`` and ``v(Z')`` and the covariance term the *sum* of ``c(Z)`` and
``c(Z')``. ``Var`` is the unbiased batch variance, as ``C(Z)``'s ``1/(n-1)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import check
from ._checks import check_embeddings


class VICRegTerms(NamedTuple):
    """The weighted total and its three unweighted terms."""

    loss: torch.Tensor
    invariance: torch.Tensor
    variance: torch.Tensor
    covariance: torch.Tensor


def variance_hinge(embeddings: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """``v(Z)`` of Eqs. 1-2: mean over dimensions of ``max(0, gamma - sqrt(Var + eps))``."""
    return torch.relu(gamma - torch.sqrt(embeddings.var(dim=0) + eps)).mean()


def off_diagonal_covariance(embeddings: torch.Tensor) -> torch.Tensor:
    """``c(Z)`` of Eqs. 3-4: squared off-diagonal entries of the batch covariance, summed, over ``d``."""
    count, dim = embeddings.shape
    centred = embeddings - embeddings.mean(dim=0)
    covariance = centred.T @ centred / (count - 1)
    return (covariance.square().sum() - torch.diagonal(covariance).square().sum()) / dim


def vicreg_loss(view1: torch.Tensor, view2: torch.Tensor, invariance_weight: float = 25.0,
                variance_weight: float = 25.0, covariance_weight: float = 1.0, gamma: float = 1.0,
                eps: float = 1e-4) -> VICRegTerms:
    """Eq. 6 on ``(N, dim)`` embeddings of the two views; returns the total and each unweighted term."""
    for name, value in (("invariance_weight", invariance_weight), ("variance_weight", variance_weight),
                        ("covariance_weight", covariance_weight), ("gamma", gamma)):
        check(isinstance(value, (int, float)) and value >= 0, f"vicreg_loss {name} must be >= 0, got {value!r}")
    check(isinstance(eps, (int, float)) and eps > 0, f"vicreg_loss eps must be > 0, got {eps!r}")
    check_embeddings("vicreg_loss view1", view1, ("vicreg_loss view2", view2))
    check(view1.shape[0] >= 2, f"vicreg_loss needs a batch of at least 2 for a variance, got {view1.shape[0]}")
    invariance = (view1 - view2).square().mean()
    variance = 0.5 * (variance_hinge(view1, gamma, eps) + variance_hinge(view2, gamma, eps))
    covariance = off_diagonal_covariance(view1) + off_diagonal_covariance(view2)
    loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    return VICRegTerms(loss, invariance, variance, covariance)
