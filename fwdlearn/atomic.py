"""Every file fwdlearn writes goes through ``atomic_write``: a temporary file beside the target, then a rename,
so a reader never sees half of one. A storage failure (full disk, permissions, a path under a file) becomes
one ``FwdlearnError`` line and the temporary file is removed; one left by a killed process is removed by
``remove_stale_temporaries`` on the next run of the same folder. Files are read back safely (``torch.load``
with ``weights_only=True``: a file never executes code)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import CheckpointError, FwdlearnError


TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")   # what ``tempfile.mkstemp`` names for ``atomic_write``


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written under ``folder`` (which need not exist yet), or ``None`` if they can."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    return None


def prepare_folder(folder: str | Path, option: str) -> None:
    """Before any work: check that the output folder given by ``option`` can be written (creating nothing), and
    remove the temporary files a killed write left in it (``remove_stale_temporaries``)."""
    problem = folder_problem(Path(folder))
    if problem:
        raise FwdlearnError(f"{option} {folder}: {problem}")
    remove_stale_temporaries(folder)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files ``atomic_write`` left under ``folder`` when a process was killed while writing."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.rglob(".*.tmp") if p.is_file() and TEMPORARY.match(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


TORCH_WRITER_FAILURE = ("inline_container", "PytorchStreamWriter", "file write failed")   # torch.save's RuntimeError


def _is_storage_failure(exc: BaseException) -> bool:
    if isinstance(exc, FwdlearnError):
        return False
    return isinstance(exc, OSError) or (isinstance(exc, RuntimeError)
                                        and any(mark in str(exc) for mark in TORCH_WRITER_FAILURE))


def _storage_failure(path: Path, exc: BaseException) -> FwdlearnError:
    """One line for an ``OSError`` (its strerror) or the ``RuntimeError`` torch raises when its writer fails
    (an opaque position check on a full disk: say how much space is left)."""
    reason = getattr(exc, "strerror", None)
    if not reason:
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = -1
        reason = (f"the write failed with {free:,} bytes free on its disk (is it full?)" if free >= 0
                  else "the write failed")
    return FwdlearnError(f"cannot write {path}: {reason}")


def _missing_folders(folder: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` would create for ``folder``, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Undo ``mkdir`` of ``folders`` (deepest first) after a failed write, where they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    problem = folder_problem(path.parent)
    if problem:
        raise FwdlearnError(f"cannot write {path}: {problem}")
    created = _missing_folders(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _remove_empty(created)
        raise _storage_failure(path, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; give the file the permissions open() would
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)
        if _is_storage_failure(exc):
            raise _storage_failure(path, exc) from None
        raise
    return path


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically."""
    return atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def strict_json_values(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None``: strict JSON that any parser reads."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: strict_json_values(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json_values(value) for value in obj]
    return obj


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented, strict JSON (non-finite numbers as ``null``) to ``path`` atomically."""
    text = json.dumps(strict_json_values(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def read_torch_dict(path: str | Path, what: str, missing: str, file_format: str) -> dict[str, Any]:
    """A dict saved by ``torch.save`` whose ``format`` entry is ``file_format``, or a one-line ``CheckpointError``."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise CheckpointError(f"{path}: {missing}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise CheckpointError(f"{path}: not a fwdlearn {what}")
    return payload
