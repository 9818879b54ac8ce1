"""Data layer: the IDX reader, the MNIST and digits loaders, split validation and transforms.

Every IDX file used here is written by the test itself (``struct`` + ``gzip``) into ``tmp_path``;
expected values come from the arrays the test wrote, never from the loader. Only
``test_real_mnist_test_split`` reads the real MNIST files, and it skips when they are absent.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fwdlearn.data import DATA_DIR_ENV, Split, load_dataset
from fwdlearn.data.dataset import validate_split
from fwdlearn.data.idx import read_idx
from fwdlearn.data.mnist import load_mnist
from fwdlearn.data.transforms import random_translate, standardize
from fwdlearn.errors import DataError, FwdlearnError

REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

IMAGES_MAGIC = 0x00000803   # 2051: two zero bytes, type 0x08 (ubyte), 3 dimensions
LABELS_MAGIC = 0x00000801   # 2049: two zero bytes, type 0x08 (ubyte), 1 dimension


# --------------------------------------------------------------------------------------------
# helpers


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as IDX: big-endian magic, then one big-endian uint32 per dimension."""
    if magic is None:
        magic = (0x08 << 8) | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def assert_one_line_error(excinfo, *fragments: str) -> str:
    """The error is a ``DataError`` on a single line that contains every fragment."""
    assert isinstance(excinfo.value, DataError)
    assert isinstance(excinfo.value, FwdlearnError)
    message = str(excinfo.value)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def tiny_mnist(folder: Path, n_train: int = 5, n_test: int = 3, seed: int = 0, gz_train: bool = True,
               gz_test: bool = False) -> dict[str, np.ndarray]:
    """Write a 4-file MNIST set of 28x28 images; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    arrays["train_x"][0, 0, 0] = 255       # extremes must map to exactly 1.0 and 0.0
    arrays["train_x"][0, 0, 1] = 0
    folder.mkdir(parents=True, exist_ok=True)
    tr, te = (".gz" if gz_train else ""), (".gz" if gz_test else "")
    write(folder / f"train-images-idx3-ubyte{tr}", idx_bytes(arrays["train_x"]), gz_train)
    write(folder / f"train-labels-idx1-ubyte{tr}", idx_bytes(arrays["train_y"]), gz_train)
    write(folder / f"t10k-images-idx3-ubyte{te}", idx_bytes(arrays["test_x"]), gz_test)
    write(folder / f"t10k-labels-idx1-ubyte{te}", idx_bytes(arrays["test_y"]), gz_test)
    return arrays


def shift_image(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference translation of ``[..., H, W]``: ``out[r, c] = img[r - dy, c - dx]``, zero outside."""
    h, w = img.shape[-2:]
    out = torch.zeros_like(img)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


# --------------------------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_read_idx_images_and_labels(tmp_path, gz):
    """A hand-written IDX images file (2051) and labels file (2049) read back exactly, gzip or not."""
    # 2 images of 2x3, written byte by byte (row-major), and 4 labels
    images_payload = (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x03"
                      + bytes([0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255]))
    labels_payload = b"\x00\x00\x08\x01" + b"\x00\x00\x00\x04" + bytes([7, 0, 9, 3])
    images = read_idx(write(tmp_path / "img.idx", images_payload, gz), 2051)
    labels = read_idx(write(tmp_path / "lab.idx", labels_payload, gz), 2049)
    assert images.shape == (2, 2, 3)
    assert images.dtype == np.uint8
    assert images.tolist() == [[[0, 1, 2], [3, 4, 5]], [[250, 251, 252], [253, 254, 255]]]
    assert labels.shape == (4,)
    assert labels.tolist() == [7, 0, 9, 3]


