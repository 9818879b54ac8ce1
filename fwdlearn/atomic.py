"""Write files so that a reader never sees half of one (temporary file, then rename); read them back safely
(``torch.load`` with ``weights_only=True``: a file never executes code)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import CheckpointError, FwdlearnError


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FwdlearnError(f"cannot write {path}: {exc.strerror or exc}") from None
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
        if isinstance(exc, OSError):
            raise FwdlearnError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically."""
    return atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def read_torch_dict(path: str | Path, what: str, missing: str, file_format: str) -> dict[str, Any]:
    """A dict saved by ``torch.save`` whose ``format`` entry is ``file_format``, or a one-line ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {missing}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise CheckpointError(f"{path}: not a fwdlearn {what}")
    return payload
