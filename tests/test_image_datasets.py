"""CIFAR-10 and STL-10 readers: tiny files written here in the official formats, read back exactly.

CIFAR-10 batches are written as Python 2 wrote them (protocol 2, ``str`` as SHORT_BINSTRING /
BINSTRING, ``numpy.core.multiarray._reconstruct``), see ``Py2Pickler``; STL-10 binaries byte by byte
with each channel column-major. Pixel positions are encoded here with explicit offset arithmetic
taken from the data sets' descriptions, never with the loaders' reshapes, and every expected value
comes from the arrays the test wrote. The real data sets are not needed (nor downloaded).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import shlex
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from fwdlearn.cli import build_parser, main
from fwdlearn.data import DATA_DIR_ENV, DATASETS, LabelledDataset, load_dataset
from fwdlearn.data.cifar10 import load_cifar10
from fwdlearn.data.stl10 import load_stl10
from fwdlearn.errors import DataError
from fwdlearn.export.metadata import preprocessing
from test_data import assert_one_line_error

CIFAR_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
CIFAR_TRAIN_SIZES = (3, 2, 4, 1, 2)     # images in data_batch_1..5
CIFAR_TEST_SIZE = 3
STL_SIZES = {"train": 4, "test": 3, "unlabeled": 5}

_RECONSTRUCT = np.zeros(1).__reduce__()[0]


# --------------------------------------------------------------------------------------------
# writers of the official formats


class Py2Pickler(pickle._Pickler):
    """A protocol-2 pickler that writes what Python 2's cPickle wrote for the CIFAR-10 batches.

    Python 2 ``str`` (bytes here, and the ``str`` inside numpy's reduce tuples) as SHORT_BINSTRING /
    BINSTRING, and ``_reconstruct`` under its numpy 1 module name. Python 3's own protocol 2 would
    instead write bytes through ``_codecs.encode``, which the official files never contain.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(_RECONSTRUCT)] = save_global


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """``[N, 3, 32, 32]`` -> ``[N, 3072]``: "the first 1024 entries contain the red channel values, the next
    1024 the green, and the final 1024 the blue ... stored in row-major order" (the CIFAR-10 page)."""
    n = images.shape[0]
    rows = np.zeros((n, 3072), dtype=np.uint8)
    for c in range(3):
        for h in range(32):
            for w in range(32):
                rows[:, 1024 * c + 32 * h + w] = images[:, c, h, w]
    return rows


def stl_bytes(images: np.ndarray) -> bytes:
    """``[N, 3, 96, 96]`` (C, H, W) -> the STL-10 binary: per image R, G, B planes, each column-major,
    i.e. the byte of row h, column w of channel c at offset ``c * 96 * 96 + w * 96 + h``."""
    n = images.shape[0]
    flat = np.zeros((n, 3 * 96 * 96), dtype=np.uint8)
    h, w = np.meshgrid(np.arange(96), np.arange(96), indexing="ij")
    for c in range(3):
        flat[:, c * 9216 + w.ravel() * 96 + h.ravel()] = images[:, c].reshape(n, -1)
    return flat.tobytes()


def random_images(rng, n: int, side: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3, side, side), dtype=np.uint8)


def write_cifar(folder: Path, seed: int = 0, dump=py2_pickle) -> dict:
    """Write a tiny cifar-10-batches-py folder; return the images ``[N, 3, 32, 32]`` and labels written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {"train_x": [], "train_y": []}
    for i, n in enumerate(CIFAR_TRAIN_SIZES, start=1):
        images, labels = random_images(rng, n, 32), [int(v) for v in rng.integers(0, 10, n)]
        (folder / f"data_batch_{i}").write_bytes(dump({
            b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels, b"data": cifar_rows(images),
            b"filenames": [f"img_{i}_{k}.png".encode() for k in range(n)]}))
        written["train_x"].append(images)
        written["train_y"] += labels
    written["train_x"] = np.concatenate(written["train_x"])
    written["test_x"] = random_images(rng, CIFAR_TEST_SIZE, 32)
    written["test_y"] = [9, 0, 4]
    (folder / "test_batch").write_bytes(dump({
        b"batch_label": b"testing batch 1 of 1", b"labels": written["test_y"],
        b"data": cifar_rows(written["test_x"]), b"filenames": [b"a.png", b"b.png", b"c.png"]}))
    (folder / "batches.meta").write_bytes(dump({
        b"label_names": [name.encode() for name in CIFAR_NAMES], b"num_cases_per_batch": 10000, b"num_vis": 3072}))
    return written


def write_stl(folder: Path, seed: int = 0) -> dict:
    """Write a tiny stl10_binary folder; return the images ``[N, 3, 96, 96]`` and the file labels (1..10)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in STL_SIZES.items():
        written[f"{split}_x"] = random_images(rng, n, 96)
        (folder / f"{split}_X.bin").write_bytes(stl_bytes(written[f"{split}_x"]))
    written["train_y"] = np.array([1, 10, 3, 7], dtype=np.uint8)
    written["test_y"] = np.array([10, 2, 1], dtype=np.uint8)
    for split in ("train", "test"):
        (folder / f"{split}_y.bin").write_bytes(written[f"{split}_y"].tobytes())
    (folder / "class_names.txt").write_text("\n".join(STL_NAMES) + "\n")
    return written


