"""Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning
via Redundancy Reduction", Eqs. 1-2; restated in Silva 2022 thesis Sec. 3.5, Eqs. 3.19-3.20, and Gori
slides Eq. 26):

    L_BT = sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2                       (Eq. 1)
    C_ij = sum_b za_bi zb_bj / ( sqrt(sum_b za_bi^2) sqrt(sum_b zb_bj^2) )                (Eq. 2)

with each embedding dimension first standardised over the batch (mean 0, population std 1, as the
paper's ``BatchNorm1d(affine=False)``), which makes ``C = za^T zb / N`` the cross-correlation of Eq. 2.
"""

from __future__ import annotations

import torch

from ...errors import check
from ._checks import check_embeddings

STANDARDISE_EPS = 1e-5
"""Added to the batch variance before the square root, as ``BatchNorm1d``'s default; keeps a constant
dimension finite (its correlations become 0)."""


def standardise(embeddings: torch.Tensor) -> torch.Tensor:
    """Each column to mean 0 and population standard deviation 1 over the batch (rows)."""
    centred = embeddings - embeddings.mean(dim=0)
    return centred / torch.sqrt(centred.square().mean(dim=0) + STANDARDISE_EPS)


def barlow_twins_loss(view1: torch.Tensor, view2: torch.Tensor, lam: float = 5e-3) -> torch.Tensor:
    """Eq. 1 on the ``(dim, dim)`` cross-correlation of the batch-standardised ``(N, dim)`` embeddings.

    ``lam`` (the paper's lambda, default 5e-3) weighs the off-diagonal redundancy term.
    """
    check(isinstance(lam, (int, float)) and lam >= 0, f"barlow_twins_loss lam must be >= 0, got {lam!r}")
    check_embeddings("barlow_twins_loss view1", view1, ("barlow_twins_loss view2", view2))
    check(view1.shape[0] >= 2, f"barlow_twins_loss needs a batch of at least 2 to standardise, got {view1.shape[0]}")
    correlation = standardise(view1).T @ standardise(view2) / view1.shape[0]
    on_diagonal = torch.diagonal(correlation)
    invariance = (1 - on_diagonal).square().sum()
    redundancy = correlation.square().sum() - on_diagonal.square().sum()
    return invariance + lam * redundancy
