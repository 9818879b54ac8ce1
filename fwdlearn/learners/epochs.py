"""Where a single-stage learner stands in its schedule (what resuming and progress messages read)."""

from __future__ import annotations


class EpochCounter:
    """For a learner with ``total_epochs`` and ``next_epoch`` (the number of epochs already done)."""

    total_epochs: int
    next_epoch: int

    @property
    def completed_epochs(self) -> int:
        return self.next_epoch

    @property
    def finished(self) -> bool:
        return self.next_epoch >= self.total_epochs
