"""SCFF's objective: the examples it contrasts (section 3.1, Appendix C) and the layer loss (Eqs. 1, 3, 4).

Examples. Positives are ``[x_k, x_k]``; negatives ``[x_k, x_n]`` with ``n = (k + s) mod N`` for one
random shift ``s`` in ``1..N-1`` per batch. A ``PairBatch`` holds the distinct *views* a layer must
project and, for each example, which views it is made of. Views may be vectors ``[N, D]`` (MLP) or
maps ``[N, C, H, W]`` (CNN: a pair is concatenated along channels); the row indices live on the
views' device, the random draws on the CPU generator.

Loss, with thresholds and the positive-goodness penalty:

    L = E_pos[ mean_m softplus(Theta_pos - G_pos) ] + E_neg[ mean_m softplus(G_neg - Theta_neg) ]
        + lambda * E_pos[ ||G_pos||_F ]

``-log sigma(a)`` is written ``softplus(-a)`` for numerical stability. ``m`` runs over the goodness
map of one sample: nothing for an MLP, positions (h, w) for a CNN, steps t for an RNN. For an
MLP the Frobenius norm of a one-element map is the goodness itself, so the penalty equals the
authors' release ("lambda times the mean positive goodness").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.transforms import random_translate_twice


@dataclass(frozen=True)
class SCFFLossTerms:
    """The loss and the quantities worth plotting (all scalars)."""

    loss: torch.Tensor
    goodness_pos: torch.Tensor
    goodness_neg: torch.Tensor


def scff_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, theta_pos: float, theta_neg: float,
              penalty: float = 0.0, mask_pos: torch.Tensor | None = None,
              mask_neg: torch.Tensor | None = None) -> SCFFLossTerms:
    """Loss of one layer from its positive and negative goodness (``[B]`` or ``[B, ...]`` maps).

    Example::

        g_pos, g_neg = goodness(relu(z_pos)), goodness(relu(z_neg))
        scff_loss(g_pos, g_neg, theta_pos=4.0, theta_neg=6.0, penalty=1e-4).loss.backward()

    ``mask_pos`` / ``mask_neg`` (bool, the maps' shape) mark the entries that exist, e.g. the steps
    of zero-padded sequences of different lengths: the mean over ``m`` and the norm then run over
    those entries only (Eq. 4's ``1/T sum_t`` with each sequence's own ``T``).
    """
    if g_pos.dim() == 0 or g_neg.dim() == 0:
        raise ValueError("goodness must have a batch dimension")
    pos = g_pos.reshape(g_pos.shape[0], -1)
    neg = g_neg.reshape(g_neg.shape[0], -1)
    if mask_pos is None and mask_neg is None:
        loss = F.softplus(theta_pos - pos).mean(1).mean() + F.softplus(neg - theta_neg).mean(1).mean()
        if penalty:
            loss = loss + penalty * pos.norm(dim=1).mean()
        return SCFFLossTerms(loss, pos.mean().detach(), neg.mean().detach())
    w_pos = _weights(mask_pos, pos)
    w_neg = _weights(mask_neg, neg)
    loss = _masked_mean(F.softplus(theta_pos - pos), w_pos).mean() + _masked_mean(F.softplus(neg - theta_neg), w_neg).mean()
    if penalty:
        loss = loss + penalty * (pos * w_pos).norm(dim=1).mean()   # weights are 0/1
    return SCFFLossTerms(loss, _masked_mean(pos, w_pos).mean().detach(), _masked_mean(neg, w_neg).mean().detach())


def _weights(mask: torch.Tensor | None, values: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(values) if mask is None else mask.reshape(values.shape).to(values.dtype)


def _masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over the entries with weight 1."""
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1.0)


@dataclass(frozen=True)
class PairBatch:
    """Views (not yet standardised) and the rows that make each positive and negative example.

    ``*_right`` is ``None`` when every example is a single view (a layer fed by Algorithm 1). ``owned``: the
    views were made for this batch alone (a layer's outputs passed on, not the caller's data), so the layer
    that reads them may overwrite them (the fused backend standardises them in place).
    """

    views: torch.Tensor
    pos_left: torch.Tensor
    pos_right: torch.Tensor | None
    neg_left: torch.Tensor
    neg_right: torch.Tensor | None
    owned: bool = False
    # Data parallel (``distributed/scff_pairs.py``): ``(n, blocks)`` when ``views`` are this process's rows of
    # ``blocks`` blocks of the batch's ``n`` rows and the index rows are this process's, counted in the whole batch.
    spread: tuple[int, int] | None = None

    @property
    def size(self) -> int:
        return int(self.pos_left.shape[0])


