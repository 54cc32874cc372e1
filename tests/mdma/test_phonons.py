"""Phonons with phonopy + ASE calculators: sum rules, analytic dispersions, ASE cross-check, I/O."""

import argparse
import json
import shutil
import time

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.neighborlist import neighbor_list

from phonion.mdma.modes import THZ_PER_SQRT_EV_A2_AMU
from phonion.mdma.phonon_io import load_phonons, save_phonons, write_phonon_results
from phonion.mdma.phonons import (acoustic_sum_rule_residual, band_path_qpoints,
                          compute_force_constants, phonon_summary)


class SpringCalculator(Calculator):
    """Central springs E = ½ k (r − r0)² between all pairs closer than ``cutoff`` (Å)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, k=5.0, r0=2.5, cutoff=3.0, **kwargs):
        super().__init__(**kwargs)
        self.k, self.r0, self.cutoff = k, r0, cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        i, D = neighbor_list("iD", self.atoms, self.cutoff)   # D = r_j − r_i, each pair twice
        r = np.linalg.norm(D, axis=1)
        stretch = r - self.r0
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, (self.k * stretch / r)[:, None] * D)
        self.results = {"energy": 0.25 * self.k * float((stretch ** 2).sum()), "forces": forces}


class HarmonicLatticeCalculator(Calculator):
    """Exactly harmonic nearest-neighbour central springs on a simple cubic lattice of spacing
    ``a``: E = ½ k Σ_pairs ((u_j − u_i)·d̂_ij)², u = displacement from the nearest lattice site,
    d̂_ij the lattice direction of the pair (no geometric anharmonicity)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, k=5.0, a=2.5, **kwargs):
        super().__init__(**kwargs)
        self.k, self.a = k, a

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        u = pos - self.a * np.rint(pos / self.a)
        i, j, D = neighbor_list("ijD", self.atoms, 1.2 * self.a)
        d_hat = np.rint(D / self.a)
        du = ((u[j] - u[i]) * d_hat).sum(axis=1)
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, (self.k * du)[:, None] * d_hat)
        self.results = {"energy": 0.25 * self.k * float((du ** 2).sum()), "forces": forces}


def _simple_cubic(a=2.5):
    return Atoms("Al", positions=[[0, 0, 0]], cell=[a, a, a], pbc=True)


def test_spring_lattice_matches_analytic_dispersion():
    # simple cubic, nearest-neighbour central springs at rest: D(q) is diagonal with
    # ω_α(q) = 2 √(k/m) |sin(π q_α)| (q fractional), exact at every q for a 4×4×4 supercell
    k, a = 5.0, 2.5
    phonon = compute_force_constants(_simple_cubic(a), HarmonicLatticeCalculator(k, a),
                                     (4, 4, 4), progress=False)
    assert acoustic_sum_rule_residual(phonon.force_constants) < 1e-8
    rng = np.random.default_rng(0)
    qs = np.vstack([[[0.5, 0, 0], [0.25, 0.5, 0.1], [0.3, 0.3, 0.3]], rng.random((5, 3)) - 0.5])
    phonon.run_qpoints(qs)
    m = phonon.primitive.masses[0]
    analytic = 2 * np.sqrt(k / m) * np.abs(np.sin(np.pi * qs)) * THZ_PER_SQRT_EV_A2_AMU
    np.testing.assert_allclose(phonon.qpoints.frequencies, np.sort(analytic, axis=1),
                               rtol=1e-6, atol=1e-5)


def test_acoustic_sum_rule_and_gamma_acoustic_modes():
    rng = np.random.default_rng(1)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)  # residual forces ≠ 0
    phonon = compute_force_constants(atoms, EMT(), (2, 1, 1), progress=False)
    fc = phonon.force_constants
    assert fc.shape == (8, 8, 3, 3)
    assert np.abs(fc.sum(axis=1)).max() < 1e-8
    assert np.abs(fc - fc.transpose(1, 0, 3, 2)).max() < 1e-10
    phonon.run_qpoints([[0, 0, 0]])
    f = np.sort(np.abs(phonon.qpoints.frequencies[0]))
    assert (f[:3] < 1e-3).all() and f[3] > 0.5


def test_fcc_cu_emt_matches_ase_phonons(tmp_path):
    # both libraries, same 3×3×3 supercell of primitive Cu: frequencies at the commensurate
    # q-points agree (ASE: central differences, no Wigner–Seitz folding; exact on this grid)
    from ase.phonons import Phonons

    atoms = bulk("Cu", "fcc", a=3.6)
    phonon = compute_force_constants(atoms, EMT(), (3, 3, 3), progress=False)
    ase_ph = Phonons(atoms, EMT(), supercell=(3, 3, 3), delta=0.01, name=str(tmp_path / "ase"))
    ase_ph.run()
    ase_ph.read(acoustic=True)
    grid = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)]) / 3.0
    e_eV = ase_ph.band_structure(grid)
    f_ase = np.sort(e_eV / (units._hplanck / units._e) / 1e12, axis=1)
    phonon.run_qpoints(grid)
    f_pp = phonon.qpoints.frequencies
    assert f_pp.max() == pytest.approx(f_ase.max(), rel=0.01)
    np.testing.assert_allclose(f_pp[1:], f_ase[1:], rtol=2e-3)


