"""The data a study sees: a validation split carved from the training data, and the test split sealed.

``carve(dataset, ...)`` returns a ``LabelledDataset`` whose ``train`` is what the trials train on and whose
``test`` is the validation split (so the one run path scores trials on it), with its ``meta["split"]`` naming
how it was carved:

- FSDD with the official split: the training recordings' takes 5-9 (every speaker and digit, 300 recordings),
  whole recordings, never a test take (0-4);
- anything else: a seeded random ``fraction`` of the training samples (stratified by class).

``sealed_test_split()``: while a study runs, ``load_dataset`` gives data sets whose test split raises on any access
(``data.dataset.SealedSplit``), so a trial that reads it fails in one line. The test split is read once, after
the study, for the best settings (``study.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import torch

from ..data.dataset import SEAL_ENV, LabelledDataset, Split
from ..errors import DataError

VALIDATION_TAKES = range(5, 10)


@contextlib.contextmanager
def sealed_test_split():
    """While inside, ``load_dataset`` (in this process and in the workers it starts) returns data sets whose test
    split raises on any use (``data.dataset.SealedSplit``)."""
    before = os.environ.get(SEAL_ENV)
    os.environ[SEAL_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SEAL_ENV, None)
        else:
            os.environ[SEAL_ENV] = before


def carve(dataset: LabelledDataset, fraction: float = 0.1, seed: int = 0, data_dir: str | Path | None = None
          ) -> LabelledDataset:
    """Trials' training data and validation split (returned as ``test``) from ``dataset``'s training split only."""
    train = dataset.train
    chosen = _fsdd_takes(dataset, data_dir) if dataset.name == "fsdd" else None
    if chosen is None:
        chosen = _stratified(train.y, fraction, seed)
        how = f"{fraction:.0%} of the training samples per class (seed {seed}), {int(chosen.sum())} samples"
    else:
        how = f"takes {VALIDATION_TAKES.start}-{VALIDATION_TAKES.stop - 1} of the training recordings, " \
              f"{int(chosen.sum())} recordings"
    if chosen.all() or not chosen.any():
        raise DataError(f"{dataset.name}: cannot carve a validation split from {len(train)} training samples")
    meta = {**dataset.meta, "split": f"validation: {how}; training: the rest"}
    return dataclasses.replace(dataset, train=_subset(train, ~chosen), test=_subset(train, chosen), meta=meta)


def _subset(split: Split, keep: torch.Tensor) -> Split:
    lengths = None if split.lengths is None else split.lengths[keep]
    x = split.x[keep]
    if lengths is not None:
        x = x[:, :int(lengths.max())]
    return Split(x, split.y[keep], lengths)


def _stratified(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.zeros(len(y), dtype=torch.bool)
    for label in torch.unique(y):
        where = torch.nonzero(y == label).flatten()
        count = max(1, round(fraction * len(where)))
        chosen[where[torch.randperm(len(where), generator=generator)[:count]]] = True
    return chosen


def _fsdd_takes(dataset: LabelledDataset, data_dir) -> torch.Tensor | None:
    """FSDD's official training split: the recordings whose take is 5-9 (``None`` for a speaker hold-out)."""
    if dataset.meta.get("holdout_speakers"):
        return None
    from ..data.fsdd import TEST_INDICES, find_fsdd_dir, list_recordings
    folder = find_fsdd_dir(Path(dataset.source))
    takes = torch.tensor([r.index for r in list_recordings(folder) if r.index not in TEST_INDICES])
    if len(takes) != len(dataset.train):
        return None
    return (takes >= VALIDATION_TAKES.start) & (takes < VALIDATION_TAKES.stop)