def raw_levels(x: torch.Tensor, meta: dict) -> np.ndarray:
    """Undo the normalisation with the recorded mean/std: back to 0..255 grey levels."""
    mean = np.array(meta["mean"]).reshape(1, 3, 1, 1)
    std = np.array(meta["std"]).reshape(1, 3, 1, 1)
    return (x.double().numpy() * std + mean) * 255.0


def expected_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaled = images.astype(np.float64) / 255.0
    return scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3))


# --------------------------------------------------------------------------------------------
# the writers themselves


def test_py2_pickler_writes_what_python2_wrote():
    """The CIFAR-like pickle has only Python 2 opcodes for strings and numpy 1's global names."""
    blob = py2_pickle({b"data": cifar_rows(np.zeros((1, 3, 32, 32), np.uint8)), b"labels": [3]})
    assert blob[:2] == b"\x80\x02"
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(blob)]
    globals_ = {arg for name, arg in ops if name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert not any(name in ("BINUNICODE", "SHORT_BINBYTES", "BINBYTES") for name, _ in ops)
    assert ("SHORT_BINSTRING", "data") in ops and any(name == "BINSTRING" for name, _ in ops)  # 3072-byte payload


def test_stl_writer_is_column_major():
    """One byte checked by hand: channel G (1), row 2, column 5 lands at 9216 + 5 * 96 + 2."""
    image = np.zeros((1, 3, 96, 96), np.uint8)
    image[0, 1, 2, 5] = 77
    raw = stl_bytes(image)
    assert len(raw) == 27648
    assert raw[9216 + 5 * 96 + 2] == 77 and raw.count(0) == 27647


# --------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar10_pixels_labels_names_sizes(tmp_path):
    """Every pixel lands at its [c, h, w]; labels, class names and split sizes are those written."""
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_cifar10(tmp_path / "cifar-10-batches-py")
    assert isinstance(ds, LabelledDataset) and ds.name == "cifar10"
    assert ds.train.x.shape == (sum(CIFAR_TRAIN_SIZES), 3, 32, 32)
    assert ds.test.x.shape == (CIFAR_TEST_SIZE, 3, 32, 32)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    np.testing.assert_allclose(raw_levels(ds.train.x, ds.meta), written["train_x"], atol=1e-3)
    np.testing.assert_allclose(raw_levels(ds.test.x, ds.meta), written["test_x"], atol=1e-3)
    assert ds.train.y.tolist() == written["train_y"]
    assert ds.test.y.tolist() == [9, 0, 4]
    assert ds.class_names == CIFAR_NAMES
    assert ds.unlabelled is None
    assert ds.meta["layout"] == "NCHW" and "row-major" in ds.meta["raw"]


def test_cifar10_distinctive_image(tmp_path):
    """A hand-made image: red rises down the rows, green across the columns, blue is one bright pixel.

    A transposed or channel-swapped read fails this even without the random images."""
    write_cifar(tmp_path)
    folder = tmp_path
    image = np.zeros((1, 3, 32, 32), np.uint8)
    image[0, 0] = (np.arange(32) * 8).reshape(32, 1)      # R[h, w] = 8 h
    image[0, 1] = (np.arange(32) * 4).reshape(1, 32)      # G[h, w] = 4 w
    image[0, 2, 3, 29] = 250                               # B: row 3, column 29
    rows = cifar_rows(image)
    assert rows[0, 32 * 5 + 7] == 40 and rows[0, 1024 + 32 * 5 + 7] == 28 and rows[0, 2048 + 32 * 3 + 29] == 250
    (folder / "test_batch").write_bytes(py2_pickle({b"labels": [2], b"data": rows}))
    ds = load_cifar10(folder)
    got = raw_levels(ds.test.x, ds.meta)[0].round()
    assert got[0, 5, 7] == 40 and got[0, 7, 5] == 56
    assert got[1, 5, 7] == 28 and got[1, 7, 5] == 20
    assert got[2, 3, 29] == 250 and got[2].sum() == 250


def assert_normalised_with_training_statistics(ds, train_images, others) -> None:
    """Training split per channel: mean 0, std 1; ``meta`` holds the training split's mean/std of x / 255;
    every ``(tensor, raw images)`` in ``others`` is normalised with those, not its own."""
    x = ds.train.x.double()
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3), unbiased=False).numpy(), 1.0, atol=1e-5)
    mean, std = expected_stats(train_images)
    np.testing.assert_allclose(ds.meta["mean"], mean, rtol=1e-9)
    np.testing.assert_allclose(ds.meta["std"], std, rtol=1e-9)
    for tensor, images in others:
        expected = (images / 255.0 - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)
        np.testing.assert_allclose(tensor.numpy(), expected, atol=1e-5)


