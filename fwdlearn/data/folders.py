"""Where a data set's official files sit inside the directory a user names."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError


def require_folder(data_dir: Path, label: str) -> None:
    """A one-line ``DataError`` unless ``data_dir`` is a folder: it does not exist, or it is a file."""
    if not data_dir.exists():
        raise DataError(f"{label}: data directory {data_dir} does not exist")
    if not data_dir.is_dir():
        raise DataError(f"{label}: data directory {data_dir} is a file, not a folder")


def find_official_folder(data_dir: Path, label: str, folder: str, short: str, marker: str) -> Path:
    """The folder holding ``marker``: ``data_dir`` itself, ``data_dir/folder``, ``data_dir/short`` or
    ``data_dir/short/folder`` (e.g. ``cifar-10-batches-py`` and ``cifar10``); else a one-line ``DataError``."""
    for candidate in (data_dir, data_dir / folder, data_dir / short, data_dir / short / folder):
        if (candidate / marker).is_file():
            return candidate
    require_folder(data_dir, label)
    raise DataError(f"{label}: no {marker} in {data_dir}, {data_dir / folder} or {data_dir / short}")
