"""CIFAR-10 (Krizhevsky 2009) from the official "python version" in a directory the user names.

``cifar-10-batches-py/`` holds ``data_batch_1`` … ``data_batch_5`` (training, 10,000 images each),
``test_batch`` and ``batches.meta``: pickled dicts (written by Python 2) with ``b"data"``, a uint8
array ``[N, 3072]`` whose rows are the R, G and B planes of a 32x32 image, each row-major, and
``b"labels"``, a list of N ints 0..9; ``batches.meta`` has ``b"label_names"``.

The files are read with ``safe_pickle.load_restricted``, which refuses every global except those
of a numpy array, so a tampered batch cannot run code. Images come out as float32
``[N, 3, 32, 32]``: divided by 255, then normalised per channel with the training split's mean
and std (recorded in ``meta``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .channel_norm import channel_mean_std, normalisation_meta, normalised
from .dataset import LabelledDataset, Split
from .folders import find_official_folder
from .safe_pickle import load_restricted

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CHANNELS = ("R", "G", "B")
SIDE = 32
ROW = 3 * SIDE * SIDE     # 3072 bytes per image
NUM_CLASSES = 10


def find_cifar10_dir(data_dir: Path) -> Path:
    """Accept the batches folder itself, its parent, or a parent's ``cifar10/`` sub-folder."""
    return find_official_folder(data_dir, "CIFAR-10", FOLDER, "cifar10", TRAIN_FILES[0])


def _load_dict(path: Path) -> dict:
    if path.is_dir():
        raise DataError(f"CIFAR-10: {path} is a folder, not a batch file")
    if not path.is_file():
        raise DataError(f"CIFAR-10: missing {path.name} in {path.parent}")
    content = load_restricted(path)
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(content).__name__}")
    # the official files have bytes keys (Python 2 str); a re-pickled copy may have str keys
    return {key.decode("latin-1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def _required(content: dict, key: str, path: Path):
    if key not in content:
        raise DataError(f"{path}: no {key!r} entry (keys: {', '.join(sorted(map(str, content)))})")
    return content[key]


def read_label_names(path: Path) -> tuple[str, ...]:
    """The ten class names of ``batches.meta``."""
    names = _required(_load_dict(path), "label_names", path)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: 'label_names' must be a list of strings")
    if len(names) != NUM_CLASSES:
        raise DataError(f"{path}: expected {NUM_CLASSES} label names, found {len(names)}")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as uint8 images ``[N, 3, 32, 32]`` and int64 labels ``[N]``, checked."""
    content = _load_dict(path)
    data, labels = _required(content, "data", path), _required(content, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        found = (f"{data.dtype} array of shape {list(data.shape)}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise DataError(f"{path}: 'data' must be a uint8 array [N, {ROW}], found {found}")
    if data.shape[0] == 0:
        raise DataError(f"{path}: no images (empty 'data')")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError, OverflowError):
        raise DataError(f"{path}: 'labels' must be a list of integers") from None
    if labels.ndim != 1:
        raise DataError(f"{path}: 'labels' must be a list of integers")
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: 'labels' must be a list of integers, found {labels.dtype}")
    if int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES:
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(f"{path}: label {bad} outside 0..{NUM_CLASSES - 1}")
    return data.reshape(-1, 3, SIDE, SIDE), labels.astype(np.int64)


def load_cifar10(data_dir: str | Path) -> LabelledDataset:
    """Load CIFAR-10 as float32 ``[N, 3, 32, 32]`` (50,000 train, 10,000 test), normalised per channel."""
    folder = find_cifar10_dir(Path(data_dir).expanduser())
    class_names = read_label_names(folder / META_FILE)
    train = [read_batch(folder / name) for name in TRAIN_FILES]
    train_x, train_y = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    test_x, test_y = read_batch(folder / TEST_FILE)
    mean, std = channel_mean_std(train_x, f"CIFAR-10 ({folder})", CHANNELS)
    meta = {
        "raw": f"CIFAR-10 python batches: uint8 rows of {ROW} values, the R, G, B planes of a 32x32 image, "
               "each row-major",
        "source_layout": "[N, 3072] = [N, C, H, W] (C-order)",
        **normalisation_meta(mean, std, CHANNELS),
    }
    return LabelledDataset(
        "cifar10",
        Split(normalised(train_x, mean, std), torch.from_numpy(train_y)),
        Split(normalised(test_x, mean, std), torch.from_numpy(test_y)),
        class_names, str(folder), meta)