def test_cifar10_normalisation(tmp_path):
    """Training split per channel: mean 0, std 1; meta records the training split's mean/std of x / 255,
    and the test split is normalised with those, not its own."""
    written = write_cifar(tmp_path)
    ds = load_cifar10(tmp_path)
    assert_normalised_with_training_statistics(ds, written["train_x"], ((ds.test.x, written["test_x"]),))
    assert ds.meta["channels"] == ["R", "G", "B"]


@pytest.mark.parametrize("protocol", [3, 4])
def test_cifar10_repickled_by_python3(tmp_path, protocol):
    """A copy re-pickled by Python 3 / numpy 2 (numpy._core spelling, str or bytes keys) reads the same."""
    dump = lambda obj: pickle.dumps(obj, protocol=protocol)
    written = write_cifar(tmp_path / "a", dump=dump)
    ds = load_cifar10(tmp_path / "a")
    np.testing.assert_allclose(raw_levels(ds.train.x, ds.meta), written["train_x"], atol=1e-3)
    assert ds.train.y.tolist() == written["train_y"] and ds.class_names == CIFAR_NAMES
    (tmp_path / "a" / "test_batch").write_bytes(dump({"data": cifar_rows(written["test_x"]), "labels": [1, 2, 3]}))
    assert load_cifar10(tmp_path / "a").test.y.tolist() == [1, 2, 3]


@pytest.mark.parametrize("layout", ["folder", "parent", "cifar10", "cifar10/cifar-10-batches-py"])
def test_cifar10_folder_or_parents(tmp_path, monkeypatch, layout):
    """The batches folder itself, its parent, or a parent's cifar10/ sub-folder; via load_dataset and the
    environment variable too."""
    where = {"folder": "x/cifar-10-batches-py", "parent": "x/cifar-10-batches-py", "cifar10": "x/cifar10",
             "cifar10/cifar-10-batches-py": "x/cifar10/cifar-10-batches-py"}[layout]
    written = write_cifar(tmp_path / where)
    given = tmp_path / where if layout == "folder" else tmp_path / "x"
    assert load_dataset("cifar10", given).train.y.tolist() == written["train_y"]
    monkeypatch.setenv(DATA_DIR_ENV, str(given))
    assert load_dataset("cifar10").test.y.tolist() == written["test_y"]


def test_cifar10_needs_a_data_dir(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar10")
    assert_one_line_error(excinfo, "CIFAR-10", "--data-dir", DATA_DIR_ENV)


@pytest.mark.parametrize("load, marker", [(load_cifar10, "data_batch_1"), (load_stl10, "train_X.bin")])
def test_missing_or_empty_directory(tmp_path, load, marker):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as excinfo:
        load(missing)
    assert_one_line_error(excinfo, str(missing), "does not exist")
    with pytest.raises(DataError) as excinfo:
        load(tmp_path)
    assert_one_line_error(excinfo, marker, str(tmp_path))


@pytest.mark.parametrize("name", ["data_batch_3", "data_batch_5", "test_batch", "batches.meta"])
def test_cifar10_missing_file(tmp_path, name):
    write_cifar(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, name, str(tmp_path))


@pytest.mark.parametrize("keep", [0, 2, 40, 0.5, -1], ids=["empty", "2bytes", "40bytes", "half", "last-byte-cut"])
def test_cifar10_truncated_pickle(tmp_path, keep):
    write_cifar(tmp_path)
    path = tmp_path / "data_batch_2"
    blob = path.read_bytes()
    path.write_bytes(blob[:int(len(blob) * keep)] if isinstance(keep, float) else blob[:keep])
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, str(path))


