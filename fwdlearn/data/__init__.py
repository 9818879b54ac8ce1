"""Data sources. ``load_dataset(name, data_dir)`` is the one entry point the learners use.

Images: ``digits`` (embedded), ``mnist`` (IDX files), ``cifar10`` (official python batches),
``stl10`` (official binaries, with optional unlabelled images). Sequences: ``sequences`` (embedded, synthetic),
``fsdd`` (Free Spoken Digit Dataset WAVs, as 39 MFCC features per frame).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .dataset import SEAL_ENV, LabelledDataset, SealedSplit, Split, validate_split
from .transforms import standardize

DATA_DIR_ENV = "FWDLEARN_DATA_DIR"
DATASETS = ("digits", "mnist", "fsdd", "sequences", "cifar10", "stl10")


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The ``--data-dir`` option if given, else the ``FWDLEARN_DATA_DIR`` environment variable."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    return Path(chosen).expanduser() if chosen else None


def required_data_dir(data_dir: str | Path | None, label: str) -> Path:
    """``resolve_data_dir``, or a one-line ``DataError`` saying that data set ``label`` needs one."""
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise DataError(f"{label} needs a data directory: pass --data-dir or set {DATA_DIR_ENV}")
    return folder


def load_dataset(name: str, data_dir: str | Path | None = None, *,
                 holdout_speakers: Sequence[str] = (), unlabelled: bool = True,
                 max_unlabelled: int | None = None) -> LabelledDataset:
    """Load a data set by name and check it (non-empty, finite, labels in range).

    ``holdout_speakers`` (FSDD only, ignored otherwise): test on every recording of these speakers
    and train on the others, instead of the official split.
    ``unlabelled``, ``max_unlabelled`` (STL-10 only, ignored otherwise): also load the unlabelled
    images (11 GB as float32 for all 100,000), at most ``max_unlabelled`` of them.
    """
    if name == "digits":
        from .digits import load_digits_dataset
        dataset = load_digits_dataset()
    elif name == "mnist":
        folder = required_data_dir(data_dir, "MNIST")
        from .mnist import load_mnist
        dataset = load_mnist(folder)
    elif name == "fsdd":
        folder = required_data_dir(data_dir, "FSDD")
        from .fsdd import load_fsdd
        dataset = load_fsdd(folder, holdout_speakers=holdout_speakers)
    elif name == "cifar10":
        folder = required_data_dir(data_dir, "CIFAR-10")
        from .cifar10 import load_cifar10
        dataset = load_cifar10(folder)
    elif name == "stl10":
        folder = required_data_dir(data_dir, "STL-10")
        from .stl10 import load_stl10
        dataset = load_stl10(folder, unlabelled=unlabelled, max_unlabelled=max_unlabelled)
    elif name == "sequences":
        from .sequences import load_synthetic_sequences
        dataset = load_synthetic_sequences()
    else:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    for split_name in ("train", "test"):
        validate_split(getattr(dataset, split_name), f"{dataset.source} ({split_name} split)", dataset.num_classes)
    if os.environ.get(SEAL_ENV):
        return dataclasses.replace(dataset, test=SealedSplit(dataset.source))
    return dataset


__all__ = ["DATASETS", "DATA_DIR_ENV", "LabelledDataset", "Split", "load_dataset", "resolve_data_dir", "standardize"]
