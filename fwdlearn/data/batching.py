"""Which rows go into each mini-batch of an epoch.

Zero-padded sequences cost as many recurrent steps as the longest one in their batch. FSDD
recordings run from 9 to 183 frames (median 34), so a random batch of 64 is padded to about
90 steps and half of every sweep is padding. ``by-length`` batching sorts a shuffled epoch by
length, cuts it into batches and shuffles the batches: every batch holds sequences of similar
length (a pair's halves end at nearly the same step), and an epoch takes about half the time.
"""

from __future__ import annotations

import torch

BATCHING = ("random", "by-length")


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, batching: str = "random",
                  lengths: torch.Tensor | None = None, min_size: int = 1) -> list[torch.Tensor]:
    """Row indices of each batch of one epoch over ``n`` samples; batches smaller than ``min_size`` are dropped.

    ``random``: a fresh permutation cut into consecutive batches. ``by-length``: the permutation
    stably sorted by ``lengths`` (so equal lengths stay shuffled), cut, then the batches shuffled.
    """
    if batching not in BATCHING:
        raise ValueError(f"batching must be one of {', '.join(BATCHING)}, got {batching!r}")
    order = torch.randperm(n, generator=generator)
    if batching == "by-length":
        if lengths is None:
            raise ValueError("by-length batching needs the sequence lengths")
        order = order[torch.argsort(lengths[order], stable=True)]
    batches = [rows for rows in order.split(batch_size) if rows.numel() >= min_size]
    if batching == "by-length":
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches
