"""Where a data set's official files sit inside the directory a user names."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError


def find_official_folder(data_dir: Path, label: str, folder: str, short: str, marker: str) -> Path:
    """The folder holding ``marker``: ``data_dir`` itself, ``data_dir/folder``, ``data_dir/short`` or
    ``data_dir/short/folder`` (e.g. ``cifar-10-batches-py`` and ``cifar10``); else a one-line ``DataError``."""
    for candidate in (data_dir, data_dir / folder, data_dir / short, data_dir / short / folder):
        if (candidate / marker).is_file():
            return candidate
    if not data_dir.is_dir():
        raise DataError(f"{label}: data directory {data_dir} does not exist")
    raise DataError(f"{label}: no {marker} in {data_dir}, {data_dir / folder} or {data_dir / short}")
