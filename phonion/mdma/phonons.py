"""Harmonic phonons with phonopy and any ASE calculator, and what to report about them.

phonopy's own sequence (STYLE.md item 7; as janus-core ``calculations/phonons.py``):
``Phonopy(unit cell, supercell_matrix)`` → ``generate_displacements`` → forces from an ASE
calculator on ``supercells_with_displacements`` → ``produce_force_constants`` →
``symmetrize_force_constants`` → ``phonon.save`` (:func:`phonion.mdma.phonon_io.save_phonons`).

Conventions
-----------
- The given structure is phonopy's unit cell *and* its primitive cell (``primitive_matrix="P"``):
  atom ``k`` of the input is atom ``k`` of ``phonon.primitive``, so per-atom results (projected
  DOS, O classes) index the input directly. (phonopy 4 treats ``primitive_matrix=None`` as
  ``"auto"``, which could reduce and reorder the cell; we never do that.)
- ``supercell_matrix`` follows phonopy: three integers (diagonal) or a 3 × 3 integer matrix ``S``
  with supercell lattice vectors (columns) = unit-cell vectors (columns) × ``S``, i.e. in ASE's
  row convention ``supercell.cell = S.T @ unitcell.cell``.
- Force constants are full, ``(N_sc, N_sc, 3, 3)`` in eV/Å², phonopy's supercell atom order.
- Residual forces: the forces of the undisplaced supercell are computed once and subtracted
  from every displaced set before the force constants are fitted, so a structure that is not
  exactly at a force minimum (a relaxed DFT cell evaluated with an MLIP) gives force constants
  of the *curvature*, not of the residual force.
- Frequencies in THz (cycles), imaginary as negative numbers (phonopy's convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ase
import numpy as np
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from phonion.mdma.phonon_io import load_phonons, save_phonons  # noqa: F401  (part of this module's API)

__all__ = ["compute_force_constants", "acoustic_sum_rule_residual", "phonon_summary",
           "band_path_qpoints", "to_phonopy_atoms", "to_ase_atoms", "save_phonons",
           "load_phonons"]

#: Largest |Σ_j Φ_ij| (eV/Å²) accepted after phonopy's symmetrisation.
ASR_TOLERANCE = 1e-8


def to_phonopy_atoms(atoms: ase.Atoms) -> PhonopyAtoms:
    """The same structure as a :class:`PhonopyAtoms` (symbols, cell, positions, masses)."""
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell.array),
                        scaled_positions=atoms.get_scaled_positions(wrap=False),
                        masses=atoms.get_masses())


def to_ase_atoms(cell: PhonopyAtoms) -> ase.Atoms:
    """A :class:`PhonopyAtoms` as a periodic :class:`ase.Atoms` (masses kept)."""
    return ase.Atoms(symbols=list(cell.symbols), cell=np.array(cell.cell),
                     scaled_positions=np.array(cell.scaled_positions),
                     masses=np.array(cell.masses), pbc=True)


def _forces(cell: PhonopyAtoms, calculator) -> np.ndarray:
    atoms = to_ase_atoms(cell)
    atoms.calc = calculator
    return np.array(atoms.get_forces(), dtype=float)


def acoustic_sum_rule_residual(force_constants: np.ndarray) -> float:
    """Largest violation of the acoustic sum rule, max over i, α, β of |Σ_j Φ_ij^αβ| (eV/Å²).

    Parameters
    ----------
    force_constants : numpy.ndarray, shape (N, N, 3, 3), float, eV/Å²
        Full supercell force constants.
    """
    fc = np.asarray(force_constants)
    if fc.ndim != 4 or fc.shape[0] != fc.shape[1]:
        raise ValueError(f"need full force constants of shape (N, N, 3, 3), got {fc.shape}")
    return float(np.abs(fc.sum(axis=1)).max())


def compute_force_constants(atoms: ase.Atoms, calculator, supercell_matrix=(2, 2, 2),
                            displacement_A: float = 0.01, symprec: float = 1e-5,
                            progress: bool = True) -> Phonopy:
    """Finite-displacement force constants with phonopy and an ASE calculator.

    Parameters
    ----------
    atoms : ase.Atoms
        Unit cell (periodic); also used as the primitive cell, so atom order is kept.
    calculator : ase.calculators.calculator.Calculator
        Gives the forces (eV/Å), e.g. from :func:`phonion.core.calculators.resolve_calculator`.
    supercell_matrix : 3 ints or (3, 3) int array-like, optional
        phonopy supercell matrix (see module docstring). Default ``(2, 2, 2)``.
    displacement_A : float, optional
        Displacement amplitude in Å. Default 0.01.
    symprec : float, optional
        Symmetry tolerance (Å) for phonopy's displacement generation. Default 1e-5.
    progress : bool, optional
        Show a tqdm progress bar over the displaced supercells. Default True.

    Returns
    -------
    phonopy.Phonopy
        With ``dataset`` (displacements and residual-corrected forces) and full, symmetrised
        ``force_constants`` of shape (N_sc, N_sc, 3, 3) in eV/Å².

    Raises
    ------
    ValueError
        If the structure is not periodic in 3D, the displacement is not positive, or the
        acoustic sum rule still fails after symmetrisation (> 1e-8 eV/Å²).
    """
    from tqdm import tqdm

    if not np.all(atoms.pbc) or atoms.cell.rank != 3:
        raise ValueError("phonons need a 3D periodic cell (pbc=True and three cell vectors)")
    if not displacement_A > 0:
        raise ValueError(f"displacement_A must be > 0, got {displacement_A}")
    smat = np.asarray(supercell_matrix, dtype=int)
    if smat.shape == (3,):
        smat = np.diag(smat)
    if smat.shape != (3, 3) or round(np.linalg.det(smat)) < 1:
        raise ValueError(f"supercell_matrix must be 3 positive ints or a 3x3 integer matrix "
                         f"with positive determinant, got {supercell_matrix!r}")
    phonon = Phonopy(to_phonopy_atoms(atoms), supercell_matrix=smat, primitive_matrix="P",
                     symprec=symprec)
    phonon.generate_displacements(distance=displacement_A)
    displaced = phonon.supercells_with_displacements
    reference = _forces(phonon.supercell, calculator)
    forces = np.array([_forces(sc, calculator) - reference
                       for sc in tqdm(displaced, desc="phonon displacements", unit="supercell",
                                      disable=not progress)])
    phonon.forces = forces
    phonon.produce_force_constants(calculate_full_force_constants=True, show_drift=False)
    phonon.symmetrize_force_constants(show_drift=False)
    residual = acoustic_sum_rule_residual(phonon.force_constants)
    if residual > ASR_TOLERANCE:
        raise ValueError(f"acoustic sum rule violated after symmetrisation: max |sum_j Phi_ij| "
                         f"= {residual:.3e} eV/Å² > {ASR_TOLERANCE:.0e}")
    return phonon


def band_path_qpoints(cell, npoints: int = 51) -> tuple[list[np.ndarray], list[str], list[bool]]:
    """A standard band path from ASE (``cell.bandpath()``) in phonopy's form.

    q-points are fractional coordinates of the reciprocal lattice of ``cell`` (ASE's
    ``BandPath.special_points`` are given relative to the cell they were made for, also for a
    non-standard setting), which is what phonopy's ``run_band_structure`` wants for the
    primitive cell.

    Returns
    -------
    paths : list of numpy.ndarray, each (npoints, 3)
        One straight segment per pair of consecutive special points.
    labels : list of str
        End-point labels in phonopy's convention (``Γ`` for ``G``).
    connections : list of bool
        Whether each segment continues into the next (False at a ``,`` break in the path).
    """
    from ase.cell import Cell
    from ase.dft.kpoints import parse_path_string

    bp = Cell(np.asarray(cell)).bandpath(npoints=0)
    special = bp.special_points
    paths, labels, connections = [], [], []
    for branch in parse_path_string(bp.path):
        for k, (a, b) in enumerate(zip(branch[:-1], branch[1:])):
            paths.append(np.linspace(special[a], special[b], npoints))
            if k == 0:
                labels.append(a)
            labels.append(b)
            connections.append(True)
        connections[-1] = False
    labels = ["Γ" if s == "G" else s for s in labels]
    return paths, labels, connections


def _group_pdos(pdos: np.ndarray, groups: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    return {name: pdos[np.asarray(idx, dtype=int)].sum(axis=0) for name, idx in groups.items()}


def _band_centre(freqs: np.ndarray, dos: np.ndarray) -> float | None:
    pos = freqs > 0
    weight = dos[pos].sum()
    return float((freqs[pos] * dos[pos]).sum() / weight) if weight > 0 else None


def _dominant_atoms(vector: np.ndarray, symbols: Sequence[str], top: int = 3) -> list[dict]:
    w = (np.abs(vector.reshape(-1, 3)) ** 2).sum(axis=1)
    order = np.argsort(-w, kind="stable")[:top]
    return [{"index": int(i), "symbol": symbols[i], "weight": float(w[i])} for i in order]


def _dos(phonon: Phonopy, symbols: list[str]):
    """Total and projected DOS on the mesh just run: (frequencies, total, per atom, species, by species)."""
    n = len(symbols)
    dos = phonon.run_total_dos()
    fpts, total = np.asarray(dos.frequency_points), np.asarray(dos.dos)
    pd = phonon.run_projected_dos()
    per_atom = np.asarray(pd.projected_dos)
    species = list(dict.fromkeys(symbols))
    by_species = _group_pdos(per_atom, {s: [i for i in range(n) if symbols[i] == s]
                                        for s in species})
    return fpts, total, per_atom, species, by_species


def _class_pdos(per_atom: np.ndarray, classes, n: int) -> dict[str, np.ndarray]:
    """Projected DOS summed over the atoms of each O class (indices of the phonopy cell of ``n`` atoms)."""
    get = classes.get if isinstance(classes, Mapping) else lambda k: getattr(classes, k, None)
    groups = {name: np.asarray(get(name) if get(name) is not None else [], dtype=int)
              for name in ("O_e", "O_c", "O_n")}
    for name, idx in groups.items():
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"class {name} has atom indices outside the phonopy cell "
                             f"({n} atoms): classes must index phonon.primitive")
    return _group_pdos(per_atom, groups)


def _imaginary_modes(phonon: Phonopy, qs, freqs, evecs, tolerance_THz: float):
    """(Γ frequencies, imaginary modes (q, f, e) sorted by f — Γ without its 3 acoustic modes, then the
    non-Γ mesh q-points —, how many of them are at Γ)."""
    gamma = phonon.run_qpoints([[0.0, 0.0, 0.0]], with_eigenvectors=True)
    g_freqs, g_vecs = np.asarray(gamma.frequencies)[0], np.asarray(gamma.eigenvectors)[0]
    acoustic = set(np.argsort(np.abs(g_freqs), kind="stable")[:3].tolist())
    imag = [(np.zeros(3), g_freqs[b], g_vecs[:, b]) for b in range(len(g_freqs))
            if b not in acoustic and g_freqs[b] < -tolerance_THz]
    n_gamma = len(imag)
    not_gamma = np.abs(qs - np.round(qs)).max(axis=1) > 1e-12
    for iq in np.flatnonzero(not_gamma):
        for b in np.flatnonzero(freqs[iq] < -tolerance_THz):
            imag.append((qs[iq], freqs[iq, b], evecs[iq][:, b]))
    imag.sort(key=lambda t: t[1])
    return g_freqs, imag, n_gamma


def phonon_summary(phonon: Phonopy, classes=None, mesh=(8, 8, 8), mobile: str = "Li",
                   tolerance_THz: float = 0.05, band_npoints: int = 51,
                   band_path: str = "auto", max_reported_modes: int = 50) -> dict:
    """DOS, projected DOS, band structure and a dynamic-stability report.

    Parameters
    ----------
    phonon : phonopy.Phonopy
        With force constants (:func:`compute_force_constants` or :func:`load_phonons`).
    classes : SiteClasses or mapping of str to int arrays, optional
        O classes (``O_e``, ``O_c``, ``O_n``) as atom indices of ``phonon.primitive`` (the
        input structure for phonons from :func:`compute_force_constants`). Gives the
        per-class projected DOS.
    mesh : 3 ints or float, optional
        q-point mesh (phonopy: numbers, or a length in Å from which phonopy derives them).
        Default (8, 8, 8). Without mesh symmetry (needed for projected DOS), Γ-centred.
    mobile : str, optional
        Species whose band centre is reported as ``li_band_centre_THz``. Default ``"Li"``.
    tolerance_THz : float, optional
        A mode is imaginary when f < -tolerance_THz. Default 0.05.
    band_npoints : int, optional
        q-points per band-path segment. Default 51.
    band_path : {"auto", "ase", "seekpath"}, optional
        "auto": phonopy's seekpath path if seekpath is importable, else ASE's
        ``cell.bandpath()`` (:func:`band_path_qpoints`).
    max_reported_modes : int, optional
        Most imaginary modes listed in the stability report (all are counted).

    Returns
    -------
    dict
        Scalars (JSON-ready): ``min_frequency_THz``, ``max_frequency_THz`` (over the mesh and
        Γ), ``n_imaginary`` (= ``n_imaginary_gamma`` + ``n_imaginary_mesh``: modes with
        f < -tolerance at Γ, without the 3 acoustic modes, and at the non-Γ mesh q-points,
        each (q, band) once), ``li_band_centre_THz`` (first moment of the ``mobile``-projected
        DOS over f > 0), ``band_centres_THz`` by species, ``gamma_frequencies_THz``,
        ``stability`` (``dynamically_stable`` and ``imaginary_modes``: q (fractional),
        frequency, three dominant atoms by |e_i|² with species), ``mesh``, ``n_atoms``.
        Arrays (``numpy.ndarray``): ``dos`` {``frequency_THz`` (F,), ``total`` (F,)} in
        states/THz per unit cell; ``pdos`` {``frequency_THz``, ``by_species``: {symbol: (F,)},
        ``by_class``: {class: (F,)}}; ``band`` {``distances``, ``frequencies_THz``,
        ``qpoints``: lists per segment, ``labels``, ``connections``}.
    """
    if phonon.force_constants is None:
        raise ValueError("phonon has no force constants: run compute_force_constants or "
                         "load_phonons first")
    prim = phonon.primitive
    symbols = list(prim.symbols)
    n = len(symbols)
    is_num = np.isscalar(mesh)
    phonon.run_mesh(float(mesh) if is_num else list(mesh), with_eigenvectors=True,
                    is_mesh_symmetry=False, is_gamma_center=True)
    m = phonon.mesh
    qs, freqs, evecs = np.asarray(m.qpoints), np.asarray(m.frequencies), m.eigenvectors
    fpts, total, per_atom, species, by_species = _dos(phonon, symbols)
    by_class = {} if classes is None else _class_pdos(per_atom, classes, n)
    g_freqs, imag, n_gamma = _imaginary_modes(phonon, qs, freqs, evecs, tolerance_THz)
    report = [{"q": [float(x) for x in q], "frequency_THz": float(f),
               "dominant_atoms": _dominant_atoms(v, symbols)}
              for q, f, v in imag[:max_reported_modes]]

    band = _band_structure(phonon, band_path, band_npoints)
    all_f = np.concatenate([freqs.ravel(), g_freqs])
    return {
        "n_atoms": n, "species": species, "mesh": [int(x) for x in m.mesh_numbers],
        "min_frequency_THz": float(all_f.min()), "max_frequency_THz": float(all_f.max()),
        "imaginary_tolerance_THz": float(tolerance_THz),
        "n_imaginary": len(imag), "n_imaginary_gamma": n_gamma,
        "n_imaginary_mesh": len(imag) - n_gamma,
        "mobile": mobile,
        "li_band_centre_THz": (_band_centre(fpts, by_species[mobile])
                               if mobile in by_species else None),
        "band_centres_THz": {s: _band_centre(fpts, g) for s, g in by_species.items()},
        "gamma_frequencies_THz": [float(f) for f in g_freqs],
        "stability": {"dynamically_stable": not imag, "imaginary_modes": report,
                      "n_listed": len(report)},
        "dos": {"frequency_THz": fpts, "total": total},
        "pdos": {"frequency_THz": fpts, "by_species": by_species, "by_class": by_class},
        "band": band,
    }


def _band_structure(phonon: Phonopy, band_path: str, npoints: int) -> dict:
    use_seekpath = band_path == "seekpath"
    if band_path == "auto":
        try:
            import seekpath  # noqa: F401
            use_seekpath = True
        except ImportError:
            use_seekpath = False
    elif band_path not in ("ase", "seekpath"):
        raise ValueError(f"band_path must be 'auto', 'ase' or 'seekpath', got {band_path!r}")
    if use_seekpath:
        phonon.auto_band_structure(npoints=npoints)
    else:
        paths, labels, conn = band_path_qpoints(phonon.primitive.cell, npoints)
        phonon.run_band_structure(paths, labels=labels, path_connections=conn)
    bs = phonon.band_structure
    return {"distances": [np.asarray(d) for d in bs.distances],
            "frequencies_THz": [np.asarray(f) for f in bs.frequencies],
            "qpoints": [np.asarray(q) for q in bs.qpoints],
            "labels": list(bs.labels or []), "connections": list(bs.path_connections)}
