"""Unpickling that cannot run code: the only globals a pickle may name are those of a numpy array and of bytes.

``pickle.load`` calls whatever global a file names (``os.system``, ``builtins.eval`` …), so reading a
file someone else made is a code-execution risk. ``load_restricted`` uses an unpickler whose
``find_class`` refuses every global except the three a pickled numpy array needs:
``numpy.core.multiarray._reconstruct`` (spelled ``numpy._core.multiarray._reconstruct`` by numpy 2),
``numpy.ndarray`` and ``numpy.dtype``, and the two Python 3 uses to write ``bytes`` at protocol 2
(a CIFAR batch re-pickled with ``protocol=2``): ``_codecs.encode(text, "latin1")`` and, for ``b""``,
``__builtin__.bytes()``. Those two are replaced by functions that accept exactly those arguments
and only build bytes. Dicts, lists, tuples, ints, floats and strings need no global. Persistent
ids and extension codes are refused as well (the standard unpickler raises ``UnpicklingError``
for the first; the second goes through ``find_class``).
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


BYTES_ENCODING = "latin1"   # what Python 3's protocol-2 pickler passes to _codecs.encode (one code point per byte)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")   # Python 2 ``str`` (the CIFAR keys and names) -> bytes
        self.path = path
        self.bytes_builders = {("_codecs", "encode"): self._latin1_bytes, ("__builtin__", "bytes"): self._empty_bytes}

    def find_class(self, module: str, name: str):
        found = ALLOWED_GLOBALS.get((module, name), self.bytes_builders.get((module, name)))
        if found is None:
            raise DataError(f"{self.path}: refused to unpickle the global {module}.{name} "
                            "(only numpy arrays, dicts, lists, numbers, bytes and strings are allowed)")
        return found

    def _latin1_bytes(self, *args):
        """``_codecs.encode(text, "latin1")`` and nothing else: the bytes whose values are ``text``'s code points."""
        if len(args) == 2 and type(args[0]) is str and type(args[1]) is str and args[1] == BYTES_ENCODING:
            try:
                return args[0].encode(BYTES_ENCODING)
            except UnicodeEncodeError:
                pass                              # a code point above 255: not a pickled byte string
        raise self._refused("_codecs.encode", args, f"_codecs.encode(str, {BYTES_ENCODING!r})")

    def _empty_bytes(self, *args):
        """``__builtin__.bytes()`` with no argument (how protocol 2 writes ``b""``) and nothing else."""
        if args:
            raise self._refused("__builtin__.bytes", args, "bytes()")
        return b""

    def _refused(self, function: str, args: tuple, allowed: str) -> DataError:
        kinds = ", ".join(type(a).__name__ for a in args)
        return DataError(f"{self.path}: refused to unpickle the global {function} called with ({kinds}) "
                         f"(only {allowed} is allowed: it rebuilds bytes)")


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
