"""Unpickling that cannot run code: the only globals a pickle may name are those of a numpy array.

``pickle.load`` calls whatever global a file names (``os.system``, ``builtins.eval`` …), so reading a
file someone else made is a code-execution risk. ``load_restricted`` uses an unpickler whose
``find_class`` refuses every global except the three a pickled numpy array needs:
``numpy.core.multiarray._reconstruct`` (spelled ``numpy._core.multiarray._reconstruct`` by numpy 2),
``numpy.ndarray`` and ``numpy.dtype``. Dicts, lists, tuples, ints, floats, bytes and strings need no
global. Persistent ids and extension codes are refused as well (the standard unpickler raises
``UnpicklingError`` for the first; the second goes through ``find_class``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]   # numpy.core.multiarray._reconstruct, whatever numpy's version

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,   # as written by Python 2 / numpy 1 (the CIFAR batches)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # the same function, as written by numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")   # Python 2 ``str`` (the CIFAR keys and names) -> bytes
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(f"{self.path}: refused to unpickle the global {module}.{name} "
                            "(only numpy arrays, dicts, lists, numbers and strings are allowed)") from None


def load_restricted(path: Path):
    """Unpickle ``path`` with the restricted unpickler; any failure is a one-line ``DataError`` naming it."""
    try:
        with open(path, "rb") as file:
            return _RestrictedUnpickler(file, path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            MemoryError, UnicodeDecodeError, OverflowError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: not a valid pickle, or truncated ({detail})") from None
