"""Reader for the IDX format of MNIST (LeCun et al.): gzip-compressed or plain.

Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
big-endian uint32 per dimension. Images have magic 2051 (3 dims), labels 2049 (1 dim).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an IDX file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from None
    return raw


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file as a ``uint8`` array, checking its magic number and its length."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic, = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise DataError(f"{path}: wrong magic number {magic}, expected {expected_magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise DataError(f"{path}: truncated or oversized, {len(data) - header} data bytes for shape {dims} "
                        f"(expected {expected})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
