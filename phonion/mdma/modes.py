"""Γ-point normal modes of the exact supercell a trajectory uses (DESIGN.md, "Modes").

Units: force constants eV/Å², masses amu, eigenvalues λ of D = M^-½ Φ M^-½ in eV/(Å² amu),
frequencies in THz (cycles), imaginary as negative: f = sign(λ) √|λ| × 15.633302
(:data:`THZ_PER_SQRT_EV_A2_AMU`, from :mod:`phonion.core.units`). Eigenvectors are the columns ``e_n`` of a
real orthogonal (3N, 3N) matrix, row ``3 i + α`` for atom i, Cartesian α; the mass-weighted
displacement pattern, as MDMA's projection Q̇_n = Σ_i √m_i e_{i,n} · v_i needs.

Bloch expansion (:func:`modes_for_supercell`)
---------------------------------------------
phonopy's dynamical matrix uses the atom positions in its phase ("type II"):
D^II_{κα,κ'β}(q) = Σ_l Φ_{0κ,lκ'} exp(2πi q·(R_l + r_κ' − r_κ)) / √(m_κ m_κ'), q in fractional
coordinates of the primitive reciprocal lattice (cycles), R_l, r_κ fractional in the primitive
lattice (phonopy averages over equivalent shortest images). We turn it into the lattice-vector
convention ("type I") D^I = U D^II U^†, U = diag(exp(2πi q·r_κ)); D^I(q + G) = D^I(q), and
D^I is real when 2q is a reciprocal-lattice vector. An eigenvector e^I(q) of D^I gives the
supercell vector u_{(l,κ)} = e^I_κ(q) exp(2πi q·R_l) / √N_cells, identical to phonopy's
e^II_κ(q) exp(2πi q·(R_l + r_κ)) / √N_cells. The q and −q vectors combine into the real
orthonormal pair √2 Re u, √2 Im u; at q ≡ −q, e^I is real and so is u.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phonion.core.units import AMU_KG, E_CHARGE_C
from phonion.mdma.modes_classes import O_CLASSES, ModeClasses, mode_classes  # noqa: F401  (re-exported)

__all__ = ["THZ_PER_SQRT_EV_A2_AMU", "Modes", "ModeClasses", "frequencies_from_eigenvalues",
           "modes_from_force_constants", "map_to_primitive", "modes_for_supercell",
           "BlochBlocks", "SupercellModeColumns", "supercell_mode_columns",
           "mode_classes", "save_modes", "load_modes"]

#: √(eV/(Å² amu)) in THz (cycles): √(e / amu) / Å / 2π / 1e12 = 15.633302...
THZ_PER_SQRT_EV_A2_AMU = float(np.sqrt(E_CHARGE_C / AMU_KG) * 1e10 / (2 * np.pi) / 1e12)


def frequencies_from_eigenvalues(lam) -> np.ndarray:
    """f = sign(λ) √|λ| × 15.633302 THz for eigenvalues λ in eV/(Å² amu); imaginary → negative."""
    lam = np.asarray(lam, dtype=float)
    return np.sign(lam) * np.sqrt(np.abs(lam)) * THZ_PER_SQRT_EV_A2_AMU


@dataclass(frozen=True, eq=False)
class Modes:
    """Γ modes of a cell of N atoms.

    Attributes
    ----------
    frequencies_THz : numpy.ndarray, shape (3N,), float
        Ascending; imaginary as negative.
    eigenvectors : numpy.ndarray, shape (3N, 3N), float
        Real orthonormal columns e_n (row 3i+α: atom i, Cartesian α).
    masses : numpy.ndarray, shape (N,), float, amu
    symbols : tuple of str, length N
    positions : numpy.ndarray, shape (N, 3), float, Å
        Reference (equilibrium) positions in this cell's atom order.
    cell : numpy.ndarray, shape (3, 3), float, Å (rows are lattice vectors)
    qpoints : numpy.ndarray, shape (n_q, 3), float, optional
        Commensurate q-points of the primitive cell the modes came from (fractional,
        primitive reciprocal basis); ``[[0, 0, 0]]`` for direct diagonalisation.
    q_index : numpy.ndarray, shape (3N,), int, optional
        Index into ``qpoints`` of each mode (for a ±q pair, the index of +q).
    """

    frequencies_THz: np.ndarray
    eigenvectors: np.ndarray
    masses: np.ndarray
    symbols: tuple[str, ...]
    positions: np.ndarray
    cell: np.ndarray
    qpoints: np.ndarray | None = None
    q_index: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.masses)

    @property
    def n_modes(self) -> int:
        return len(self.frequencies_THz)

    def atom_weights(self) -> np.ndarray:
        """|e_{i,n}|² summed over Cartesian components, shape (N, 3N); columns sum to 1."""
        e = self.eigenvectors.reshape(self.n_atoms, 3, self.n_modes)
        return (e ** 2).sum(axis=1)


def modes_from_force_constants(fc, masses, symbols=None, positions=None, cell=None) -> Modes:
    """Γ modes by direct diagonalisation of D = M^-½ Φ M^-½ (symmetrised, ``numpy.linalg.eigh``).

    Parameters
    ----------
    fc : numpy.ndarray, shape (3N, 3N) or (N, N, 3, 3), float, eV/Å²
        Force constants of the cell itself (periodic images already summed).
    masses : array-like, shape (N,), amu
    symbols, positions, cell : optional
        Stored on the result (``positions`` (N, 3) Å, ``cell`` (3, 3) Å).
    """
    masses = np.asarray(masses, dtype=float)
    n = len(masses)
    fc = np.asarray(fc, dtype=float)
    if fc.shape == (n, n, 3, 3):
        fc = fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    if fc.shape != (3 * n, 3 * n):
        raise ValueError(f"force constants of shape {fc.shape} do not fit {n} masses")
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    d = fc * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    lam, vec = np.linalg.eigh(0.5 * (d + d.T))
    return Modes(frequencies_from_eigenvalues(lam), vec, masses,
                 tuple(symbols) if symbols is not None else ("X",) * n,
                 np.zeros((n, 3)) if positions is None else np.asarray(positions, float),
                 np.zeros((3, 3)) if cell is None else np.asarray(cell, float),
                 np.zeros((1, 3)), np.zeros(3 * n, dtype=int))


def map_to_primitive(prim_cell, prim_scaled, prim_symbols, md_atoms, tolerance_A: float = 0.3):
    """Map each atom of a commensurate supercell to (primitive atom κ, lattice vector l).

    Parameters
    ----------
    prim_cell : (3, 3) float, Å; prim_scaled : (n, 3) fractional; prim_symbols : n str
    md_atoms : ase.Atoms
        The MD cell, cell = P @ prim_cell with P an integer matrix (det > 0).
    tolerance_A : float
        Largest distance (Å, minimum image) between an MD atom and its lattice site.

    Returns
    -------
    kappa : (N,) int; lattice : (N, 3) int (R_l in primitive fractional coordinates);
    P : (3, 3) int
    """
    A = np.asarray(prim_cell, float)
    fprim = np.asarray(prim_scaled, float)
    L = np.asarray(md_atoms.cell.array, float)
    P_real = L @ np.linalg.inv(A)
    P = np.rint(P_real).astype(int)
    det = int(round(np.linalg.det(P)))
    if not np.allclose(P_real, P, atol=1e-3) or det < 1:
        raise ValueError("the MD cell is not a supercell of the phonopy primitive cell: "
                         f"MD cell @ inv(primitive cell) = {np.round(P_real, 4).tolist()} is "
                         "not an integer matrix with positive determinant (same orientation and "
                         "lattice constants needed)")
    n_md, n_p = len(md_atoms), len(fprim)
    if n_md != det * n_p:
        raise ValueError(f"the MD cell holds {n_md} atoms, but a {det}-fold supercell of the "
                         f"{n_p}-atom phonopy cell holds {det * n_p}")
    f_md = md_atoms.positions @ np.linalg.inv(A)
    diff = f_md[:, None, :] - fprim[None, :, :]                     # (N, n, 3)
    lat = np.rint(diff)  # not core.geometry.minimum_image: (N, n, 3) at once, and the integer l is needed
    dist = np.linalg.norm((diff - lat) @ A, axis=2)                 # (N, n)
    kappa = dist.argmin(axis=1)
    rows = np.arange(n_md)
    best = dist[rows, kappa]
    md_symbols = md_atoms.get_chemical_symbols()
    bad = np.flatnonzero(best > tolerance_A)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"MD atom {i} ({md_symbols[i]}) is {best[i]:.3f} Å from the nearest site "
                         f"of the phonopy cell (site {int(kappa[i])}, {prim_symbols[kappa[i]]}); "
                         f"tolerance {tolerance_A} Å ({bad.size} atoms beyond it)")
    for i in range(n_md):
        if md_symbols[i] != prim_symbols[kappa[i]]:
            raise ValueError(f"MD atom {i} is {md_symbols[i]} but its site {int(kappa[i])} in the "
                             f"phonopy cell ({best[i]:.3f} Å away) is {prim_symbols[kappa[i]]}")
    lattice = lat[rows, kappa].astype(int)
    # each (κ, l modulo the MD lattice) exactly once
    key = np.rint(lattice @ np.linalg.inv(P) * det).astype(int) % det  # adj(P) is integer
    keys = np.column_stack([kappa, key])
    _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = keys[first[counts > 1][0]]
        same = np.flatnonzero((keys == dup).all(axis=1))
        raise ValueError(f"MD atoms {same.tolist()} map to the same site (phonopy atom "
                         f"{int(dup[0])}) of the same cell")
    return kappa, lattice, P


def _dynamical_matrix(phonon):
    from phonopy.harmonic.dynamical_matrix import get_dynamical_matrix

    fc = phonon.force_constants
    if fc is None:
        raise ValueError("phonon has no force constants")
    return get_dynamical_matrix(fc, phonon.supercell, phonon.primitive, nac_params=None)


@dataclass(frozen=True, eq=False)
class BlochBlocks:
    """What :class:`SupercellModeColumns` builds its columns from (made by :func:`supercell_mode_columns`).

    blocks : list of (q-point index, eigenvectors e^I (3n, 3n)) per diagonalised q (one per ±q pair)
    rows : (3N,) int, the e^I row of every MD-cell row;  lattice : (N, 3) int, R_l of every MD atom
    qpoints : (n_q, 3) commensurate q-points;  n_cells : primitive cells in the MD cell
    source : (3N, 3) int, per mode in frequency order: block, band, part (0: q ≡ −q; 1, 2: √2 Re, √2 Im)
    """

    blocks: list
    rows: np.ndarray
    lattice: np.ndarray
    qpoints: np.ndarray
    n_cells: int
    source: np.ndarray


class SupercellModeColumns:
    """The MD cell's Γ modes from phonopy's D(q), as a column source that never needs the
    (3N, 3N) matrix: ``cols(start, stop)`` gives eigenvectors ``start:stop`` (frequency order)
    as a real (3N, stop − start) array, the callable form :mod:`phonion.mdma.mdma` accepts.

    Built by :func:`supercell_mode_columns` from :class:`BlochBlocks`. Attributes as :class:`Modes`
    (``frequencies_THz``, ``masses``, ``symbols``, ``positions``, ``cell``, ``qpoints``, ``q_index``)
    plus ``n_modes``.
    """

    def __init__(self, bloch: BlochBlocks, frequencies_THz, q_index, masses, symbols, positions, cell):
        self._blocks, self._rows, self._lattice = bloch.blocks, bloch.rows, bloch.lattice
        self._n_cells, self._source = bloch.n_cells, bloch.source
        self.qpoints, self.frequencies_THz, self.q_index = bloch.qpoints, frequencies_THz, q_index
        self.masses, self.symbols, self.positions, self.cell = masses, symbols, positions, cell
        self.n_modes = len(frequencies_THz)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        if not 0 <= start <= stop <= self.n_modes:
            raise ValueError(f"columns {start}:{stop} outside 0:{self.n_modes}")
        block, band, part = self._source[start:stop].T
        out = np.empty((self.n_modes, stop - start))
        for b in np.unique(block):
            sel = np.flatnonzero(block == b)
            iq, e = self._blocks[b]
            phase = np.repeat(np.exp(2j * np.pi * self._lattice @ self.qpoints[iq]), 3)
            v = e[self._rows][:, band[sel]] * (phase / np.sqrt(self._n_cells))[:, None]
            # part 0: q ≡ −q (e^I real, phase ±1); 1, 2: √2 Re, √2 Im of a ±q pair
            out[:, sel] = np.where(part[sel] == 2, np.sqrt(2.0) * v.imag,
                                   np.where(part[sel] == 1, np.sqrt(2.0), 1.0) * v.real)
        return out


def supercell_mode_columns(phonon, md_atoms, tolerance_A: float = 0.3) -> SupercellModeColumns:
    """:func:`modes_for_supercell` without forming the eigenvector matrix (see
    :class:`SupercellModeColumns`); costs N_q diagonalisations of (3n, 3n) matrices."""
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points
    from phonopy.physical_units import get_physical_units

    prim = phonon.primitive
    A, fprim = np.array(prim.cell), np.array(prim.scaled_positions)
    psym, pmass = list(prim.symbols), np.array(prim.masses)
    kappa, lattice, P = map_to_primitive(A, fprim, psym, md_atoms, tolerance_A)
    n_md, n_p = len(kappa), len(fprim)
    n_cells = n_md // n_p
    if not np.allclose(md_atoms.get_masses(), pmass[kappa], rtol=1e-4):
        warnings.warn("MD-cell masses differ from phonopy's; the modes use phonopy's masses",
                      stacklevel=3)
    qs = np.array(get_commensurate_points(P.T))
    assert len(qs) == n_cells and np.allclose(P @ qs.T, np.rint(P @ qs.T), atol=1e-8)
    # λ in eV/(Å² amu) whatever the calculator's units: phonopy's factor over its own
    # eV/Å/amu factor (not ours: ASE's CODATA 2014 differs from phonopy's in the 7th digit)
    scale = (float(phonon.unit_conversion_factor) / get_physical_units().DefaultToTHz) ** 2
    dm = _dynamical_matrix(phonon)
    blocks, lams, source = [], [], []
    done = np.zeros(len(qs), bool)
    for iq, q in enumerate(qs):
        if done[iq]:
            continue
        minus = np.flatnonzero(np.abs((qs + q) - np.rint(qs + q)).max(axis=1) < 1e-8)
        done[iq] = True
        done[minus] = True
        dm.run(q)
        u = np.repeat(np.exp(2j * np.pi * fprim @ q), 3)          # type II → type I
        d1 = u[:, None] * np.asarray(dm.dynamical_matrix) * u.conj()[None, :] * scale
        d1 = 0.5 * (d1 + d1.conj().T)
        self_conjugate = iq in minus
        if self_conjugate and np.abs(d1.imag).max() > 1e-8 * max(np.abs(d1).max(), 1e-300):
            raise RuntimeError(f"D(q) in the lattice-vector gauge is not real at q = {q}")
        lam, e = np.linalg.eigh(d1.real if self_conjugate else d1)
        bands = np.arange(len(lam))
        for part in ((0,) if self_conjugate else (1, 2)):
            lams.append(lam)
            source.append(np.column_stack([np.full_like(bands, len(blocks)), bands,
                                           np.full_like(bands, part)]))
        blocks.append((iq, e))
    lam = np.concatenate(lams)
    source = np.concatenate(source)
    order = np.argsort(lam, kind="stable")
    q_index = np.array([blocks[b][0] for b in source[order, 0]])
    rows = (3 * kappa[:, None] + np.arange(3)).ravel()            # row of e^I for each MD row
    return SupercellModeColumns(BlochBlocks(blocks, rows, lattice, qs, n_cells, source[order]),
                                frequencies_from_eigenvalues(lam[order]), q_index,
                                pmass[kappa], tuple(psym[k] for k in kappa),
                                (lattice + fprim[kappa]) @ A, np.array(md_atoms.cell.array))


def modes_for_supercell(phonon, md_atoms, tolerance_A: float = 0.3) -> Modes:
    """Γ modes of the MD cell from phonopy's D(q) at its commensurate q-points.

    Parameters
    ----------
    phonon : phonopy.Phonopy
        With force constants; its primitive cell is the building block.
    md_atoms : ase.Atoms
        The MD cell in the trajectory's atom order (e.g. the first frame): the primitive
        cell itself, the phonopy supercell, or any commensurate supercell of the primitive
        cell (atoms within ``tolerance_A`` of their lattice sites, any order, any wrapping).
    tolerance_A : float, optional
        Largest distance of an MD atom from its site (Å). Default 0.3.

    Returns
    -------
    Modes
        3N modes sorted by frequency; ``positions`` are the ideal lattice sites in the MD
        atom order, ``masses`` phonopy's. Exact (to round-off) equal to the direct
        diagonalisation of the MD-cell force constants when the MD cell's q-points are
        commensurate with the phonopy supercell; otherwise D(q) is phonopy's Fourier
        interpolation, no NAC (see module docstring). For cells too large for a (3N, 3N)
        matrix use :func:`supercell_mode_columns`.

    Raises
    ------
    ValueError
        If the MD cell is not a commensurate supercell, or an atom is off its site or of
        another species (the message names the atom and the distance).
    """
    c = supercell_mode_columns(phonon, md_atoms, tolerance_A)
    return Modes(c.frequencies_THz, c(0, c.n_modes), c.masses, c.symbols, c.positions, c.cell,
                 c.qpoints, c.q_index)


def save_modes(modes: Modes, path) -> Path:
    """Write ``modes`` to an ``.npz`` file (no pickles)."""
    path = Path(path)
    np.savez(path, frequencies_THz=modes.frequencies_THz, eigenvectors=modes.eigenvectors,
             masses=modes.masses, symbols=np.array(modes.symbols, dtype=str),
             positions=modes.positions, cell=modes.cell,
             qpoints=np.zeros((0, 3)) if modes.qpoints is None else modes.qpoints,
             q_index=np.zeros(0, int) if modes.q_index is None else modes.q_index)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_modes(path) -> Modes:
    """Read :class:`Modes` written by :func:`save_modes`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such modes file")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ValueError(f"{path}: not a modes .npz file: {exc}") from exc
    missing = {"frequencies_THz", "eigenvectors", "masses", "symbols", "positions",
               "cell"} - set(d)
    if missing:
        raise ValueError(f"{path}: missing arrays {sorted(missing)}")
    return Modes(d["frequencies_THz"], d["eigenvectors"], d["masses"],
                 tuple(str(s) for s in d["symbols"]), d["positions"], d["cell"],
                 d["qpoints"] if len(d.get("qpoints", [])) else None,
                 d["q_index"] if len(d.get("q_index", [])) else None)
