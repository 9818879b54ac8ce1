"""SCFF's update between the two products, in one kernel: pairs, goodness, loss, and the rows ``R`` of ``dL/dP``.

A local SCFF step needs two products per layer, the projection ``P = W x`` of every distinct view
and the weight gradient from ``R = dL/dP`` (methods section 6); everything between them is
element-wise and is done here in one pass over ``P`` per phase, with no autograd graph:

1. per example (parallel): combine its rows of ``P`` with the bias into ``z``, the goodness map
   ``mean_c relu(z)^2`` (Eq. 1), the loss (Eqs. 3-4, with the penalty) and the coefficient that
   turns ``relu(z)`` into ``dL/dz``;
2. per projection row (parallel): ``R[m]``, the sum of ``dL/dz`` over every use of row ``m``
   (``kernels/scff_pair_math.py`` states the formulas).

``z`` is recomputed in phase 2 rather than stored: the kernel allocates only ``R`` (the size of
``P``) and a few numbers per example. The CPU kernel is Numba (``parallel=True``); tensors on a
CUDA device go to ``scff_pairs_cuda`` (numba-cuda), which runs the same arithmetic.

Example::

    P = F.linear(standardize(views), W)                       # [M, C] or [M, C, H, W]
    out = scff_pair_gradient(P, b, pairs.pos_left, pairs.pos_right, pairs.neg_left, pairs.neg_right,
                             theta_pos=4.0, theta_neg=6.0, penalty=1e-4)
    W.grad = out.rows.t() @ standardize(views); b.grad = out.rows.sum(0)
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .cuda_support import cuda_kernels
from .pair_gradient import PairGradient, summarise
from .scff_pair_math import example_coefficients

_coefficients = numba.njit(inline="always")(example_coefficients)


@numba.njit(cache=True)
def _row_index(left, right, rows):  # pragma: no cover - compiled
    """``starts`` [rows + 1], ``entries`` and ``uses``: the examples using each row and how often (2: a positive
    ``[x_k, x_k]``, whose two halves are row ``k``), by a counting sort."""
    starts = np.zeros(rows + 1, np.int64)
    for e in range(left.shape[0]):
        starts[left[e] + 1] += 1
        if right[e] >= 0 and right[e] != left[e]:
            starts[right[e] + 1] += 1
    for m in range(rows):
        starts[m + 1] += starts[m]
    fill = starts[:-1].copy()
    entries = np.empty(starts[rows], np.int64)
    uses = np.empty(starts[rows], np.float64)
    for e in range(left.shape[0]):
        a, b = left[e], right[e]
        entries[fill[a]] = e
        uses[fill[a]] = 2.0 if a == b else 1.0
        fill[a] += 1
        if b >= 0 and b != a:
            entries[fill[b]] = e
            uses[fill[b]] = 1.0
            fill[b] += 1
    return starts, entries, uses


@numba.njit(parallel=True, cache=True, fastmath=True)
def _dense_cpu(P, bias, left, right, unit_scale, num_pos, theta_pos, theta_neg, penalty, R, loss, goodness):  # pragma: no cover - compiled
    """Dense layers (``P`` [M, H]): ``scff_pair_math``'s arithmetic with units innermost, so the loops vectorise."""
    examples = left.shape[0]
    rows, units = P.shape
    G = np.empty((examples, 1))
    coef = np.empty((examples, 1))
    for e in numba.prange(examples):
        a, b = left[e], right[e]
        total = 0.0
        if b >= 0:
            for c in range(units):
                z = max(P[a, c] + P[b, c] + 2.0 * bias[c], 0.0)
                total += z * z
        else:
            for c in range(units):
                z = max(P[a, c] + bias[c], 0.0)
                total += z * z
        G[e, 0] = total * unit_scale
        _coefficients(e, G, 1, unit_scale, num_pos, theta_pos, theta_neg, penalty, coef, loss, goodness)
    starts, entries, uses = _row_index(left, right, rows)
    for m in numba.prange(rows):
        out = R[m]
        out[:] = 0.0
        for j in range(starts[m], starts[m + 1]):
            e = entries[j]
            a, b, k = left[e], right[e], coef[e, 0] * uses[j]
            if b >= 0:
                for c in range(units):
                    out[c] += k * max(P[a, c] + P[b, c] + 2.0 * bias[c], 0.0)
            else:
                for c in range(units):
                    out[c] += k * max(P[a, c] + bias[c], 0.0)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _maps_cpu(P, bias, left, right, unit_scale, num_pos, theta_pos, theta_neg, penalty, R, loss, goodness):  # pragma: no cover - compiled
    """Goodness maps (``P`` [M, C, S]): goodness per position over channels; each channel's row of positions is a
    contiguous vector loop."""
    examples = left.shape[0]
    rows, channels, positions = P.shape
    G = np.empty((examples, positions), P.dtype)          # P's precision: float32 maps stay float32 vector loops
    coef = np.empty((examples, positions), P.dtype)
    for e in numba.prange(examples):
        a, b = left[e], right[e]
        g = G[e]
        g[:] = 0.0
        for c in range(channels):
            pa = P[a, c]
            if b >= 0:
                pb, shift = P[b, c], 2.0 * bias[c]
                for s in range(positions):
                    z = max(pa[s] + pb[s] + shift, 0.0)
                    g[s] += z * z
            else:
                shift = bias[c]
                for s in range(positions):
                    z = max(pa[s] + shift, 0.0)
                    g[s] += z * z
        for s in range(positions):
            g[s] *= unit_scale
        _coefficients(e, G, positions, unit_scale, num_pos, theta_pos, theta_neg, penalty, coef, loss, goodness)
    starts, entries, uses = _row_index(left, right, rows)
    for m in numba.prange(rows):
        R[m] = 0.0
        for j in range(starts[m], starts[m + 1]):
            e, weight = entries[j], P.dtype.type(uses[j])
            a, b, k = left[e], right[e], coef[e]
            for c in range(channels):
                out, pa = R[m, c], P[a, c]
                if b >= 0:
                    pb, shift = P[b, c], 2.0 * bias[c]
                    for s in range(positions):
                        out[s] += weight * k[s] * max(pa[s] + pb[s] + shift, 0.0)
                else:
                    shift = bias[c]
                    for s in range(positions):
                        out[s] += weight * k[s] * max(pa[s] + shift, 0.0)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _steps_cpu(Z, bias, starts, unit_scale, num_pos, theta_pos, theta_neg, penalty, R, loss, goodness):  # pragma: no cover - compiled
    """Sequences: the rows ``starts[e]:starts[e + 1]`` of ``Z`` are example ``e``'s steps, each ``z = Z[row] + b``."""
    examples = starts.shape[0] - 1
    units = Z.shape[1]
    longest = 0
    for e in range(examples):
        longest = max(longest, starts[e + 1] - starts[e])
    G = np.zeros((examples, longest))
    coef = np.zeros((examples, longest))
    for e in numba.prange(examples):
        count = starts[e + 1] - starts[e]
        for t in range(count):
            row = starts[e] + t
            total = 0.0
            for c in range(units):
                z = max(Z[row, c] + bias[c], 0.0)
                total += z * z
            G[e, t] = total * unit_scale
        _coefficients(e, G, count, unit_scale, num_pos, theta_pos, theta_neg, penalty, coef, loss, goodness)
        for t in range(count):
            row, k = starts[e] + t, coef[e, t]
            for c in range(units):
                R[row, c] = k * max(Z[row, c] + bias[c], 0.0)


