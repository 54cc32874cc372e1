"""Partial radial distribution functions g_AB(r) of a trajectory (minimum image, any triclinic cell).

g_AB(r) = V / (N_pairs · 4/3 π (r_hi³ − r_lo³)) · (pairs A–B in the shell), averaged over frames; pairs
of one species counted once (N_A(N_A−1)/2 pairs). Written by hand: ASE's ``ase.geometry.rdf`` builds a
neighbour list per frame and per pair, far slower over the thousands of frames of an MD run, and its
partial-RDF normalisation differs; the tests check an ideal gas (g = 1) and a crystal's shells.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["partial_rdf", "half_width", "RDF_MAX_A"]

#: largest r of the RDFs phonion reports, Å (and at most half the cell width)
RDF_MAX_A = 6.0


def half_width(cell) -> float:
    """Half the shortest perpendicular width of a cell (rows are lattice vectors), Å."""
    cell = np.asarray(cell, float)
    return float(0.5 * (abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]),
                                                                   axis=1)).min())


def partial_rdf(positions, cells, symbols, r_max_A: float, bin_A: float = 0.05, chunk: int = 262144):
    """Partial radial distribution functions (module docstring).

    Parameters
    ----------
    positions : ndarray, shape=(F, N, 3), Å (any wrapping)
    cells : ndarray, shape=(F, 3, 3), Å, rows are lattice vectors
    symbols : N element symbols
    r_max_A : float, ≤ half the shortest perpendicular cell width (checked)
    bin_A : histogram bin width, Å
    chunk : pairs handled at once (bounds memory)

    Returns
    -------
    r_A : ndarray (B,) bin centres, Å;  g : dict "A-B" → ndarray (B,) (species in first-appearance order)
    """
    pos, cells = np.asarray(positions, float), np.asarray(cells, float)
    species = list(dict.fromkeys(symbols))
    sid = np.array([species.index(s) for s in symbols])
    ns, nb = len(species), int(math.floor(r_max_A / bin_A))
    if nb < 2:
        raise ValueError(f"r_max {r_max_A} Å is too small for bins of {bin_A} Å")
    edges = np.arange(nb + 1) * bin_A
    counts = np.zeros((ns, ns, nb))
    n = len(symbols)
    na = np.bincount(sid, minlength=ns).astype(float)
    pairs = np.outer(na, na)
    pairs[np.diag_indices(ns)] = na * (na - 1) / 2
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    ii, jj = np.triu_indices(n, 1)
    for f in range(len(pos)):
        cell = cells[f]
        if r_max_A > half_width(cell) + 1e-9:
            raise ValueError(f"r_max {r_max_A} Å exceeds half the cell width {half_width(cell):.3f} Å")
        frac = pos[f] @ np.linalg.inv(cell)
        hist = np.zeros(ns * ns * nb)
        for a in range(0, ii.size, chunk):
            i, j = ii[a:a + chunk], jj[a:a + chunk]
            d = frac[j] - frac[i]
            d -= np.round(d)
            r = np.linalg.norm(d @ cell, axis=1)
            ok = r < edges[-1]
            lo, hi = np.minimum(sid[i], sid[j])[ok], np.maximum(sid[i], sid[j])[ok]
            b = np.minimum((r[ok] / bin_A).astype(int), nb - 1)
            hist += np.bincount((lo * ns + hi) * nb + b, minlength=ns * ns * nb)
        hist = hist.reshape(ns, ns, nb)
        with np.errstate(divide="ignore", invalid="ignore"):
            counts += hist * abs(np.linalg.det(cell)) / (pairs[:, :, None] * shell[None, None, :])
    counts /= len(pos)
    r = 0.5 * (edges[1:] + edges[:-1])
    g = {f"{species[a]}-{species[b]}": counts[a, b] for a in range(ns) for b in range(a, ns) if pairs[a, b] > 0}
    return r, g


_half_width = half_width
