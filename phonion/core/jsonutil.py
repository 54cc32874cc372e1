"""JSON for phonion's outputs, in one place.

:func:`clean` makes the strict-JSON copy every command prints with ``--json`` and writes to
``result.json`` (numpy → Python, NaN/inf → ``null``); :func:`default` is the ``json.dump(default=...)``
hook for metadata that may hold numpy values or paths; :func:`dumps` is the house format.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["clean", "default", "dumps"]


def clean(value, *, keep_nan: bool = False):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None (strict JSON); dict keys to str.

    ``keep_nan=True`` keeps NaN/inf as floats (``json`` writes them as ``NaN`` / ``Infinity``, which
    Python's json reads back; not strict JSON).
    """
    if isinstance(value, dict):
        return {str(k): clean(v, keep_nan=keep_nan) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, keep_nan=keep_nan) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist(), keep_nan=keep_nan)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if keep_nan or math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def default(value, fallback=None):
    """``json.dump(..., default=default)``: numpy arrays/scalars to Python, paths to str; anything else
    to ``fallback(value)`` (e.g. ``fallback=str``, through :func:`functools.partial`), or TypeError."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if fallback is not None:
        return fallback(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def dumps(value, indent: int = 1) -> str:
    """Strict JSON text of :func:`clean` (value), newline-terminated."""
    return json.dumps(clean(value), indent=indent) + "\n"
