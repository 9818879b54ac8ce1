"""Negative cosine similarity with a stop-gradient on the target, the distance BYOL and SimSiam share
(SimSiam, Chen & He 2021, Eq. 1 with the stop-gradient of Eq. 3; Silva 2022 thesis Eq. 3.16)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_embeddings


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``D(p, z) = -p/||p|| . stopgrad(z)/||z||`` per row: a ``(N,)`` tensor; no gradient reaches ``target``.

    >>> negative_cosine(torch.tensor([[2.0, 0.0]]), torch.tensor([[3.0, 0.0]]))
    tensor([-1.])
    """
    check_embeddings("negative_cosine prediction", prediction, ("negative_cosine target", target))
    return -F.cosine_similarity(prediction, target.detach(), dim=1)
