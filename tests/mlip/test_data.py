"""Training data: time-block splits, E0s, and the checks that must fail before any training."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.verlet import VelocityVerlet

from phonion.mlip.data import (DataConfig, build_dataset, check_elements, fit_e0s, split_indices,
                       temperature_from_name, to_atomic_data)

pytestmark = pytest.mark.filterwarnings("ignore:E0 fit")


def emt_frames(temperature_K: float, n_frames: int, seed: int, *, al_every: int = 4, interval: int = 2):
    """Frames of velocity-Verlet EMT MD on a 32-atom Cu/Al fcc cell (a few ms per frame)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    symbols = atoms.get_chemical_symbols()
    for i in range(0, len(atoms), al_every):
        symbols[i] = "Al"
    atoms.set_chemical_symbols(symbols)
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB
                                                                   * 2 * temperature_K))
    frames = []

    def grab():
        snap = atoms.copy()
        snap.calc = SinglePointCalculator(snap, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                          stress=atoms.get_stress())
        frames.append(snap)

    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    dyn.attach(grab, interval=interval)
    dyn.run(interval * (n_frames - 1))
    return frames


def write(path, frames, *, energy_factor=1.0, force_factor=1.0, energy_shift=0.0, drop_forces=()):
    import ase.io

    out = []
    for k, a in enumerate(frames):
        b = a.copy()
        results = {"energy": a.get_potential_energy() * energy_factor + energy_shift * len(a)}
        if k not in drop_forces:
            results["forces"] = a.get_forces() * force_factor
        b.calc = SinglePointCalculator(b, **results)
        out.append(b)
    ase.io.write(path, out, format="extxyz")
    return str(path)


@pytest.fixture(scope="module")
def runs():
    """Two EMT runs (300 K, 900 K), 40 frames each; tests write them where they need them."""
    return {300: emt_frames(300, 40, 0), 900: emt_frames(900, 40, 1)}


# ---- split rule --------------------------------------------------------------------------------
def test_contiguous_split_no_test_frame_between_train_frames():
    idx = split_indices(100, (0.8, 0.1, 0.1), n_blocks=1, gap_frames=3)
    assert idx["train"].tolist() == list(range(80))
    assert idx["val"].tolist() == list(range(83, 90))
    assert idx["test"].tolist() == list(range(93, 100))
    for other in ("val", "test"):
        inside = (idx[other] > idx["train"].min()) & (idx[other] < idx["train"].max())
        assert not inside.any()
    # gap: at least gap+1 frame intervals between the blocks
    assert idx["val"].min() - idx["train"].max() == 4 and idx["test"].min() - idx["val"].max() == 4


def test_interleaved_blocks_are_disjoint_and_gapped():
    idx = split_indices(120, (0.8, 0.1, 0.1), n_blocks=3, gap_frames=2)
    all_idx = np.concatenate(list(idx.values()))
    assert len(set(all_idx.tolist())) == len(all_idx)
    labels = np.full(120, "", dtype=object)
    for name, v in idx.items():
        labels[v] = name
    for i in range(1, 120):  # a frame after a change of block is never next to the other block
        if labels[i] and labels[i - 1] and labels[i] != labels[i - 1]:
            pytest.fail(f"frames {i - 1} and {i} in different splits without a gap")
    assert len(idx["test"]) > 0 and idx["test"].min() < 60  # test blocks spread over the run


def test_dataset_split_per_run_and_temperatures(runs, tmp_path):
    files = [write(tmp_path / f"cual_{t}K.extxyz", fr) for t, fr in runs.items()]
    ds = build_dataset(DataConfig(files=files, gap_frames=2))
    assert ds.zs == (13, 29)
    assert sorted(r.temperature_K for r in ds.runs) == [300.0, 900.0]
    for k, run in enumerate(ds.runs):
        train = [a.info["frame"] for a in ds.train if a.info["run"] == k]
        test = [a.info["frame"] for a in ds.test if a.info["run"] == k]
        assert max(train) < min(test) - 2  # test strictly after train, gap kept
    assert len(ds.train) == 64 and len(ds.val) == 4 and len(ds.test) == 4


# ---- E0s -----------------------------------------------------------------------------------------
def test_least_squares_e0s_recover_known_values():
    rng = np.random.default_rng(3)
    e0 = np.array([-0.19, -3.02, -1.61])
    counts = rng.integers(1, 20, size=(30, 3))
    energies = counts @ e0 + rng.normal(0, 1e-4, 30)
    fitted, rank = fit_e0s(counts, energies)
    assert rank == 3
    np.testing.assert_allclose(fitted, e0, atol=1e-4)


