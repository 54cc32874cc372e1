"""Which warnings go into the comparison report: phonion's own, about the data. Third-party notices
(torch / TorchScript / mace deprecations …) are not about the user's data: they are shown once on stderr
with their real category and origin (the CLI's warning format) and kept out of the report."""

from __future__ import annotations

import warnings

from phonion.core.paths import from_phonion

__all__ = ["ours"]


def ours(caught, prefix: str = "") -> list[str]:
    """Messages of the recorded warnings raised by phonion (``prefix`` + message); the others re-shown."""
    kept = []
    for w in caught:
        notice = issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))
        if from_phonion(w.filename) and not notice:
            kept.append(f"{prefix}{w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return kept
