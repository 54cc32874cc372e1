"""Sanity guards for long MD: stop early, say why, keep what was written.

The checks are pure functions of arrays (no I/O); ``md.driver`` calls them from an observer
attached to the ASE integrator and raises :class:`MDGuardError` with the step and the cause.

==========================  ============================================================
guard                       trips when
==========================  ============================================================
non-finite values           NaN / inf in positions, forces or the potential energy
maximum force               any atom's force norm > ``max_force_eV_A``
temperature runaway         kinetic temperature > ``max_temperature_factor`` × target
minimum distance            two atoms (any periodic images) closer than ``min_distance_A``
==========================  ============================================================

The first three are O(N) and run every step; the distance check builds a k-d tree (scipy)
over the atoms plus the periodic ghost layer of width ``min_distance_A`` and runs every
``distance_check_every`` steps and at step 0 (atoms placed too close from the start).
"""

from __future__ import annotations

import itertools

import numpy as np


class MDGuardError(RuntimeError):
    """An MD run stopped by a guard; the message names the integrator step and the cause.

    Subclasses ``RuntimeError`` (the input was valid; the simulation went wrong). Frames
    written before the failing step are kept in the trajectory (flushed).
    """


def non_finite(positions: np.ndarray, forces: np.ndarray, energy_eV: float) -> str | None:
    """Describe NaN / inf values, or None when everything is finite.

    Parameters
    ----------
    positions : ndarray, shape=(N, 3), Å
    forces : ndarray, shape=(N, 3), eV/Å
    energy_eV : float, potential energy, eV
    """
    for name, arr in (("positions", positions), ("forces", forces)):
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            idx = np.flatnonzero(bad)
            return f"non-finite {name} on {idx.size} atoms (first: {idx[:5].tolist()})"
    if not np.isfinite(energy_eV):
        return f"non-finite potential energy ({energy_eV})"
    return None


def excessive_force(forces: np.ndarray, max_force_eV_A: float) -> str | None:
    """Describe the largest force if its norm exceeds ``max_force_eV_A`` (eV/Å), else None."""
    norms2 = np.einsum("ij,ij->i", forces, forces)
    i = int(np.argmax(norms2))
    if norms2[i] > max_force_eV_A ** 2:
        return (f"force {np.sqrt(norms2[i]):.3g} eV/Å on atom {i} exceeds max_force_eV_A "
                f"= {max_force_eV_A:g}")
    return None


def temperature_runaway(temperature_K: float, target_K: float, factor: float) -> str | None:
    """Describe a kinetic temperature above ``factor`` × ``target_K``, else None (K)."""
    if temperature_K > factor * target_K:
        return (f"temperature {temperature_K:.1f} K exceeds max_temperature_factor {factor:g} × "
                f"target {target_K:g} K")
    return None


def close_pair(positions: np.ndarray, cell: np.ndarray, pbc, min_distance_A: float
               ) -> tuple[int, int, float] | None:
    """The closest pair of atoms nearer than ``min_distance_A``, over periodic images, or None.

    Parameters
    ----------
    positions : ndarray, shape=(N, 3), Å (any wrapping)
    cell : ndarray, shape=(3, 3), Å, cell vectors as rows
    pbc : sequence of 3 bool
    min_distance_A : float, Å

    Returns
    -------
    (i, j, distance_A) with i < j, or None. An atom closer than ``min_distance_A`` to its own
    image (a cell narrower than the cutoff) is reported as (i, i, width).
    """
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=float)
    pbc = np.asarray(pbc, dtype=bool)
    cell = np.asarray(cell, dtype=float)
    n = len(pos)
    if pbc.any():
        vol = abs(np.linalg.det(cell))
        widths = np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                           for k in range(3)])
        narrow = pbc & (widths <= min_distance_A)
        if narrow.any():
            k = int(np.flatnonzero(narrow)[0])
            return 0, 0, float(widths[k])
        frac = np.linalg.solve(cell.T, pos.T).T
        frac[:, pbc] -= np.floor(frac[:, pbc])
        pos = frac @ cell
        margin = np.where(pbc, min_distance_A / widths, 0.0)
        pts, owner = [pos], [np.arange(n)]
        for shift in itertools.product((-1, 0, 1), repeat=3):
            s = np.array(shift)
            if not s.any() or (s[~pbc] != 0).any():
                continue
            # an image shifted by +1 along k is close to the box only for atoms near the low face
            near = np.ones(n, bool)
            for k in np.flatnonzero(s):
                near &= frac[:, k] < margin[k] if s[k] > 0 else frac[:, k] > 1.0 - margin[k]
            if near.any():
                pts.append(pos[near] + s @ cell)
                owner.append(np.flatnonzero(near))
        pos, owner = np.concatenate(pts), np.concatenate(owner)
    else:
        owner = np.arange(n)
    pairs = cKDTree(pos).query_pairs(r=min_distance_A, output_type="ndarray")
    if len(pairs) == 0:
        return None
    d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    k = int(np.argmin(d))
    i, j = sorted((int(owner[pairs[k, 0]]), int(owner[pairs[k, 1]])))
    return i, j, float(d[k])
