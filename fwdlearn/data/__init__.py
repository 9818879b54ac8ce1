"""Data sources. ``load_dataset(name, data_dir)`` is the one entry point the learners use.

Images: ``digits`` (embedded), ``mnist`` (IDX files). Sequences: ``sequences`` (embedded, synthetic),
``fsdd`` (Free Spoken Digit Dataset WAVs, as 39 MFCC features per frame).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .dataset import LabelledDataset, Split, validate_split
from .transforms import standardize

DATA_DIR_ENV = "FWDLEARN_DATA_DIR"
DATASETS = ("digits", "mnist", "fsdd", "sequences")


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The ``--data-dir`` option if given, else the ``FWDLEARN_DATA_DIR`` environment variable."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    return Path(chosen).expanduser() if chosen else None


def load_dataset(name: str, data_dir: str | Path | None = None, *,
                 holdout_speakers: Sequence[str] = ()) -> LabelledDataset:
    """Load a data set by name and check it (non-empty, finite, labels in range).

    ``holdout_speakers`` (FSDD only, ignored otherwise): test on every recording of these speakers
    and train on the others, instead of the official split.
    """
    if name == "digits":
        from .digits import load_digits_dataset
        dataset = load_digits_dataset()
    elif name == "mnist":
        folder = resolve_data_dir(data_dir)
        if folder is None:
            raise DataError(f"MNIST needs a data directory: pass --data-dir or set {DATA_DIR_ENV}")
        from .mnist import load_mnist
        dataset = load_mnist(folder)
    elif name == "fsdd":
        folder = resolve_data_dir(data_dir)
        if folder is None:
            raise DataError(f"FSDD needs a data directory: pass --data-dir or set {DATA_DIR_ENV}")
        from .fsdd import load_fsdd
        dataset = load_fsdd(folder, holdout_speakers=holdout_speakers)
    elif name == "sequences":
        from .sequences import load_synthetic_sequences
        dataset = load_synthetic_sequences()
    else:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    for split_name in ("train", "test"):
        validate_split(getattr(dataset, split_name), f"{dataset.source} ({split_name} split)", dataset.num_classes)
    return dataset


__all__ = ["DATASETS", "DATA_DIR_ENV", "LabelledDataset", "Split", "load_dataset", "resolve_data_dir", "standardize"]
