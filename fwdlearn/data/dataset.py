"""The in-memory shape every data source returns: labelled tensors split into train and test."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import torch

from ..digest import tensors_digest
from ..errors import DataError


VOLATILE_META = ("cache_hit", "feature_cache")   # where a loader cached features and whether it found them


@dataclass(frozen=True)
class Split:
    """Samples ``x`` (float32) and labels ``y`` (int64, ``[N]``).

    Images are ``[N, C, H, W]`` with values in [0, 1]. Sequences are ``[N, T, F]``, zero-padded
    after each sequence's end, with ``lengths`` (int64, ``[N]``) giving each one's true number of steps.
    """

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None

    @property
    def is_sequence(self) -> bool:
        return self.lengths is not None

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class LabelledDataset:
    """A named data set with a train and a test split.

    ``source`` says where it was read from, so that errors and result files can name it.
    ``unlabelled``: extra samples without labels for unsupervised training (STL-10's 100,000
    images), preprocessed like ``train.x``; ``None`` where the data set has none or they were not loaded.
    """

    name: str
    train: Split
    test: Split
    class_names: tuple[str, ...]
    source: str
    meta: dict = field(default_factory=dict)
    unlabelled: torch.Tensor | None = None

    def fingerprint(self) -> dict:
        """What identifies the samples (not where they were cached), in JSON types: a checkpoint keeps it so
        that a run is not resumed on other data: other images of the same counts (``content``), or features
        computed with other settings (``meta``)."""
        meta = {key: value for key, value in self.meta.items() if key not in VOLATILE_META}
        return json.loads(json.dumps({"name": self.name, "train": len(self.train), "test": len(self.test),
                                      "unlabelled": 0 if self.unlabelled is None else len(self.unlabelled),
                                      "sample_shape": list(self.sample_shape), "meta": meta,
                                      "content": self.content_digest},
                                     sort_keys=True, default=str))

    @functools.cached_property
    def content_digest(self) -> str:
        """A digest of every sample, label and length of every split (computed once per loaded data set)."""
        splits = [("train", self.train), ("test", self.test)]
        return tensors_digest([(f"{name}.{part}", getattr(split, part)) for name, split in splits
                               for part in ("x", "y", "lengths")] + [("unlabelled", self.unlabelled)])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def num_features(self) -> int:
        """Inputs per sample (images, vectors) or per step (sequences)."""
        if self.train.is_sequence:
            return int(self.train.x.shape[-1])
        return int(self.train.x[0].numel())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def check_samples(x, lengths, where: str) -> None:
    """Refuse samples no rule can learn from: not a floating-point ``[N, ...]`` tensor, none at all, NaN or
    infinite values (naming the first bad sample), sequence lengths not int64 ``[N]`` within ``1..T``."""
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise DataError(f"{where}: samples must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if x.dim() < 2:
        raise DataError(f"{where}: samples must be a batch [N, ...], got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: the data set is empty")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).flatten(1).any(1).nonzero()[0])
        raise DataError(f"{where}: sample {bad} contains NaN or infinite values")
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor) or lengths.dtype != torch.int64 or lengths.shape != (x.shape[0],):
            raise DataError(f"{where}: sequence lengths must be int64 of shape [{x.shape[0]}]")
        if int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
            raise DataError(f"{where}: sequence lengths must lie in 1..{x.shape[1]}, "
                            f"found {int(lengths.min())}..{int(lengths.max())}")


def validate_split(split: Split, where: str, num_classes: int) -> Split:
    """Check dtype, shape agreement, emptiness, label range and finiteness; raise a one-line ``DataError``."""
    x, y = split.x, split.y
    check_samples(x, split.lengths, where)
    if y.dtype != torch.int64:
        raise DataError(f"{where}: labels must be int64, got {y.dtype}")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{where}: {x.shape[0]} samples but {y.shape[0]} labels")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise DataError(f"{where}: labels must lie in 0..{num_classes - 1}, found {int(y.min())}..{int(y.max())}")
    return split


SEAL_ENV = "FWDLEARN_TEST_SEALED"   # set while a tuning study runs (``fwdlearn.tune``): test splits are sealed


class SealedSplit:
    """The test split of a data set loaded while a study runs: any use of it is a one-line ``DataError``."""

    def __init__(self, source: str):
        object.__setattr__(self, "_source", source)

    def __getattr__(self, name):
        raise DataError(f"{object.__getattribute__(self, '_source')}: the test split is sealed while a study runs "
                        f"(trials are scored on a validation split carved from the training data; the test split "
                        f"is read once, for the best trial, after the study ends)")

    def __len__(self) -> int:
        return self.__getattr__("__len__")

