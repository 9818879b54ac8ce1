"""The SCFF multilayer perceptron as an ordinary ``nn.Module`` (inference only)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import LayerConfig, QuantConfig
from ..nn.paired_linear import PairedLinear


def is_paired(index: int, config: LayerConfig) -> bool:
    """The first layer and every Algorithm-2 layer receive pairs; Algorithm-1 layers single vectors."""
    return index == 0 or config.algorithm == 2


class SCFFNetwork(nn.Module):
    """Stack of ``PairedLinear`` layers. ``forward`` returns every layer's passed-on activity.

    At inference each layer sees the positive pair of its input (``[x, x]``), exactly as the
    positive examples it was trained on.
    """

    def __init__(self, input_dim: int, layers: list[LayerConfig], quant: QuantConfig | None = None):
        super().__init__()
        dims = [input_dim] + [layer.width for layer in layers]
        self.layers = nn.ModuleList(
            PairedLinear(dims[i], dims[i + 1], paired=is_paired(i, cfg), activation=cfg.activation, quant=quant)
            for i, cfg in enumerate(layers))

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
