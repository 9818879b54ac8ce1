"""A fully connected SCFF layer whose two input halves share one weight (SCFF Appendix A).

A pair ``[a, b]`` meets ``W_1 a + W_2 b`` with ``W_1 = W_2 = W``. After the pair is standardised
as a whole (a no-op when both halves already are, see ``standardize``), the pre-activation is
``W a + W b + 2 bias``. The layer therefore projects every *distinct* view once and adds the
projections of the two halves: half the multiply-adds of a doubled input, forward and backward.

A layer that is fed the previous layer's positive and negative outputs directly (Algorithm 1)
is *unpaired*: its input is one vector and its pre-activation ``W x + bias``.

With a ``QuantConfig`` (``nn/quant.py``) the weight is quantised and the standardised input
rounded to a few bits before the projection: ``W_q q(std(a)) + W_q q(std(b)) + 2 bias``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import EPS, standardize
from ..kernels.goodness import relu_goodness
from ..kernels.views import standardize_rows
from . import closed_form
from .activations import ACTIVATIONS, IN_PLACE, doubled, pair_gain
from .paired_conv import select_rows
from .quant import QuantConfig, effective_weight, input_quantizer, quant_linear


class PairedLinear(nn.Module):
    """One local layer: per-sample input standardisation, tied-weight linear map, activations.

    ``forward`` is the inference path (the positive pair ``[x, x]`` if ``paired``), returning the
    pre-activation; ``plastic`` (ReLU, used for goodness) and ``passed`` (triangle or ReLU, sent
    on and read out) turn a pre-activation into activity.
    """

    def __init__(self, in_features: int, out_features: int, paired: bool, activation: str = "triangle",
                 quant: QuantConfig | None = None):
        super().__init__()
        self.linear = quant_linear(in_features, out_features, quant)
        self.input_quant = input_quantizer(quant)
        self.paired = paired
        self.activation = activation

    def project(self, views: torch.Tensor) -> torch.Tensor:
        """``W x`` (no bias) of each standardised (and, if quantised, rounded) view, ``[M, in] -> [M, out]``."""
        return F.linear(self.input_quant(standardize(views.flatten(1))), effective_weight(self.linear))

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias

    @property
    def quantised(self) -> bool:
        return not isinstance(self.input_quant, nn.Identity) or hasattr(self.linear, "quant_weight")

    def fused_projection(self, views: torch.Tensor, overwrite: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``P = W std(x)`` of every view for a closed-form update (methods section 6), and the standardised
        views the weight gradient multiplies (``overwrite``: standardised in place, the views are no one
        else's). Float layers build no graph; a quantised layer keeps the graph of its quantisers (returned
        inputs ``None``) so that ``accumulate_gradients`` runs their backward."""
        if self.quantised:
            with torch.enable_grad():
                return self.project(views), None
        flat = views.flatten(1)
        if flat.device.type == "cpu":
            inputs = standardize_rows(flat, EPS, out=flat if overwrite and flat.is_contiguous() else None)
        else:
            inputs = standardize(flat)
        return closed_form.project(self.linear, inputs), inputs

    def accumulate_gradients(self, projections: torch.Tensor, inputs: torch.Tensor | None, rows: torch.Tensor) -> None:
        """Set the parameters' gradients from ``rows = dL/dP``: ``dW = rows^T std(x)`` (one product, no graph),
        ``db = sum of rows``; quantised: ``rows`` back through the quantisers' straight-through graph."""
        if inputs is None:
            projections.backward(rows)
            self.linear.bias.grad = rows.sum(0)
        else:
            closed_form.set_gradients(self.linear, inputs, rows)

    def combine(self, projections: torch.Tensor, left: torch.Tensor, right: torch.Tensor | None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-activations of examples made of rows ``left`` (and ``right`` if paired) of ``projections``, with the
        layer's bias or the ``bias`` given (the one the projections were computed beside)."""
        bias = self.linear.bias if bias is None else bias
        if right is None:
            return select_rows(projections, left) + bias
        z = select_rows(projections, left) + select_rows(projections, right)
        return z.add_(2.0 * bias) if not z.requires_grad else z + 2.0 * bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(self.input_quant(standardize(x.flatten(1))))
        return doubled(z) if self.paired else z

    @staticmethod
    def plastic(z: torch.Tensor) -> torch.Tensor:
        """The activity whose goodness is trained: ReLU (Appendix D)."""
        return torch.relu(z)

    @staticmethod
    def goodness(z: torch.Tensor) -> torch.Tensor:
        """``goodness(plastic(z))`` (Eq. 1) as one autograd node that keeps only ``z`` for backward."""
        return relu_goodness(z)

    def passed(self, z: torch.Tensor) -> torch.Tensor:
        """The activity sent to the next layer and to the read-out."""
        return ACTIVATIONS[self.activation](z, gain=pair_gain(self.paired))

    def passed_(self, z: torch.Tensor) -> torch.Tensor:
        """``passed(z)`` computed in place, for a pre-activation no one else reads."""
        return IN_PLACE[self.activation](z)

    @staticmethod
    def tap(passed: torch.Tensor) -> torch.Tensor:
        """The read-out features: the passed-on activity itself."""
        return passed
