"""SimSiam's symmetrised negative-cosine loss (Chen & He 2021, "Exploring Simple Siamese Representation
Learning", Eqs. 1-4; restated in Silva 2022 thesis Sec. 3.5, Eq. 3.16):

    L = 1/2 D(p1, stopgrad(z2)) + 1/2 D(p2, stopgrad(z1)),   D(p, z) = -p/||p|| . z/||z||   (Eqs. 1, 4)
"""

from __future__ import annotations

import torch

from .cosine import negative_cosine


def simsiam_loss(prediction1: torch.Tensor, prediction2: torch.Tensor,
                 projection1: torch.Tensor, projection2: torch.Tensor) -> torch.Tensor:
    """Eq. 4 averaged over the batch: ``pK`` is the predictor's output on view K, ``zK`` the projection of view K."""
    forward = negative_cosine(prediction1, projection2).mean()
    swapped = negative_cosine(prediction2, projection1).mean()
    return 0.5 * forward + 0.5 * swapped
