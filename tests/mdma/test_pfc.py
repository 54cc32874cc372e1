"""Projected force constants against central springs and small structures with known answers."""

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from phonion.mdma.pfc import (bond_projection, detect_hops, migration_directions_from_hops,
                      migration_directions_from_sites, minimum_image_vector, pfc_from_atoms,
                      projected_force_constants)
from phonion.mdma.sites import classify_oxygens
from phonion.core.structures import load_structure


def test_central_spring_block():
    rng = np.random.default_rng(0)
    for _ in range(5):
        b = rng.normal(size=3) * 2.0
        bhat = b / np.linalg.norm(b)
        m = rng.normal(size=3)
        mhat = m / np.linalg.norm(m)
        k = rng.uniform(0.1, 5.0)
        scalar, vec = bond_projection(k * np.outer(bhat, bhat), b)
        assert scalar == pytest.approx(k)
        np.testing.assert_allclose(vec, k * bhat, atol=1e-12)
        assert vec @ mhat == pytest.approx(k * bhat @ mhat)


def test_minimum_image_triclinic_against_all_images():
    rng = np.random.default_rng(1)
    cell = np.array([[6.0, 0.0, 0.0], [2.5, 5.0, 0.0], [1.0, -1.5, 7.0]])
    pos = rng.random((6, 3)) @ cell * 1.7  # some atoms outside the cell
    images = np.array([[i, j, k] for i in range(-3, 4) for j in range(-3, 4) for k in range(-3, 4)]) @ cell
    for a in range(6):
        for b in range(6):
            cands = pos[b] - pos[a] + images
            best = cands[np.argmin(np.linalg.norm(cands, axis=1))]
            np.testing.assert_allclose(minimum_image_vector(pos, cell, a, b), best, atol=1e-12)


def test_pair_potential_hessian_across_the_boundary():
    """E = k/2 (|r_O − r_Li| − d0)², bond across the cell face: Φ_LiO = −k b̂b̂ᵀ, scalar pFC = −k."""
    cell = np.eye(3) * 10.0
    k, d0 = 3.0, 1.2
    pos = np.array([[0.3, 5.0, 5.0], [9.1, 5.0, 5.0]])  # Li, O: 1.2 Å apart through the boundary

    def forces(p):
        d = minimum_image_vector(p, cell, 0, 1)
        r = np.linalg.norm(d)
        f_o = -k * (r - d0) * d / r
        return np.array([-f_o, f_o])

    h = 1e-4
    fc = np.zeros((2, 2, 3, 3))
    for j in range(2):
        for beta in range(3):
            dp = np.zeros((2, 3))
            dp[j, beta] = h
            fc[:, j, :, beta] = -(forces(pos + dp) - forces(pos - dp)) / (2 * h)
    scalar, vec = bond_projection(fc[0, 1], minimum_image_vector(pos, cell, 0, 1))
    assert scalar == pytest.approx(-k, rel=1e-6)
    np.testing.assert_allclose(vec, -k * np.array([-1.0, 0.0, 0.0]), atol=1e-6)  # b̂ = −x̂ (min image)


def _toy():
    """Two Li, five O in a 10 Å cube; central-spring blocks with known k; noise everywhere else."""
    cell = np.eye(3) * 10.0
    pos = np.array([[0.2, 5.0, 5.0], [4.2, 7.0, 5.0],  # Li0, Li1: Li0→Li1 = (4, 2, 0)
                    [9.0, 5.0, 5.0], [0.2, 6.5, 5.0], [0.2, 5.0, 3.2],  # O2 (across x), O3, O4 of Li0
                    [5.7, 7.0, 5.0], [4.2, 7.0, 6.6]])  # O5, O6 of Li1
    neighbours = {0: {"O_e": [2, 3], "O_c": [4]}, 1: {"O_e": [6], "O_c": [5]}}
    springs = {(0, 2): 2.0, (0, 3): 3.0, (0, 4): 0.5, (1, 6): 1.0, (1, 5): 4.0}
    fc = np.random.default_rng(2).normal(size=(7, 7, 3, 3))
    for (li, o), k in springs.items():
        b = minimum_image_vector(pos, cell, li, o)
        b /= np.linalg.norm(b)
        fc[li, o] = k * np.outer(b, b)
    return cell, pos, neighbours, fc


