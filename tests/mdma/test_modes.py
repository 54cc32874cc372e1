"""Γ modes of MD supercells: Bloch expansion from phonopy's D(q) vs direct diagonalisation."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT

from phonion.mdma.modes import (THZ_PER_SQRT_EV_A2_AMU, Modes, frequencies_from_eigenvalues, load_modes,
                        mode_classes, modes_for_supercell, modes_from_force_constants, save_modes,
                        supercell_mode_columns)
from phonion.mdma.phonons import compute_force_constants, to_ase_atoms


def _rattled_cu3au(rng):
    """Cu3Au (L1_2) in a slightly orthorhombic cell, rattled by 0.05 Å: no symmetry left, four
    atoms off the origin, so a wrong Bloch phase convention cannot go unnoticed."""
    a = 3.75
    u = Atoms("AuCu3", scaled_positions=[[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]],
              cell=[a, 1.02 * a, 0.98 * a], pbc=True)
    u.positions += rng.normal(scale=0.05, size=(4, 3))
    return u


@pytest.fixture(scope="module")
def unit_cell():
    return _rattled_cu3au(np.random.default_rng(7))


def _phonons(unit_cell, smat):
    return compute_force_constants(unit_cell, EMT(), supercell_matrix=smat, progress=False)


def _shuffled_supercell(phonon, rng):
    """The phonopy supercell as ASE atoms in a random order, some atoms wrapped by an MD-cell
    lattice vector, as a trajectory frame might hold it; and the permutation used."""
    sc = to_ase_atoms(phonon.supercell)
    perm = rng.permutation(len(sc))
    md = sc[perm]
    md.positions[:3] += md.cell[0] - md.cell[2]
    return md, perm


def _eigenvalues(modes):
    f = modes.frequencies_THz / THZ_PER_SQRT_EV_A2_AMU
    return np.sign(f) * f ** 2


def _assert_same_modes(a: Modes, b: Modes, tol=1e-8):
    """Same spectrum and the same eigenspaces (projectors on each degenerate cluster)."""
    la, lb = _eigenvalues(a), _eigenvalues(b)
    scale = np.abs(lb).max()
    np.testing.assert_allclose(la, lb, atol=1e-10 * scale)
    big = np.abs(b.frequencies_THz) > 0.1
    np.testing.assert_allclose(a.frequencies_THz[big], b.frequencies_THz[big], rtol=tol, atol=tol)
    # clusters of (near-)degenerate eigenvalues: compare projectors
    breaks = np.flatnonzero(np.diff(lb) > 1e-6 * scale) + 1
    for idx in np.split(np.arange(len(lb)), breaks):
        pa = a.eigenvectors[:, idx] @ a.eigenvectors[:, idx].T
        pb = b.eigenvectors[:, idx] @ b.eigenvectors[:, idx].T
        assert np.abs(pa - pb).max() < tol, f"eigenspace of modes {idx.tolist()} differs"


def _assert_orthonormal_complete(modes, tol=1e-10):
    e = modes.eigenvectors
    eye = np.eye(len(e))
    assert np.abs(e.T @ e - eye).max() < tol      # orthonormal columns
    assert np.abs(e @ e.T - eye).max() < tol      # completeness: Σ_n e_n e_n^T = I


def test_frequency_constant_from_ase_units():
    # √(eV/(Å² amu)) → THz (cycles); phonopy's own VASP-units factor agrees to 1.3e-7
    # (it uses newer CODATA constants than ASE's 2014 set)
    assert THZ_PER_SQRT_EV_A2_AMU == pytest.approx(15.6333, abs=1e-4)
    from phonopy.physical_units import get_physical_units

    assert THZ_PER_SQRT_EV_A2_AMU == pytest.approx(get_physical_units().DefaultToTHz, rel=2e-7)
    f = frequencies_from_eigenvalues([-4.0, 0.0, 1.0])
    np.testing.assert_allclose(f, [-2 * THZ_PER_SQRT_EV_A2_AMU, 0.0, THZ_PER_SQRT_EV_A2_AMU])


def test_direct_modes_both_fc_shapes_orthonormal(unit_cell):
    phonon = _phonons(unit_cell, (2, 1, 1))
    fc = phonon.force_constants
    masses = phonon.supercell.masses
    m4 = modes_from_force_constants(fc, masses)
    n = len(masses)
    m2 = modes_from_force_constants(fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n), masses)
    np.testing.assert_array_equal(m4.frequencies_THz, m2.frequencies_THz)
    _assert_orthonormal_complete(m4)
    assert np.sum(np.abs(m4.frequencies_THz) < 1e-3) == 3      # three acoustic modes at Γ


@pytest.mark.parametrize("smat", [(2, 2, 2), (3, 1, 1), [[1, 1, 0], [-1, 1, 0], [0, 0, 1]]])
def test_supercell_modes_equal_direct_diagonalisation(unit_cell, smat):
    rng = np.random.default_rng(11)
    phonon = _phonons(unit_cell, smat)
    md, perm = _shuffled_supercell(phonon, rng)
    bloch = modes_for_supercell(phonon, md)
    fc = phonon.force_constants[np.ix_(perm, perm)]            # phonopy order → MD order
    direct = modes_from_force_constants(fc, md.get_masses())
    _assert_same_modes(bloch, direct)
    _assert_orthonormal_complete(bloch)
    assert bloch.symbols == tuple(md.get_chemical_symbols())
    np.testing.assert_allclose(bloch.positions, md.positions, atol=1e-9)  # ideal sites, MD order
    smat = np.diag(smat) if np.ndim(smat) == 1 else np.array(smat)
    assert len(bloch.qpoints) == round(np.linalg.det(smat))


def test_unit_cell_itself_gives_gamma_of_phonopy(unit_cell):
    phonon = _phonons(unit_cell, (2, 2, 1))
    md = to_ase_atoms(phonon.primitive)[[3, 1, 0, 2]]
    modes = modes_for_supercell(phonon, md)
    phonon.run_qpoints([[0, 0, 0]])
    ref = np.sort(phonon.qpoints.frequencies[0])
    big = np.abs(ref) > 0.1
    # phonopy's THz factor differs from ASE's in the 7th digit
    np.testing.assert_allclose(modes.frequencies_THz[big], ref[big], rtol=3e-7)


def _fold(phonon, md):
    """Force constants of the MD cell from a larger phonopy supercell: Φ_MD(i, j) = Σ over the
    phonopy-supercell atoms k that are images of MD atom j (under MD lattice translations)."""
    sc = to_ase_atoms(phonon.supercell)
    inv_md = np.linalg.inv(md.cell.array)

    def images(pos_a, pos_b):  # (len a, len b) bool: same point modulo the MD lattice
        f = (pos_a[:, None, :] - pos_b[None, :, :]) @ inv_md
        return np.abs(f - np.rint(f)).max(axis=2) < 1e-6

    sc_of_md = images(md.positions, sc.positions).argmax(axis=1)   # one representative each
    img = images(sc.positions, md.positions)                         # (N_sc, N_md)
    assert (img.sum(axis=1) == 1).all()
    j_of_k = img.argmax(axis=1)
    n = len(md)
    fc = np.zeros((n, n, 3, 3))
    for i in range(n):
        np.add.at(fc[i], j_of_k, phonon.force_constants[sc_of_md[i]])
    return fc


def test_smaller_md_cell_than_phonopy_supercell_equals_folded_direct(unit_cell):
    rng = np.random.default_rng(3)
    phonon = _phonons(unit_cell, (2, 2, 2))
    md = to_ase_atoms(phonon.primitive).repeat((2, 1, 1))
    md = md[rng.permutation(len(md))]
    bloch = modes_for_supercell(phonon, md)
    direct = modes_from_force_constants(_fold(phonon, md), md.get_masses())
    _assert_same_modes(bloch, direct)


def test_larger_md_cell_contains_phonopy_supercell_spectrum(unit_cell):
    phonon = _phonons(unit_cell, (2, 1, 1))
    md = to_ase_atoms(phonon.primitive).repeat((4, 2, 1))   # q = ±1/4 interpolated by phonopy
    modes = modes_for_supercell(phonon, md)
    _assert_orthonormal_complete(modes)
    assert np.sum(np.abs(modes.frequencies_THz) < 1e-3) == 3
    # the streaming column source gives the same columns, any block
    cols = supercell_mode_columns(phonon, md)
    np.testing.assert_array_equal(cols.frequencies_THz, modes.frequencies_THz)
    np.testing.assert_allclose(cols(5, 40), modes.eigenvectors[:, 5:40], atol=1e-14)
    direct = modes_from_force_constants(phonon.force_constants, phonon.supercell.masses)
    on_grid = np.flatnonzero(np.abs(2 * modes.qpoints[:, 0] - np.rint(2 * modes.qpoints[:, 0]))
                             + np.abs(modes.qpoints[:, 1:]).sum(axis=1) < 1e-9)
    sub = np.isin(modes.q_index, on_grid)
    np.testing.assert_allclose(np.sort(_eigenvalues(modes)[sub]), _eigenvalues(direct),
                               atol=1e-10 * np.abs(_eigenvalues(direct)).max())


def test_wrong_structures_give_clear_errors(unit_cell):
    phonon = _phonons(unit_cell, (2, 1, 1))
    md = to_ase_atoms(phonon.supercell)
    far = md.copy()
    far.positions[5] += [0.4, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"MD atom 5 \(Cu\) is 0\.4\d+ Å from the nearest site"):
        modes_for_supercell(phonon, far)
    swapped = md.copy()
    symbols = swapped.get_chemical_symbols()
    symbols[0], symbols[1] = "Cu", "Au"
    swapped.set_chemical_symbols(symbols)
    with pytest.raises(ValueError, match=r"MD atom 0 is Cu but its site .* is Au"):
        modes_for_supercell(phonon, swapped)
    strained = md.copy()
    strained.set_cell(md.cell * 1.05, scale_atoms=True)
    with pytest.raises(ValueError, match="not a supercell of the phonopy primitive cell"):
        modes_for_supercell(phonon, strained)
    with pytest.raises(ValueError, match="holds 7 atoms"):
        modes_for_supercell(phonon, md[:7])


def test_mode_classes_weights_and_participation(unit_cell):
    phonon = _phonons(unit_cell, (2, 1, 1))
    md = to_ase_atoms(phonon.supercell)
    modes = modes_for_supercell(phonon, md)
    classes = {"O_e": [1, 2], "O_c": [3], "O_n": [5, 6, 7]}
    mc = mode_classes(modes, classes)
    w = modes.atom_weights()
    np.testing.assert_allclose(sum(mc.species_weights.values()), 1.0, atol=1e-12)
    np.testing.assert_allclose(mc.class_weights["O_c"], w[3])
    stack = np.array([mc.class_weights[c] for c in ("O_e", "O_c", "O_n")])
    assert (mc.dominant == np.array(["O_e", "O_c", "O_n"])[stack.argmax(axis=0)]).all()
    n = modes.n_atoms
    assert (mc.participation_ratio >= 1 / n - 1e-12).all() and (mc.participation_ratio <= 1 + 1e-12).all()
    # a rigid translation involves every atom in proportion to √m: PR = (Σm)² / (N Σm²)
    m = modes.masses
    assert mc.participation_ratio[:3] == pytest.approx([m.sum() ** 2 / (n * (m ** 2).sum())] * 3,
                                                       rel=1e-6)
    # one atom per mode (identity eigenvectors): PR = 1/N, dominant = that atom's class
    loc = Modes(np.zeros(3 * n), np.eye(3 * n), m, modes.symbols, modes.positions, modes.cell)
    mcl = mode_classes(loc, classes)
    np.testing.assert_allclose(mcl.participation_ratio, 1 / n)
    assert list(mcl.dominant[3:6]) == ["O_e"] * 3 and list(mcl.dominant[:3]) == [""] * 3
    with pytest.raises(ValueError, match="outside"):
        mode_classes(modes, {"O_e": [99], "O_c": [], "O_n": []})


def test_save_load_modes_round_trip(unit_cell, tmp_path):
    phonon = _phonons(unit_cell, (3, 1, 1))
    modes = modes_for_supercell(phonon, to_ase_atoms(phonon.supercell))
    path = save_modes(modes, tmp_path / "modes.npz")
    back = load_modes(path)
    for name in ("frequencies_THz", "eigenvectors", "masses", "positions", "cell", "qpoints",
                 "q_index"):
        np.testing.assert_array_equal(getattr(back, name), getattr(modes, name))
    assert back.symbols == modes.symbols
    with pytest.raises(ValueError, match="no such modes file"):
        load_modes(tmp_path / "missing.npz")
