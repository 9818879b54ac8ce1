"""Activations passed between local layers."""

from __future__ import annotations

import torch


def triangle(z: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """"Triangle" (Coates et al.; SCFF Methods): subtract the across-channel mean, then ReLU."""
    return torch.relu(z - z.mean(dim=channel_dim, keepdim=True))


ACTIVATIONS = {"triangle": triangle, "relu": lambda z, channel_dim=1: torch.relu(z)}


def triangle_(z: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """``triangle`` in place (for a pre-activation no one else reads): no temporary the size of ``z``."""
    return z.sub_(z.mean(dim=channel_dim, keepdim=True)).relu_()


IN_PLACE = {"triangle": triangle_, "relu": lambda z, channel_dim=1: z.relu_()}