def _replace_batch(folder: Path, name: str, content) -> Path:
    (folder / name).write_bytes(py2_pickle(content))
    return folder / name


def _rows(n: int) -> np.ndarray:
    return cifar_rows(random_images(np.random.default_rng(5), n, 32))


@pytest.mark.parametrize("content, fragments", [
    ({b"data": _rows(2)}, ["'labels'"]),
    ({b"labels": [1, 2]}, ["'data'"]),
    ({b"data": _rows(2)[:, :3000], b"labels": [1, 2]}, ["3072", "[2, 3000]"]),
    ({b"data": _rows(2).reshape(-1), b"labels": [1, 2]}, ["3072"]),
    ({b"data": _rows(2).astype(np.float32), b"labels": [1, 2]}, ["uint8", "float32"]),
    ({b"data": [[0] * 3072], b"labels": [1]}, ["uint8", "list"]),
    ({b"data": _rows(2), b"labels": [1, 2, 3]}, ["2 images", "3 labels"]),
    ({b"data": _rows(3), b"labels": [1, 2]}, ["3 images", "2 labels"]),
    ({b"data": _rows(2), b"labels": [1, 10]}, ["label 10", "0..9"]),
    ({b"data": _rows(2), b"labels": [-1, 2]}, ["label -1", "0..9"]),
    ({b"data": _rows(2), b"labels": [1, b"x"]}, ["labels"]),
    ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, ["no images"]),
    ([1, 2, 3], ["dict", "list"]),
], ids=["no-labels", "no-data", "3000-columns", "flat", "float", "list-data", "more-labels", "fewer-labels",
        "label-10", "label-minus-1", "label-bytes", "empty", "not-a-dict"])
def test_cifar10_wrong_batch_content(tmp_path, content, fragments):
    write_cifar(tmp_path)
    path = _replace_batch(tmp_path, "data_batch_4", content)
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, str(path), *fragments)


@pytest.mark.parametrize("content, fragments", [
    ({b"num_vis": 3072}, ["'label_names'"]),
    ({b"label_names": [b"a", b"b"]}, ["10 label names", "found 2"]),
    ({b"label_names": b"airplane"}, ["list of strings"]),
], ids=["no-names", "two-names", "not-a-list"])
def test_cifar10_wrong_meta(tmp_path, content, fragments):
    write_cifar(tmp_path)
    path = _replace_batch(tmp_path, "batches.meta", content)
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, str(path), *fragments)


def test_cifar10_constant_channel(tmp_path):
    """A channel that never varies in the training split cannot be normalised: a DataError, not NaN."""
    write_cifar(tmp_path)
    for i, n in enumerate(CIFAR_TRAIN_SIZES, start=1):
        images = random_images(np.random.default_rng(i), n, 32)
        images[:, 2] = 17
        _replace_batch(tmp_path, f"data_batch_{i}", {b"data": cifar_rows(images), b"labels": [0] * n})
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path), "channel B", "constant")


