"""Bad input ends in one line, ``fwdlearn: error: ...``, exit status 2, and leaves no new file behind:
export opsets, data paths of the wrong kind, ``bench --out``, untrained presets, run names that leave
``runs/``, an FSDD folder named like a recording, and CIFAR-10 batches re-pickled at protocol 2."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fwdlearn.cli import main
from fwdlearn.data import load_dataset
from fwdlearn.data.cifar10 import load_cifar10
from fwdlearn.data.fsdd import load_fsdd
from fwdlearn.data.idx import read_idx
from fwdlearn.data.mnist import load_mnist
from fwdlearn.data.stl10 import load_stl10
from fwdlearn.errors import DataError
from test_data import assert_one_line_error, tiny_mnist
from test_image_datasets import CIFAR_NAMES, cifar_rows, raw_levels, write_cifar

REAL_RECORDINGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(capsys, argv, *fragments: str) -> str:
    """``fwdlearn argv`` exits 2 with one line on stderr holding every fragment, and prints nothing else."""
    code, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("fwdlearn: error: "), err
    assert out == "", out
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# --------------------------------------------------------------------------------------------
# export --opset


TINY_MLP = """
name = "tiny"
learner = "scff-mlp"
batch_size = 50

[[layers]]
width = 8
lr = 1e-2
theta_pos = 0.0
theta_neg = 1.0
epochs = 1

