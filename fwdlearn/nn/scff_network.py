"""The SCFF multilayer perceptron as an ordinary ``nn.Module`` (inference only).

``algorithms[i]`` (1 or 2, SCFF Appendix C) says whether layer ``i`` receives pairs (2, and always the
first layer) or the previous layer's outputs as single vectors (1)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .paired_linear import PairedLinear
from .quant import QuantConfig


def is_paired(index: int, algorithm: int) -> bool:
    """The first layer and every Algorithm-2 layer receive pairs; Algorithm-1 layers single vectors."""
    return index == 0 or algorithm == 2


class SCFFNetwork(nn.Module):
    """Stack of ``PairedLinear`` layers. ``forward`` returns every layer's passed-on activity.

    At inference each layer sees the positive pair of its input (``[x, x]``), exactly as the
    positive examples it was trained on.
    """

    def __init__(self, input_dim: int, widths: list[int], algorithms: list[int], activations: list[str],
                 quant: QuantConfig | None = None):
        super().__init__()
        dims = [input_dim] + list(widths)
        self.layers = nn.ModuleList(
            PairedLinear(dims[i], dims[i + 1], paired=is_paired(i, algorithms[i]), activation=activations[i],
                         quant=quant)
            for i in range(len(widths)))

    @property
    def input_dim(self) -> int:
        return self.layers[0].linear.in_features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        h = x.flatten(1)
        for layer in self.layers:
            h = layer.passed(layer(h))
            outputs.append(h)
        return outputs
