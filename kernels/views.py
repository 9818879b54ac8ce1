"""The inputs of a local step, in one pass each (Numba, CPU): translated image views and per-sample standardisation.

``translate_into``: the shift of ``data.transforms.random_translate`` (zeros shifted in) for given offsets,
written straight into the rows of a preallocated batch of views; PyTorch's form pads, gathers twice and
concatenates (five passes and four temporaries per half of an SCFF pair). ``standardize_rows``: mean 0,
population deviation 1 per row (``data.transforms.standardize``) with float64 accumulators, for inputs no
gradient flows through (the fused backend's layer inputs); PyTorch's form is six element-wise passes.
Both equal the PyTorch forms (tested: translation exactly, standardisation to float rounding).
"""

from __future__ import annotations

import math

import numba
import torch


@numba.njit(parallel=True, cache=True)
def _translate(x, offsets, max_shift, out, start):  # pragma: no cover - compiled
    n, channels, height, width = x.shape
    for i in numba.prange(n):
        dy, dx = offsets[0, i] - max_shift, offsets[1, i] - max_shift
        for c in range(channels):
            for y in range(height):
                sy = y + dy
                row = out[start + i, c, y]
                if sy < 0 or sy >= height:
                    row[:] = 0.0
                    continue
                source = x[i, c, sy]
                for col in range(width):
                    sx = col + dx
                    row[col] = source[sx] if 0 <= sx < width else 0.0


def translate_into(x: torch.Tensor, offsets: torch.Tensor, max_shift: int, out: torch.Tensor, start: int) -> None:
    """``out[start:start + N] = x`` shifted by ``offsets - max_shift`` (``offsets`` [2, N]: rows, columns; the draws
    of ``random_translate``), zeros shifted in. CPU, contiguous ``[N, C, H, W]``."""
    _translate(x.contiguous().numpy(), offsets.numpy(), max_shift, out.numpy(), start)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _standardize(x, eps, out):  # pragma: no cover - compiled
    rows, width = x.shape
    for i in numba.prange(rows):
        total = 0.0
        for j in range(width):
            total += x[i, j]
        mean = total / width
        square = 0.0
        for j in range(width):
            d = x[i, j] - mean
            square += d * d
        scale = 1.0 / math.sqrt(square / width + eps)
        for j in range(width):
            out[i, j] = (x[i, j] - mean) * scale


def standardize_rows(x: torch.Tensor, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """Each row of ``x`` [N, D] standardised (mean 0, population deviation 1, ``eps`` inside the root); no graph.
    ``out`` may be ``x`` itself (each row is read in full before it is written)."""
    x = x.detach().contiguous()
    out = torch.empty_like(x) if out is None else out
    _standardize(x.numpy(), eps, out.detach().numpy())
    return out