def scff_step_gradient(Z: torch.Tensor, bias: torch.Tensor, counts: torch.Tensor, num_pos: int, theta_pos: float,
                       theta_neg: float, penalty: float = 0.0) -> PairGradient:
    """Loss and ``dL/dZ`` of SCFF's recurrent layer (Eq. 4) from the pre-activations without bias of every real step.

    ``Z`` [rows, H]: the steps of example 0 (``counts[0]`` rows), then example 1's ...; the first ``num_pos``
    examples are positives. Per example: the mean over its own steps of the thresholded terms, plus
    ``lambda ||G_pos||_2`` over its steps; averaged over each group's examples. Equal to autograd through
    ``relu_goodness`` and the masked ``scff_loss`` (tested). No graph; ``rows`` has ``Z``'s shape.
    """
    Z, bias = Z.detach().contiguous(), bias.detach().contiguous()
    if Z.dim() != 2 or bias.shape != (Z.shape[1],) or Z.dtype != bias.dtype:
        raise ValueError(f"Z must be [rows, H] with a bias [H] of its dtype, got {list(Z.shape)}, {list(bias.shape)}")
    counts = counts.long()
    if int(counts.sum()) != Z.shape[0] or bool((counts < 1).any()):
        raise ValueError(f"counts must be positive and sum to the {Z.shape[0]} rows of Z")
    starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    unit_scale = 1.0 / Z.shape[1]
    if Z.is_cuda:
        step_gradient_cuda = cuda_kernels("scff_pairs_cuda").step_gradient_cuda
        return step_gradient_cuda(Z, bias, starts.to(Z.device), unit_scale, num_pos, theta_pos, theta_neg, penalty)
    rows = torch.empty_like(Z)
    loss, goodness = np.empty(counts.shape[0]), np.empty(counts.shape[0])
    _steps_cpu(Z.numpy(), bias.numpy(), starts.cpu().numpy(), unit_scale, num_pos, float(theta_pos), float(theta_neg),
               float(penalty), rows.numpy(), loss, goodness)
    return summarise(rows, loss, goodness, num_pos)