class _Exploit:
    """Unpickling this runs ``os.system(command)`` with an ordinary unpickler."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Eval:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_malicious_pickle_is_refused_without_running(tmp_path, protocol):
    """A batch whose reduce calls os.system is refused, naming the global, and the command never runs."""
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    content = {b"data": _Exploit(f"touch {shlex.quote(str(marker))}"), b"labels": [1]}
    blob = py2_pickle(content) if protocol == 2 else pickle.dumps(content, protocol=protocol)
    assert b"system" in blob
    pickle.loads(blob)                       # the exploit works with an ordinary unpickler...
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, str(path), "refused", f"{os.system.__module__}.system")
    assert not marker.exists()               # ...and not with the loader's


@pytest.mark.parametrize("blob, global_name", [
    (pickle.dumps(_Eval(), protocol=2), "__builtin__.eval"),             # protocol 2 writes the Python 2 name
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.", "_codecs.encode"),  # rot13: only latin1 rebuilds bytes
    (b"\x80\x02cnumpy\nload\nq\x00.", "numpy.load"),
    (b"\x80\x02cnumpy.core.multiarray\nscalar\nq\x00.", "numpy.core.multiarray.scalar"),
    (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\nsubprocess\x8c\x05Popen\x93.", "subprocess.Popen"),
], ids=["eval", "codecs", "numpy-load", "numpy-scalar", "popen-stack-global"])
def test_cifar10_any_other_global_is_refused(tmp_path, blob, global_name):
    write_cifar(tmp_path)
    path = tmp_path / "batches.meta"
    path.write_bytes(blob)
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, str(path), "refused", global_name)


def test_cifar10_persistent_id_is_refused(tmp_path):
    class WithPersistentId(pickle.Pickler):
        def persistent_id(self, obj):
            return "external" if obj == "secret" else None

    buffer = io.BytesIO()
    WithPersistentId(buffer, protocol=2).dump({b"data": "secret", b"labels": [1]})
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(buffer.getvalue())
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path / "test_batch"))


# --------------------------------------------------------------------------------------------
# STL-10


def test_stl10_pixels_labels_names_sizes(tmp_path):
    """Column-major planes come out as [c, h, w]; labels 1..10 become 0..9; names from class_names.txt."""
    written = write_stl(tmp_path / "stl10_binary")
    ds = load_stl10(tmp_path / "stl10_binary")
    assert ds.name == "stl10"
    assert ds.train.x.shape == (4, 3, 96, 96) and ds.test.x.shape == (3, 3, 96, 96)
    assert ds.unlabelled.shape == (5, 3, 96, 96)
    for tensor in (ds.train.x, ds.test.x, ds.unlabelled):
        assert tensor.dtype == torch.float32
    np.testing.assert_allclose(raw_levels(ds.train.x, ds.meta), written["train_x"], atol=1e-3)
    np.testing.assert_allclose(raw_levels(ds.test.x, ds.meta), written["test_x"], atol=1e-3)
    np.testing.assert_allclose(raw_levels(ds.unlabelled, ds.meta), written["unlabeled_x"], atol=1e-3)
    assert ds.train.y.tolist() == [0, 9, 2, 6] and ds.train.y.dtype == torch.int64
    assert ds.test.y.tolist() == [9, 1, 0]
    assert ds.class_names == STL_NAMES
    assert ds.meta["unlabelled"] == 5 and ds.meta["layout"] == "NCHW"


def test_stl10_distinctive_image(tmp_path):
    """Bytes placed by hand: offset c*9216 + w*96 + h is pixel [c, h, w] (not [c, w, h])."""
    write_stl(tmp_path)
    raw = bytearray(27648)
    raw[0 * 9216 + 10 * 96 + 3] = 200          # R, row 3, column 10
    raw[1 * 9216 + 0 * 96 + 95] = 150          # G, row 95, column 0
    raw[2 * 9216 + 95 * 96 + 0] = 100          # B, row 0, column 95
    (tmp_path / "test_X.bin").write_bytes(bytes(raw) * 3)
    ds = load_stl10(tmp_path, unlabelled=False)
    got = raw_levels(ds.test.x, ds.meta)[0].round()
    assert got[0, 3, 10] == 200 and got[0, 10, 3] == 0
    assert got[1, 95, 0] == 150 and got[1, 0, 95] == 0
    assert got[2, 0, 95] == 100 and got[2, 95, 0] == 0
    assert got.sum() == 450


def test_stl10_normalisation(tmp_path):
    """Training split per channel: mean 0, std 1; test and unlabelled use the training split's statistics."""
    written = write_stl(tmp_path)
    ds = load_stl10(tmp_path)
    assert_normalised_with_training_statistics(
        ds, written["train_x"], ((ds.test.x, written["test_x"]), (ds.unlabelled, written["unlabeled_x"])))


