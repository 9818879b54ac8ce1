"""Per-channel dataset normalisation of uint8 images: statistics of the training split, applied to every split.

methods.md §1: "per-channel dataset normalisation, then per-sample standardisation". This file does
the first part only; the layers standardise each sample themselves.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError

CHUNK = 1024   # images converted at a time, so that a memory-mapped file is never copied whole


def channel_mean_std(images: np.ndarray, where: str, channel_names: tuple[str, ...]) -> tuple[list[float], list[float]]:
    """Mean and population std (ddof 0) per channel of ``images / 255`` (``[N, C, ...]`` uint8), exact.

    Counted with a 256-bin histogram per channel, in float64, so no float copy of the data is made.
    A constant channel (std 0) cannot be normalised and is a ``DataError`` naming ``where``.
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.zeros(256, dtype=np.int64)
        for start in range(0, images.shape[0], CHUNK):
            counts += np.bincount(np.asarray(images[start:start + CHUNK, c]).ravel(), minlength=256)
        n = counts.sum()
        mean = float((counts * levels).sum() / n)
        std = float(np.sqrt((counts * (levels - mean) ** 2).sum() / n))
        if std == 0.0:
            raise DataError(f"{where}: channel {channel_names[c]} is constant in the training split, cannot normalise")
        means.append(mean)
        stds.append(std)
    return means, stds


def normalised(images: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """``(images / 255 - mean[c]) / std[c]`` as float32 ``[N, C, H, W]``, converted ``CHUNK`` images at a time.

    ``images`` may be a strided view (a transpose) of a memory-mapped file; only one chunk of it is
    copied into memory at once.
    """
    out = torch.empty(images.shape, dtype=torch.float32)
    shift = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    for start in range(0, images.shape[0], CHUNK):
        block = torch.from_numpy(np.ascontiguousarray(images[start:start + CHUNK]))
        out[start:start + CHUNK] = block.float().div_(255.0).sub_(shift).div_(scale)
    return out


def normalisation_meta(mean: list[float], std: list[float], channels: tuple[str, ...]) -> dict:
    """The ``meta`` entries (read by the ONNX export) that say how raw uint8 images were normalised."""
    return {
        "layout": "NCHW",
        "channels": list(channels),
        "scale": "divide by 255",
        "mean": mean,
        "std": std,
        "normalisation": "per channel c: (x / 255 - mean[c]) / std[c], mean and population std of the training split",
    }