def example_rows(pos_left: torch.Tensor, pos_right: torch.Tensor | None, neg_left: torch.Tensor,
                 neg_right: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``left``, ``right`` of every example (positives first), int64 on the rows' device; ``right = -1``: single view."""
    def right_of(left, right):
        return torch.full_like(left, -1) if right is None else right
    left = torch.cat([pos_left, neg_left]).long()
    right = torch.cat([right_of(pos_left, pos_right), right_of(neg_left, neg_right)]).long()
    return left.contiguous(), right.contiguous()


def _host_example_rows(pos_left, pos_right, neg_left, neg_right) -> tuple[np.ndarray, np.ndarray]:
    """``example_rows`` for CPU tensors, assembled in NumPy (a few microseconds instead of torch's dispatch)."""
    def right_of(left, right):
        return np.full(left.shape[0], -1, np.int64) if right is None else right.numpy()
    left = np.concatenate([pos_left.numpy(), neg_left.numpy()]).astype(np.int64, copy=False)
    right = np.concatenate([right_of(pos_left, pos_right), right_of(neg_left, neg_right)]).astype(np.int64, copy=False)
    return left, right


def _check(P: torch.Tensor, bias: torch.Tensor, lowest: int, highest: int) -> None:
    if P.dim() < 2 or P.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"projections must be float32/float64 [M, C, ...], got {P.dtype} {list(P.shape)}")
    if bias.shape != (P.shape[1],) or bias.dtype != P.dtype or bias.device != P.device:
        raise ValueError(f"bias must be {P.dtype} [{P.shape[1]}] on {P.device}, got {bias.dtype} {list(bias.shape)} "
                         f"on {bias.device}")
    if lowest < 0 or highest >= P.shape[0]:
        raise ValueError(f"example rows must index the {P.shape[0]} projections")


def scff_pair_gradient(P: torch.Tensor, bias: torch.Tensor, pos_left: torch.Tensor, pos_right: torch.Tensor | None,
                       neg_left: torch.Tensor, neg_right: torch.Tensor | None, theta_pos: float, theta_neg: float,
                       penalty: float = 0.0, goodness: str = "mean") -> PairGradient:
    """Loss and ``dL/dP`` of one SCFF layer from its projections ``P`` (no graph; see the module docstring).

    The rows follow ``objectives.scff.PairBatch``: positive ``e`` is ``[P[pos_left[e]], P[pos_right[e]]]``
    (``None``: a single view), negatives likewise. ``goodness``: ``mean`` of the squared ReLU over units
    (SCFF, Eq. 1) or their ``sum`` (Forward-Forward, Hinton section 2). Equal to autograd through ``combine``,
    ``relu_goodness`` and ``scff_loss`` (or ``ff_loss``), tested to 1e-10 in float64.
    """
    if goodness not in ("mean", "sum"):
        raise ValueError(f"goodness must be 'mean' or 'sum', got {goodness!r}")
    unit_scale = 1.0 / P.shape[1] if goodness == "mean" else 1.0
    P, bias = P.detach(), bias.detach()
    num_pos = int(pos_left.shape[0])
    if P.is_cuda:
        left, right = example_rows(pos_left, pos_right, neg_left, neg_right)
        _check(P, bias, int(left.min()), int(torch.maximum(left, right).max()))
        pair_gradient_cuda = cuda_kernels("scff_pairs_cuda").pair_gradient_cuda
        return pair_gradient_cuda(P, bias, left, right, unit_scale, num_pos, theta_pos, theta_neg, penalty)
    left, right = _host_example_rows(pos_left, pos_right, neg_left, neg_right)
    _check(P, bias, int(left.min()), int(max(left.max(), right.max())))
    P = P.contiguous()
    dense = P.dim() == 2
    maps = P if dense else P.view(P.shape[0], P.shape[1], -1)
    rows = torch.empty_like(maps)
    loss, goodness = np.empty(left.shape[0]), np.empty(left.shape[0])
    kernel = _dense_cpu if dense else _maps_cpu
    kernel(maps.numpy(), bias.contiguous().numpy(), left, right, unit_scale, num_pos, float(theta_pos),
           float(theta_neg), float(penalty), rows.numpy(), loss, goodness)
    return summarise(rows.view_as(P), loss, goodness, num_pos)
