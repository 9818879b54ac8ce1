"""SimCLR's NT-Xent loss (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", Eq. 1; restated as InfoNCE in Silva 2022 thesis Sec. 3.4, Eqs. 3.11-3.13).

For a batch of N pairs the 2N views are all anchors. For the positive pair ``(i, j)``:

    l(i, j) = -log( exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau) )      (Eq. 1)

with ``sim`` the cosine similarity; the loss is ``1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]``, so both
views of a pair are anchors (the symmetric form of the paper's Algorithm 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_embeddings, check_temperature


def nt_xent_loss(view1: torch.Tensor, view2: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """NT-Xent over the 2N views of ``view1`` and ``view2`` (each ``(N, dim)``, row i of both = one image).

    ``tau`` defaults to 0.5, SimCLR's CIFAR-10 setting. Every view's negatives are the other 2N-2 views.

    >>> round(nt_xent_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item(), 4)
    0.0
    """
    check_temperature(tau, "nt_xent_loss tau")
    check_embeddings("nt_xent_loss view1", view1, ("nt_xent_loss view2", view2))
    count = view1.shape[0]
    views = F.normalize(torch.cat([view1, view2]), dim=1)
    logits = views @ views.T / tau
    self_pairs = torch.eye(2 * count, dtype=torch.bool, device=views.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))
    positive = torch.cat([torch.arange(count, 2 * count), torch.arange(count)]).to(views.device)
    return F.cross_entropy(logits, positive)
