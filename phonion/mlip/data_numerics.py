"""The pure numerics of the training data (:mod:`phonion.mlip.data` re-exports them): time-block split,
least-squares E0s, the energy–work consistency slope, temperature labels from file names."""

from __future__ import annotations

import re

import numpy as np

SPLITS = ("train", "val", "test")


def split_indices(n_frames: int, fractions=(0.8, 0.1, 0.1), n_blocks: int = 1,
                  gap_frames: int = 5) -> dict:
    """Time-block split of frames 0 … n_frames−1 (see the module docstring).

    Returns
    -------
    dict split name → ndarray of int, ascending; disjoint; a gap of ``gap_frames`` after every
    block boundary.
    """
    out = {s: [] for s in SPLITS}
    edges = np.linspace(0, n_frames, n_blocks + 1).round().astype(int)
    cum = np.concatenate([[0.0], np.cumsum(fractions)])
    for b in range(n_blocks):
        lo, hi = edges[b], edges[b + 1]
        cuts = (lo + np.round(cum * (hi - lo))).astype(int)
        for k, name in enumerate(SPLITS):
            start = cuts[k] + (gap_frames if (k > 0 or b > 0) else 0)
            out[name].append(np.arange(start, cuts[k + 1]))
    return {s: np.concatenate(v).astype(int) for s, v in out.items()}


def fit_e0s(counts: np.ndarray, energies: np.ndarray) -> tuple[np.ndarray, int]:
    """Least-squares E0s: min ‖energies − counts @ e0‖².

    Parameters
    ----------
    counts : ndarray, shape=(F, Z), atoms of each element per frame
    energies : ndarray, shape=(F,), eV, total energies

    Returns
    -------
    e0 : ndarray, shape=(Z,), eV per atom (minimum-norm solution if rank-deficient)
    rank : int, rank of ``counts`` (< Z: the E0s are not individually identifiable)
    """
    e0, _, rank, _ = np.linalg.lstsq(np.asarray(counts, float), np.asarray(energies, float), rcond=None)
    return e0, int(rank)


def work_slope(r0, r1, f0, f1, e0, e1) -> tuple[float, float]:
    """Slope and correlation of ΔE = e1 − e0 against −W over pairs of consecutive frames.

    W = ½ (f0 + f1) · (r1 − r0) is the work of the forces (trapezoid rule). Arrays: positions
    (P, N, 3) Å unwrapped, forces (P, N, 3) eV/Å, energies (P,) eV. For a potential energy and
    its forces in consistent units ΔE ≈ −W: slope ≈ 1 (correlation ≈ 1 for close frames).
    """
    work = 0.5 * np.einsum("pnk,pnk->p", f0 + f1, r1 - r0)
    de = e1 - e0
    if len(de) < 2 or np.std(work) == 0 or np.std(de) == 0:
        return float("nan"), 0.0
    return float(np.dot(-work, de) / np.dot(work, work)), float(np.corrcoef(-work, de)[0, 1])


def temperature_from_name(text: str) -> float | None:
    """Temperature label from a path such as ``runs/700K/XDATCAR`` or ``li_1100K.h5`` (last match)."""
    hits = re.findall(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)\s*K(?![A-Za-z])", str(text))
    return float(hits[-1]) if hits else None
