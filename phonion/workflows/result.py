"""The Result every workflow returns: a typed object with ``to_dict()`` and ``save(directory)``."""

from __future__ import annotations

import json
from pathlib import Path

from phonion.core.jsonutil import clean

__all__ = ["Result", "write_json"]


def write_json(path, data: dict) -> Path:
    """Strict JSON (NaN → null) of ``data`` into ``path``, parents made; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(data), indent=1) + "\n")
    return path


class Result:
    """Base class of the workflow results.

    ``to_dict()`` is the stage's JSON (the command contract: what ``--json`` prints and ``result.json``
    holds); ``save(directory)`` writes the stage's files and returns ``{name: path}``. Subclasses are
    dataclasses holding the in-memory objects (arrays, phonopy objects) the next workflow needs, so
    callers such as ``phonion compare`` never write a file only to read it back.
    """

    def to_dict(self) -> dict:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def save(self, directory) -> dict[str, Path]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError
