"""Atomic writes: a reader sees the old file or the new one, never half of one, and no temp files linger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fwdlearn.atomic import save_json, save_torch
from fwdlearn.errors import FwdlearnError


def temp_files(folder: Path) -> list[Path]:
    """Leftover temporary files (the writer names them ``.<name>.<random>.tmp``)."""
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


class FailsWhenPickled:
    """Raises ``exc`` part-way through ``torch.save``, after earlier entries have been written."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def __reduce__(self):
        raise self.exc


def test_save_json_writes_and_cleans_up(tmp_path):
    """``save_json`` writes parseable JSON equal to the object, returns the path, leaves only that file."""
    obj = {"accuracy": 0.987, "layers": [1, 2], "name": "run", "nested": {"ok": True, "none": None}}
    path = tmp_path / "result.json"
    assert Path(save_json(obj, path)) == path
    assert json.loads(path.read_text()) == obj
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_save_json_creates_parent_folders(tmp_path):
    """Missing parent folders are created."""
    path = tmp_path / "a" / "b" / "r.json"
    save_json([1, 2, 3], path)
    assert json.loads(path.read_text()) == [1, 2, 3]
    assert temp_files(path.parent) == []


def test_save_torch_writes_and_cleans_up(tmp_path):
    """``save_torch`` writes a file ``torch.load`` reads back equal; no temp file remains."""
    obj = {"weight": torch.arange(12.0).reshape(3, 4), "step": 7}
    path = tmp_path / "ckpt.pt"
    save_torch(obj, path)
    back = torch.load(path)
    assert back["step"] == 7 and torch.equal(back["weight"], obj["weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_overwrite_replaces_content(tmp_path):
    """A second successful write replaces the first completely (no leftover bytes)."""
    path = tmp_path / "r.json"
    save_json({"long": "x" * 1000}, path)
    save_json({"short": 1}, path)
    assert json.loads(path.read_text()) == {"short": 1}
    assert temp_files(tmp_path) == []


def test_save_torch_unpicklable_keeps_old_file(tmp_path):
    """Saving a lambda fails, the exception propagates, the old checkpoint is intact, no temp remains."""
    path = tmp_path / "ckpt.pt"
    save_torch({"step": 1, "w": torch.ones(5)}, path)
    before = path.read_bytes()
    with pytest.raises(Exception) as excinfo:
        save_torch({"step": 2, "w": torch.zeros(5), "fn": lambda: 0}, path)
    assert not isinstance(excinfo.value, FwdlearnError)       # the pickling error itself, not re-worded
    assert path.read_bytes() == before
    assert torch.load(path)["step"] == 1
    assert temp_files(tmp_path) == []


def test_save_torch_failure_midway_keeps_old_file(tmp_path):
    """A failure after part of the new file has been written leaves the old file byte-identical."""
    path = tmp_path / "ckpt.pt"
    save_torch({"step": 1}, path)
    before = path.read_bytes()
    big = {"a": torch.randn(20000), "b": FailsWhenPickled(RuntimeError("boom")), "c": torch.randn(10)}
    with pytest.raises(RuntimeError, match="boom"):
        save_torch(big, path)
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_callback_fails_after_partial_write(tmp_path):
    """The write callback writes half a file, then fails: the target keeps its old bytes, the temp is gone.

    (Uses ``atomic_write`` directly so that the partial write is certain, not up to ``torch.save``.)
    """
    from fwdlearn.atomic import atomic_write

    path = tmp_path / "data.bin"
    path.write_bytes(b"old content")
    seen = []

    def half_then_fail(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp != path
        tmp.write_bytes(b"new, but only ha")
        seen.append(tmp)
        raise ValueError("disk on fire")

    with pytest.raises(ValueError, match="disk on fire"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old content"
    assert seen and not seen[0].exists()
    assert temp_files(tmp_path) == []


def test_a_failed_write_removes_the_folders_it_created(tmp_path):
    """Nothing is left of a write that failed: not its temporary file, not the folders made for it."""
    from fwdlearn.atomic import atomic_write

    (tmp_path / "kept").mkdir()

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(FwdlearnError, match="No space left on device"):
        atomic_write(tmp_path / "kept" / "new" / "deeper" / "r.pt", fail)
    assert [p.name for p in tmp_path.rglob("*")] == ["kept"]


def test_interrupt_midway_keeps_old_file(tmp_path):
    """Even a KeyboardInterrupt during the write removes the temp file and propagates unchanged."""
    path = tmp_path / "ckpt.pt"
    save_torch({"step": 1}, path)
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        save_torch({"x": FailsWhenPickled(KeyboardInterrupt())}, path)
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_save_json_unencodable_keeps_old_file(tmp_path):
    """An object JSON cannot encode raises TypeError; the previous file is unchanged, no temp remains."""
    path = tmp_path / "r.json"
    save_json({"v": 1}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_json({"v": 2, "bad": object()}, path)
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("save, obj", [(save_json, {"a": 1}), (save_torch, {"a": 1})], ids=["json", "torch"])
def test_path_under_a_regular_file(tmp_path, save, obj):
    """Writing below a regular file (``afile/x``) raises a one-line FwdlearnError naming the path."""
    (tmp_path / "afile").write_text("I am a file")
    path = tmp_path / "afile" / "x.out"
    with pytest.raises(FwdlearnError) as excinfo:
        save(obj, path)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    assert (tmp_path / "afile").read_text() == "I am a file"
    assert temp_files(tmp_path) == []


def test_target_is_a_directory(tmp_path):
    """When the final rename fails (target is a directory) the error is a FwdlearnError and the temp is removed."""
    target = tmp_path / "out.json"
    target.mkdir()
    with pytest.raises(FwdlearnError) as excinfo:
        save_json({"a": 1}, target)
    message = str(excinfo.value)
    assert "\n" not in message and str(target) in message
    assert target.is_dir() and list(target.iterdir()) == []
    assert temp_files(tmp_path) == []


# --------------------------------------------------------------------------------------------
# reading back: read_torch_dict never executes code from the file and fails in one line


class RunsCodeWhenLoaded:
    """Unpickling this calls ``Path.touch(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_read_torch_dict_returns_a_file_of_the_expected_format(tmp_path):
    from fwdlearn.atomic import read_torch_dict

    path = tmp_path / "r.pt"
    save_torch({"format": "fwdlearn-thing", "weight": torch.arange(3.0), "n": 2}, path)
    payload = read_torch_dict(path, "thing", "thing not found", "fwdlearn-thing")
    assert payload["n"] == 2 and torch.equal(payload["weight"], torch.arange(3.0))


def _one_line_checkpoint_error(path: Path, fragment: str, file_format: str = "fwdlearn-thing") -> None:
    from fwdlearn.atomic import read_torch_dict
    from fwdlearn.errors import CheckpointError

    with pytest.raises(CheckpointError) as excinfo:
        read_torch_dict(path, "thing", "thing not found", file_format)
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message and fragment in message, message


def test_read_torch_dict_refuses_missing_corrupt_and_foreign_files_in_one_line(tmp_path):
    _one_line_checkpoint_error(tmp_path / "absent.pt", "thing not found")
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file")
    _one_line_checkpoint_error(tmp_path / "corrupt.pt", "not a readable thing")
    save_torch({"format": "something-else"}, tmp_path / "other.pt")
    _one_line_checkpoint_error(tmp_path / "other.pt", "not a fwdlearn thing")
    save_torch([1, 2, 3], tmp_path / "list.pt")
    _one_line_checkpoint_error(tmp_path / "list.pt", "not a fwdlearn thing")


def test_read_torch_dict_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "fwdlearn-thing", "payload": RunsCodeWhenLoaded(marker)}, path)
    _one_line_checkpoint_error(path, "not a readable thing")
    assert not marker.exists()
    torch.load(path, weights_only=False)                 # the control: an unrestricted load does run it
    assert marker.exists()
