"""Fused fake quantisation of a weight matrix with Brevitas' gradients, for quantisation-aware local updates.

Brevitas' ``Int8WeightPerTensorFloat`` / ``Int8WeightPerChannelFloat`` (narrow range, ``b`` bits,
``m = 2^(b-1) - 1``) compute, per tensor or per output row,

    s = max|w| / m,   x = w / s,   q = clamp(x + sg(round(x) - x), -m, m) * s

as a chain of element-wise PyTorch operations, each a full pass over the weights (about 30 ms
forward and backward for a 2000 x 784 layer on 2 cores). Here the forward pass is two passes
(the maximum, then the rounding) and the backward pass one, with the same values and the same
gradient, including the part that reaches the weight holding the maximum through ``s``:

    dL/dw = g + [w = argmax|w|] * sign(w) / m * sum(g * (round(x) - x))

(``|x| <= m`` everywhere because ``s`` comes from the maximum, so the clamp passes everything).
``tests/test_quant.py`` checks values and gradients against Brevitas itself.
"""

from __future__ import annotations

import numba
import numpy as np
import torch


@numba.njit(parallel=True, cache=True)
def _row_maxima(w: np.ndarray, per_row: bool) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = w.shape
    peak = np.zeros(rows, dtype=np.float32)
    where = np.zeros(rows, dtype=np.int64)
    for r in numba.prange(rows):
        best, at = np.float32(-1.0), 0
        for c in range(cols):
            a = abs(w[r, c])
            if a > best:
                best, at = a, c
        peak[r], where[r] = best, at
    if not per_row:
        r = int(np.argmax(peak))
        peak[:] = peak[r]
        where[:] = r * cols + where[r]       # flat index of the single maximum
    return peak, where


@numba.njit(parallel=True, cache=True)
def _quantize(w: np.ndarray, scale: np.ndarray, m: float, out: np.ndarray) -> None:
    rows, cols = w.shape
    for r in numba.prange(rows):
        s = scale[r]
        for c in range(cols):
            out[r, c] = min(max(np.rint(w[r, c] / s), -m), m) * s


@numba.njit(parallel=True, cache=True)
def _residual_sums(w: np.ndarray, g: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per row: sum of g * (round(x) - x), the gradient reaching that row's scale."""
    rows, cols = w.shape
    sums = np.zeros(rows, dtype=np.float64)
    for r in numba.prange(rows):
        s, acc = scale[r], 0.0
        for c in range(cols):
            x = w[r, c] / s
            acc += g[r, c] * (np.rint(x) - x)
        sums[r] = acc
    return sums


class FakeQuantWeight(torch.autograd.Function):
    """``q = FakeQuantWeight.apply(w, bits, per_channel)``: Brevitas' weight fake quantisation, fused."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
        w = weight.detach().contiguous().numpy()
        m = float(2 ** (bits - 1) - 1)
        peak, where = _row_maxima(w, per_channel)
        scale = (peak / np.float32(m)).astype(np.float32)
        out = np.empty_like(w)
        _quantize(w, scale, m, out)
        ctx.save_for_backward(weight)
        ctx.scale, ctx.where, ctx.m, ctx.per_channel = scale, where, m, per_channel
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        w, g = weight.detach().contiguous().numpy(), grad.contiguous().numpy()
        sums = _residual_sums(w, g, ctx.scale)
        out = grad.clone()
        flat = out.view(-1)
        cols = w.shape[1]
        if ctx.per_channel:
            index = torch.arange(w.shape[0]) * cols + torch.from_numpy(ctx.where)
            peaks = weight.detach().view(-1)[index]
            flat[index] += torch.sign(peaks) / ctx.m * torch.from_numpy(sums).to(out.dtype)
        else:
            index = int(ctx.where[0])
            flat[index] += torch.sign(weight.detach().view(-1)[index]) / ctx.m * float(sums.sum())
        return out, None, None
