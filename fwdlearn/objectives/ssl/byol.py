"""BYOL's regression loss (Grill et al. 2020, "Bootstrap Your Own Latent", Sec. 3.1: Eq. 2 and the
symmetrised total ``L^BYOL = L + L~`` that follows it; restated in Silva 2022 thesis Sec. 3.5, Eq. 3.15):

    L = || q(z) / ||q(z)|| - z' / ||z'|| ||^2 = 2 - 2 cos(q(z), z')                      (Eq. 2)

``q(z)`` is the online prediction of one view, ``z'`` the target projection of the other view, with a
stop-gradient on ``z'`` (the target network is moved by the momentum update only). ``L~`` swaps the views.
"""

from __future__ import annotations

import torch

from .cosine import negative_cosine


def byol_loss(prediction1: torch.Tensor, prediction2: torch.Tensor,
              target1: torch.Tensor, target2: torch.Tensor) -> torch.Tensor:
    """``L + L~``: ``mean(2 - 2cos(prediction1, target2)) + mean(2 - 2cos(prediction2, target1))``.

    ``predictionK`` is the online predictor's output on view K, ``targetK`` the target projection of view K.
    """
    forward = 2 + 2 * negative_cosine(prediction1, target2)
    swapped = 2 + 2 * negative_cosine(prediction2, target1)
    return forward.mean() + swapped.mean()
