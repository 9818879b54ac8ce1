"""The two products of a closed-form update of a dense layer (methods section 6), shared by the local layers.

``project``: ``P = X W^T`` of inputs no gradient flows through, without an autograd graph. ``set_gradients``:
``dW = R^T X`` and ``db = sum_m R_m`` from ``R = dL/dP`` (the loss's derivative with respect to each row's
projection, computed in closed form by ``kernels/scff_pairs.py``), written into ``.grad`` for the layer's own
optimiser. Counted by ``fwdlearn bench`` as one forward and one weight-gradient product (``hardware/update_ops``).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def project(linear: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """``inputs @ W^T`` (no bias), no graph."""
    return torch.mm(inputs, linear.weight.detach().t())


def set_gradients(linear: nn.Linear, inputs: torch.Tensor, rows: torch.Tensor) -> None:
    """``W.grad = rows^T inputs``, ``b.grad = sum of rows``."""
    linear.weight.grad = torch.mm(rows.t(), inputs)
    linear.bias.grad = rows.sum(0)
