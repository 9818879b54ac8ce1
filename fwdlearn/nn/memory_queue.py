"""The first-in first-out queue of past target embeddings of MoCo (He et al. 2020, Sec. 3.2 and
Algorithm 1; Silva 2022 thesis Sec. 3.4) and SCE's memory buffer (Denize et al. 2023, Sec. 3.2).

Storage is a ring of ``size`` rows held as a buffer, so it is saved in ``state_dict`` and moves with
``.to(device)``. Enqueue order: row ``b`` of a batch is written at slot ``(pointer + b) % size`` and the
pointer then advances by the batch size (mod ``size``), so the oldest rows are the ones overwritten and,
after any enqueue, the oldest stored row sits at ``pointer``. Like MoCo the queue starts full of random
unit vectors, so it can serve as negatives from the first step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check


class MemoryQueue(nn.Module):
    """A FIFO ring of ``size`` embeddings of width ``dim``; ``seed`` fixes the random initial rows."""

    def __init__(self, size: int, dim: int, seed: int = 0):
        super().__init__()
        check(isinstance(size, int) and size >= 1, f"MemoryQueue size must be a positive integer, got {size!r}")
        check(isinstance(dim, int) and dim >= 1, f"MemoryQueue dim must be a positive integer, got {dim!r}")
        initial = torch.randn(size, dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("embeddings", F.normalize(initial, dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, batch: torch.Tensor) -> None:
        """Write the (detached) ``(B, dim)`` batch over the ``B`` oldest rows; refuses ``B > size``."""
        size, dim = self.embeddings.shape
        check(batch.dim() == 2 and batch.shape[1] == dim,
              f"MemoryQueue.enqueue expects a (batch, {dim}) tensor, got shape {tuple(batch.shape)}")
        check(batch.shape[0] <= size,
              f"MemoryQueue size {size} is smaller than the batch of {batch.shape[0]}: use a queue >= the batch size")
        slots = (self.pointer + torch.arange(batch.shape[0], device=self.embeddings.device)) % size
        self.embeddings[slots] = batch.detach().to(self.embeddings.dtype)
        self.pointer.fill_(int((self.pointer + batch.shape[0]) % size))

    def oldest_first(self) -> torch.Tensor:
        """The stored rows ordered from the oldest to the most recently enqueued."""
        return torch.roll(self.embeddings, shifts=-int(self.pointer), dims=0)
