"""The MD supercell and the phonon unit cell: phonopy's supercell matrix, and the MD cell's ideal lattice sites
in the MD atom order (so atoms map onto the phonon cell by index, wherever a mobile ion has hopped to)."""

from __future__ import annotations

import numpy as np

from phonion.core.geometry import minimum_image

__all__ = ["supercell_matrix", "ideal_sites", "run_structure", "MD_SITE_TOLERANCE_A"]

#: largest distance (Å) of an MD atom (first frame) from its site when mapping onto the phonon cell
MD_SITE_TOLERANCE_A = 1.0


def supercell_matrix(unit, md_atoms) -> np.ndarray:
    """phonopy's supercell matrix S that makes the MD cell from the unit cell (``md.cell = Sᵀ @ unit.cell``)."""
    s_t = np.asarray(md_atoms.cell.array) @ np.linalg.inv(np.asarray(unit.cell.array))
    s = np.rint(s_t.T).astype(int)
    det = int(round(np.linalg.det(s)))
    if not np.allclose(s_t.T, s, atol=1e-3) or det < 1 or det * len(unit) != len(md_atoms):
        raise ValueError(f"the MD cell ({len(md_atoms)} atoms) is not a supercell of the structure "
                         f"({len(unit)} atoms): MD cell @ inv(structure cell) = {np.round(s_t, 3).tolist()}")
    return s


def ideal_sites(unit, md_atoms, mobile: str, tolerance_A: float = MD_SITE_TOLERANCE_A):
    """The MD cell's lattice sites in the MD atom order, or None when that order cannot be vouched for.

    MD made from ``unit`` (``Atoms.repeat``, as phonion's driver does) keeps the order of
    ``ase.build.make_supercell(unit, S)``. When the symbols agree in that order and the non-mobile atoms of
    ``md_atoms`` sit near their sites (minimum image, after removing a rigid framework drift: median ≤ tolerance_A,
    max ≤ 2.5 tolerance_A), atoms
    are mapped by index. Mobile
    ions may then be anywhere: after equilibration at high T a Li is often > 1 Å from its site, which a
    position-based mapping of the first frame would refuse.
    """
    from ase.build import make_supercell

    try:
        ideal = make_supercell(unit, supercell_matrix(unit, md_atoms))
    except ValueError:
        return None
    symbols = np.array(md_atoms.get_chemical_symbols())
    if ideal.get_chemical_symbols() != symbols.tolist():
        return None
    ideal.set_cell(md_atoms.cell, scale_atoms=True)
    frame = symbols != mobile
    vec = minimum_image(md_atoms.positions - ideal.positions, md_atoms.cell.array)
    shift = vec[frame].mean(axis=0) if frame.any() else np.zeros(3)  # the framework may drift as a whole
    _, dist = minimum_image(vec - shift, md_atoms.cell.array, return_lengths=True)
    # A wrong order puts most atoms ≥ 2 Å away (distinct sites of one species are that far apart); thermal
    # motion leaves the typical atom a few tenths of an Å from its site (O of SeO3 at 1300 K up to ~1.9 Å
    # with a small MLIP), so judge the median against tolerance_A and allow 2.5x for the farthest atom.
    if (not frame.any() or float(np.median(dist[frame])) > tolerance_A
            or float(dist[frame].max()) > 2.5 * tolerance_A):
        return None
    return ideal


def run_structure(metadata: dict, files=()):
    """The structure an MD run was built from, named in its metadata (``structure``, as phonion's MD driver
    writes into the H5MD), or None when it is not named or cannot be read.

    A relative path is tried as given, then beside each trajectory file in ``files`` and its parent folder
    (the run folder usually sits in the project that holds the structure); a bundled name loads as such.
    """
    from pathlib import Path

    from phonion.core.structures import load_structure

    name = (metadata or {}).get("structure")
    if not name or not isinstance(name, str):
        return None
    candidates = [name]
    if not Path(name).is_absolute():
        for f in files:
            folder = Path(f).resolve().parent
            candidates += [str(folder / name), str(folder.parent / name)]
    for candidate in dict.fromkeys(candidates):
        try:
            return load_structure(candidate)
        except ValueError:
            continue
    return None
