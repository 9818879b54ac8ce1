"""The element-wise part of an SCFF update in closed form (methods section 6), shared by the CPU and CUDA kernels.

Plain Python on purpose: ``scff_pairs_cuda.py`` compiles them with ``numba.cuda.jit(device=True)`` for
the GPU (and numba-cuda's simulator), one thread per example or element; ``scff_pairs.py`` compiles
``example_coefficients`` (the loss and its derivative, identical on both) with ``numba.njit`` and writes
the CPU's loops over ``P`` itself, contiguous rows innermost so that they vectorise (a positive
``[x_k, x_k]`` visits row ``k`` once, with weight 2).

Notation. ``P[m, c, s]`` is the projection ``W x_m`` (no bias) of distinct view ``m``: unit or
channel ``c``, position ``s`` (``S = 1`` for a dense layer, ``H' x W'`` for a convolution). An
example ``e`` is the pair of rows ``left[e]``, ``right[e]`` (``right[e] < 0``: a single view, as a
layer fed by Algorithm 1 sees it); under tied weights (SCFF Appendix A) its pre-activation is

    z_e[c, s] = P[left, c, s] + P[right, c, s] + 2 b[c]      (paired)
    z_e[c, s] = P[left, c, s] + b[c]                         (single view)

Examples ``0 .. num_pos - 1`` are positives, the rest negatives. With goodness
``G_e[s] = mean_c relu(z_e[c, s])^2`` (Eq. 1; Forward-Forward's sum over units: ``unit_scale = 1``) and the loss of ``objectives.scff.scff_loss``
(Eqs. 3-4: ``softplus(theta_pos - G)`` for positives, ``softplus(G - theta_neg)`` for negatives,
averaged over positions and over each group's examples, plus ``lambda * ||G_pos||_2`` per
positive), the derivative reaching ``z`` is

    dL/dz_e[c, s] = coef[e, s] * relu(z_e[c, s]),   coef[e, s] = 2 unit_scale dL/dG_e[s]   (unit_scale = 1 / C)
    dL/dG_pos[s] = (-sigmoid(theta_pos - G[s]) / S + lambda G[s] / ||G||) / num_pos
    dL/dG_neg[s] = sigmoid(G[s] - theta_neg) / S / num_neg

and the gradient reaching a projection row ``R[m] = sum over the examples that use row m
(once per use) of dL/dz_e``. Everything the weights need follows by products: ``dW = R^T X``
(a dense layer) or the convolution's weight gradient of ``R``, and ``db[c] = sum_{m, s} R[m, c, s]``
(each paired example's two rows carry its ``2 b``).
"""

from __future__ import annotations

import math


def example_goodness(e, P, bias, left, right, unit_scale, G):
    """``G[e, s] = unit_scale * sum_c relu(z_e[c, s])^2`` of example ``e`` (SCFF's mean over units, Eq. 1:
    ``unit_scale = 1 / C``; Forward-Forward's sum: 1), positions innermost (contiguous)."""
    channels, positions = P.shape[1], P.shape[2]
    a, b = left[e], right[e]
    paired = b >= 0
    factor = 2.0 if paired else 1.0
    for s in range(positions):
        G[e, s] = 0.0
    for c in range(channels):
        shift = factor * bias[c]
        for s in range(positions):
            z = P[a, c, s] + shift
            if paired:
                z += P[b, c, s]
            z = max(z, 0.0)
            G[e, s] += z * z
    for s in range(positions):
        G[e, s] *= unit_scale


def example_coefficients(e, G, count, unit_scale, num_pos, theta_pos, theta_neg, penalty, coef, loss, goodness):
    """From ``G[e, :count]`` (the example's goodness at its ``count`` real positions: all of a map, the steps of a
    sequence): ``coef[e, :count]`` (``2 unit_scale dL/dG``), the example's share of the loss ``loss[e]`` (already
    divided by its group's size) and its mean goodness ``goodness[e]``."""
    examples, positions = G.shape[0], count
    square_sum = 0.0
    total = 0.0
    for s in range(positions):
        square_sum += G[e, s] * G[e, s]
        total += G[e, s]
    norm = math.sqrt(square_sum)
    positive = e < num_pos
    scale = 1.0 / (num_pos if positive else examples - num_pos)
    softplus_sum = 0.0
    for s in range(positions):
        g = G[e, s]
        x = theta_pos - g if positive else g - theta_neg
        # softplus(x) = log(1 + e^x) and sigmoid(x) from one exponential, both stable for large |x|
        ex = math.exp(-abs(x))
        softplus_sum += max(x, 0.0) + math.log1p(ex)
        sig = (1.0 if x >= 0.0 else ex) / (1.0 + ex)
        if positive:
            slope = -sig / positions
            if penalty > 0.0 and norm > 0.0:
                slope += penalty * g / norm
        else:
            slope = sig / positions
        coef[e, s] = slope * scale * 2.0 * unit_scale
    share = softplus_sum / positions
    if positive:
        share += penalty * norm
    loss[e] = share * scale
    goodness[e] = total / positions


def element_gradient(m, c, s, P, bias, left, right, starts, entries, coef):
    """``R[m, c, s]``: the loss gradient reaching projection row ``m`` from every example that uses it (one GPU
    thread per element); ``entries[starts[m]:starts[m + 1]]`` lists those examples, one entry per use (a positive
    ``[x_k, x_k]`` uses row ``k`` twice)."""
    total = 0.0
    for j in range(starts[m], starts[m + 1]):
        e = entries[j]
        a, b = left[e], right[e]
        if b >= 0:
            z = P[a, c, s] + P[b, c, s] + 2.0 * bias[c]
        else:
            z = P[a, c, s] + bias[c]
        total += coef[e, s] * max(z, 0.0)
    return total
