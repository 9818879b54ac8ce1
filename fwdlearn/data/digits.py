"""The embedded default: scikit-learn's 8x8 handwritten digits (1,797 images, no download)."""

from __future__ import annotations

import torch

from .dataset import LabelledDataset, Split

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits_dataset() -> LabelledDataset:
    """Load the UCI 8x8 digits shipped inside scikit-learn, scaled to [0, 1].

    The split is stratified and fixed (20 % test, seed 0), so every run and every test sees
    the same 1,437 training and 360 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.images, bunch.target, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=bunch.target)

    def to_split(x, y) -> Split:
        return Split(torch.tensor(x, dtype=torch.float32).div_(16.0).unsqueeze(1), torch.tensor(y, dtype=torch.int64))

    return LabelledDataset("digits", to_split(x_train, y_train), to_split(x_test, y_test),
                           tuple(str(d) for d in range(10)), "scikit-learn (embedded)")