def test_read_idx_large_dimension_is_big_endian(tmp_path):
    """A dimension >= 256 only decodes correctly if the header is read big-endian."""
    arr = (np.arange(300) % 256).astype(np.uint8)
    out = read_idx(write(tmp_path / "lab.idx", idx_bytes(arr)), 2049)
    assert out.shape == (300,)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_wrong_magic(tmp_path):
    """A labels file read where images are expected is rejected, naming the file."""
    path = write(tmp_path / "labels.idx", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError) as excinfo:
        read_idx(path, 2051)
    assert_one_line_error(excinfo, str(path), "2049", "2051")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("delta", [-1, -7, +1], ids=["short1", "short7", "long1"])
def test_read_idx_truncated_or_oversized(tmp_path, gz, delta):
    """Data shorter or longer than the header's dimensions promise is rejected."""
    payload = idx_bytes(np.ones((2, 3, 4), np.uint8))
    payload = payload[:delta] if delta < 0 else payload + b"\x00" * delta
    path = write(tmp_path / "images.idx", payload, gz)
    with pytest.raises(DataError) as excinfo:
        read_idx(path, 2051)
    assert_one_line_error(excinfo, str(path))


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x08", b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00"],
                         ids=["empty", "3bytes", "half-dims"])
def test_read_idx_truncated_header(tmp_path, payload):
    """A file that ends inside its header (magic or dimensions) is rejected."""
    path = write(tmp_path / "images.idx", payload)
    with pytest.raises(DataError) as excinfo:
        read_idx(path, 2051)
    assert_one_line_error(excinfo, str(path))


def test_read_idx_truncated_gzip(tmp_path):
    """A gzip stream cut short is a DataError, not an EOFError."""
    blob = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    path = tmp_path / "images.idx.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError) as excinfo:
        read_idx(path, 2051)
    assert_one_line_error(excinfo, str(path))


def test_read_idx_corrupt_gzip(tmp_path):
    """A gzip stream with garbage after its magic bytes is a DataError, not an OSError/zlib.error."""
    blob = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10))))
    blob[10:] = bytes((b ^ 0xA5) for b in blob[10:])
    path = tmp_path / "images.idx.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as excinfo:
        read_idx(path, 2051)
    assert_one_line_error(excinfo, str(path))


def test_read_idx_missing_file(tmp_path):
    """A missing file is a DataError naming it, not a FileNotFoundError."""
    path = tmp_path / "nope" / "images.idx"
    with pytest.raises(DataError) as excinfo:
        read_idx(path, 2051)
    assert_one_line_error(excinfo, str(path))


def test_read_idx_directory(tmp_path):
    """Reading a directory as an IDX file is a DataError naming it."""
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path, 2051)
    assert_one_line_error(excinfo, str(tmp_path))


# --------------------------------------------------------------------------------------------
# MNIST loader


def test_load_mnist_tiny(tmp_path):
    """Tiny 4-file set: shapes [N,1,28,28], float32 = bytes / 255 (255 -> 1.0), int64 labels."""
    arrays = tiny_mnist(tmp_path / "mnist", gz_train=True, gz_test=False)
    ds = load_mnist(tmp_path / "mnist")
    assert ds.train.x.shape == (5, 1, 28, 28)
    assert ds.test.x.shape == (3, 1, 28, 28)
    for split, xs, ys in ((ds.train, "train_x", "train_y"), (ds.test, "test_x", "test_y")):
        assert split.x.dtype == torch.float32
        assert split.y.dtype == torch.int64
        expected = arrays[xs].astype(np.float64)[:, None] / 255.0
        np.testing.assert_allclose(split.x.numpy(), expected, rtol=0, atol=1e-7)
        assert split.y.tolist() == arrays[ys].tolist()
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
    assert ds.train.x[0, 0, 0, 0].item() == 1.0
    assert ds.train.x[0, 0, 0, 1].item() == 0.0
    assert ds.num_classes == 10


def test_load_dataset_mnist_dir_or_parent(tmp_path):
    """``load_dataset('mnist', d)`` accepts the folder of IDX files or a parent holding ``mnist/``."""
    arrays = tiny_mnist(tmp_path / "mnist")
    for folder in (tmp_path / "mnist", tmp_path, str(tmp_path)):
        ds = load_dataset("mnist", folder)
        assert len(ds.train) == 5 and len(ds.test) == 3
        assert ds.test.y.tolist() == arrays["test_y"].tolist()


