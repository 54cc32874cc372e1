"""Writing and reading MDMA results: arrays to ``<stem>.npz``, scalars and the summary to ``<stem>.json``.

Kept apart from the numerics (phonion.mdma.mdma_core) and the front (phonion.mdma.mdma). A save/load round trip gives an
equal :class:`~phonion.mdma.mdma.MDMAResult` (arrays bit-identical, scalars exact through JSON's float repr).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from phonion.core.jsonutil import clean
from phonion.mdma.mdma import MDMAResult, cumulative_contributions

__all__ = ["save_mdma", "load_mdma", "mdma_tables"]

FORMAT = "phonion-mdma-1"


def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".npz", ".json") else p
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def save_mdma(result: MDMAResult, path, n_top: int = 5) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` (every array field) and ``<stem>.json`` (every other field + ``to_dict()``).

    Returns the two paths. NaN is written as JSON ``NaN`` (Python's json reads it back).
    """
    npz, js = _paths(path)
    npz.parent.mkdir(parents=True, exist_ok=True)
    arrays, fields = {}, {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        else:
            fields[f.name] = clean(dict(value) if isinstance(value, dict) else value, keep_nan=True)
    np.savez_compressed(npz, **arrays)
    with open(js, "w") as fh:
        json.dump({"format": FORMAT, "summary": result.to_dict(n_top), "fields": fields,
                   "arrays_file": npz.name}, fh, indent=1)
    return npz, js


def load_mdma(path) -> MDMAResult:
    """Read what :func:`save_mdma` wrote (give either file or the common stem)."""
    npz, js = _paths(path)
    with open(js) as fh:
        meta = json.load(fh)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{js}: not a phonion MDMA result (format {meta.get('format')!r})")
    kwargs = dict(meta["fields"])
    with np.load(npz, allow_pickle=False) as data:
        for name in data.files:
            kwargs[name] = data[name]
    return MDMAResult(**kwargs)


def mdma_tables(result: MDMAResult) -> dict[str, dict[str, np.ndarray]]:
    """Plot-ready tables: ``cumulative`` (vs frequency), ``running`` (vs τ), ``per_mode``."""
    return {
        "cumulative": cumulative_contributions(result.frequencies_THz, result.contributions_cm2_s,
                                               result.diagonal_cm2_s, result.mode_class_labels),
        "running": {"tau_ps": result.tau_ps, "total_cm2_s": result.running_total_cm2_s,
                    "harmonic_cm2_s": result.running_harmonic_cm2_s,
                    "anharmonic_cm2_s": result.running_total_cm2_s - result.running_harmonic_cm2_s},
        "per_mode": {"frequency_THz": result.frequencies_THz, "contribution_cm2_s": result.contributions_cm2_s,
                     "diagonal_cm2_s": result.diagonal_cm2_s, "modal_equipartition": result.modal_equipartition},
    }
