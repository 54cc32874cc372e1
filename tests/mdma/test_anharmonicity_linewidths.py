"""Mode linewidths on harmonic Langevin dynamics, a known answer (issue 16, "Must show").

ASE Langevin MD (fixcm off: every normal mode an independent Langevin process with friction γ) of the 32-atom LiO3
spring network driven by its own phonopy force constants (phonion.mdma.harmonic.ForceConstantCalculator), 2 fs
steps, 100 ps, every 5th step saved. Each mode's velocity spectrum is γω²/((ω₀² − ω²)² + γ²ω²): peak at the
harmonic frequency, FWHM exactly γ/2π in THz for γ in ps⁻¹. Checks: every resolved mode's fitted linewidth within
4σ of γ/2π and their mean within 10 %; peaks within max(resolution, 4σ) of the harmonic frequencies (measured:
scripts/anharmonicity_checks.py, scripts/results/anharmonicity_checks.json). The first 1 ps alone resolves no line
(each flagged "not resolved", no linewidth); every 4th frame (40 fs) puts the top modes above Nyquist (flagged).
"""

import numpy as np
import pytest

from phonion.md.io import read_trajectory
from phonion.mdma.harmonic import ForceConstantCalculator, langevin_to_h5md
from phonion.mdma.linewidths import fit_modes, modal_velocities, power_spectra
from phonion.mdma.modes import modes_for_supercell
from phonion.mdma.phonons import to_ase_atoms
from mdma_systems import l12_phonons

GAMMA_PER_PS = 3.0
FWHM_THZ = GAMMA_PER_PS / (2 * np.pi)


@pytest.fixture(scope="module")
def langevin(tmp_path_factory):
    phonon = l12_phonons()
    atoms = to_ase_atoms(phonon.supercell)
    path = tmp_path_factory.mktemp("lw") / "langevin.h5"
    langevin_to_h5md(atoms, ForceConstantCalculator.from_phonopy(phonon), path, 300.0, 2.0, 50000,
                     friction_per_fs=GAMMA_PER_PS * 1e-3, interval=5, seed=1)
    traj = read_trajectory([path])
    modes = modes_for_supercell(phonon, atoms)
    return traj, modes, modal_velocities(traj.velocities, traj.masses, modes.eigenvectors)


def test_langevin_linewidths_are_gamma_over_2pi(langevin):
    traj, modes, qdot = langevin
    out = fit_modes(qdot, traj.frame_interval_fs, modes.frequencies_THz)
    fitted = [f for f in out["fits"] if f["status"] == "fitted"]
    others = {f["status"] for f in out["fits"] if f["status"] != "fitted"}
    assert len(fitted) >= 85 and others <= {"acoustic", "fit failed"}
    lw = np.array([f["linewidth_THz"] for f in fitted])
    err = np.array([f["linewidth_err_THz"] for f in fitted])
    assert abs(lw.mean() / FWHM_THZ - 1) < 0.10
    assert (np.abs(lw - FWHM_THZ) < 4 * err).all()
    assert (err / FWHM_THZ < 0.5).all()                 # errors are informative, not blown up
    peak = np.array([f["peak_frequency_THz"] for f in fitted])
    harm = np.array([f["harmonic_frequency_THz"] for f in fitted])
    perr = np.array([f["peak_frequency_err_THz"] for f in fitted])
    assert (np.abs(peak - harm) <= np.maximum(out["frequency_resolution_THz"], 4 * perr)).all()
    assert out["frequency_resolution_THz"] == pytest.approx(1 / (traj.n_frames * traj.frame_interval_fs * 1e-3))


def test_short_run_is_flagged_not_fitted(langevin):
    traj, modes, qdot = langevin
    out = fit_modes(qdot[:100], traj.frame_interval_fs, modes.frequencies_THz)   # 1 ps: 1 THz bins ≫ 0.48 THz
    assert out["frequency_resolution_THz"] == pytest.approx(1.0, rel=1e-3)
    optical = [f for f in out["fits"] if f["status"] != "acoustic"]
    assert optical and all(f["status"] == "not resolved" and f["linewidth_THz"] is None for f in optical)
    assert all("longer run" in f["reason"] for f in optical)


def test_frames_too_far_apart_flag_modes_above_nyquist(langevin):
    traj, modes, qdot = langevin
    dt = 4 * traj.frame_interval_fs                                                 # 40 fs: Nyquist 12.5 THz
    out = fit_modes(qdot[::4], dt, modes.frequencies_THz)
    high = [f for f in out["fits"] if f["harmonic_frequency_THz"] > out["nyquist_THz"]]
    assert high and all(f["status"] == "above Nyquist" and f["linewidth_THz"] is None for f in high)
    low = [f for f in out["fits"] if 1.0 < f["harmonic_frequency_THz"] < out["nyquist_THz"] - 1.0]
    assert sum(f["status"] == "fitted" for f in low) >= 0.8 * len(low)


def test_too_few_frames_refused():
    with pytest.raises(ValueError, match="at least 8"):
        power_spectra(np.zeros((20, 3)), 1.0, n_segments=4)
