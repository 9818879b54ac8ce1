"""The SCFF pair kernel on the GPU (numba-cuda): the arithmetic of ``scff_pair_math.py``, one thread per item.

Two launches: one thread per example (goodness map, loss, coefficients), then one thread per element
of ``R`` (its sum over the examples that use its row). The row -> examples index is built with torch
on the device. Tensors are handed to numba-cuda through ``__cuda_array_interface__`` without a copy;
both libraries issue work on the default stream, in order.

Without a GPU the same kernels run in numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1`` set before
numba is imported): arrays then live on the host and each thread is a Python call, so keep the
shapes small (the tests do).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import cuda

from .cuda_support import launch
from .pair_gradient import PairGradient, summarise
from .scff_pair_math import element_gradient, example_coefficients, example_goodness

_goodness = cuda.jit(device=True)(example_goodness)
_coefficients = cuda.jit(device=True)(example_coefficients)
_element_gradient = cuda.jit(device=True)(element_gradient)


@cuda.jit
def _examples_kernel(P, bias, left, right, unit_scale, num_pos, theta_pos, theta_neg, penalty, G, coef, loss,
                     goodness):  # pragma: no cover - device code
    e = cuda.grid(1)
    if e < left.shape[0]:
        _goodness(e, P, bias, left, right, unit_scale, G)
        _coefficients(e, G, G.shape[1], unit_scale, num_pos, theta_pos, theta_neg, penalty, coef, loss, goodness)


@cuda.jit
def _rows_kernel(P, bias, left, right, starts, entries, coef, R):  # pragma: no cover - device code
    i = cuda.grid(1)
    rows, channels, positions = R.shape
    if i < rows * channels * positions:
        m = i // (channels * positions)
        rest = i - m * channels * positions
        c = rest // positions
        s = rest - c * positions
        R[m, c, s] = _element_gradient(m, c, s, P, bias, left, right, starts, entries, coef)


@cuda.jit
def _steps_kernel(Z, bias, starts, unit_scale, num_pos, theta_pos, theta_neg, penalty, G, coef, loss, goodness):  # pragma: no cover - device code
    """Sequences, one thread per example: its steps' goodness, then ``coef``."""
    e = cuda.grid(1)
    if e < starts.shape[0] - 1:
        count = starts[e + 1] - starts[e]
        for t in range(count):
            row = starts[e] + t
            total = 0.0
            for c in range(Z.shape[1]):
                z = max(Z[row, c] + bias[c], 0.0)
                total += z * z
            G[e, t] = total * unit_scale
        _coefficients(e, G, count, unit_scale, num_pos, theta_pos, theta_neg, penalty, coef, loss, goodness)


@cuda.jit
def _step_rows_kernel(Z, bias, owner, starts, coef, R):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < R.shape[0] * R.shape[1]:
        row = i // R.shape[1]
        c = i - row * R.shape[1]
        e = owner[row]
        R[row, c] = coef[e, row - starts[e]] * max(Z[row, c] + bias[c], 0.0)


def step_gradient_cuda(Z: torch.Tensor, bias: torch.Tensor, starts: torch.Tensor, unit_scale: float, num_pos: int,
                       theta_pos: float, theta_neg: float, penalty: float) -> PairGradient:
    """``scff_pairs.scff_step_gradient`` for tensors on a CUDA device (or on the host under the simulator)."""
    examples = starts.shape[0] - 1
    counts = starts[1:] - starts[:-1]
    options = {"device": Z.device, "dtype": torch.float64}
    longest = int(counts.max())
    G, coef = torch.zeros(examples, longest, **options), torch.zeros(examples, longest, **options)
    loss, goodness = torch.empty(examples, **options), torch.empty(examples, **options)
    owner = torch.repeat_interleave(torch.arange(examples, device=Z.device), counts)
    rows = torch.empty_like(Z)
    launch(_steps_kernel, examples, Z, bias, starts, float(unit_scale), num_pos, float(theta_pos),
           float(theta_neg), float(penalty), G, coef, loss, goodness)
    launch(_step_rows_kernel, rows.numel(), Z, bias, owner, starts, coef, rows)
    return summarise(rows, np.asarray(loss.cpu()), np.asarray(goodness.cpu()), num_pos)


def row_index(left: torch.Tensor, right: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``starts`` [num_rows + 1] and ``entries``: the examples using each row, one entry per use (CSR)."""
    used = right >= 0
    examples = torch.arange(left.shape[0], device=left.device)
    rows = torch.cat([left, right[used]])
    owners = torch.cat([examples, examples[used]])
    order = torch.argsort(rows, stable=True)
    counts = torch.bincount(rows, minlength=num_rows)
    starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return starts.contiguous(), owners[order].contiguous()


def pair_gradient_cuda(P: torch.Tensor, bias: torch.Tensor, left: torch.Tensor, right: torch.Tensor, unit_scale: float,
                       num_pos: int, theta_pos: float, theta_neg: float, penalty: float) -> PairGradient:
    """``scff_pairs.scff_pair_gradient`` for tensors on a CUDA device (or on the host under the simulator)."""
    maps = P.contiguous().view(P.shape[0], P.shape[1], -1)
    examples, positions = left.shape[0], maps.shape[2]
    options = {"device": P.device, "dtype": torch.float64}
    G, coef = torch.empty(examples, positions, **options), torch.empty(examples, positions, **options)
    loss, goodness = torch.empty(examples, **options), torch.empty(examples, **options)
    starts, entries = row_index(left, right, maps.shape[0])
    rows, bias = torch.empty_like(maps), bias.contiguous()
    launch(_examples_kernel, examples, maps, bias, left, right, float(unit_scale), num_pos, float(theta_pos),
           float(theta_neg), float(penalty), G, coef, loss, goodness)
    launch(_rows_kernel, rows.numel(), maps, bias, left, right, starts, entries, coef, rows)
    return summarise(rows.view_as(P), np.asarray(loss.cpu()), np.asarray(goodness.cpu()), num_pos)
