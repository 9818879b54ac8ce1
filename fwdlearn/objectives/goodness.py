"""Goodness of a layer's activity (SCFF section 2.1; Algorithms 1-2).

MLP: ``G = mean over units of y^2`` -> one value per sample.
CNN: ``G[h, w] = mean over channels of y[c, h, w]^2`` -> a map per sample.
RNN: ``G[t] = mean over hidden units of h[t]^2`` -> a value per step.
"""

from __future__ import annotations

import torch


def goodness(y: torch.Tensor, unit_dim: int = 1) -> torch.Tensor:
    """Mean of squared activity over the unit (channel) dimension ``unit_dim``.

    >>> goodness(torch.tensor([[1.0, 3.0]]))
    tensor([5.])
    """
    return y.square().mean(dim=unit_dim)