def test_summary_dos_pdos_and_band_structure(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6)
    phonon = compute_force_constants(atoms, EMT(), (2, 2, 2), progress=False)
    s = phonon_summary(phonon, classes={"O_e": [0], "O_c": [], "O_n": []}, mesh=(6, 6, 6),
                       mobile="Cu", band_npoints=11)
    assert s["n_imaginary"] == 0 and s["stability"]["dynamically_stable"]
    assert sorted(np.abs(s["gamma_frequencies_THz"]))[2] < 1e-3
    assert 6.5 < s["max_frequency_THz"] < 9.5         # Cu: ~7.3 THz measured, EMT a bit higher
    dos, pdos = s["dos"], s["pdos"]
    np.testing.assert_allclose(sum(pdos["by_species"].values()), dos["total"], atol=1e-8)
    np.testing.assert_allclose(pdos["by_class"]["O_e"], dos["total"], atol=1e-8)
    # 3 modes per atom: ∫ DOS df = 3
    assert np.trapezoid(dos["total"], dos["frequency_THz"]) == pytest.approx(3.0, rel=1e-2)
    assert 0 < s["li_band_centre_THz"] < s["max_frequency_THz"]
    band = s["band"]
    assert band["labels"][0] == "Γ" and len(band["distances"]) == len(band["connections"])
    # the band path is fractional in the reciprocal of the given cell: X of fcc at 2π/a (0,0,1)
    paths, labels, _ = band_path_qpoints(atoms.cell, 3)
    x_frac = paths[0][-1]
    x_cart = x_frac @ atoms.cell.reciprocal()
    assert labels[:2] == ["Γ", "X"] and np.linalg.norm(x_cart) == pytest.approx(1 / 3.6)
    files = write_phonon_results(s, tmp_path)
    data = json.loads(files["summary"].read_text())
    assert data["n_imaginary"] == 0 and data["band_labels"][0] == "Γ"
    header = files["pdos"].read_text().splitlines()[0]
    assert header == "frequency_THz,Cu,O_e,O_c,O_n"
    band_rows = np.loadtxt(files["band"], delimiter=",", skiprows=1)
    assert band_rows.shape[1] == 5 + 3


def test_unstable_lattice_is_reported():
    # springs compressed to 0.95 of their rest length: transverse modes are imaginary
    phonon = compute_force_constants(_simple_cubic(), SpringCalculator(5.0, 2.5 / 0.95), (3, 3, 3),
                                     progress=False)
    s = phonon_summary(phonon, mesh=(4, 4, 4), band_npoints=5)
    assert s["n_imaginary"] > 0 and s["n_imaginary_gamma"] == 0
    assert not s["stability"]["dynamically_stable"]
    worst = s["stability"]["imaginary_modes"][0]
    assert worst["frequency_THz"] == pytest.approx(s["min_frequency_THz"])
    assert worst["dominant_atoms"][0]["symbol"] == "Al"
    assert worst["dominant_atoms"][0]["weight"] == pytest.approx(1.0)


def _freqs(phonon, qs):
    phonon.run_qpoints(qs)
    return phonon.qpoints.frequencies


