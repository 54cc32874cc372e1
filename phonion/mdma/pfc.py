"""Projected force constants (pFC), exactly as DESIGN.md "pFC" defines them.

For a mobile ion A (Li) and an anion neighbour B (O_e or O_c of A's polyhedron):

- Φ_AB = ``force_constants[A, B]``, the 3 × 3 block ∂²E/∂u_A∂u_B (eV/Å², phonopy's full (N, N, 3, 3) layout);
- b̂ = unit vector **from A to B** by the minimum image (the image nearest A; in a small cell where B is
  bonded to A through several images, only the nearest is used);
- bond-projected scalar b̂ᵀ Φ_AB b̂ (independent of the sign of b̂) and vector Φ_AB b̂;
- migration-projected mpFC = (Φ_AB b̂)·m̂ for every migration direction m̂ of A.

No sign is flipped: for a central spring of stiffness k the off-diagonal block is −k b̂b̂ᵀ, so a stiffer
Li–O bond gives a more negative scalar pFC. mpFC changes sign with m̂ (and with the A→B orientation).

Migration directions m̂ (a small array of unit vectors per mobile ion; every (neighbour, m̂) pair is one
sample of the average):
- from the structure (``migration_directions_from_sites``): candidates are the other mobile-ion sites
  (default) or given vacant/target sites, in every periodic image. Default: all sites of the nearest shell
  (within 0.1 Å of the nearest distance; 4 Li sites at 4.65 Å in LiGa(SeO3)2, so a single "nearest" would
  be arbitrary); ``k=1`` keeps one m̂ per Li (the nearest), ``k`` the k nearest;
- from a trajectory (``detect_hops`` → ``migration_directions_from_hops``): each settled hop of an ion
  (see ``detect_hops``) gives the direction of its hop vector.

Averages: over all mobile ions and their O_e (resp. O_c) neighbours (and their m̂); spread = population
std, min, max, n; ``sem`` = std(ddof=1)/√n. ΔpFC = mean mpFC(O_e) − mean mpFC(O_c), err = √(sem_e² + sem_c²).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Mapping, Sequence

import numpy as np

from phonion.core.geometry import minimum_image

__all__ = ["minimum_image_vector", "bond_projection", "migration_directions_from_sites", "Hop",
           "detect_hops", "migration_directions_from_hops", "projected_force_constants", "pfc_from_atoms"]

CLASSES = ("O_e", "O_c")
_SHIFTS = np.array(list(product((-1, 0, 1), repeat=3)), float)


def minimum_image_vector(positions: np.ndarray, cell: np.ndarray, a: int, b: int | np.ndarray) -> np.ndarray:
    """Shortest periodic vector from atom ``a`` to atom ``b`` (or to a Cartesian point), shape=(3,), Å.

    Works for any triclinic cell (:func:`phonion.core.geometry.minimum_image`).
    """
    target = positions[b] if np.ndim(b) == 0 else np.asarray(b, float)
    return minimum_image(target - positions[a], np.asarray(cell, float))


def bond_projection(phi_ab: np.ndarray, bond_vector: np.ndarray) -> tuple[float, np.ndarray]:
    """(b̂ᵀ Φ_AB b̂, Φ_AB b̂) for a 3 × 3 block (eV/Å²) and the A→B vector (any length)."""
    bhat = np.asarray(bond_vector, float) / np.linalg.norm(bond_vector)
    vec = np.asarray(phi_ab, float) @ bhat
    return float(bhat @ vec), vec


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _image_vectors(positions: np.ndarray, cell: np.ndarray, a: int, point: np.ndarray) -> np.ndarray:
    """The 27 periodic vectors from atom ``a`` to the images of ``point`` nearest it, shape=(27, 3).

    (Not the minimum image: every neighbouring image, for the shell search; rounded as one batch.)"""
    d = np.linalg.solve(cell.T, point - positions[a])
    return (d - np.round(d) + _SHIFTS) @ cell


def migration_directions_from_sites(positions: np.ndarray, cell: np.ndarray, mobile_indices: Sequence[int],
                                    targets=None, k: int | None = None, fractional: bool = False,
                                    shell_tolerance_A: float = 0.1,
                                    min_distance_A: float = 0.5) -> dict[int, np.ndarray]:
    """m̂ per mobile ion: unit vectors to its nearest candidate sites, shape=(n_i, 3) each.

    Default (``k=None``): every candidate site (every periodic image) within ``shell_tolerance_A`` of the
    nearest one, i.e. the whole first shell of sites; in LiGa(SeO3)2 each Li has 4 Li sites at 4.65 Å, so
    "the nearest" is not unique and picking one would depend on round-off. ``k=1`` keeps one m̂ (the
    nearest; the lowest candidate index among exact ties), ``k`` the k nearest.

    Parameters
    ----------
    positions : ndarray, shape=(N, 3), Å;  cell : ndarray, shape=(3, 3), rows are cell vectors, Å
    mobile_indices : the mobile ions (0-based)
    targets : None (the other mobile-ion sites), an array (T, 3) of sites shared by all ions, or a
        mapping ion -> (T_i, 3) (e.g. the vacant sites next to each Li)
    fractional : targets are fractional coordinates
    min_distance_A : candidates closer than this are the ion's own site and are skipped
    """
    positions = np.asarray(positions, float)
    cell = np.asarray(cell, float)
    mobile = [int(i) for i in mobile_indices]
    out = {}
    for li in mobile:
        if targets is None:
            cands = positions[[j for j in mobile if j != li]]
        else:
            cands = np.asarray(targets[li] if isinstance(targets, Mapping) else targets, float).reshape(-1, 3)
            cands = cands @ cell if fractional else cands
        vecs = np.concatenate([_image_vectors(positions, cell, li, c) for c in cands] or [np.zeros((0, 3))])
        dist = np.linalg.norm(vecs, axis=1)
        vecs, dist = vecs[dist > min_distance_A], dist[dist > min_distance_A]
        if len(vecs) == 0:
            raise ValueError(f"mobile ion {li}: no candidate migration site farther than {min_distance_A} Å")
        order = np.argsort(dist, kind="stable")
        if k is None:
            order = order[dist[order] <= dist[order[0]] + shell_tolerance_A]
        else:
            order = order[:k]
        out[li] = _unit(vecs[order])
    return out


@dataclass(frozen=True)
class Hop:
    """One settled hop: ion index, first frame of the settled window, hop vector (new − old site), Å."""

    ion: int
    frame: int
    vector_A: np.ndarray


def detect_hops(positions: np.ndarray, ion_indices: Sequence[int], threshold_A: float = 1.0,
                window: int = 50, settle_A: float = 0.5) -> list[Hop]:
    """Hops in an unwrapped trajectory (positions (F, N, 3), Å).

    A site is the mean position over a window of ``window`` frames. Starting from the first window, the
    ion's position is averaged over windows sliding by ``window // 2``; a window whose mean lies more than
    ``threshold_A`` from the current site, and in which the ion has settled (rms deviation from the window
    mean < ``settle_A``), is a new site: the hop vector is new − old site, and the new site becomes current.
    Windows caught mid-transit have a large rms deviation and are skipped.
    """
    pos = np.asarray(positions, float)
    F = pos.shape[0]
    if window < 2 or F < 2 * window:
        raise ValueError(f"hop detection needs window >= 2 and at least 2 windows of frames; got "
                         f"window={window}, {F} frames")
    hops = []
    for ion in ion_indices:
        r = pos[:, int(ion)]
        site = r[:window].mean(axis=0)
        for t in range(window // 2, F - window + 1, max(1, window // 2)):
            seg = r[t:t + window]
            c = seg.mean(axis=0)
            rms = np.sqrt(np.mean(np.sum((seg - c) ** 2, axis=1)))
            if np.linalg.norm(c - site) > threshold_A and rms < settle_A:
                hops.append(Hop(int(ion), t, c - site))
                site = c
    return hops


def migration_directions_from_hops(hops: Sequence[Hop]) -> dict[int, np.ndarray]:
    """m̂ per ion from its hops: unit hop vectors, shape=(h, 3); ions without hops are absent."""
    out: dict[int, list] = {}
    for h in hops:
        out.setdefault(h.ion, []).append(h.vector_A)
    return {ion: _unit(np.array(v)) for ion, v in out.items()}


def _stats(values) -> dict:
    v = np.asarray(values, float)
    if v.size == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "max": nan, "n": 0, "sem": nan}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size), "sem": float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")}


def projected_force_constants(force_constants: np.ndarray, positions: np.ndarray, cell: np.ndarray,
                              neighbours, directions: Mapping[int, np.ndarray]) -> dict:
    """pFC of every mobile ion with its O_e / O_c neighbours, averaged (module docstring).

    Parameters
    ----------
    force_constants : ndarray, shape=(N, N, 3, 3), eV/Å² (full, not phonopy's compact form)
    positions : ndarray, shape=(N, 3), Å;  cell : ndarray, shape=(3, 3), Å
    neighbours : mapping ion -> {"O_e": [...], "O_c": [...]} (``SiteClasses.per_mobile``) or a
        ``SiteClasses`` (its ``per_mobile`` is used)
    directions : mapping ion -> m̂ array (k, 3) or (3,); ions without directions still give the
        bond-projected values but no mpFC

    Returns
    -------
    dict with ``mpfc_Oe_eV_A2``, ``mpfc_Oc_eV_A2`` (stats: mean, std, min, max, n, sem),
    ``delta_pfc_eV_A2`` {value, err}, ``bond_pfc_Oe_eV_A2`` / ``bond_pfc_Oc_eV_A2`` (b̂ᵀΦb̂ stats),
    ``bond_vector_norm_Oe_eV_A2`` / ``..._Oc_...`` (|Φ b̂| stats) and ``records`` (one per ion–anion pair).
    """
    fc = np.asarray(force_constants, float)
    positions = np.asarray(positions, float)
    n = len(positions)
    if fc.shape != (n, n, 3, 3):
        raise ValueError(f"force constants must have the full shape ({n}, {n}, 3, 3), got {fc.shape} "
                         "(expand phonopy's compact force constants first)")
    per_mobile = getattr(neighbours, "per_mobile", neighbours)
    if not per_mobile:
        raise ValueError("no mobile ions with neighbour lists")
    values = {c: {"mpfc": [], "bond": [], "norm": []} for c in CLASSES}
    records = []
    for li, classes in per_mobile.items():
        li = int(li)
        mhat = directions.get(li) if directions is not None else None
        mhat = None if mhat is None else _unit(np.atleast_2d(np.asarray(mhat, float)))
        for cls in CLASSES:
            for o in classes.get(cls, []):
                b = minimum_image_vector(positions, cell, li, int(o))
                scalar, vec = bond_projection(fc[li, int(o)], b)
                mp = [] if mhat is None else [float(vec @ m) for m in mhat]
                values[cls]["bond"].append(scalar)
                values[cls]["norm"].append(float(np.linalg.norm(vec)))
                values[cls]["mpfc"].extend(mp)
                records.append({"mobile": li, "anion": int(o), "class": cls, "bond_vector_A": b.tolist(),
                                "bond_pfc_eV_A2": scalar, "vector_pfc_eV_A2": vec.tolist(), "mpfc_eV_A2": mp})
    st = {c: {k: _stats(v) for k, v in values[c].items()} for c in CLASSES}
    e, c = st["O_e"]["mpfc"], st["O_c"]["mpfc"]
    return {
        "mpfc_Oe_eV_A2": e, "mpfc_Oc_eV_A2": c,
        "delta_pfc_eV_A2": {"value": e["mean"] - c["mean"], "err": float(np.hypot(e["sem"], c["sem"]))},
        "bond_pfc_Oe_eV_A2": st["O_e"]["bond"], "bond_pfc_Oc_eV_A2": st["O_c"]["bond"],
        "bond_vector_norm_Oe_eV_A2": st["O_e"]["norm"], "bond_vector_norm_Oc_eV_A2": st["O_c"]["norm"],
        "records": records,
    }


def pfc_from_atoms(atoms, force_constants: np.ndarray, site_classes, directions=None,
                   k: int | None = None) -> dict:
    """Front on ``ase.Atoms``: directions default to the nearest shell of other mobile-ion sites."""
    positions, cell = atoms.get_positions(), np.asarray(atoms.get_cell())
    if directions is None:
        mobile = sorted(int(i) for i in getattr(site_classes, "per_mobile", site_classes))
        directions = migration_directions_from_sites(positions, cell, mobile, k=k)
    return projected_force_constants(force_constants, positions, cell, site_classes, directions)
