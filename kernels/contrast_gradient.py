"""What the LAC contrast kernels return (CPU and CUDA alike)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ContrastGradient:
    """``du``: ``dL/du`` (written over ``S_o``'s storage); ``activity``: ``ReLU(S_r)``, the next layer's input;
    ``gamma``, ``beta``: the batch norm's gradients; ``loss``: the contrast (a float)."""

    du: torch.Tensor
    activity: torch.Tensor
    gamma: torch.Tensor
    beta: torch.Tensor
    loss: float