def test_load_mnist_missing_directory(tmp_path):
    """A data directory that does not exist is named in a one-line DataError."""
    missing = tmp_path / "does-not-exist"
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", missing)
    assert_one_line_error(excinfo, str(missing))


def test_load_mnist_directory_without_files(tmp_path):
    """An existing folder with no MNIST files is a DataError naming it."""
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path))


@pytest.mark.parametrize("stem", ["t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "train-labels-idx1-ubyte"])
def test_load_mnist_missing_file(tmp_path, stem):
    """Each of the four files is required; the missing one is named."""
    tiny_mnist(tmp_path, gz_train=False, gz_test=False)
    (tmp_path / stem).unlink()
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    assert_one_line_error(excinfo, stem)


def test_load_mnist_count_mismatch(tmp_path):
    """5 training images but 4 training labels is rejected, naming the images file."""
    tiny_mnist(tmp_path, gz_train=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    message = assert_one_line_error(excinfo, "train-images-idx3-ubyte")
    assert "5" in message and "4" in message


def test_load_mnist_label_out_of_range(tmp_path):
    """A label of 10 (MNIST has classes 0..9) is rejected, naming the labels file."""
    tiny_mnist(tmp_path, gz_test=False)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 10, 2], np.uint8)))
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    assert_one_line_error(excinfo, "t10k-labels-idx1-ubyte", "10")


def test_load_mnist_labels_file_with_images_magic(tmp_path):
    """Swapping an images file in for a labels file is caught by the magic number."""
    arrays = tiny_mnist(tmp_path, gz_test=False)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(arrays["test_x"]))
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path / "t10k-labels-idx1-ubyte"))


def test_load_dataset_mnist_without_dir(monkeypatch):
    """No ``data_dir`` and no environment variable: the error tells the user about --data-dir."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert DATA_DIR_ENV == "FWDLEARN_DATA_DIR"
    for empty in (None, ""):
        with pytest.raises(DataError) as excinfo:
            load_dataset("mnist", empty)
        assert_one_line_error(excinfo, "--data-dir", "FWDLEARN_DATA_DIR")


def test_load_dataset_mnist_from_env(tmp_path, monkeypatch):
    """With ``FWDLEARN_DATA_DIR`` set and no ``data_dir``, MNIST loads from the variable's folder."""
    arrays = tiny_mnist(tmp_path / "mnist")
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path))
    ds = load_dataset("mnist", None)
    assert ds.train.y.tolist() == arrays["train_y"].tolist()
    assert ds.test.x.shape == (3, 1, 28, 28)


def test_load_dataset_unknown_name():
    """An unknown data set name is a one-line DataError naming it."""
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar-11")
    assert_one_line_error(excinfo, "cifar-11")


# --------------------------------------------------------------------------------------------
# validate_split


def test_validate_split_nan_names_sample():
    """A NaN in sample 3 of 6 is reported with that index."""
    x = torch.rand(6, 1, 4, 4)
    x[3, 0, 2, 1] = float("nan")
    with pytest.raises(DataError) as excinfo:
        validate_split(Split(x, torch.zeros(6, dtype=torch.int64)), "unit (train split)", 10)
    assert_one_line_error(excinfo, "unit (train split)", "sample 3")


def test_validate_split_inf_names_first_bad_sample():
    """Infinite values are rejected too, naming the first bad sample."""
    x = torch.rand(6, 1, 4, 4)
    x[4, 0, 0, 0] = float("inf")
    x[5, 0, 1, 1] = float("-inf")
    with pytest.raises(DataError) as excinfo:
        validate_split(Split(x, torch.zeros(6, dtype=torch.int64)), "where", 10)
    assert_one_line_error(excinfo, "sample 4")


