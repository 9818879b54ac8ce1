"""A fully connected Forward-Forward layer (Hinton 2022, arXiv:2212.13345, sections 2 and 2.1).

The layer length-normalises its input (section 2.1; to length ``sqrt(in_features)``, see ``prepare``), applies ``relu(W x + b)`` and is trained on
its own goodness ``sum_j y_j^2`` (section 2, ``fwdlearn.objectives.ff``). Only the orientation of
the previous layer's activity reaches it, so it cannot read the previous layer's goodness off the
length of its input and must build new features to tell positive from negative data.

In Hinton's MNIST experiments the normalisation applies to hidden vectors "before using [them] as
input to the next layer": the first layer sees the raw, label-overlaid image. ``normalize_input``
therefore defaults to ``True`` (every hidden layer) and a network builder may pass ``False`` for
layer 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..objectives.ff import ff_goodness, length_normalize
from . import closed_form


class FFLinear(nn.Module):
    """One local FF layer: (normalised) input, linear map, ReLU.

    ``forward`` returns the activity ``y`` that is both trained (``goodness``), sent on
    (``passed``) and read out (``tap``); the next layer does its own normalisation.
    """

    def __init__(self, in_features: int, out_features: int, normalize_input: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.normalize_input = normalize_input

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, ...] -> [N, in]``: flatten, then, if ``normalize_input``, scale each row to length ``sqrt(in)``.

        Section 2.1 fixes the direction, not the length; length ``sqrt(in)`` (root mean square 1 per
        input, as in loeweX/Forward-Forward) keeps every layer's activity of order one whatever its
        width, so that the threshold ``theta = width`` suits every layer of a sum-of-squares goodness.
        """
        flat = x.flatten(1)
        return length_normalize(flat) * flat.shape[1] ** 0.5 if self.normalize_input else flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The activity ``relu(W prepare(x) + b)``, ``[N, out]``."""
        return torch.relu(self.linear(self.prepare(x)))

    def fused_projection(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``P = W prepare(x)`` without a graph (closed-form update, methods section 6), and ``prepare(x)``."""
        inputs = self.prepare(x.detach())
        return closed_form.project(self.linear, inputs), inputs

    def accumulate_gradients(self, projections: torch.Tensor, inputs: torch.Tensor, rows: torch.Tensor) -> None:
        """``dW = rows^T prepare(x)``, ``db = sum of rows`` from ``rows = dL/dP``."""
        closed_form.set_gradients(self.linear, inputs, rows)

    @staticmethod
    def goodness(y: torch.Tensor) -> torch.Tensor:
        """Sum of squared activities per sample (section 2), ``[N, out] -> [N]``."""
        return ff_goodness(y)

    @staticmethod
    def passed(y: torch.Tensor) -> torch.Tensor:
        """The activity sent to the next layer: ``y`` itself (that layer normalises it)."""
        return y

    @staticmethod
    def tap(y: torch.Tensor) -> torch.Tensor:
        """The activity read out (linear probe, goodness accumulation): ``y`` itself."""
        return y

    def extra_repr(self) -> str:
        return f"normalize_input={self.normalize_input}"
