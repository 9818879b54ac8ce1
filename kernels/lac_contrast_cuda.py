"""LAC's hidden contrast and batch norm in closed form on the GPU (numba-cuda): one thread per unit.

The arithmetic of ``lac_contrast.py``: each thread walks its unit's column of the batch four times (mean,
variance, the contrast and the sums its backward needs, then ``dL/du``); neighbouring threads read
neighbouring units of a row, so every pass reads ``u`` in coalesced rows. Without a GPU it runs in
numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1`` before numba is imported).
"""

from __future__ import annotations

import math

import torch
from numba import cuda

from .contrast_gradient import ContrastGradient
from .cuda_support import launch

@cuda.jit
def _contrast_kernel(u, s_o, gamma, beta, eps, activity, grads, losses):  # pragma: no cover - device code
    c = cuda.grid(1)
    rows, units = u.shape
    if c >= units:
        return
    total = 0.0
    for b in range(rows):
        total += u[b, c]
    mean = total / rows
    square = 0.0
    for b in range(rows):
        d = u[b, c] - mean
        square += d * d
    inv = 1.0 / math.sqrt(square / rows + eps)
    sum_g, sum_gx, loss = 0.0, 0.0, 0.0
    for b in range(rows):
        x = (u[b, c] - mean) * inv
        s_r = gamma[c] * x + beta[c]
        d = s_o[b, c] - s_r
        loss += d * d
        sum_g += -2.0 * d
        sum_gx += -2.0 * d * x
        activity[b, c] = max(s_r, 0.0)
    mean_g, mean_gx = sum_g / rows, sum_gx / rows
    for b in range(rows):
        x = (u[b, c] - mean) * inv
        g = -2.0 * (s_o[b, c] - (gamma[c] * x + beta[c]))
        s_o[b, c] = gamma[c] * inv * (g - mean_g - x * mean_gx)
    grads[0, c] = sum_gx
    grads[1, c] = sum_g
    losses[c] = loss


def lac_contrast_cuda(u: torch.Tensor, s_o: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                      eps: float) -> ContrastGradient:
    """``lac_contrast.lac_contrast`` for tensors on a CUDA device (or on the host under the simulator)."""
    activity = torch.empty_like(u)
    grads = torch.empty(2, u.shape[1], dtype=torch.float64, device=u.device)
    losses = torch.empty(u.shape[1], dtype=torch.float64, device=u.device)
    launch(_contrast_kernel, u.shape[1], u, s_o, gamma, beta, float(eps), activity, grads, losses)
    grads = grads.to(u.dtype)
    return ContrastGradient(s_o, activity, grads[0], grads[1], float(losses.sum()))
