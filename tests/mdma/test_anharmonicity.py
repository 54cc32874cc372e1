"""σ_A (Knoop et al. 2020) on model systems with known answers (issue 16, "Must show").

System (tests/mdma/mdma_systems.py): the 32-atom LiO3 spring network, phonopy force constants by finite
displacements. (a) forces exactly −Φ·u (phonion.mdma.harmonic.ForceConstantCalculator, phonopy's Φ): σ_A ≤ 1e-6,
with the MD atom order shuffled and positions wrapped (mapping and minimum image); (b) FPU-α-β springs with the
same Φ: σ_A equals a direct numpy evaluation of the definition with phonopy's Φ to 1e-8, also per species;
(c) a Li that hopped onto another Li's site is re-anchored (σ_A of exact harmonic forces stays 0) or excluded.
"""

import numpy as np
import pytest

from phonion.mdma.anharmonicity import displacements, harmonic_forces, sigma_a, sigma_a_series
from phonion.mdma.harmonic import ForceConstantCalculator
from phonion.mdma.modes import modes_for_supercell
from phonion.mdma.phonons import to_ase_atoms
from mdma_systems import PairSpringCalculator, l12_phonons


@pytest.fixture(scope="module")
def phonon():
    return l12_phonons()


def _frames(phonon, rng, n_frames=6, amplitude_A=0.08, order=None):
    sc = to_ase_atoms(phonon.supercell)
    order = np.arange(len(sc)) if order is None else order
    atoms = sc[order]
    u = rng.normal(scale=amplitude_A, size=(n_frames, len(atoms), 3))
    return atoms, u


def test_harmonic_forces_give_zero_sigma(phonon):
    rng = np.random.default_rng(3)
    order = rng.permutation(len(phonon.supercell))
    atoms, u = _frames(phonon, rng, order=order)
    fc = phonon.force_constants[np.ix_(order, order)]
    calc = ForceConstantCalculator(fc, atoms.positions, atoms.cell.array)
    positions, forces = [], []
    for k in range(len(u)):
        frame = atoms.copy()
        frame.positions = atoms.positions + u[k]
        frame.wrap()                                    # minimum image must undo the wrap
        calc._u_prev = None
        forces.append(calc.get_forces(frame))
        positions.append(frame.positions)
    modes = modes_for_supercell(phonon, atoms)          # the mapping `phonion mdma` uses, shuffled order
    got_u, moved = displacements(np.array(positions), atoms.cell.array, modes.positions, atoms.get_chemical_symbols(),
                                 "Li")
    assert np.abs(got_u - u).max() < 1e-10 and not moved.any()
    fh = harmonic_forces(got_u, modes.masses, modes.frequencies_THz, modes.eigenvectors)
    sigma = sigma_a(np.array(forces), fh)
    assert sigma <= 1e-6, sigma
    assert np.nanmax(sigma_a_series(np.array(forces), fh)) <= 1e-6


def test_anharmonic_springs_match_direct_numpy(phonon):
    rng = np.random.default_rng(5)
    atoms, u = _frames(phonon, rng, amplitude_A=0.12)
    calc = PairSpringCalculator(atoms, alpha=-4.0, beta=6.0)
    positions = atoms.positions + u
    forces = []
    for p in positions:
        frame = atoms.copy()
        frame.positions = p
        forces.append(calc.get_forces(frame))
    forces = np.array(forces)
    # the definition, directly: Φ from phonopy, u known exactly
    n = len(atoms)
    phi = phonon.force_constants.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    f_h = -(u.reshape(len(u), -1) @ phi.T).reshape(u.shape)
    direct = np.sqrt(((forces - f_h) ** 2).sum() / (forces ** 2).sum())
    li = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == "Li")
    direct_li = np.sqrt(((forces - f_h)[:, li] ** 2).sum() / (forces[:, li] ** 2).sum())
    modes = modes_for_supercell(phonon, atoms)
    got_u, _ = displacements(positions, atoms.cell.array, modes.positions, atoms.get_chemical_symbols(), "Li")
    fh = harmonic_forces(got_u, modes.masses, modes.frequencies_THz, modes.eigenvectors)
    assert abs(sigma_a(forces, fh) - direct) <= 1e-8
    assert abs(sigma_a(forces, fh, li) - direct_li) <= 1e-8
    assert 0.05 < direct < 1.0            # anharmonic indeed, and not dominated by the cubic terms
    # σ_A² is the ratio of sums over frames, not the mean of σ_A(t)²: recombine from the per-frame sums
    num = ((forces - fh) ** 2).sum(axis=(1, 2))
    den = (forces ** 2).sum(axis=(1, 2))
    assert np.allclose(sigma_a_series(forces, fh), np.sqrt(num / den), rtol=1e-12)


def test_hopping_li_reanchored_or_excluded(phonon):
    rng = np.random.default_rng(11)
    atoms, u = _frames(phonon, rng, n_frames=2, amplitude_A=0.05)
    symbols = np.array(atoms.get_chemical_symbols())
    li = np.flatnonzero(symbols == "Li")
    a, b = int(li[0]), int(li[1])
    sites = atoms.positions
    positions = sites + u
    positions[1, a] = sites[b] + u[1, a]                # frame 1: Li a sits on Li b's site (b moved away below)
    positions[1, b] = sites[a] + u[1, b]                # ... and Li b on a's: an exchange hop
    u_anchored = u.copy()
    n = len(atoms)
    phi = phonon.force_constants.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    # forces exactly −Φ·u with u measured from the *nearest* Li site (for atoms a and b in frame 1: the swapped one)
    forces = -(u_anchored.reshape(2, -1) @ phi.T).reshape(u.shape)
    got_u, moved = displacements(positions, atoms.cell.array, sites, symbols, "Li")
    assert moved[1, a] and moved[1, b] and moved.sum() == 2
    assert np.abs(got_u - u_anchored).max() < 1e-10
    modes = modes_for_supercell(phonon, atoms)
    fh = harmonic_forces(got_u, modes.masses, modes.frequencies_THz, modes.eigenvectors)
    assert sigma_a(forces, fh) <= 1e-6
    # without re-anchoring (u from the ion's own site) the two hopped ions have u ≈ a lattice distance: σ_A ≫ 0
    own = positions - sites
    fh_own = harmonic_forces(own, modes.masses, modes.frequencies_THz, modes.eigenvectors)
    assert sigma_a(forces, fh_own) > 0.5
    # "exclude": the hopped atom-frames leave both sums; corrupt their forces and σ_A does not see it
    bad = forces.copy()
    bad[1, a] += 10.0
    assert sigma_a(bad, fh) > 0.5
    assert sigma_a(bad, fh, exclude=moved) <= 1e-6


def test_no_frames_or_zero_forces_is_nan():
    f = np.zeros((2, 3, 3))
    assert np.isnan(sigma_a(f, f))
    assert np.isnan(sigma_a_series(f, f)).all()