@pytest.mark.filterwarnings("ignore:Warning. Point group symmetries of supercell")  # 2x1x1 of cubic
def test_save_load_round_trip_and_dft_routes(tmp_path):
    from phonopy.file_IO import write_FORCE_SETS

    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    phonon = compute_force_constants(atoms, EMT(), (2, 1, 1), progress=False)
    qs = [[0, 0, 0], [0.5, 0, 0], [0.2, 0.3, 0.1]]
    ref = _freqs(phonon, qs)
    files = save_phonons(phonon, tmp_path / "out")
    assert files["phonopy_params"].is_file() and files["force_constants"].is_file()
    for target in (tmp_path / "out", files["phonopy_params"], files["force_constants"]):
        back = load_phonons(target)
        assert back.force_constants.shape == phonon.force_constants.shape
        assert len(back.primitive) == len(atoms)     # unit cell kept as primitive
        np.testing.assert_allclose(_freqs(back, qs), ref, atol=1e-6)
    # force_constants.hdf5 is exact (phonopy rebuilds the full matrix from its compact rows:
    # round-off); phonopy's yaml keeps masses to 1e-6 amu, so frequencies agree to ~1e-8
    back = load_phonons(tmp_path / "out")
    np.testing.assert_allclose(back.force_constants, phonon.force_constants, rtol=0, atol=1e-12)
    big = np.abs(ref) > 0.1
    np.testing.assert_allclose(_freqs(back, qs)[big], ref[big], rtol=1e-7)

    # FORCE_CONSTANTS + POSCAR: needs the supercell matrix
    fc_dir = tmp_path / "fc"
    fc_dir.mkdir()
    shutil.copy(files["force_constants"], fc_dir / "FORCE_CONSTANTS")
    atoms.write(fc_dir / "POSCAR", format="vasp", direct=True)
    with pytest.raises(ValueError, match="supercell matrix is unknown"):
        load_phonons(fc_dir)
    np.testing.assert_allclose(_freqs(load_phonons(fc_dir, supercell_matrix=(2, 1, 1)), qs), ref,
                               atol=1e-5)

    # FORCE_SETS + phonopy_disp.yaml (the DFT route)
    fs_dir = tmp_path / "fs"
    fs_dir.mkdir()
    with pytest.raises(ValueError, match="found no phonopy data"):
        load_phonons(fs_dir)
    write_FORCE_SETS(phonon.dataset, filename=fs_dir / "FORCE_SETS")
    with pytest.raises(ValueError, match="needs phonopy_disp.yaml"):
        load_phonons(fs_dir / "FORCE_SETS")
    phonon.save(fs_dir / "phonopy_disp.yaml", settings={"force_sets": False,
                                                         "force_constants": False})
    np.testing.assert_allclose(_freqs(load_phonons(fs_dir), qs), ref, atol=1e-5)
    with pytest.raises(ValueError, match="no such file"):
        load_phonons(tmp_path / "nowhere")


def test_phonons_cli_with_emt(tmp_path):
    from phonion.cli.phonons import add_phonon_parsers

    parser = argparse.ArgumentParser(prog="phonion")
    add_phonon_parsers(parser.add_subparsers(dest="command"), argparse.HelpFormatter)
    structure = tmp_path / "Cu.cif"
    bulk("Cu", "fcc", a=3.6).write(structure)
    out = tmp_path / "out"
    args = parser.parse_args(["phonons", str(structure), "--calculator", "emt", "--supercell",
                              "2", "2", "2", "--mesh", "4", "4", "4", "-o", str(out), "--json"])
    assert args.func(args) == 0
    data = json.loads((out / "summary.json").read_text())
    for key in ("min_frequency_THz", "max_frequency_THz", "n_imaginary", "li_band_centre_THz"):
        assert key in data
    assert data["li_band_centre_THz"] is None and data["n_imaginary"] == 0
    for name in ("phonopy_params.yaml", "FORCE_CONSTANTS", "dos.csv", "pdos.csv", "band.csv",
                 "dos.png", "band.png"):
        assert (out / name).is_file(), name
    bad = parser.parse_args(["phonons", str(tmp_path / "missing.cif"), "--calculator", "emt",
                             "-o", str(out)])
    with pytest.raises(ValueError, match="does not exist"):
        bad.func(bad)


@pytest.mark.slow
def test_chgnet_phonons_of_liga_seo3_2(tmp_path, capsys):
    """CHGNet (pretrained, a surrogate reference, not DFT) on the bundled 80-atom cell, 1×1×1.

    Reference for scale only: the AlSe 80-atom Γ spectrum recovered from the paper authors'
    notebook (/work/shared/data/selenides/reference, uncertain provenance) spans ~0–26 THz.
    """
    from phonion.mdma.sites import classify_oxygens
    from phonion.core.calculators import resolve_calculator
    from phonion.core.structures import load_structure

    atoms = load_structure("LiGa_SeO3_2")
    t0 = time.perf_counter()
    phonon = compute_force_constants(atoms, resolve_calculator("chgnet", device="cpu"), (1, 1, 1),
                                     progress=False)
    t_fc = time.perf_counter() - t0
    s = phonon_summary(phonon, classes=classify_oxygens(atoms), mesh=(2, 2, 2), band_npoints=11)
    wall = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nCHGNet LiGa(SeO3)2 1x1x1: {len(phonon.supercells_with_displacements)} "
              f"displacements, force constants {t_fc:.0f} s, total {wall:.0f} s; "
              f"min {s['min_frequency_THz']:.3f} THz, max {s['max_frequency_THz']:.2f} THz, "
              f"n_imaginary {s['n_imaginary']} (Γ {s['n_imaginary_gamma']}), "
              f"Li band centre {s['li_band_centre_THz']:.2f} THz, "
              f"band centres {({k: round(v, 2) for k, v in s['band_centres_THz'].items()})}")
        for mode in s["stability"]["imaginary_modes"][:5]:
            print("  imaginary:", mode)
    assert acoustic_sum_rule_residual(phonon.force_constants) < 1e-8
    assert 15.0 < s["max_frequency_THz"] < 35.0
    assert 0.0 < s["li_band_centre_THz"] < s["max_frequency_THz"]