@pytest.mark.parametrize("limit, expected", [(None, 5), (2, 2), (5, 5), (9, 5), (0, 0)])
def test_stl10_max_unlabelled(tmp_path, limit, expected):
    written = write_stl(tmp_path)
    ds = load_stl10(tmp_path, max_unlabelled=limit)
    assert ds.unlabelled.shape == (expected, 3, 96, 96)
    assert ds.meta["unlabelled"] == expected
    np.testing.assert_allclose(raw_levels(ds.unlabelled, ds.meta), written["unlabeled_x"][:expected], atol=1e-3)


def test_stl10_max_unlabelled_reads_only_that_many(tmp_path):
    """With a count, the images past it are not read into memory: from a 55 MB file of 2,000 images
    (sparse, so it costs no disk) loading two allocates well under the file's size (numpy's
    allocations are traced by tracemalloc; a memory map is not an allocation)."""
    written = write_stl(tmp_path)
    path = tmp_path / "unlabeled_X.bin"
    with open(path, "r+b") as file:
        file.truncate(2000 * 27648)
    tracemalloc.start()
    try:
        ds = load_stl10(tmp_path, max_unlabelled=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"peak numpy allocation {peak / 1e6:.1f} MB for 2 of 2,000 images"
    assert ds.unlabelled.shape == (2, 3, 96, 96)
    np.testing.assert_allclose(raw_levels(ds.unlabelled, ds.meta), written["unlabeled_x"][:2], atol=1e-3)


def test_stl10_without_unlabelled(tmp_path):
    """unlabelled=False skips the file entirely: it may even be missing."""
    write_stl(tmp_path)
    (tmp_path / "unlabeled_X.bin").unlink()
    ds = load_stl10(tmp_path, unlabelled=False)
    assert ds.unlabelled is None and ds.meta["unlabelled"] == 0
    assert len(ds.train) == 4
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path)
    assert_one_line_error(excinfo, "unlabeled_X.bin", str(tmp_path))


def test_stl10_via_load_dataset(tmp_path, monkeypatch):
    written = write_stl(tmp_path / "data" / "stl10" / "stl10_binary")
    ds = load_dataset("stl10", tmp_path / "data", max_unlabelled=1)
    assert ds.unlabelled.shape[0] == 1 and ds.test.y.tolist() == [9, 1, 0]
    for given in (tmp_path / "data" / "stl10", tmp_path / "data" / "stl10" / "stl10_binary"):
        monkeypatch.setenv(DATA_DIR_ENV, str(given))
        ds = load_dataset("stl10", unlabelled=False)
        assert ds.unlabelled is None
        np.testing.assert_allclose(raw_levels(ds.train.x, ds.meta), written["train_x"], atol=1e-3)
    monkeypatch.delenv(DATA_DIR_ENV)
    with pytest.raises(DataError) as excinfo:
        load_dataset("stl10")
    assert_one_line_error(excinfo, "STL-10", "--data-dir", DATA_DIR_ENV)


@pytest.mark.parametrize("name", ["train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt", "unlabeled_X.bin"])
def test_stl10_missing_file(tmp_path, name):
    write_stl(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path)
    assert_one_line_error(excinfo, name, str(tmp_path))


@pytest.mark.parametrize("name", ["train_X.bin", "test_X.bin", "unlabeled_X.bin"])
@pytest.mark.parametrize("delta", [-1, -27647, 5], ids=["short1", "one-byte-left", "long5"])
def test_stl10_truncated_images(tmp_path, name, delta):
    """A file that is not a whole number of 3x96x96 images is rejected, naming it."""
    write_stl(tmp_path)
    path = tmp_path / name
    blob = path.read_bytes()
    path.write_bytes(blob[:delta] if delta < 0 else blob + b"\x01" * delta)
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path)
    assert_one_line_error(excinfo, str(path), "27648", str(len(blob) + delta))


@pytest.mark.parametrize("name", ["train_X.bin", "test_X.bin", "unlabeled_X.bin", "train_y.bin", "test_y.bin"])
def test_stl10_empty_file(tmp_path, name):
    write_stl(tmp_path)
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path / name), "empty")


@pytest.mark.parametrize("split, labels", [("train", [1, 2, 3]), ("train", [1, 2, 3, 4, 5]), ("test", [1, 2])])
def test_stl10_label_count_mismatch(tmp_path, split, labels):
    written = write_stl(tmp_path)
    (tmp_path / f"{split}_y.bin").write_bytes(bytes(labels))
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path)
    n = len(written[f"{split}_x"])
    assert_one_line_error(excinfo, str(tmp_path / f"{split}_X.bin"), f"{n} images", f"{len(labels)} labels",
                          f"{split}_y.bin")