def test_validate_split_empty():
    """An empty split is rejected with the word 'empty'."""
    split = Split(torch.empty(0, 1, 4, 4), torch.empty(0, dtype=torch.int64))
    with pytest.raises(DataError) as excinfo:
        validate_split(split, "where", 10)
    assert_one_line_error(excinfo, "where", "empty")


@pytest.mark.parametrize("dtype", [torch.int32, torch.float32, torch.uint8])
def test_validate_split_label_dtype(dtype):
    """Labels that are not int64 are rejected."""
    split = Split(torch.rand(3, 1, 2, 2), torch.zeros(3, dtype=dtype))
    with pytest.raises(DataError) as excinfo:
        validate_split(split, "where", 10)
    assert_one_line_error(excinfo, "where", "int64")


def test_validate_split_samples_not_float():
    """Integer samples are rejected."""
    split = Split(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError) as excinfo:
        validate_split(split, "where", 10)
    assert_one_line_error(excinfo, "where")


@pytest.mark.parametrize("labels", [[0, 1, 10], [0, -1, 2]], ids=["too-big", "negative"])
def test_validate_split_label_range(labels):
    """Labels outside 0..num_classes-1 are rejected."""
    split = Split(torch.rand(3, 1, 2, 2), torch.tensor(labels, dtype=torch.int64))
    with pytest.raises(DataError) as excinfo:
        validate_split(split, "where", 10)
    assert_one_line_error(excinfo, "where")


def test_validate_split_count_mismatch():
    """4 samples with 3 labels are rejected."""
    split = Split(torch.rand(4, 1, 2, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError) as excinfo:
        validate_split(split, "where", 10)
    assert_one_line_error(excinfo, "where", "4", "3")


def test_validate_split_accepts_valid():
    """A well-formed split passes and is returned unchanged."""
    split = Split(torch.rand(4, 1, 2, 2), torch.tensor([0, 9, 3, 3]))
    assert validate_split(split, "where", 10) is split


# --------------------------------------------------------------------------------------------
# digits


def test_digits_dataset():
    """Digits: 1437/360 stratified split of 1x8x8 images in [0, 1], a partition of sklearn's 1797 images,
    all 10 classes in both splits, identical across calls."""
    from sklearn.datasets import load_digits

    a, b = load_dataset("digits"), load_dataset("digits")
    assert len(a.train) == 1437 and len(a.test) == 360
    assert a.train.x.shape == (1437, 1, 8, 8) and a.test.x.shape == (360, 1, 8, 8)
    assert a.train.x.dtype == torch.float32 and a.train.y.dtype == torch.int64
    for split in (a.train, a.test):
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
        assert set(split.y.tolist()) == set(range(10))
    assert float(a.train.x.max()) == 1.0                     # 16 / 16
    assert a.num_classes == 10
    # deterministic
    for s_a, s_b in ((a.train, b.train), (a.test, b.test)):
        assert torch.equal(s_a.x, s_b.x) and torch.equal(s_a.y, s_b.y)
    # train + test is exactly sklearn's data set (as a multiset of (image, label) rows)
    bunch = load_digits()
    ref = np.concatenate([bunch.images.reshape(-1, 64) / 16.0, bunch.target[:, None]], axis=1)
    got = np.concatenate([torch.cat([a.train.x, a.test.x]).reshape(-1, 64).double().numpy(),
                          torch.cat([a.train.y, a.test.y]).numpy()[:, None]], axis=1)
    sort = lambda m: m[np.lexsort(m.T[::-1])]
    np.testing.assert_allclose(sort(got), sort(ref), atol=1e-7)
    # stratified: each class's test share is within one sample of 20 %
    full_counts = np.bincount(bunch.target, minlength=10)
    test_counts = np.bincount(a.test.y.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * full_counts) <= 1)


# --------------------------------------------------------------------------------------------
# standardize