def test_dataset_e0s_fit_on_different_compositions(runs, tmp_path):
    """Synthetic energies Σ N_Z E0_Z + small interaction on two compositions: the fit finds E0."""
    e0 = {"Al": -2.5, "Cu": -4.0}
    files = []
    for k, al_every in enumerate((4, 2)):
        frames = emt_frames(600, 30, 10 + k, al_every=al_every)
        for a in frames:
            syms = a.get_chemical_symbols()
            a.calc.results["energy"] = sum(e0[s] for s in syms) + 1e-3 * a.calc.results["energy"]
            a.calc.results["forces"] = 1e-3 * a.calc.results["forces"]  # same scale: E and F consistent
        files.append(write(tmp_path / f"comp{k}.extxyz", frames))
    ds = build_dataset(DataConfig(files=files, gap_frames=1))
    assert ds.e0s[13] == pytest.approx(-2.5, abs=2e-3) and ds.e0s[29] == pytest.approx(-4.0, abs=2e-3)
    user = build_dataset(DataConfig(files=files, gap_frames=1, e0s={"Al": -2.5, "Cu": -4.0}))
    assert user.e0s == {13: -2.5, 29: -4.0} and user.e0s_source == "user"


# ---- checks that must fail, naming the file ----------------------------------------------------------
def test_frames_without_forces_error_names_file_unless_skipped(runs, tmp_path):
    path = write(tmp_path / "noforces_300K.extxyz", runs[300], drop_forces=(5, 6))
    with pytest.raises(ValueError, match="noforces_300K.extxyz.*2 of 40 frames have no forces"):
        build_dataset(DataConfig(files=[path], gap_frames=1))
    ds = build_dataset(DataConfig(files=[path], gap_frames=1, skip_incomplete_frames=True))
    assert 5 not in [a.info["frame"] for a in ds.train] and len(ds.train) == 30


def test_empty_split_is_an_error(runs, tmp_path):
    path = write(tmp_path / "short.extxyz", runs[300][:12])
    with pytest.raises(ValueError, match=r"short.extxyz: the (val|test) block is empty"):
        build_dataset(DataConfig(files=[path], gap_frames=2))


def test_forces_in_other_units_than_energies(runs, tmp_path):
    path = write(tmp_path / "kcal_forces.extxyz", runs[300], force_factor=23.06)
    with pytest.raises(ValueError, match="kcal_forces.extxyz: energy changes .* work of the forces"):
        build_dataset(DataConfig(files=[path], gap_frames=1))


def test_one_file_in_kcal_per_mol(runs, tmp_path):
    good = [write(tmp_path / f"ev_{t}.extxyz", fr) for t, fr in runs.items()]
    bad = write(tmp_path / "kcal.extxyz", emt_frames(600, 40, 5), energy_factor=23.06, force_factor=23.06)
    with pytest.raises(ValueError, match=r"kcal.extxyz: .*(kcal/mol)"):
        build_dataset(DataConfig(files=good + [bad], gap_frames=1))
    # energies fine, forces ×23 in one of three files: the force-scale check names it
    bad = write(tmp_path / "kcal_f.extxyz", emt_frames(600, 40, 5), force_factor=23.06)
    with pytest.raises(ValueError, match=r"kcal_f.extxyz: (RMS forces differ|energy changes)"):
        build_dataset(DataConfig(files=good + [bad], gap_frames=1))


def test_file_with_other_energy_reference(runs, tmp_path):
    good = [write(tmp_path / f"ref_{t}.extxyz", fr) for t, fr in runs.items()]
    bad = write(tmp_path / "shifted.extxyz", emt_frames(600, 40, 6), energy_shift=-5.0)
    with pytest.raises(ValueError, match="shifted.extxyz: energy per atom after subtracting the E0s"):
        build_dataset(DataConfig(files=good + [bad], gap_frames=1))