def test_toy_structure_known_answer():
    cell, pos, neighbours, fc = _toy()
    dirs = migration_directions_from_sites(pos, cell, [0, 1])  # unique nearest Li here
    m = np.array([2.0, 1.0, 0.0]) / np.sqrt(5.0)
    np.testing.assert_allclose(dirs[0], [m])
    np.testing.assert_allclose(dirs[1], [-m])
    out = projected_force_constants(fc, pos, cell, neighbours, dirs)
    s5 = np.sqrt(5.0)
    # b̂: O2 −x̂ (minimum image), O3 +ŷ, O4 −ẑ, O5 +x̂, O6 +ẑ;  mpFC = k b̂·m̂
    mp_e = [2.0 * -2 / s5, 3.0 * 1 / s5, 0.0]
    mp_c = [0.0, 4.0 * -2 / s5]  # O5: x̂·(−m̂) = −2/√5
    assert out["mpfc_Oe_eV_A2"]["mean"] == pytest.approx(np.mean(mp_e))
    assert out["mpfc_Oe_eV_A2"]["std"] == pytest.approx(np.std(mp_e))
    assert out["mpfc_Oe_eV_A2"]["min"] == pytest.approx(min(mp_e))
    assert out["mpfc_Oe_eV_A2"]["n"] == 3
    assert out["mpfc_Oc_eV_A2"]["mean"] == pytest.approx(np.mean(mp_c))
    assert out["delta_pfc_eV_A2"]["value"] == pytest.approx(np.mean(mp_e) - np.mean(mp_c))
    err = np.hypot(np.std(mp_e, ddof=1) / np.sqrt(3), np.std(mp_c, ddof=1) / np.sqrt(2))
    assert out["delta_pfc_eV_A2"]["err"] == pytest.approx(err)
    assert out["bond_pfc_Oe_eV_A2"]["mean"] == pytest.approx(2.0)
    assert out["bond_pfc_Oc_eV_A2"]["max"] == pytest.approx(4.0)
    assert out["bond_vector_norm_Oc_eV_A2"]["min"] == pytest.approx(0.5)
    rec = next(r for r in out["records"] if r["anion"] == 2)
    np.testing.assert_allclose(rec["bond_vector_A"], [-1.2, 0.0, 0.0], atol=1e-12)


def test_targets_and_hops_give_directions():
    cell, pos, neighbours, fc = _toy()
    dirs = migration_directions_from_sites(pos, cell, [0], targets={0: [[0.02, 0.2, 0.5]]}, fractional=True)
    np.testing.assert_allclose(dirs[0], [[0.0, -1.0, 0.0]], atol=1e-12)  # (0.2, 2, 5) → Li0 at (0.2, 5, 5)
    rng = np.random.default_rng(3)
    traj = np.empty((620, 2, 3))
    traj[:, 1] = [5.0, 5.0, 5.0]
    traj[:300, 0] = [1.0, 1.0, 1.0]
    traj[300:320, 0] = np.linspace([1.0, 1.0, 1.0], [1.0, 3.5, 1.0], 20)
    traj[320:, 0] = [1.0, 3.5, 1.0]
    traj += rng.normal(scale=0.1, size=traj.shape)  # thermal vibration
    hops = detect_hops(traj, [0, 1], threshold_A=1.0, window=50, settle_A=0.5)
    assert len(hops) == 1 and hops[0].ion == 0
    assert np.linalg.norm(hops[0].vector_A - [0.0, 2.5, 0.0]) < 0.1
    dirs = migration_directions_from_hops(hops)
    assert set(dirs) == {0}
    np.testing.assert_allclose(dirs[0], [[0.0, 1.0, 0.0]], atol=0.05)


def test_ligaseo_central_springs_from_site_classes():
    """Real LiGa(SeO3)2 neighbour lists; Φ_LiO = −k_class b̂b̂ᵀ gives exactly −k per class."""
    atoms = load_structure("LiGa_SeO3_2")
    classes = classify_oxygens(atoms)
    n = len(atoms)
    fc = np.zeros((n, n, 3, 3))
    k = {"O_e": 1.5, "O_c": 0.7}
    expected = {"O_e": [], "O_c": []}
    li_idx = sorted(classes.per_mobile)
    i, j, dvec = neighbor_list("ijD", atoms, {("Li", "Li"): 5.0})  # first Li shell: 4 sites at 4.65 Å
    for li, cl in classes.per_mobile.items():
        shell = dvec[i == li]
        assert len(shell) == 4
        mhats = shell / np.linalg.norm(shell, axis=1, keepdims=True)
        for c in ("O_e", "O_c"):
            for o in cl[c]:
                b = atoms.get_distance(li, o, mic=True, vector=True)
                b /= np.linalg.norm(b)
                fc[li, o] = -k[c] * np.outer(b, b)
                expected[c].extend(-k[c] * mhats @ b)
    out = pfc_from_atoms(atoms, fc, classes)
    assert len(li_idx) == 8
    for c, key in (("O_e", "Oe"), ("O_c", "Oc")):
        assert out[f"bond_pfc_{key}_eV_A2"]["mean"] == pytest.approx(-k[c])
        assert out[f"bond_pfc_{key}_eV_A2"]["std"] == pytest.approx(0.0, abs=1e-12)
        assert out[f"bond_pfc_{key}_eV_A2"]["n"] == 16
        assert out[f"mpfc_{key}_eV_A2"]["n"] == 64
        assert out[f"mpfc_{key}_eV_A2"]["mean"] == pytest.approx(np.mean(expected[c]))
        assert out[f"mpfc_{key}_eV_A2"]["std"] == pytest.approx(np.std(expected[c]))
    with pytest.raises(ValueError, match="full shape"):
        projected_force_constants(fc[:8], atoms.positions, atoms.cell[:], classes, {})