def test_standardize_mean_zero_population_std_one():
    """Each sample has mean ~0 and population (ddof=0) std ~1 over all its features."""
    g = torch.Generator().manual_seed(1)
    # per-sample scales 1..6 and offsets 0..5; variances >= ~1 so that eps = 1e-5 is negligible
    x = torch.randn(6, 3, 4, 5, generator=g) * torch.arange(1, 7).view(6, 1, 1, 1) + torch.arange(6).view(6, 1, 1, 1)
    before = x.clone()
    y = standardize(x)
    assert y.shape == x.shape
    assert torch.equal(x, before)                                       # input untouched
    flat = y.flatten(1).double().numpy()
    np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=1, ddof=0), 1.0, rtol=1e-4)
    # and it is an affine map per sample: (x - mean) / std, computed in float64 with numpy
    xf = x.flatten(1).double().numpy()
    ref = (xf - xf.mean(1, keepdims=True)) / xf.std(1, ddof=0, keepdims=True)
    np.testing.assert_allclose(flat, ref, atol=1e-4)


def test_standardize_concatenation_of_halves():
    """std([std(a), std(b)]) == [std(a), std(b)]: the identity tied-weight layers rely on.

    (Exact only up to eps = 1e-5 added to the variance, so both halves have variance >= ~1.)
    """
    g = torch.Generator().manual_seed(2)
    a = standardize(torch.randn(8, 30, generator=g) * 3 + 1)
    b = standardize(torch.rand(8, 30, generator=g) * 4 - 5)
    cat = torch.cat([a, b], dim=1)
    torch.testing.assert_close(standardize(cat), cat, atol=1e-4, rtol=0)


def test_standardize_constant_sample_is_finite():
    """A constant sample (zero variance) gives zeros, not NaN."""
    y = standardize(torch.full((2, 1, 3, 3), 0.7))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, torch.zeros_like(y), atol=1e-3, rtol=0)


# --------------------------------------------------------------------------------------------
# random_translate


def test_random_translate_zero_shift_is_identity():
    """``max_shift=0`` returns the images unchanged."""
    x = torch.rand(4, 1, 5, 5)
    out = random_translate(x, 0, torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


@pytest.mark.parametrize("k", [1, 2])
def test_random_translate_is_zero_filled_shift(k):
    """Each output image equals its input shifted by one (dy, dx) in [-k, k]^2 (same for all channels),
    pixels shifted in are zero, and the offsets cover the whole range."""
    n, c, h, w = 120, 2, 5, 6
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(3)) + 0.1   # no zeros in the input
    out = random_translate(x, k, torch.Generator().manual_seed(4))
    assert out.shape == x.shape
    shifts = []
    for i in range(n):
        found = [(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)
                 if torch.equal(out[i], shift_image(x[i], dy, dx))]
        assert len(found) == 1, f"image {i}: matching shifts {found}"
        shifts.append(found[0])
    assert {dy for dy, _ in shifts} == set(range(-k, k + 1))
    assert {dx for _, dx in shifts} == set(range(-k, k + 1))


def test_random_translate_reproducible():
    """The same generator seed gives the same translations; another seed gives different ones."""
    x = torch.rand(64, 1, 6, 6) + 0.1
    first = random_translate(x, 2, torch.Generator().manual_seed(7))
    again = random_translate(x, 2, torch.Generator().manual_seed(7))
    other = random_translate(x, 2, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


# --------------------------------------------------------------------------------------------
# the real MNIST files (optional)


def test_real_mnist_test_split():
    """The real MNIST: 60,000 / 10,000 images of 1x28x28, and the published t10k class counts."""
    if not REAL_MNIST.is_dir():
        pytest.skip(f"real MNIST not found at {REAL_MNIST}")
    ds = load_dataset("mnist", REAL_MNIST)
    assert ds.test.x.shape == (10000, 1, 28, 28)
    assert ds.train.x.shape == (60000, 1, 28, 28)
    counts = torch.bincount(ds.test.y, minlength=10)
    assert int(counts.sum()) == 10000
    # per-class counts of the MNIST test set (LeCun et al.)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert float(ds.test.x.min()) == 0.0 and float(ds.test.x.max()) == 1.0
