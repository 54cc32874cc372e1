"""extxyz / ASE .traj reader: round trips, units, NaN for missing data, bad input."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.io.trajectory import Trajectory as AseTrajectory

from phonion.md.io import TruncatedFileWarning, read_trajectory
from phonion.md.io.ase_formats import read_ase
from phonion.md.trajectory import TrajectoryError

N_FRAMES = 5


def _frames(with_calc=True, info_key="timestep_fs"):
    """Cu supercell frames drifting along +x by 0.9 Å per frame, wrapped into the cell."""
    rng = np.random.default_rng(7)
    base = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    frames = []
    for k in range(N_FRAMES):
        atoms = base.copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape) + [0.9 * k, 0.0, 0.0]
        atoms.wrap()
        atoms.set_momenta(rng.normal(size=(len(atoms), 3)))
        if with_calc:
            atoms.calc = SinglePointCalculator(
                atoms, energy=-3.5 * len(atoms) + 0.01 * k, free_energy=-3.5 * len(atoms) + 0.02 * k,
                forces=rng.normal(size=(len(atoms), 3)), stress=rng.normal(scale=0.01, size=6))
        if info_key:
            atoms.info[info_key] = 2.0
        frames.append(atoms)
    return frames


def _expected(frames):
    pos = np.array([a.positions for a in frames])
    cell = frames[0].cell[:]
    frac = np.linalg.solve(cell.T, pos.reshape(-1, 3).T).T.reshape(pos.shape)
    step = np.diff(frac, axis=0)
    step -= np.round(step)
    cont = np.concatenate([frac[:1], frac[:1] + np.cumsum(step, axis=0)])
    return cont @ cell


@pytest.mark.parametrize("name, atol", [("md.traj", 1e-12), ("md.extxyz", 1e-7), ("md.xyz.gz", 1e-7)])
def test_round_trip(tmp_path, name, atol):
    frames = _frames()
    path = tmp_path / name
    if name.endswith(".gz"):
        plain = tmp_path / "plain.xyz"
        write(plain, frames, format="extxyz")
        path.write_bytes(gzip.compress(plain.read_bytes()))
    else:
        write(path, frames)
    traj = read_trajectory(path)
    assert traj.n_frames == N_FRAMES and traj.n_atoms == 32 and traj.symbols == ("Cu",) * 32
    assert traj.timestep_fs == 2.0 and traj.stride == 1 and traj.frame_interval_fs == 2.0
    assert traj.metadata["format"] == ("traj" if name.endswith(".traj") else "extxyz")
    np.testing.assert_allclose(traj.cells, np.array([a.cell[:] for a in frames]), atol=atol)
    np.testing.assert_allclose(traj.positions, _expected(frames), atol=atol)
    # the drift along x is kept: the unwrapped path moves 0.9 Å per frame, wrapped would jump back
    assert np.mean(traj.positions[-1, :, 0] - traj.positions[0, :, 0]) == pytest.approx(3.6, abs=0.05)
    np.testing.assert_allclose(traj.energies, [a.calc.results["free_energy"] for a in frames], atol=atol)
    np.testing.assert_allclose(traj.forces, np.array([a.calc.results["forces"] for a in frames]), atol=atol)
    np.testing.assert_allclose(traj.stress, np.array([a.get_stress(voigt=False) for a in frames]), atol=atol)
    np.testing.assert_allclose(traj.velocities, np.array([a.get_velocities() for a in frames]) * units.fs,
                               atol=atol)
    assert traj.metadata["velocities_source"] == "file" and traj.metadata["energy_kind"] == "free_energy"


def test_velocity_units_are_A_per_fs(tmp_path):
    frames = _frames()
    write(tmp_path / "md.traj", frames)
    traj = read_ase(tmp_path / "md.traj")
    # kinetic energy from Å/fs and amu, converted to eV, equals ASE's own
    ke = 0.5 * (traj.masses[:, None] * traj.velocities[0] ** 2).sum() * units._amu * 1e10 / units._e
    assert ke == pytest.approx(frames[0].get_kinetic_energy(), rel=1e-12)


def test_missing_quantities_are_nan(tmp_path):
    frames = _frames()
    frames[2].calc = None
    frames[3].calc = SinglePointCalculator(frames[3], energy=-1.0)  # energy only
    for a in frames:
        a.info.pop("timestep_fs")
        a.info["dt_fs"] = 0.5
    write(tmp_path / "md.traj", frames)
    traj = read_ase(tmp_path / "md.traj")
    assert traj.timestep_fs == 0.5
    np.testing.assert_array_equal(traj.frames_with("energies"), [True, True, False, True, True])
    np.testing.assert_array_equal(traj.frames_with("forces"), [True, True, False, False, True])
    np.testing.assert_array_equal(traj.frames_with("stress"), [True, True, False, False, True])
    assert traj.energies[3] == -1.0


def test_no_calculator_no_momenta(tmp_path):
    frames = _frames(with_calc=False, info_key=None)
    for a in frames:
        del a.arrays["momenta"]
    write(tmp_path / "pos.extxyz", frames)
    traj = read_ase(tmp_path / "pos.extxyz")
    assert traj.forces is None and traj.energies is None and traj.velocities is None
    assert traj.timestep_fs is None and traj.metadata["stride_source"] == "default"


def test_species_must_match(tmp_path):
    frames = _frames()
    frames[3][0].symbol = "Ag"
    write(tmp_path / "md.extxyz", frames)
    with pytest.raises(TrajectoryError, match=r"md\.extxyz: frame 4 has different species"):
        read_ase(tmp_path / "md.extxyz")


def test_truncated_extxyz(tmp_path):
    write(tmp_path / "md.extxyz", _frames())
    lines = (tmp_path / "md.extxyz").read_text().splitlines(keepends=True)
    path = tmp_path / "cut.extxyz"
    path.write_text("".join(lines[: 4 * 34 + 2 + 10]) + lines[4 * 34 + 12][:15])  # 10.5 atoms of frame 5
    with pytest.warns(TruncatedFileWarning, match=re.escape(str(path)) + ".*kept the 4 complete"):
        traj = read_ase(path)
    assert traj.n_frames == 4
    np.testing.assert_allclose(traj.positions, read_ase(tmp_path / "md.extxyz").positions[:4])


def test_truncated_traj(tmp_path):
    write(tmp_path / "md.traj", _frames())
    raw = (tmp_path / "md.traj").read_bytes()
    path = tmp_path / "cut.traj"
    path.write_bytes(raw[: len(raw) - 400])
    with pytest.warns(TruncatedFileWarning, match=re.escape(str(path))):
        traj = read_ase(path)
    assert 1 <= traj.n_frames < N_FRAMES
    np.testing.assert_allclose(traj.positions, read_ase(tmp_path / "md.traj").positions[: traj.n_frames])


def test_corrupt_extxyz(tmp_path):
    write(tmp_path / "md.extxyz", _frames())
    lines = (tmp_path / "md.extxyz").read_text().splitlines(keepends=True)
    lines[34 + 2 + 5] = re.sub(r"\d", "x", lines[34 + 2 + 5], count=1)  # frame 2, atom 6
    path = tmp_path / "bad.extxyz"
    path.write_text("".join(lines))
    with pytest.raises(TrajectoryError, match=rf"^{re.escape(str(path))}: frame 2"):
        read_ase(path)


def test_corrupt_atom_count(tmp_path):
    write(tmp_path / "md.extxyz", _frames())
    lines = (tmp_path / "md.extxyz").read_text().splitlines(keepends=True)
    lines[34] = "thirty-two\n"
    path = tmp_path / "bad.extxyz"
    path.write_text("".join(lines))
    with pytest.raises(TrajectoryError, match=rf"^{re.escape(str(path))}: line 35"):
        read_ase(path)


def test_trajectory_partial_pbc(tmp_path):
    """A slab periodic in x, y only: unwrap x, y; leave z as written."""
    frames = _frames(with_calc=False)
    for k, a in enumerate(frames):
        a.pbc = (True, True, False)
        a.positions[:, 2] += 0.1 * k
    with AseTrajectory(tmp_path / "slab.traj", "w") as t:
        for a in frames:
            t.write(a)
    traj = read_ase(tmp_path / "slab.traj")
    assert traj.pbc == (True, True, False)
    np.testing.assert_allclose(traj.positions[..., 2], np.array([a.positions[:, 2] for a in frames]), atol=1e-12)
    np.testing.assert_allclose(traj.positions[..., :2], _expected(frames)[..., :2], atol=1e-9)