def random_shift(n: int, generator: torch.Generator) -> int:
    """The shift ``s`` in ``1..n-1`` that pairs sample ``k`` with sample ``(k + s) mod n``."""
    if n < 2:
        raise ValueError(f"a negative pair needs at least 2 samples in the batch, got {n}")
    return int(torch.randint(1, n, (1,), generator=generator))


def shifted_pairs(views: torch.Tensor, second: torch.Tensor, shift: int) -> PairBatch:
    """Positives ``[v_k, w_k]``, negatives ``[v_k, w_(k+s)]`` for the shift ``s`` given; ``second`` indexes the
    partner views."""
    n = second.shape[0]
    k = torch.arange(n, device=second.device)
    return PairBatch(views, k, second, k, second[(k + shift) % n])


def _paired(views: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> PairBatch:
    """``shifted_pairs`` with a random shift."""
    return shifted_pairs(views, second, random_shift(second.shape[0], generator))


def data_pairs(x: torch.Tensor, generator: torch.Generator, translate: int = 0) -> PairBatch:
    """First-layer pairs from a data batch ``x`` (``[N, C, H, W]`` or ``[N, D]``).

    With ``translate = 0`` both halves are the same image (the paper). With ``translate > 0``
    each half is its own random translation of the image by up to that many pixels, the
    negative partner being the second view of sample ``k + s`` (the authors' MNIST release).
    """
    n = x.shape[0]
    if translate == 0:
        return _paired(x, torch.arange(n, device=x.device), generator)
    views = random_translate_twice(x, translate, generator)
    return _paired(views, torch.arange(n, 2 * n, device=x.device), generator)


def carry_pairs(y_pos: torch.Tensor, y_neg: torch.Tensor) -> PairBatch:
    """Algorithm 1: the previous layer's positive and negative outputs are the next layer's examples."""
    n, device = y_pos.shape[0], y_pos.device
    return PairBatch(torch.cat([y_pos, y_neg]), torch.arange(n, device=device), None,
                     torch.arange(n, 2 * n, device=device), None, owned=True)


def repair(y_pos: torch.Tensor, generator: torch.Generator, shift: int | None = None) -> PairBatch:
    """Algorithm 2: the previous layer's positive outputs are re-paired like a new data set (with a random shift,
    or the ``shift`` given)."""
    second = torch.arange(y_pos.shape[0], device=y_pos.device)
    pairs = _paired(y_pos, second, generator) if shift is None else shifted_pairs(y_pos, second, shift)
    return dataclasses.replace(pairs, owned=True)


def pair_examples(lengths: torch.Tensor, generator: torch.Generator, negatives: int = 1,
                  shifts: torch.Tensor | list[int] | None = None) -> tuple[torch.Tensor, ...]:
    """Sequence pairs (section 3.5): views ``left``/``right`` of the ``N`` positives then ``negatives * N``
    negatives, and each pair's length (the longer half's).

    One negative per positive is the paper's (section 3.1): ``[x_k, x_(k+s) mod N]``. With more,
    each block of ``N`` negatives has its own shift, all distinct (at most ``N - 1`` of them).
    ``shifts``: the blocks' shifts given (``negatives`` of them, in ``1..N-1``; the on-device update draws its
    own); ``generator`` is then left untouched.
    """
    n = lengths.shape[0]
    k = torch.arange(n)
    if shifts is not None:
        shifts = [int(s) for s in torch.as_tensor(shifts).reshape(-1).tolist()]
        if len(shifts) != negatives or any(not 1 <= s < n for s in shifts):
            raise ValueError(f"expected {negatives} shifts in 1..{n - 1}, got {shifts}")
    elif negatives == 1:             # the same random draw as before the option existed: recorded runs repeat
        shifts = [random_shift(n, generator)]
    else:
        shifts = (torch.randperm(n - 1, generator=generator)[:negatives] + 1).tolist()
    left = torch.cat([k] * (1 + len(shifts)))
    right = torch.cat([k] + [(k + s) % n for s in shifts])
    return left, right, torch.maximum(lengths[left], lengths[right])
