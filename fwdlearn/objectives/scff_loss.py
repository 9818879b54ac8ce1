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
              penalty: float = 0.0, mask_pos: torch.Tensor | None = None,
              mask_neg: torch.Tensor | None = None) -> SCFFLossTerms:
    """Loss of one layer from its positive and negative goodness (``[B]`` or ``[B, ...]`` maps).

    Example::

        g_pos, g_neg = goodness(relu(z_pos)), goodness(relu(z_neg))
        scff_loss(g_pos, g_neg, theta_pos=4.0, theta_neg=6.0, penalty=1e-4).loss.backward()

    ``mask_pos`` / ``mask_neg`` (bool, the maps' shape) mark the entries that exist, e.g. the steps
    of zero-padded sequences of different lengths: the mean over ``m`` and the norm then run over
    those entries only (Eq. 4's ``1/T sum_t`` with each sequence's own ``T``).
    """
    if g_pos.dim() == 0 or g_neg.dim() == 0:
        raise ValueError("goodness must have a batch dimension")
    pos = g_pos.reshape(g_pos.shape[0], -1)
    neg = g_neg.reshape(g_neg.shape[0], -1)
    if mask_pos is None and mask_neg is None:
        loss = F.softplus(theta_pos - pos).mean(1).mean() + F.softplus(neg - theta_neg).mean(1).mean()
        if penalty:
            loss = loss + penalty * pos.norm(dim=1).mean()
        return SCFFLossTerms(loss, pos.mean().detach(), neg.mean().detach())
    w_pos = _weights(mask_pos, pos)
    w_neg = _weights(mask_neg, neg)
    loss = _masked_mean(F.softplus(theta_pos - pos), w_pos).mean() + _masked_mean(F.softplus(neg - theta_neg), w_neg).mean()
    if penalty:
        loss = loss + penalty * (pos * w_pos).norm(dim=1).mean()   # weights are 0/1
    return SCFFLossTerms(loss, _masked_mean(pos, w_pos).mean().detach(), _masked_mean(neg, w_neg).mean().detach())


def _weights(mask: torch.Tensor | None, values: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(values) if mask is None else mask.reshape(values.shape).to(values.dtype)


def _masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over the entries with weight 1."""
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1.0)
