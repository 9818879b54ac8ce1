"""The SCFF layer loss with thresholds and the positive-goodness penalty (Eqs. 1, 3, 4).

    L = E_pos[ mean_m softplus(Theta_pos - G_pos) ] + E_neg[ mean_m softplus(G_neg - Theta_neg) ]
        + lambda * E_pos[ ||G_pos||_F ]

``-log sigma(a)`` is written ``softplus(-a)`` for numerical stability. ``m`` runs over the goodness
map of one sample: nothing for an MLP, positions (h, w) for a CNN, steps t for an RNN. For an
MLP the Frobenius norm of a one-element map is the goodness itself, so the penalty equals the
authors' release ("lambda times the mean positive goodness").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SCFFLossTerms:
    """The loss and the quantities worth plotting (all scalars)."""

    loss: torch.Tensor
    goodness_pos: torch.Tensor
    goodness_neg: torch.Tensor


def scff_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, theta_pos: float, theta_neg: float,
              penalty: float = 0.0) -> SCFFLossTerms:
    """Loss of one layer from its positive and negative goodness (``[B]`` or ``[B, ...]`` maps).

    Example::

        g_pos, g_neg = goodness(relu(z_pos)), goodness(relu(z_neg))
        scff_loss(g_pos, g_neg, theta_pos=4.0, theta_neg=6.0, penalty=1e-4).loss.backward()
    """
    if g_pos.dim() == 0 or g_neg.dim() == 0:
        raise ValueError("goodness must have a batch dimension")
    pos = g_pos.reshape(g_pos.shape[0], -1)
    neg = g_neg.reshape(g_neg.shape[0], -1)
    loss = F.softplus(theta_pos - pos).mean(1).mean() + F.softplus(neg - theta_neg).mean(1).mean()
    if penalty:
        loss = loss + penalty * pos.norm(dim=1).mean()
    return SCFFLossTerms(loss, pos.mean().detach(), neg.mean().detach())
