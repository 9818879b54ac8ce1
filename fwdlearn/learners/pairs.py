"""Positive and negative examples for each layer (SCFF section 3.1 and Appendix C).

A ``PairBatch`` holds the distinct *views* a layer must project and, for each example, which
views it is made of. Positives are ``[x_k, x_k]``; negatives ``[x_k, x_n]`` with
``n = (k + s) mod N`` for one random shift ``s`` in ``1..N-1`` per batch. Views may be vectors
``[N, D]`` (MLP) or maps ``[N, C, H, W]`` (CNN: a pair is concatenated along channels); the row
indices live on the views' device, the random draws on the CPU generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.transforms import random_translate


@dataclass(frozen=True)
class PairBatch:
    """Views (not yet standardised) and the rows that make each positive and negative example.

    ``*_right`` is ``None`` when every example is a single view (a layer fed by Algorithm 1).
    """

    views: torch.Tensor
    pos_left: torch.Tensor
    pos_right: torch.Tensor | None
    neg_left: torch.Tensor
    neg_right: torch.Tensor | None

    @property
    def size(self) -> int:
        return int(self.pos_left.shape[0])


def random_shift(n: int, generator: torch.Generator) -> int:
    """The shift ``s`` in ``1..n-1`` that pairs sample ``k`` with sample ``(k + s) mod n``."""
    if n < 2:
        raise ValueError(f"a negative pair needs at least 2 samples in the batch, got {n}")
    return int(torch.randint(1, n, (1,), generator=generator))


def _paired(views: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> PairBatch:
    """Positives ``[v_k, w_k]``, negatives ``[v_k, w_(k+s)]``; ``second`` indexes the partner views."""
    n = second.shape[0]
    k = torch.arange(n, device=second.device)
    shifted = second[(k + random_shift(n, generator)) % n]
    return PairBatch(views, k, second, k, shifted)


def data_pairs(x: torch.Tensor, generator: torch.Generator, translate: int = 0) -> PairBatch:
    """First-layer pairs from a data batch ``x`` (``[N, C, H, W]`` or ``[N, D]``).

    With ``translate = 0`` both halves are the same image (the paper). With ``translate > 0``
    each half is its own random translation of the image by up to that many pixels, the
    negative partner being the second view of sample ``k + s`` (the authors' MNIST release).
    """
    n = x.shape[0]
    if translate == 0:
        return _paired(x, torch.arange(n, device=x.device), generator)
    first, second = random_translate(x, translate, generator), random_translate(x, translate, generator)
    return _paired(torch.cat([first, second]), torch.arange(n, 2 * n, device=x.device), generator)


def carry_pairs(y_pos: torch.Tensor, y_neg: torch.Tensor) -> PairBatch:
    """Algorithm 1: the previous layer's positive and negative outputs are the next layer's examples."""
    n, device = y_pos.shape[0], y_pos.device
    return PairBatch(torch.cat([y_pos, y_neg]), torch.arange(n, device=device), None,
                     torch.arange(n, 2 * n, device=device), None)


def repair(y_pos: torch.Tensor, generator: torch.Generator) -> PairBatch:
    """Algorithm 2: the previous layer's positive outputs are re-paired like a new data set."""
    return _paired(y_pos, torch.arange(y_pos.shape[0], device=y_pos.device), generator)