@pytest.mark.parametrize("bad", [0, 11, 255])
def test_stl10_label_out_of_range(tmp_path, bad):
    write_stl(tmp_path)
    (tmp_path / "test_y.bin").write_bytes(bytes([3, bad, 4]))
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path / "test_y.bin"), f"label {bad}", "1..10")


@pytest.mark.parametrize("text", ["airplane\nbird\n", "\n".join(STL_NAMES + ("extra",)), ""])
def test_stl10_wrong_class_names(tmp_path, text):
    write_stl(tmp_path)
    (tmp_path / "class_names.txt").write_text(text)
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path / "class_names.txt"))


@pytest.mark.parametrize("limit", [-1, 1.5, True])
def test_stl10_bad_max_unlabelled(tmp_path, limit):
    write_stl(tmp_path)
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path, max_unlabelled=limit)
    assert_one_line_error(excinfo, "max_unlabelled", repr(limit))


def test_stl10_constant_channel(tmp_path):
    write_stl(tmp_path)
    images = random_images(np.random.default_rng(3), 4, 96)
    images[:, 0] = 0
    (tmp_path / "train_X.bin").write_bytes(stl_bytes(images))
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path), "channel R", "constant")


# --------------------------------------------------------------------------------------------
# registration, export metadata, command line


def test_registered_and_other_datasets_have_no_unlabelled():
    assert {"cifar10", "stl10"} <= set(DATASETS)
    assert load_dataset("digits").unlabelled is None


@pytest.mark.parametrize("name", ["cifar10", "stl10"])
def test_export_preprocessing_carries_mean_and_std(tmp_path, name):
    """What the ONNX metadata tells a deployer: /255, then the recorded per-channel mean/std, as JSON."""
    if name == "cifar10":
        write_cifar(tmp_path)
        ds = load_cifar10(tmp_path)
    else:
        write_stl(tmp_path)
        ds = load_stl10(tmp_path, unlabelled=False)
    steps = json.loads(json.dumps(preprocessing(name, ds.meta)))
    assert steps["mean"] == pytest.approx(ds.meta["mean"]) and len(steps["mean"]) == 3
    assert steps["std"] == pytest.approx(ds.meta["std"])
    assert "255" in steps["scale"] and "mean" in steps["scale"]
    assert steps["channels"] == ["R", "G", "B"]
    assert ("column-major" if name == "stl10" else "row-major") in steps["raw"]
    torch.save(ds.meta, tmp_path / "meta.pt")       # the read-out file stores meta; it must load weights-only
    assert torch.load(tmp_path / "meta.pt", weights_only=True) == ds.meta


@pytest.mark.parametrize("name, label", [("cifar10", "CIFAR-10"), ("stl10", "STL-10")])
def test_cli_accepts_the_datasets(tmp_path, capsys, name, label):
    args = build_parser().parse_args(["train", "scff-mlp", "--dataset", name])
    assert args.dataset == name
    missing = tmp_path / "nowhere"
    code = main(["train", "scff-mlp", "--dataset", name, "--data-dir", str(missing), "--out", str(tmp_path / "o"),
                 "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fwdlearn: error:") and "\n" not in err
    assert label in err and str(missing) in err


def test_a_run_loads_only_the_unlabelled_images_its_preset_asks_for(tmp_path, monkeypatch):
    """``data.max_unlabelled`` reaches the STL-10 loader through the run; other data sets refuse it."""
    from fwdlearn.errors import ConfigError
    from fwdlearn.presets import load_preset
    from fwdlearn.run import load_run_dataset

    config = load_preset("stl10-paper")
    config.data.max_unlabelled = 3
    seen = {}

    def fake_loader(folder, *, unlabelled=True, max_unlabelled=None):
        seen["max_unlabelled"] = max_unlabelled
        raise DataError("stop here")

    monkeypatch.setattr("fwdlearn.data.stl10.load_stl10", fake_loader)
    with pytest.raises(DataError, match="stop here"):
        load_run_dataset(config, tmp_path)
    assert seen == {"max_unlabelled": 3}
    digits = load_preset("digits")
    digits.data.max_unlabelled = 3
    with pytest.raises(ConfigError, match="max_unlabelled applies to the stl10 data set only"):
        digits.validate()
