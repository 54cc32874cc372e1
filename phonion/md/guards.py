"""Sanity guards for long MD: stop early, say why, keep what was written.

The checks are pure functions of arrays (no I/O); ``phonion.md.driver`` calls them from an observer
attached to the ASE integrator and raises :class:`MDGuardError` with the step and the cause.

==========================  ============================================================
guard                       trips when
==========================  ============================================================
non-finite values           NaN / inf in positions, forces or the potential energy
maximum force               any atom's force norm > ``max_force_eV_A``
temperature runaway         kinetic temperature > ``max_temperature_factor`` × target
minimum distance            two atoms (any periodic images) closer than ``min_distance_A``
pair floor                  two atoms of species A, B closer than ``floors["A-B"]``
temperature window          |running mean of T over the last W production steps − target|
                            > tolerance × target (thermostatted runs)
committee uncertainty       max per-atom force std of a committee > threshold (``phonion.md.driver_guards``)
==========================  ============================================================

The first three are O(N) and run every step; the distance check builds a k-d tree (scipy)
over the atoms plus the periodic ghost layer of width ``min_distance_A`` and runs every
``distance_check_every`` steps and at step 0 (atoms placed too close from the start).
``min_distance_A`` is the absolute floor for any pair; the per-species-pair floors (ASE
neighbour list up to the largest floor) run on the same grid. Floors are learnt from reference
frames with :func:`learn_pair_floors`: a fraction of the closest approach the reference ever
shows for each pair (MACE runs that decompose bring Li–Li to 1.2 Å where the reference never
goes below 3 Å). Pair keys are ``"A-B"`` with the two symbols in alphabetical order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping

import numpy as np

#: guard names recorded as ``invalid_guard`` in run.json
GUARDS = ("non_finite", "max_force", "temperature_runaway", "min_distance", "pair_floor",
          "temperature_window", "uncertainty")


class MDGuardError(RuntimeError):
    """An MD run stopped by a guard; the message names the integrator step and the cause.

    Subclasses ``RuntimeError`` (the input was valid; the simulation went wrong). Frames
    written before the failing step are kept in the trajectory (flushed), and the run's
    ``run.json`` says ``status: "invalid"``.

    Attributes
    ----------
    step : int or None, integrator step (equilibration + production) where it tripped
    guard : str or None, one of :data:`GUARDS`
    """

    def __init__(self, message: str, step: int | None = None, guard: str | None = None):
        super().__init__(message)
        self.step, self.guard = step, guard

    def __reduce__(self):  # keep step and guard across process boundaries (executors)
        return type(self), (str(self), self.step, self.guard)


def pair_key(a: str, b: str) -> str:
    """The key of an unordered species pair: ``"A-B"`` with the symbols sorted (``"Li-O"``)."""
    return "-".join(sorted((str(a), str(b))))


def normalise_pair_floors(floors) -> dict[str, float]:
    """Check and normalise pair floors: keys ``"A-B"`` in either order → sorted, values → float Å.

    Accepts a mapping or the text forms of :func:`parse_pair_floors`. Raises ValueError
    naming the bad key (unknown element, not ``A-B``, a pair given twice, value not > 0).
    """
    from ase.data import chemical_symbols

    if isinstance(floors, str):
        floors = parse_pair_floors(floors)
    if not isinstance(floors, Mapping):
        raise ValueError(f"pair_floors_A must be a mapping like {{'Li-Li': 2.1}}, got {floors!r}")
    out: dict[str, float] = {}
    for key, value in floors.items():
        parts = [p.strip() for p in str(key).split("-")]
        if len(parts) != 2 or not all(p in chemical_symbols[1:] for p in parts):
            raise ValueError(f"pair_floors_A: bad key {key!r}: want 'A-B' with two element "
                             "symbols, e.g. 'Li-O'")
        name = pair_key(*parts)
        try:
            floor = float(value)
        except (TypeError, ValueError):
            floor = float("nan")
        if not np.isfinite(floor) or floor <= 0:
            raise ValueError(f"pair_floors_A[{key!r}] must be a distance > 0 Å, got {value!r}")
        if name in out:
            raise ValueError(f"pair_floors_A: pair {name} given twice (key {key!r})")
        out[name] = floor
    return dict(sorted(out.items()))


def parse_pair_floors(text: str) -> dict[str, float]:
    """``'{"Li-Li": 2.1}'`` (JSON) or ``"Li-Li=2.1,O-O=2.0"`` → a mapping (not yet checked)."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            return dict(json.loads(text))
        except ValueError as exc:
            raise ValueError(f"pair_floors_A: not valid JSON ({exc}): {text!r}") from None
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"pair_floors_A: {item.strip()!r} is not PAIR=DISTANCE (e.g. Li-Li=2.1)")
        out[key.strip()] = value.strip()
    return out


