"""MNIST from the four standard IDX files in a directory the user names."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from .dataset import LabelledDataset, Split
from .folders import require_folder
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def find_mnist_dir(data_dir: Path) -> Path:
    """Accept the folder holding the IDX files or a parent with an ``mnist/`` sub-folder."""
    for candidate in (data_dir, data_dir / "mnist", data_dir / "MNIST" / "raw"):
        if candidate.is_dir() and any(candidate.glob("train-images-idx3-ubyte*")):
            return candidate
    require_folder(data_dir, "MNIST")
    raise DataError(f"MNIST: no train-images-idx3-ubyte[.gz] in {data_dir} or {data_dir / 'mnist'}")


def _locate(folder: Path, stem: str) -> Path:
    candidates = [folder / (stem + ".gz"), folder / stem]
    for path in candidates:
        if path.is_file():
            return path
    for path in candidates:
        if path.is_dir():
            raise DataError(f"MNIST: {path} is a folder, not an IDX file")
    raise DataError(f"MNIST: missing {stem}[.gz] in {folder}")


def _read_split(folder: Path, images_stem: str, labels_stem: str) -> Split:
    images_path, labels_path = _locate(folder, images_stem), _locate(folder, labels_stem)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected 3 dimensions (N, H, W), got {images.ndim}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path}: {images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels")
    x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype("int64"))
    if y.numel() and int(y.max()) > 9:
        raise DataError(f"{labels_path}: label {int(y.max())} outside 0..9")
    return Split(x, y)


def load_mnist(data_dir: str | Path) -> LabelledDataset:
    """Load MNIST as ``[N, 1, 28, 28]`` float tensors in [0, 1]."""
    folder = find_mnist_dir(Path(data_dir).expanduser())
    splits = {name: _read_split(folder, *stems) for name, stems in FILES.items()}
    return LabelledDataset("mnist", splits["train"], splits["test"], tuple(str(d) for d in range(10)), str(folder))