def test_incompatible_user_e0s_across_species_sets(tmp_path):
    """Cu-only and Cu/Al files with an Al E0 that does not fit: the Cu/Al file is named."""
    cu = write(tmp_path / "cu.extxyz", emt_frames(300, 30, 7, al_every=10 ** 6))
    cual = write(tmp_path / "cual.extxyz", emt_frames(300, 30, 8, al_every=2))
    with pytest.raises(ValueError, match="cu.extxyz and .*cual.extxyz disagree: energy per atom after"):
        build_dataset(DataConfig(files=[cu, cual], gap_frames=1, e0s={"Cu": 0.0, "Al": 6.0}))
    with pytest.raises(ValueError, match="no energy for Al, which occurs in .*cual.extxyz"):
        build_dataset(DataConfig(files=[cu, cual], gap_frames=1, e0s={"Cu": 0.0}))


def test_energy_jump_inside_a_file(runs, tmp_path):
    frames = [a.copy() for a in runs[300]]
    for a, src in zip(frames, runs[300]):
        a.calc = SinglePointCalculator(a, **src.calc.results)
    frames[20].calc.results["energy"] += 100.0
    path = write(tmp_path / "jump.extxyz", frames)
    with pytest.raises(ValueError, match="jump.extxyz: the energy of frame 20"):
        build_dataset(DataConfig(files=[path], gap_frames=1))


def test_elements_the_foundation_lacks(runs, tmp_path):
    path = write(tmp_path / "cual_300K.extxyz", runs[300])
    ds = build_dataset(DataConfig(files=[path], gap_frames=1))
    with pytest.raises(ValueError, match="foundation .* has no Al .*cual_300K.extxyz"):
        check_elements(ds.zs, [29], ds, what="the foundation model f.model")
    check_elements(ds.zs, [13, 29, 8], ds)


def test_unmatched_glob_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="matches no file"):
        build_dataset(DataConfig(files=[str(tmp_path / "*.h5")]))


# ---- labels and conversion -----------------------------------------------------------------------
def test_temperature_from_name():
    assert temperature_from_name("runs/700K/XDATCAR") == 700.0
    assert temperature_from_name("li6ps5i_1100K.h5") == 1100.0
    assert temperature_from_name("LiGa_SeO3_2.cif") is None and temperature_from_name("KCl.xyz") is None


def test_to_atomic_data_round_trip(runs, tmp_path):
    import mace  # noqa: F401
    import torch

    path = write(tmp_path / "cual_300K.extxyz", runs[300])
    ds = build_dataset(DataConfig(files=[path], gap_frames=1))
    graphs = to_atomic_data(ds.val, ds.zs, r_max=4.0)
    assert len(graphs) == len(ds.val)
    g, a = graphs[0], ds.val[0]
    assert float(g.energy) == pytest.approx(a.info["REF_energy"])
    np.testing.assert_allclose(g.forces.numpy(), a.arrays["REF_forces"])
    lengths = torch.linalg.norm(g.positions[g.edge_index[1]] - g.positions[g.edge_index[0]]
                                + g.shifts, dim=1)
    assert float(lengths.max()) <= 4.0


def test_reference_h5md_is_labelled_surrogate(tmp_path):
    """phonion reference (phonion.md.driver.run_md with EMT): one H5MD per T, labelled, with all quantities."""
    import ase.io

    from phonion.md.io import read_trajectory
    from phonion.mlip.reference import ReferenceConfig, run_reference

    structure = tmp_path / "cual.xyz"
    ase.io.write(structure, emt_frames(300, 1, 0)[0], format="extxyz")
    summary = run_reference(ReferenceConfig(structure=str(structure), calculator="emt",
                                            temperatures_K=(300, 600), steps=20, sample_every=2,
                                            output=str(tmp_path / "ref")), progress=False)
    assert [r["n_frames"] for r in summary["runs"]] == [11, 11]
    for run in summary["runs"]:
        traj = read_trajectory(run["file"])
        assert traj.metadata["reference_kind"] == "surrogate reference"
        assert all(traj.frames_with(q).all() for q in ("energies", "forces", "stress", "velocities"))
    ds = build_dataset(DataConfig(files=[str(tmp_path / "ref" / "*K" / "traj.h5")], gap_frames=0))
    assert sorted(r.temperature_K for r in ds.runs) == [300.0, 600.0]
    assert {r.reference_kind for r in ds.runs} == {"surrogate reference"}
    again = run_reference(ReferenceConfig(structure=str(structure), calculator="emt", temperatures_K=(300, 600),
                                          steps=20, sample_every=2, output=str(tmp_path / "ref")), progress=False)
    assert {r["status"] for r in again["runs"]} == {"already complete"}
