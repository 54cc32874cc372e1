"""Unwrapping and central-difference velocities against analytic answers (DESIGN.md definitions)."""

import numpy as np
import pytest

from phonion.md.trajectory import Trajectory, TrajectoryError, concatenate
from phonion.md.velocities import (
    central_difference,
    central_difference_damping,
    check_stride_for_modes,
    unwrap_cartesian,
    with_velocities,
)


def _walk(rng, n_frames=200, n_atoms=5, step=0.08):
    """A continuous fractional random walk and its wrapped copy."""
    steps = rng.normal(scale=step, size=(n_frames, n_atoms, 3))
    steps[0] = rng.random((n_atoms, 3))
    true = np.cumsum(steps, axis=0)
    return true, true % 1.0


def test_unwrap_recovers_continuous_path_across_boundaries():
    rng = np.random.default_rng(0)
    true, wrapped = _walk(rng)
    cell = np.diag([4.0, 5.0, 6.0]) + 0.3 * np.tri(3, k=-1)  # triclinic
    cells = np.broadcast_to(cell, (len(true), 3, 3))
    unwrapped = unwrap_cartesian(wrapped, cells)
    shift = (true[0] - wrapped[0]) @ cell  # frame 0 stays where the file put it
    np.testing.assert_allclose(unwrapped + shift, true @ cell, atol=1e-10)
    assert np.abs(true).max() > 1.5  # the walk really crossed cell boundaries


def test_central_difference_of_a_sinusoid_is_exact_with_sinc_damping():
    """x = A sin(2πft): (x(t+Δ) − x(t−Δ))/2Δ = A 2πf cos(2πft) · sin(2πfΔ)/(2πfΔ), exactly."""
    f_THz, dt_fs, amp = 12.0, 2.0, 0.1
    t = np.arange(400) * dt_fs
    omega = 2 * np.pi * f_THz * 1e-3  # rad/fs
    x = np.zeros((len(t), 1, 3))
    x[:, 0, 0] = amp * np.sin(omega * t)
    v = central_difference(x, dt_fs)[:, 0, 0]
    expected = amp * omega * np.cos(omega * t[1:-1]) * central_difference_damping(f_THz, dt_fs)
    np.testing.assert_allclose(v, expected, atol=1e-12)
    # DESIGN.md: 1.6 % damping at 25 THz with Δ = 2 fs
    assert 1 - central_difference_damping(25.0, 2.0) == pytest.approx(0.016, abs=0.001)


def test_with_velocities_drops_end_frames_and_keeps_times():
    rng = np.random.default_rng(1)
    pos = np.cumsum(rng.normal(scale=0.01, size=(20, 3, 3)), axis=0)
    traj = Trajectory(("Li", "O", "O"), pos, np.eye(3) * 10, timestep_fs=1.0, stride=2)
    out = with_velocities(traj)
    assert out.n_frames == 18
    np.testing.assert_allclose(out.times_fs, traj.times_fs[1:-1])
    np.testing.assert_allclose(out.velocities, (pos[2:] - pos[:-2]) / 4.0)
    assert out.metadata["velocities_source"] == "central-difference"


def test_missing_frame_interval_is_an_error_not_a_guess():
    traj = Trajectory(("Li",), np.zeros((5, 1, 3)), np.eye(3) * 5,
                      metadata={"source_files": ["XDATCAR"]})
    with pytest.raises(TrajectoryError, match="XDATCAR.*--timestep-fs"):
        with_velocities(traj)
    assert with_velocities(traj, timestep_fs=2.0).frame_interval_fs == 2.0


def test_stride_too_coarse_for_modes_is_refused():
    check_stride_for_modes(2.0, 25.0)  # Nyquist 250 THz: fine
    with pytest.raises(TrajectoryError, match="100 fs apart.*5.00 THz"):
        check_stride_for_modes(100.0, 25.0, "XDATCAR")


def test_species_count_mismatch_names_the_file():
    with pytest.raises(TrajectoryError, match="run/OUTCAR.*species count mismatch"):
        Trajectory(("Li", "O"), np.zeros((2, 3, 3)), np.eye(3),
                   metadata={"source_files": ["run/OUTCAR"]})


def test_select_frames_multiplies_stride_and_concatenate_continues_unwrapped_path():
    rng = np.random.default_rng(2)
    true, wrapped = _walk(rng, n_frames=60, n_atoms=4, step=0.05)
    cell = np.eye(3) * 7.0
    whole = Trajectory(("Li",) * 4, unwrap_cartesian(wrapped, np.broadcast_to(cell, (60, 3, 3))),
                       cell, timestep_fs=2.0, stride=5)
    sub = whole.select_frames(slice(None, None, 3))
    assert sub.stride == 15 and sub.frame_interval_fs == 30.0
    np.testing.assert_allclose(sub.times_fs, whole.times_fs[::3])
    # a restart file starts again from wrapped positions
    second = unwrap_cartesian(wrapped[30:], np.broadcast_to(cell, (30, 3, 3)))
    joined = concatenate([whole.select_frames(slice(0, 30)),
                          Trajectory(("Li",) * 4, second, cell, timestep_fs=2.0, stride=5)])
    np.testing.assert_allclose(joined.positions, whole.positions, atol=1e-10)
    np.testing.assert_allclose(np.diff(joined.times_fs), 10.0)


def test_to_atoms_converts_velocity_units_once():
    """Å/fs in the trajectory ↔ ASE's own units: the kinetic energy must agree."""
    from ase import units

    rng = np.random.default_rng(3)
    vel = rng.normal(scale=0.01, size=(1, 4, 3))  # Å/fs
    traj = Trajectory(("Li", "O", "Ga", "Se"), rng.random((1, 4, 3)), np.eye(3) * 6, velocities=vel)
    atoms = traj.to_atoms(0)
    ke_amu_A2_fs2 = 0.5 * (traj.masses[:, None] * vel[0] ** 2).sum()
    ke_eV = ke_amu_A2_fs2 * units._amu * 1e10 / units._e
    assert atoms.get_kinetic_energy() == pytest.approx(ke_eV, rel=1e-10)
    np.testing.assert_allclose(atoms.get_velocities() * units.fs, vel[0], rtol=1e-12)
