"""Anion site classes (O_e / O_c / O_n) from polyhedral connectivity.

Pure functions on :class:`ase.Atoms`; no hand-typed index lists anywhere.

Bond rule
---------
A ligand (anion) L is bonded to a centre (cation) C when

    d(C, L) <= d_min(C) * (1 + tolerance)   and   d(C, L) <= max_distance,

where ``d_min(C)`` is the shortest C–anion distance of *that* centre. Distances are taken to every
periodic image (``ase.neighborlist.neighbor_list``), so a ligand is identified by its atom index
*and* the lattice translation ``S`` of the image bonded to the centre: its position is
``positions[L] + S @ cell`` when the centre sits at ``positions[C]``. The rule is per centre, so it
adapts to each cation's size; ``tolerance=0.25`` separates the first shell cleanly in oxides
(LiGa(SeO3)2: Li–O 2.02–2.03 Å vs next O > 2.6 Å; Se–O 1.72–1.75 Å).

Sharing rule
------------
Two polyhedra share an anion only if the *same anion position* belongs to both: a framework
polyhedron of centre k translated by T holds the anion positions ``(L, S + T)`` for its ligands
``(L, S)``, and is compared with the mobile polyhedron ``{(L, S)}`` of a mobile ion in the home
cell. Comparing bare indices would be wrong in small cells, where one anion index can be bonded
through several images.

Classes (DESIGN.md, "O classes")
--------------------------------
For each mobile ion (e.g. Li) and each framework polyhedron (k, T) sharing at least one anion
with its polyhedron:

- **O_e**: anions of the mobile polyhedron shared with a framework polyhedron that shares
  >= 2 anions (an edge; a face counts as well) with that same mobile polyhedron;
- **O_c**: anions of the mobile polyhedron shared with a framework polyhedron that shares only
  that one corner, and that are not O_e for this or any other mobile ion. An anion that is O_e
  for one mobile ion and O_c for another is classed O_e and listed in ``conflicts``;
- **O_n**: anions of framework polyhedra bonded to no mobile ion;
- **other**: every remaining anion (bonded to mobile ions but to no framework cation, or bonded to
  neither mobile nor framework cations).

Automatic framework (``framework=None``): every species other than the mobile and anion species,
less electronegative (Pauling) than the anion, whose polyhedra share at least one anion position with a mobile-ion polyhedron. For LiGa(SeO3)2
this is Ga and Se: each LiO4 shares one edge and two corners with GaO6 and four corners with SeO3,
so Se adds no edge and the classes equal those with ``framework=["Ga"]`` (16 O_e, 16 O_c, 16 O_n).
The electronegativity condition keeps a second anion (I in Li6PS5I with ``anion="S"``) out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import ase
import numpy as np
from ase.neighborlist import neighbor_list

from phonion.core.structures import require_periodic

__all__ = ["Ligand", "SharedPolyhedron", "SiteClasses", "coordination", "polyhedral_sharing",
           "classify_oxygens"]

#: A bonded ligand: (atom index, lattice image offset of the bonded copy, relative to the centre).
Ligand = tuple[int, tuple[int, int, int]]

_EPS = 1e-6  # Å, slack on the distance threshold against round-off


def coordination(atoms: ase.Atoms, centre_indices: Iterable[int], ligand_symbol: str,
                 tolerance: float = 0.25, max_distance: float = 3.5) -> dict[int, list[Ligand]]:
    """Image-resolved first coordination shell of selected centres.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure (periodic or not).
    centre_indices : iterable of int
        Indices of the centre atoms (0-based).
    ligand_symbol : str
        Chemical symbol of the ligands (e.g. ``"O"``).
    tolerance : float, optional
        Relative bond tolerance: ligands within ``d_min * (1 + tolerance)`` of a centre are
        bonded, ``d_min`` being that centre's shortest centre–ligand distance. Default 0.25.
    max_distance : float, optional
        Search radius in Å; ligands beyond it are never bonded. Default 3.5.

    Returns
    -------
    dict of int to list of (int, tuple of 3 int)
        For each centre, its ligands as ``(index, (n1, n2, n3))``: the bonded copy of ligand
        ``index`` sits at ``positions[index] + (n1, n2, n3) @ cell`` relative to the centre's own
        position ``positions[centre]``. Sorted by distance, then index. A centre with no ligand
        within ``max_distance`` maps to an empty list. The same index may appear several times
        with different images (small cells).

    Raises
    ------
    ValueError
        If ``ligand_symbol`` is absent, a centre index is out of range, or ``tolerance < 0`` or
        ``max_distance <= 0``.
    """
    centres = sorted({int(c) for c in centre_indices})
    n = len(atoms)
    if any(c < 0 or c >= n for c in centres):
        raise ValueError(f"centre indices out of range for {n} atoms: {centres}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if max_distance <= 0:
        raise ValueError(f"max_distance must be > 0, got {max_distance}")
    symbols = np.array(atoms.get_chemical_symbols())
    if ligand_symbol not in set(symbols):
        raise ValueError(f"ligand species {ligand_symbol!r} is not in the structure "
                         f"(species present: {sorted(set(symbols))})")
    result: dict[int, list[Ligand]] = {c: [] for c in centres}
    if not centres:
        return result
    cutoffs = {(s, ligand_symbol): float(max_distance) for s in set(symbols[centres])}
    i, j, d, S = neighbor_list("ijdS", atoms, cutoffs)
    is_centre = np.zeros(n, bool)
    is_centre[centres] = True
    keep = is_centre[i] & (symbols[j] == ligand_symbol)
    i, j, d, S = i[keep], j[keep], d[keep], S[keep]
    for c in centres:
        sel = np.flatnonzero(i == c)
        if sel.size == 0:
            continue
        dmin = d[sel].min()
        sel = sel[d[sel] <= dmin * (1.0 + tolerance) + _EPS]
        sel = sel[np.lexsort((j[sel], d[sel]))]
        result[c] = [(int(j[k]), (int(S[k, 0]), int(S[k, 1]), int(S[k, 2]))) for k in sel]
    return result


def _frozen(values: Iterable[int]) -> np.ndarray:
    arr = np.array(sorted(set(int(v) for v in values)), dtype=int)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class SiteClasses:
    """Anion classes of a structure (all indices 0-based atom indices, sorted).

    Attributes
    ----------
    O_e, O_c, O_n, other : numpy.ndarray of int
        Disjoint; together they are every atom of species ``anion``.
    conflicts : numpy.ndarray of int
        Anions that are O_e for one mobile ion and O_c for another (kept in ``O_e``).
    framework : tuple of str
        Framework cation species used (found automatically or given).
    mobile, anion : str
        Mobile and anion species.
    per_mobile : dict of int to dict
        For each mobile ion, its own anion neighbours by class:
        ``{"O_e": [...], "O_c": [...]}`` (classes as seen from that ion; an anion corner-shared
        for this ion may be in ``O_e`` globally, see ``conflicts``).
    coordination_numbers : dict of str to tuple of int
        Distinct coordination numbers (anion neighbours) of the mobile species and of every
        other cation species, under the bond rule.
    tolerance : float
        Bond tolerance used.
    """

    O_e: np.ndarray
    O_c: np.ndarray
    O_n: np.ndarray
    other: np.ndarray
    conflicts: np.ndarray
    framework: tuple[str, ...]
    mobile: str
    anion: str
    per_mobile: Mapping[int, Mapping[str, list[int]]] = field(default_factory=dict)
    coordination_numbers: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    tolerance: float = 0.25

    def to_dict(self) -> dict:
        """JSON-ready dictionary with the index lists and their counts (``n_O_e``, ...)."""
        out: dict = {"mobile": self.mobile, "anion": self.anion,
                     "framework": list(self.framework), "tolerance": self.tolerance}
        for name in ("O_e", "O_c", "O_n", "other", "conflicts"):
            idx = getattr(self, name)
            out[name] = [int(v) for v in idx]
            out[f"n_{name}"] = int(len(idx))
        out["per_mobile"] = {str(k): {c: [int(v) for v in lst] for c, lst in v.items()}
                             for k, v in self.per_mobile.items()}
        out["coordination_numbers"] = {s: [int(c) for c in cn]
                                       for s, cn in self.coordination_numbers.items()}
        return out


def _species_order(symbols: Iterable[str]) -> list[str]:
    """Distinct species sorted by atomic number."""
    from ase.data import atomic_numbers
    return sorted({str(s) for s in symbols}, key=lambda s: atomic_numbers[s])


@dataclass(frozen=True)
class SharedPolyhedron:
    """A cation polyhedron sharing anions with a mobile-ion polyhedron.

    Attributes
    ----------
    centre : int
        Index of the cation.
    image : tuple of 3 int
        Lattice translation of that cation relative to the mobile ion's home cell
        (cation position ``positions[centre] + image @ cell``).
    symbol : str
        Species of the cation.
    shared : tuple of Ligand
        Shared anion positions, as ``(index, image)`` in the mobile ion's frame, sorted.
    """

    centre: int
    image: tuple[int, int, int]
    symbol: str
    shared: tuple[Ligand, ...]

    @property
    def kind(self) -> str:
        """``"corner"`` (1 shared anion), ``"edge"`` (2) or ``"face"`` (>= 3)."""
        return {1: "corner", 2: "edge"}.get(len(self.shared), "face")


def _sharing(coord: Mapping[int, list[Ligand]], mobile_idx: Iterable[int],
             cation_idx: Iterable[int]) -> dict[int, dict[tuple[int, tuple[int, ...]], set]]:
    """Shared anion positions between each mobile polyhedron and each cation polyhedron (k, T)."""
    # anion index -> [(cation centre, image of that anion relative to the centre)]
    anion_to_centres: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for c in cation_idx:
        for lig, img in coord[int(c)]:
            anion_to_centres[lig].append((int(c), np.array(img)))
    sharing = {}
    for m in mobile_idx:
        shared: dict[tuple[int, tuple[int, ...]], set[Ligand]] = defaultdict(set)
        for lig, img in coord[int(m)]:
            for k, img_k in anion_to_centres.get(lig, []):
                # the cation k whose ligand (lig, img_k) is the mobile ion's (lig, img) sits at T
                T = tuple(int(t) for t in np.array(img) - img_k)
                shared[(k, T)].add((lig, img))
        sharing[int(m)] = shared
    return sharing


def polyhedral_sharing(atoms: ase.Atoms, mobile: str = "Li", anion: str = "O",
                       tolerance: float = 0.25, max_distance: float = 3.5
                       ) -> dict[int, list[SharedPolyhedron]]:
    """Every cation polyhedron that shares at least one anion position with each mobile polyhedron.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure.
    mobile, anion : str, optional
        Mobile-ion and anion species (default ``"Li"``, ``"O"``).
    tolerance, max_distance : float, optional
        Bond rule, see :func:`coordination`.

    Returns
    -------
    dict of int to list of SharedPolyhedron
        For each mobile ion, the polyhedra of all non-mobile cations sharing anions with it
        (polyhedra of other mobile ions are not listed), sorted by (symbol, centre, image).
    """
    symbols = np.array(atoms.get_chemical_symbols())
    for s in (mobile, anion):
        if s not in set(symbols):
            raise ValueError(f"species {s!r} is not in the structure "
                             f"(species present: {_species_order(symbols)})")
    mobile_idx = np.flatnonzero(symbols == mobile)
    cation_idx = np.flatnonzero((symbols != mobile) & (symbols != anion))
    coord = coordination(atoms, np.concatenate([mobile_idx, cation_idx]), anion,
                         tolerance=tolerance, max_distance=max_distance)
    out = {}
    for m, shared in _sharing(coord, mobile_idx, cation_idx).items():
        out[m] = sorted((SharedPolyhedron(k, T, str(symbols[k]), tuple(sorted(pos)))
                         for (k, T), pos in shared.items()),
                        key=lambda p: (p.symbol, p.centre, p.image))
    return out


def _candidates(present: list[str], mobile: str, anion: str, framework) -> tuple[list[str], list[str] | None]:
    """Checked species: (framework candidates, the user's framework as a list or None)."""
    if mobile == anion:
        raise ValueError(f"mobile and anion species are both {mobile!r}")
    if mobile not in present:
        raise ValueError(f"mobile species {mobile!r} is not in the structure, so there are no "
                         f"mobile ions to classify around (species present: {present})")
    if anion not in present:
        raise ValueError(f"anion species {anion!r} is not in the structure "
                         f"(species present: {present})")
    # a cation is less electronegative (Pauling) than the anion: this keeps a second anion
    # (I⁻ in Li6PS5I with anion S) out of the automatic framework
    from pymatgen.core.periodic_table import Element

    chi_anion = Element(anion).X
    candidates = [s for s in present if s not in (mobile, anion) and Element(s).X < chi_anion]
    if framework is not None:
        framework = [framework] if isinstance(framework, str) else list(framework)
        for s in framework:
            if s in (mobile, anion):
                raise ValueError(f"framework species {s!r} is the mobile or anion species")
            if s not in present:
                raise ValueError(f"framework species {s!r} is not in the structure "
                                 f"(species present: {present})")
        candidates = list(dict.fromkeys(candidates + framework))  # the user's choice wins
    return candidates, framework


def _edges_and_corners(sharing, is_fw: np.ndarray):
    """Per mobile ion its edge- and corner-shared anions with framework polyhedra, and the union of each."""
    per_mobile: dict[int, dict[str, list[int]]] = {}
    O_e: set[int] = set()
    O_c_cand: set[int] = set()
    for m, shared in sharing.items():
        edge_pos: set[Ligand] = set()
        corner_pos: set[Ligand] = set()
        for (k, _), pos in shared.items():
            if not is_fw[k]:
                continue
            (edge_pos if len(pos) >= 2 else corner_pos).update(pos)
        e = {lig for lig, _ in edge_pos}
        c = {lig for lig, _ in corner_pos} - e
        per_mobile[m] = {"O_e": sorted(e), "O_c": sorted(c)}
        O_e |= e
        O_c_cand |= c
    return per_mobile, O_e, O_c_cand


def classify_oxygens(atoms: ase.Atoms, mobile: str = "Li", anion: str = "O",
                     framework: Sequence[str] | None = None, tolerance: float = 0.25,
                     max_distance: float = 3.5) -> SiteClasses:
    """Classify anions into O_e / O_c / O_n / other from polyhedral connectivity.

    See the module docstring for the bond and sharing rules and the class definitions.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure.
    mobile : str, optional
        Mobile-ion species. Default ``"Li"``.
    anion : str, optional
        Anion species whose atoms are classified. Default ``"O"``.
    framework : sequence of str, optional
        Framework cation species. ``None`` (default) finds them automatically: every species
        other than ``mobile`` and ``anion`` whose anion polyhedra share at least one anion
        position with a mobile-ion polyhedron (sorted by atomic number).
    tolerance : float, optional
        Relative bond tolerance (see :func:`coordination`). Default 0.25.
    max_distance : float, optional
        Largest bond length considered, Å. Default 3.5.

    Returns
    -------
    SiteClasses

    Raises
    ------
    ValueError
        If the mobile or anion species is absent, ``mobile == anion``, a given framework species
        is absent or is the mobile/anion species, no mobile ion has an anion neighbour, or no 3-D cell.
    """
    require_periodic(atoms, "classify_oxygens")
    symbols = np.array(atoms.get_chemical_symbols())
    candidates, framework = _candidates(_species_order(symbols), mobile, anion, framework)

    mobile_idx = np.flatnonzero(symbols == mobile)
    cation_idx = np.flatnonzero(np.isin(symbols, candidates))
    coord = coordination(atoms, np.concatenate([mobile_idx, cation_idx]), anion,
                         tolerance=tolerance, max_distance=max_distance)
    if not any(coord[int(m)] for m in mobile_idx):
        raise ValueError(f"no {mobile} ion has an {anion} neighbour within {max_distance} Å")

    cn = {s: tuple(sorted({len(coord[int(c)]) for c in np.flatnonzero(symbols == s)}))
          for s in [mobile] + candidates}

    sharing = _sharing(coord, mobile_idx, cation_idx)

    if framework is None:
        framework = [s for s in candidates
                     if any(symbols[k] == s for sh in sharing.values() for (k, _) in sh)]
    framework_t = tuple(_species_order(framework))
    is_fw = np.isin(symbols, framework_t)

    per_mobile, O_e, O_c_cand = _edges_and_corners(sharing, is_fw)
    conflicts = O_e & O_c_cand
    O_c = O_c_cand - O_e

    bonded_to_mobile = {lig for m in mobile_idx for lig, _ in coord[int(m)]}
    fw_anions = {lig for c in cation_idx if is_fw[c] for lig, _ in coord[int(c)]}
    O_n = fw_anions - bonded_to_mobile
    all_anions = set(int(a) for a in np.flatnonzero(symbols == anion))
    other = all_anions - O_e - O_c - O_n

    return SiteClasses(O_e=_frozen(O_e), O_c=_frozen(O_c), O_n=_frozen(O_n),
                       other=_frozen(other), conflicts=_frozen(conflicts),
                       framework=framework_t, mobile=mobile, anion=anion,
                       per_mobile=per_mobile, coordination_numbers=cn,
                       tolerance=float(tolerance))