def closest_pairs(atoms, species_pairs: Iterable | None = None, cutoff: float = 6.0
                  ) -> dict[str, tuple[float, int, int]]:
    """The closest approach of each species pair in one frame, over periodic images.

    Parameters
    ----------
    atoms : ase.Atoms (positions may be unwrapped)
    species_pairs : keys ``"A-B"`` or (A, B) tuples, in either order; None: every pair of the
        elements present
    cutoff : float, Å, neighbour-list radius; pairs with no two atoms within it are absent

    Returns
    -------
    dict ``"A-B"`` (sorted symbols) → (distance Å, i, j) with symbols[i] = A, symbols[j] = B
    (i == j: an atom and its own periodic image).
    """
    from ase.neighborlist import neighbor_list

    symbols = np.asarray(atoms.get_chemical_symbols())
    if species_pairs is None:
        kinds = sorted(set(symbols.tolist()))
        wanted = {pair_key(a, b) for a, b in itertools.combinations_with_replacement(kinds, 2)}
    else:
        wanted = {pair_key(*(p.split("-") if isinstance(p, str) else p)) for p in species_pairs}
    if len(atoms) == 0 or not wanted:
        return {}
    i, j, d = neighbor_list("ijd", atoms, float(cutoff))
    kinds, code = np.unique(symbols, return_inverse=True)
    lo, hi = np.minimum(code[i], code[j]), np.maximum(code[i], code[j])
    out = {}
    for a in range(len(kinds)):
        for b in range(a, len(kinds)):
            key = pair_key(kinds[a], kinds[b])
            if key not in wanted:
                continue
            sel = np.flatnonzero((lo == a) & (hi == b))
            if sel.size == 0:
                continue
            k = sel[np.argmin(d[sel])]
            ii, jj = int(i[k]), int(j[k])
            if symbols[ii] != key.split("-")[0]:
                ii, jj = jj, ii
            out[key] = (float(d[k]), ii, jj)
    return out


def learn_pair_floors(frames, fraction: float = 0.75, unseen_fraction: float = 0.6,
                      cutoff_A: float = 6.0) -> dict[str, float]:
    """Per-species-pair distance floors (Å) from reference frames.

    Parameters
    ----------
    frames : list of ase.Atoms (reference / training frames; species may differ between frames)
    fraction : floor = ``fraction`` × the shortest distance of the pair in any frame (periodic
        images included)
    unseen_fraction : for a pair never within ``cutoff_A`` in any frame: ``unseen_fraction`` ×
        (covalent radius A + covalent radius B), ``ase.data.covalent_radii``
    cutoff_A : neighbour-list radius, Å

    Returns
    -------
    dict ``"A-B"`` → floor (Å), every unordered pair of the elements present (A-A included),
    keys sorted.
    """
    from ase.data import atomic_numbers, covalent_radii

    if not 0 < fraction <= 1 or not 0 < unseen_fraction:
        raise ValueError(f"learn_pair_floors: fraction must be in (0, 1] and unseen_fraction > 0, "
                         f"got {fraction}, {unseen_fraction}")
    frames = list(frames)
    if not frames:
        raise ValueError("learn_pair_floors: no frames")
    kinds = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
    seen: dict[str, float] = {}
    for atoms in frames:
        for key, (d, _, _) in closest_pairs(atoms, None, cutoff_A).items():
            seen[key] = min(d, seen.get(key, np.inf))
    out = {}
    for a, b in itertools.combinations_with_replacement(kinds, 2):
        key = pair_key(a, b)
        if key in seen:
            out[key] = fraction * seen[key]
        else:
            out[key] = unseen_fraction * float(covalent_radii[atomic_numbers[a]]
                                               + covalent_radii[atomic_numbers[b]])
    return dict(sorted(out.items()))


def pair_floor_violation(atoms, floors: Mapping[str, float], *, cell=None, pbc=None,
                         symbols=None) -> str | None:
    """Describe the pair that most undercuts its floor (smallest distance / floor), else None.

    Parameters
    ----------
    atoms : ase.Atoms, or positions ndarray (N, 3) Å together with ``cell`` (3, 3) Å,
        ``pbc`` (3 bool) and ``symbols`` (N str)
    floors : ``"A-B"`` → Å (normalised keys, :func:`normalise_pair_floors`); pairs without a
        floor are not checked
    """
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        atoms = Atoms(symbols=list(symbols), positions=np.asarray(atoms, dtype=float), cell=cell,
                      pbc=pbc)
    if not floors or len(atoms) == 0:
        return None
    from ase.neighborlist import neighbor_list

    symbols = np.asarray(atoms.get_chemical_symbols())
    kinds, code = np.unique(symbols, return_inverse=True)
    table = np.zeros((len(kinds), len(kinds)))
    for a in range(len(kinds)):
        for b in range(len(kinds)):
            table[a, b] = floors.get(pair_key(kinds[a], kinds[b]), 0.0)
    if not table.any():
        return None
    i, j, d = neighbor_list("ijd", atoms, float(table.max()))
    floor = table[code[i], code[j]]
    bad = np.flatnonzero(d < floor)
    if bad.size == 0:
        return None
    k = bad[np.argmin(d[bad] / floor[bad])]
    ii, jj = sorted((int(i[k]), int(j[k])))
    key = pair_key(symbols[ii], symbols[jj])
    return (f"{key} pair: atoms {ii} ({symbols[ii]}) and {jj} ({symbols[jj]}) are {d[k]:.3f} Å apart "
            f"(< pair floor {floor[k]:.3f} Å)")


def temperature_window(mean_K: float, target_K: float, tolerance: float, window_steps: int
                       ) -> str | None:
    """Describe a running-mean temperature off the target by more than ``tolerance`` × target.

    Parameters
    ----------
    mean_K : mean kinetic temperature over the last ``window_steps`` steps, K
    target_K : thermostat set-point, K
    tolerance : allowed relative deviation (0.15: ±15 %)
    """
    if abs(mean_K - target_K) > tolerance * target_K:
        return (f"mean temperature {mean_K:.1f} K over the last {window_steps} steps is "
                f"{100 * (mean_K / target_K - 1):+.1f} % off the set-point {target_K:g} K "
                f"(temperature_tolerance {tolerance:g}): temperature out of control")
    return None


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
