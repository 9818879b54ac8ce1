"""Brevitas' weight fake quantisation and its straight-through gradient, written with inference operators.

The same values and gradient as ``kernels/fake_quant.py`` (which ``tests/test_quant.py`` checks against
Brevitas): narrow-range signed ``b``-bit weights, ``m = 2^(b-1) - 1``, one float scale per tensor or per output
row from the absolute maximum,

    s = max|w| / m,   q = clamp(round(w / s), -m, m) * s,
    dL/dw = g + [w = argmax|w|] * sign(w) / m * sum(g * (round(w / s) - w / s))

(``g = dL/dq``; the second term is the gradient reaching the weight that sets the scale; the first maximum in
row-major order, as the kernel picks it). The update graph of a quantised layer computes with ``q`` in its
forward part, as training does, and steps the float weights it keeps.
"""

from __future__ import annotations

import torch


def _scale(weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    peak = weight.abs().amax(dim=1, keepdim=True) if per_channel else weight.abs().amax()
    return peak / float(2 ** (bits - 1) - 1)


def quantised(weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """The weight the layer computes with."""
    m = float(2 ** (bits - 1) - 1)
    scale = _scale(weight, bits, per_channel)
    return torch.clamp(torch.round(weight / scale), -m, m) * scale


def float_gradient(weight: torch.Tensor, grad: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """``dL/dw`` of the float weight from ``grad = dL/dq`` of the quantised one."""
    m = float(2 ** (bits - 1) - 1)
    x = weight / _scale(weight, bits, per_channel)
    residual = grad * (torch.round(x) - x)
    rows, cols = weight.shape
    if per_channel:
        at = weight.abs().argmax(dim=1, keepdim=True)
        holds_scale = torch.arange(cols)[None, :] == at
        sums = residual.sum(dim=1, keepdim=True)
    else:
        at = weight.abs().flatten().argmax()
        holds_scale = (torch.arange(rows * cols) == at).reshape(rows, cols)
        sums = residual.sum()
    return grad + holds_scale.to(weight.dtype) * torch.sign(weight) * (sums / m)