[probe]
epochs = 1
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A finished tiny scff-mlp run on the embedded digits (checkpoint and read-out)."""
    pytest.importorskip("onnxruntime")
    from fwdlearn.presets import load_preset
    from fwdlearn.run import train_run

    folder = tmp_path_factory.mktemp("tiny-run")
    (folder / "tiny.toml").write_text(TINY_MLP)
    train_run(load_preset(str(folder / "tiny.toml")), folder / "run", show_progress=False, log=lambda _: None)
    return folder / "run" / "checkpoint.pt"


@pytest.mark.parametrize("opset", [5, 12, 0, 99])
def test_export_refuses_an_opset_outside_the_range_in_one_line(capsys, tmp_path, checkpoint, opset):
    """Opset 5 once ended in a traceback and others after ~50 lines of graph dump: now one line naming the
    value and the range, before anything is traced."""
    before = files_under(checkpoint.parent)
    line = assert_refused(capsys, ["export", checkpoint, "--opset", opset, "--out", tmp_path / "m.onnx"],
                          f"opset {opset} ", "float")
    assert re.search(r"\b13\.\.\d+\b", line), line
    assert files_under(tmp_path) == set() and files_under(checkpoint.parent) == before


def test_the_newest_opset_named_exports_and_the_next_is_refused(capsys, tmp_path, checkpoint):
    """The range in the message is real: its newest opset gives a file at that opset, one more is refused."""
    line = assert_refused(capsys, ["export", checkpoint, "--opset", 99, "--out", tmp_path / "m.onnx"])
    newest = int(re.search(r"\b13\.\.(\d+)\b", line).group(1))
    assert newest >= 18                                           # the default opset lies inside
    code, out, err = run_cli(capsys, "export", checkpoint, "--opset", newest, "--out", tmp_path / "m.onnx")
    assert code == 0 and err == "" and f"opset {newest}," in out, err
    assert_refused(capsys, ["export", checkpoint, "--opset", newest + 1, "--out", tmp_path / "n.onnx"],
                   f"opset {newest + 1} ")
    assert not (tmp_path / "n.onnx").exists()


def test_a_failed_export_prints_nothing_but_its_one_line(capfd, monkeypatch, tmp_path, checkpoint):
    """What an exporter writes to the terminal (TorchScript's C++ log dumps the graph to file descriptors 1/2
    when it fails; Python prints and logs) never reaches it: only the error line does."""
    import logging

    from fwdlearn.export import onnx_export

    def noisy_failure(deployable, path, opset):
        os.write(1, b"Torch IR graph at exception: graph(%0 : Float(*, 1, 8, 8)):\n")
        os.write(2, b"  %347 : Long(device=cpu) = prim::Constant[value={1}]()\n")
        print("exporter stdout")
        logging.getLogger("somewhere.inside").warning("exporter log")
        raise RuntimeError("the exporter gave up\nwith a second line")

    monkeypatch.setitem(onnx_export.TRACERS, "float", noisy_failure)
    code = main(["export", str(checkpoint), "--out", str(tmp_path / "m.onnx")])
    out, err = capfd.readouterr()
    assert code == 2 and out == "", out
    assert err.splitlines() == ["fwdlearn: error: float export of the scff-mlp model failed "
                                "(RuntimeError: the exporter gave up)"], err
    assert files_under(tmp_path) == set()


def test_qonnx_takes_no_opset():
    """QONNX is written at the opset Brevitas picks: asking for one is refused, not silently ignored."""
    from fwdlearn.errors import ExportError
    from fwdlearn.export.onnx_export import check_opset

    with pytest.raises(ExportError, match="qonnx export takes no opset.*got 18"):
        check_opset("qonnx", 18)


# --------------------------------------------------------------------------------------------
# data paths of the wrong kind


@pytest.mark.parametrize("load, label", [(load_mnist, "MNIST"), (load_cifar10, "CIFAR-10"), (load_stl10, "STL-10"),
                                         (load_fsdd, "FSDD")])
def test_a_data_directory_that_is_a_file_is_said_to_be_a_file(tmp_path, load, label):
    """It used to say "does not exist" of a path that exists."""
    path = tmp_path / "data.bin"
    path.write_bytes(b"")
    with pytest.raises(DataError) as excinfo:
        load(path)
    message = assert_one_line_error(excinfo, label, str(path), "is a file, not a folder")
    assert "does not exist" not in message


def test_train_on_a_data_dir_that_is_a_file(capsys, tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"")
    assert_refused(capsys, ["train", "scff-mlp", "--dataset", "mnist", "--data-dir", path, "--out", tmp_path / "run",
                            "--no-progress"], str(path), "is a file, not a folder")
    assert files_under(tmp_path) == {path}


def test_an_idx_file_name_that_is_a_folder_is_said_to_be_a_folder(tmp_path):
    """It used to say the file was "missing"."""
    tiny_mnist(tmp_path, gz_train=False)
    images = tmp_path / "train-images-idx3-ubyte"
    images.unlink()
    images.mkdir()
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tmp_path)
    message = assert_one_line_error(excinfo, str(images), "is a folder, not an IDX file")
    assert "missing" not in message
    with pytest.raises(DataError) as excinfo:
        read_idx(images, 2051)
    assert_one_line_error(excinfo, str(images), "is a folder, not an IDX file")


def test_a_cifar_batch_name_that_is_a_folder_is_said_to_be_a_folder(tmp_path):
    write_cifar(tmp_path)
    batch = tmp_path / "data_batch_2"
    batch.unlink()
    batch.mkdir()
    with pytest.raises(DataError) as excinfo:
        load_cifar10(tmp_path)
    assert_one_line_error(excinfo, str(batch), "is a folder, not a batch file")


# --------------------------------------------------------------------------------------------
# bench --out, checked before anything is measured


@pytest.fixture
def no_measuring(monkeypatch):
    """The sweep fails the test if it starts: a bad --out must be refused before it."""
    import fwdlearn.bench.sweep

    def measured(*args, **kwargs):
        raise AssertionError("bench measured before checking --out")

    monkeypatch.setattr(fwdlearn.bench.sweep, "run_sweep", measured)


@pytest.mark.parametrize("where, fragment", [
    ("a-file/cost.json", "a-file is a file, not a folder"),
    ("folder.json", "is a folder"),
    ("cost.txt", "must end in .json"),
    ("read-only/cost.json", "no permission to write in"),
])
def test_bench_checks_out_before_measuring(capsys, tmp_path, no_measuring, where, fragment):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "read-only").mkdir()
    (tmp_path / "read-only").chmod(0o500)
    try:
        if where.startswith("read-only") and os.access(tmp_path / "read-only", os.W_OK):
            pytest.skip("running as a user who may write anywhere (root)")
        before = files_under(tmp_path)
        assert_refused(capsys, ["bench", "--depth", "1", "--width", "8", "--out", tmp_path / where],
                       "--out", str(tmp_path / where), fragment)
        assert files_under(tmp_path) == before
    finally:
        (tmp_path / "read-only").chmod(0o700)


# --------------------------------------------------------------------------------------------
# presets: epochs of a trained part, run names


SCFF_LAYER = """
[[layers]]
width = 8
lr = 1e-3
theta_pos = 0.0
theta_neg = 1.0
epochs = {epochs}
"""

FF_LAYER = """
[[layers]]
width = 8
lr = 1e-3
theta = 8.0
epochs = {epochs}
"""


def preset(folder: Path, learner: str, name: str = "tiny", epochs: int = 1, extra: str = "") -> Path:
    """A minimal preset of ``learner`` (scff-mlp or ff: two layers, the second trained for ``epochs``; lac-mlp:
    one autoencoder trained for ``epochs``)."""
    text = f"name = {json.dumps(name)}\nlearner = {json.dumps(learner)}\n"
    if learner == "lac-mlp":
        text += f"hidden = [8, 8]\nencoder_layers = 1\nepochs = {epochs}\n{extra}\n"
    else:
        layer = SCFF_LAYER if learner == "scff-mlp" else FF_LAYER
        text += f"{extra}\n" + layer.format(epochs=1) + layer.format(epochs=epochs)
    path = folder / "preset.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("learner, field", [("scff-mlp", "layers[1].epochs"), ("ff", "layers[1].epochs"),
                                            ("lac-mlp", "epochs")])
def test_a_layer_with_zero_epochs_is_refused(capsys, tmp_path, monkeypatch, learner, field):
    """It used to run and report the results of an untrained layer."""
    monkeypatch.chdir(tmp_path)
    path = preset(tmp_path, learner, epochs=0)
    assert_refused(capsys, ["train", learner, "--preset", path, "--no-progress"], f"{path}.{field}", "got 0")
    assert files_under(tmp_path) == {path}


def test_epochs_zero_on_the_command_line_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_refused(capsys, ["train", "scff-mlp", "--epochs", "0", "--no-progress"], "--epochs", "got 0")
    assert files_under(tmp_path) == set()


def test_a_skipped_baseline_may_keep_zero_epochs(tmp_path):
    """``bp.epochs = 0`` skips the end-to-end baseline: still valid."""
    from fwdlearn.presets import load_preset

    config = load_preset(str(preset(tmp_path, "scff-mlp", extra="[bp]\nepochs = 0\n")))
    assert config.bp.epochs == 0 and [layer.epochs for layer in config.layers] == [1, 1]


@pytest.mark.parametrize("name", ["ABS", "../..", "a/b", "", ".hidden", "..", "a\\b", "tab\tname"])
@pytest.mark.parametrize("learner", ["scff-mlp", "ff", "lac-mlp"])
def test_a_preset_name_that_is_not_one_folder_name_is_refused(capsys, tmp_path, monkeypatch, learner, name):
    """The default run folder is runs/<name>: a name with a separator, "..", a leading "." or nothing would
    put it elsewhere. (ABS stands for an absolute folder under tmp_path.)"""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    name = str(tmp_path / "abs" / "dir") if name == "ABS" else name
    path = preset(tmp_path, learner, name=name)
    assert_refused(capsys, ["train", learner, "--preset", path, "--no-progress"], f"{path}.name", repr(name))
    assert files_under(tmp_path) == {path, work}


@pytest.mark.parametrize("name", ["digits", "mnist-paper", "run_2.v1"])
def test_ordinary_names_are_accepted(tmp_path, name):
    from fwdlearn.presets import load_preset

    assert load_preset(str(preset(tmp_path, "scff-mlp", name=name))).name == name


# --------------------------------------------------------------------------------------------
# FSDD: a folder named like a recording


@pytest.mark.skipif(not REAL_RECORDINGS.is_dir(), reason="the real FSDD recordings (../shared/data) are absent")
def test_fsdd_folder_named_like_a_recording_is_refused(capsys, tmp_path, monkeypatch):
    """It used to be skipped silently: the data set was one recording short."""
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "recordings"
    folder.mkdir()
    for name in ("0_jackson_0.wav", "0_jackson_5.wav", "1_theo_7.wav"):
        shutil.copy(REAL_RECORDINGS / name, folder / name)
    impostor = folder / "1_theo_0.wav"
    impostor.mkdir()
    with pytest.raises(DataError) as excinfo:
        load_fsdd(folder, show_progress=False)
    assert_one_line_error(excinfo, str(impostor), "folder named like a recording")
    before = files_under(tmp_path)
    assert_refused(capsys, ["train", "scff-rnn", "--dataset", "fsdd", "--data-dir", folder,
                            "--out", tmp_path / "run", "--no-progress"], str(impostor))
    assert files_under(tmp_path) == before


# --------------------------------------------------------------------------------------------
# CIFAR-10 re-pickled by Python 3 at protocol 2


def test_cifar10_repickled_at_protocol_2_reads_the_same(tmp_path):
    """Python 3 writes bytes at protocol 2 through ``_codecs.encode(text, 'latin1')``; such a copy was refused."""
    written = write_cifar(tmp_path, dump=lambda obj: pickle.dumps(obj, protocol=2))
    assert b"_codecs\nencode" in (tmp_path / "data_batch_1").read_bytes()
    (tmp_path / "test_batch").write_bytes(pickle.dumps(
        {b"data": cifar_rows(written["test_x"]), b"labels": written["test_y"], b"batch_label": b"",
         b"filenames": [b"a.png", b"", b"\xff\x00.png"]}, protocol=2))
    ds = load_cifar10(tmp_path)
    np.testing.assert_allclose(raw_levels(ds.train.x, ds.meta), written["train_x"], atol=1e-3)
    np.testing.assert_allclose(raw_levels(ds.test.x, ds.meta), written["test_x"], atol=1e-3)
    assert ds.train.y.tolist() == written["train_y"] and ds.test.y.tolist() == written["test_y"]
    assert ds.class_names == CIFAR_NAMES


def test_an_stl10_file_name_that_is_a_folder_is_said_to_be_a_folder(tmp_path):
    from fwdlearn.data.stl10 import load_stl10
    from test_image_datasets import write_stl

    write_stl(tmp_path)
    target = tmp_path / "test_X.bin"
    target.unlink()
    target.mkdir()
    with pytest.raises(DataError) as excinfo:
        load_stl10(tmp_path, unlabelled=False)
    assert_one_line_error(excinfo, str(target), "is a folder, not a binary file")
