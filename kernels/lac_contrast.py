"""LAC's hidden contrast and batch norm in closed form, one kernel between two products (LAC Eqs. 1, 4-5, 8).

A fully connected LAC layer's second-pass reaction is ``S_r = BN(u)`` with ``u = W a + b`` (batch statistics,
as in training), and its contrast ``L = sum (sg(S_o) - S_r)^2`` over units and samples (Eq. 1). With
``x = (u - mu) / sigma`` and ``g = dL/dS_r = -2 (S_o - S_r)``, batch norm's backward is closed form:

    dL/dgamma = sum_b g x,   dL/dbeta = sum_b g,
    dL/du = gamma / sigma * (g - mean_b g - x mean_b(g x))

so the update is ``u`` (one product), this kernel (batch statistics, ``S_r``, the contrast, ``dL/du`` and the
next layer's input ``ReLU(S_r)``: four passes over ``u``, no graph), then ``dW = (dL/du)^T a`` (one product).
``dL/db`` is exactly 0: batch norm removes any constant added to ``u`` (autograd returns rounding noise).
The CPU kernel splits the batch into one block of rows per thread and sums per column in float64;
``lac_contrast_cuda.py`` runs one thread per unit on a GPU (and in numba-cuda's simulator).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .contrast_gradient import ContrastGradient
from .cuda_support import cuda_kernels


@numba.njit(parallel=True, cache=True)
def _contrast_cpu(u, s_o, gamma, beta, eps, blocks, activity, grads):  # pragma: no cover - compiled
    rows, units = u.shape
    step = (rows + blocks - 1) // blocks
    part = np.zeros((blocks, 4, units))
    loss = np.zeros(blocks)
    for k in numba.prange(blocks):
        acc = part[k, 0]
        for b in range(k * step, min(rows, (k + 1) * step)):
            for c in range(units):
                acc[c] += u[b, c]
    mean = part[:, 0].sum(axis=0) / rows
    for k in numba.prange(blocks):
        acc = part[k, 1]
        for b in range(k * step, min(rows, (k + 1) * step)):
            for c in range(units):
                d = u[b, c] - mean[c]
                acc[c] += d * d
    inv = 1.0 / np.sqrt(part[:, 1].sum(axis=0) / rows + eps)
    for k in numba.prange(blocks):
        sum_g, sum_gx = part[k, 2], part[k, 3]
        total = 0.0
        for b in range(k * step, min(rows, (k + 1) * step)):
            for c in range(units):
                x = (u[b, c] - mean[c]) * inv[c]
                s_r = gamma[c] * x + beta[c]
                d = s_o[b, c] - s_r
                total += d * d
                sum_g[c] += -2.0 * d
                sum_gx[c] += -2.0 * d * x
                activity[b, c] = max(s_r, 0.0)
        loss[k] = total
    mean_g = part[:, 2].sum(axis=0) / rows
    mean_gx = part[:, 3].sum(axis=0) / rows
    for k in numba.prange(blocks):
        for b in range(k * step, min(rows, (k + 1) * step)):
            for c in range(units):
                x = (u[b, c] - mean[c]) * inv[c]
                g = -2.0 * (s_o[b, c] - (gamma[c] * x + beta[c]))
                s_o[b, c] = gamma[c] * inv[c] * (g - mean_g[c] - x * mean_gx[c])
    for c in range(units):
        grads[0, c] = mean_gx[c] * rows
        grads[1, c] = mean_g[c] * rows
    return loss.sum()


def lac_contrast(u: torch.Tensor, s_o: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                 eps: float) -> ContrastGradient:
    """The contrast of one LAC layer and its gradients from ``u = W a + b`` [B, H] (no graph). ``s_o`` (the layer's
    first-pass reaction, detached) is overwritten with ``dL/du``."""
    u, gamma, beta = u.detach().contiguous(), gamma.detach().contiguous(), beta.detach().contiguous()
    if u.dim() != 2 or s_o.shape != u.shape or not s_o.is_contiguous() or s_o.dtype != u.dtype:
        raise ValueError(f"u and S_o must be contiguous [B, H] of one dtype, got {list(u.shape)} {list(s_o.shape)}")
    if u.is_cuda:
        return cuda_kernels("lac_contrast_cuda").lac_contrast_cuda(u, s_o, gamma, beta, eps)
    activity = torch.empty_like(u)
    grads = np.empty((2, u.shape[1]), dtype=np.float64)
    blocks = max(1, min(numba.get_num_threads(), u.shape[0]))
    loss = _contrast_cpu(u.numpy(), s_o.detach().numpy(), gamma.numpy(), beta.numpy(), float(eps), blocks,
                         activity.numpy(), grads)
    as_tensor = torch.from_numpy(grads).to(u.dtype)
    return ContrastGradient(s_o, activity, as_tensor[0], as_tensor[1], float(loss))

