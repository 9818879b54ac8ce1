"""SCFF's pairs across data-parallel processes: each process owns its samples' views, pairs index the batch.

A negative pair ``[x_k, x_(k+s) mod n]`` (SCFF section 3.1) takes its partner from anywhere in the batch, so a
process cannot form its pairs from its rows alone. Each process keeps the views of its own samples and the pairs
whose first half is its own (``own_pairs``, ``next_pairs``); a layer then projects only its own views, gathers
every process's projections (``DataParallel.gather_rows``: ``P = W x`` is per view, so the gathered rows equal a
one-process projection of the whole batch), evaluates its pairs on them, and hands each partner's gradient rows
back to the process that owns the partner (``DataParallel.sum_rows``). Nothing but detached activations and
gradient rows of one layer travels; no gradient crosses a layer.
"""

from __future__ import annotations

import torch

from ..objectives.scff import PairBatch, random_shift, shifted_pairs
from .data_parallel import DataParallel


def own_pairs(pairs: PairBatch, data_parallel: DataParallel, n: int) -> PairBatch:
    """This process's part of a batch's pairs built on the whole batch (``data_pairs``): its views (of each block
    of ``n``) and its pair rows, their indices left counted in the whole batch."""
    rows = data_parallel.rows(n)
    blocks = pairs.views.shape[0] // n

    def keep(index: torch.Tensor | None) -> torch.Tensor | None:
        return None if index is None else index[rows]
    return PairBatch(data_parallel.own(pairs.views, n, blocks), keep(pairs.pos_left), keep(pairs.pos_right),
                     keep(pairs.neg_left), keep(pairs.neg_right), pairs.owned, spread=(n, blocks))


def next_pairs(y_pos: torch.Tensor, y_neg: torch.Tensor | None, data_parallel: DataParallel, n: int,
               generator: torch.Generator, shift: int | None = None) -> PairBatch:
    """The next layer's pairs from this process's outputs: Algorithm 1 (``y_neg`` given) carries positives and
    negatives on (views: positives then negatives, 2 blocks); Algorithm 2 re-pairs the positives with a shift over
    the whole batch (drawn as a one-process run draws it)."""
    rows = data_parallel.rows(n)
    if y_neg is not None:
        k = torch.arange(n, device=y_pos.device)[rows]
        return PairBatch(torch.cat([y_pos, y_neg]), k, None, k + n, None, owned=True, spread=(n, 2))
    shift = random_shift(n, generator) if shift is None else shift
    whole = shifted_pairs(y_pos, torch.arange(n, device=y_pos.device), shift)
    return PairBatch(y_pos, whole.pos_left[rows], whole.pos_right[rows], whole.neg_left[rows],
                     whole.neg_right[rows], owned=True, spread=(n, 1))


def every_projection(projections: torch.Tensor, batch: PairBatch, data_parallel: DataParallel | None) -> torch.Tensor:
    """Projections of the whole batch's views from this process's (unchanged in a one-process run)."""
    if batch.spread is None:
        return projections
    return data_parallel.gather_rows(projections, *batch.spread)


def own_gradient_rows(rows: torch.Tensor, batch: PairBatch, data_parallel: DataParallel | None) -> torch.Tensor:
    """``dL/dP`` for this process's views: every process's rows (each its share of the batch's mean) summed."""
    if batch.spread is None:
        return rows
    n, blocks = batch.spread
    return data_parallel.sum_rows(rows * data_parallel.scale, n, blocks)
