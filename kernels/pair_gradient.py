"""What the SCFF kernels return (CPU and CUDA alike): ``R = dL/dP`` and the layer's statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PairGradient:
    """``rows``: ``dL/dP`` in ``P``'s shape; the loss and the mean positive and negative goodness (floats)."""

    rows: torch.Tensor
    loss: float
    goodness_pos: float
    goodness_neg: float

    def bias_gradient(self) -> torch.Tensor:
        """``dL/db[c] = sum over rows and positions of R[m, c, ...]`` (section 6)."""
        dims = [0] + list(range(2, self.rows.dim()))
        return self.rows.sum(dim=dims)


def summarise(rows: torch.Tensor, loss: np.ndarray, goodness: np.ndarray, num_pos: int) -> PairGradient:
    """The ``PairGradient`` of per-example losses (already scaled) and mean goodness values."""
    return PairGradient(rows, float(loss.sum()), float(goodness[:num_pos].mean()), float(goodness[num_pos:].mean()))
