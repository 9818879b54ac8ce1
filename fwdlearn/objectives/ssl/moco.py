"""MoCo's InfoNCE of queries against positive keys and a queue of negatives (He et al. 2020, "Momentum
Contrast for Unsupervised Visual Representation Learning", Eq. 1; MoCo v2, Chen et al. 2020; restated in
Silva 2022 thesis Sec. 3.4, Eq. 3.12 with cosine similarity Eq. 3.13):

    L_q = -log( exp(q . k_+ / tau) / (exp(q . k_+ / tau) + sum_{k- in queue} exp(q . k_- / tau)) )

averaged over the batch. Keys come from the momentum encoder and the queue from past batches: neither
receives gradient (both are detached here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_embeddings, check_memory, check_temperature


def infonce_loss(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """InfoNCE of ``query`` row i against its positive ``key`` row i and every row of ``queue``.

    ``query``/``key`` are ``(N, dim)``, ``queue`` is ``(K, dim)``; all are l2-normalised here. ``tau``
    defaults to 0.2, MoCo v2's temperature.
    """
    check_temperature(tau, "infonce_loss tau")
    check_embeddings("infonce_loss query", query, ("infonce_loss key", key))
    check_memory(queue, "infonce_loss queue", query.shape[1])
    query = F.normalize(query, dim=1)
    key = F.normalize(key.detach(), dim=1)
    queue = F.normalize(queue.detach(), dim=1)
    positive = (query * key).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, query @ queue.T], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(query.shape[0], dtype=torch.long, device=query.device))
