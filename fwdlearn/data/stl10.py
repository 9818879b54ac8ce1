"""STL-10 (Coates, Lee and Ng 2011) from the official binary version in a directory the user names.

``stl10_binary/`` holds ``train_X.bin`` (5,000 images), ``test_X.bin`` (8,000), ``unlabeled_X.bin``
(100,000), ``train_y.bin`` / ``test_y.bin`` (one uint8 label 1..10 per image) and
``class_names.txt`` (one name per line). An image is 3 x 96 x 96 bytes with no header: the R, G and
B planes, each stored column-major (the official ``stl10_input.py`` reads ``[N, 3, 96, 96]`` and
transposes to ``[N, 96, 96, 3]`` with axes ``(0, 3, 2, 1)``), so the file's layout is
``[N, C, W, H]`` and ``[N, C, H, W]`` is its transpose of the last two axes.

Images come out as float32 ``[N, 3, 96, 96]`` (NCHW), divided by 255 and normalised per channel
with the training split's mean and std (recorded in ``meta``); labels are shifted to 0..9. The
unlabelled images, for unsupervised training, take 11 GB as float32: ``unlabelled=False`` skips
them, ``max_unlabelled`` reads only the first so many (the file is memory-mapped, never read whole).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .channel_norm import channel_mean_std, normalisation_meta, normalised
from .dataset import LabelledDataset, Split
from .folders import find_official_folder

FOLDER = "stl10_binary"
FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
UNLABELLED_FILE = "unlabeled_X.bin"      # the official spelling
CLASS_NAMES_FILE = "class_names.txt"
CHANNELS = ("R", "G", "B")
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE            # 27,648
NUM_CLASSES = 10


def find_stl10_dir(data_dir: Path) -> Path:
    """Accept the ``stl10_binary`` folder itself, its parent, or a parent's ``stl10/`` sub-folder."""
    return find_official_folder(data_dir, "STL-10", FOLDER, "stl10", FILES["train"][0])


def _size(path: Path) -> int:
    if path.is_dir():
        raise DataError(f"STL-10: {path} is a folder, not a binary file")
    if not path.is_file():
        raise DataError(f"STL-10: missing {path.name} in {path.parent}")
    try:
        return path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_images(path: Path, limit: int | None = None) -> np.ndarray:
    """The first ``limit`` (default all) images of ``path`` as a uint8 ``[N, 3, 96, 96]`` (N, C, H, W) view.

    The file is memory-mapped: only the images a caller touches are read.
    """
    size = _size(path)
    if size == 0:
        raise DataError(f"{path}: empty, no images")
    if size % IMAGE_BYTES:
        raise DataError(f"{path}: {size} bytes is not a whole number of 3x96x96 images "
                        f"({IMAGE_BYTES} bytes each); truncated?")
    count = size // IMAGE_BYTES if limit is None else min(size // IMAGE_BYTES, limit)
    if count == 0:
        return np.zeros((0, 3, SIDE, SIDE), dtype=np.uint8)
    try:
        stored = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, 3, SIDE, SIDE))   # [N, C, W, H]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return stored.transpose(0, 1, 3, 2)


def read_labels(path: Path) -> np.ndarray:
    """Labels 1..10 of ``path`` as int64 0..9."""
    size = _size(path)
    if size == 0:
        raise DataError(f"{path}: empty, no labels")
    try:
        labels = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    bad = labels[(labels < 1) | (labels > NUM_CLASSES)]
    if bad.size:
        raise DataError(f"{path}: label {int(bad[0])} outside 1..{NUM_CLASSES}")
    return labels.astype(np.int64) - 1


def read_class_names(path: Path) -> tuple[str, ...]:
    """The ten names of ``class_names.txt``, one per line (blank lines ignored)."""
    _size(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    names = tuple(line.strip() for line in lines if line.strip())
    if len(names) != NUM_CLASSES:
        raise DataError(f"{path}: expected {NUM_CLASSES} class names, found {len(names)}")
    return names


def _read_split(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_images(folder / images_name), read_labels(folder / labels_name)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{folder / images_name}: {images.shape[0]} images but {labels_name} has "
                        f"{labels.shape[0]} labels")
    return images, labels


def load_stl10(data_dir: str | Path, *, unlabelled: bool = True, max_unlabelled: int | None = None) -> LabelledDataset:
    """Load STL-10 as float32 ``[N, 3, 96, 96]`` (5,000 train, 8,000 test), normalised per channel.

    ``unlabelled``: also read ``unlabeled_X.bin`` into ``dataset.unlabelled`` (normalised with the
    training split's statistics); ``max_unlabelled``: at most this many of them (the first ones).
    """
    if max_unlabelled is not None and (isinstance(max_unlabelled, bool) or not isinstance(max_unlabelled, int)
                                       or max_unlabelled < 0):
        raise DataError(f"STL-10: max_unlabelled must be a whole number >= 0, got {max_unlabelled!r}")
    folder = find_stl10_dir(Path(data_dir).expanduser())
    class_names = read_class_names(folder / CLASS_NAMES_FILE)
    splits = {name: _read_split(folder, *files) for name, files in FILES.items()}
    mean, std = channel_mean_std(splits["train"][0], f"STL-10 ({folder})", CHANNELS)
    extra = None
    if unlabelled:
        extra = normalised(read_images(folder / UNLABELLED_FILE, max_unlabelled), mean, std)
    meta = {
        "raw": f"STL-10 binary: {IMAGE_BYTES} uint8 per image, the R, G, B planes of 96x96, each column-major",
        "source_layout": "[N, C, W, H] (C-order), transposed to [N, C, H, W]",
        **normalisation_meta(mean, std, CHANNELS),
        "labels": "file labels 1..10 minus 1",
        "unlabelled": 0 if extra is None else int(extra.shape[0]),
    }

    def split(name: str) -> Split:
        images, labels = splits[name]
        return Split(normalised(images, mean, std), torch.from_numpy(labels))

    return LabelledDataset("stl10", split("train"), split("test"), class_names, str(folder), meta, unlabelled=extra)
