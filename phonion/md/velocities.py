"""Unwrapping and velocities from positions, exactly as ../DESIGN.md defines them.

Pure functions of arrays. Written here because neither ASE nor pymatgen exposes a
frame-to-frame minimum-image unwrap for a variable cell, nor the stride check that
modal analysis needs.
"""

from __future__ import annotations

import warnings

import numpy as np

from phonion.md.trajectory import Trajectory, TrajectoryError

#: fractional jump between saved frames above which the minimum-image unwrap is suspect
SUSPICIOUS_JUMP = 0.35


def unwrap_fractional(frac: np.ndarray, source: str = "") -> np.ndarray:
    """Unwrap fractional coordinates frame to frame by the minimum image.

    Parameters
    ----------
    frac : ndarray, shape=(F, N, 3), fractional coordinates (any wrapping)

    Returns
    -------
    ndarray, shape=(F, N, 3): continuous fractional coordinates, frame 0 unchanged.

    Valid only while no atom moves more than half a cell between saved frames; a jump
    larger than ``SUSPICIOUS_JUMP`` of a cell vector gets a warning.
    """
    frac = np.asarray(frac, dtype=float)
    if frac.shape[0] < 2:
        return frac.copy()
    step = np.diff(frac, axis=0)
    with np.errstate(invalid="ignore"):  # inf − inf: a damaged file, refused by md.io.checks
        step -= np.round(step)  # not core.geometry: ~50× faster on (F, N, 3); exact below ½ the cell's least width
    worst = np.abs(step).max() if step.size else 0.0
    if worst > SUSPICIOUS_JUMP:
        warnings.warn(
            f"{source or 'trajectory'}: an atom moves {worst:.2f} of a cell vector between saved frames; "
            "the minimum-image unwrap may be wrong (frames too far apart)", stacklevel=2)
    out = np.empty_like(frac)
    out[0] = frac[0]
    np.cumsum(step, axis=0, out=out[1:])
    out[1:] += frac[0]
    return out


def unwrap_cartesian(frac: np.ndarray, cells: np.ndarray, source: str = "") -> np.ndarray:
    """Unwrapped Cartesian positions (Å), shape=(F, N, 3), from fractional ones and cells (F, 3, 3).

    For a variable cell each frame's displacement is measured in that frame's cell, so the
    unwrapped path follows the cell shape as it changes.
    """
    cont = unwrap_fractional(frac, source)
    return np.einsum("fnj,fjk->fnk", cont, cells)


def central_difference(positions: np.ndarray, dt_fs: float) -> np.ndarray:
    """v(t) = (r(t+Δ) − r(t−Δ)) / 2Δ for the interior frames.

    Parameters
    ----------
    positions : ndarray, shape=(F, N, 3), unwrapped, Å
    dt_fs : float, the saved-frame interval Δ, fs

    Returns
    -------
    ndarray, shape=(F-2, N, 3), Å/fs, for frames 1 … F-2.

    A mode of frequency f is damped by sin(2πfΔ)/(2πfΔ) (see ``central_difference_damping``).
    """
    if dt_fs is None or not np.isfinite(dt_fs) or dt_fs <= 0:
        raise TrajectoryError(f"frame interval must be a positive number of fs, got {dt_fs}")
    positions = np.asarray(positions, dtype=float)
    if positions.shape[0] < 3:
        raise TrajectoryError(f"central differences need at least 3 frames, got {positions.shape[0]}")
    return (positions[2:] - positions[:-2]) / (2.0 * dt_fs)


def central_difference_damping(frequency_THz, dt_fs: float):
    """Amplitude factor sin(2πfΔ)/(2πfΔ) that central differences apply to a mode of frequency f."""
    x = 2.0 * np.pi * np.asarray(frequency_THz, dtype=float) * 1e-3 * dt_fs  # THz·fs = 1e-3
    return np.sinc(x / np.pi)


def nyquist_THz(dt_fs: float) -> float:
    """Highest frequency a frame interval Δ resolves, 1/(2Δ), in THz."""
    return 1.0 / (2.0 * dt_fs * 1e-3)


def check_stride_for_modes(dt_fs: float, max_frequency_THz: float, source: str = "") -> None:
    """Refuse a frame interval too coarse for the fastest phonon (Δ > 1/(2 f_max))."""
    if dt_fs is None:
        raise TrajectoryError(
            f"{source or 'trajectory'}: the frame interval is unknown; give --timestep-fs "
            "(MD timestep × steps between saved frames)")
    limit = nyquist_THz(dt_fs)
    if max_frequency_THz > limit:
        raise TrajectoryError(
            f"{source or 'trajectory'}: frames are {dt_fs:g} fs apart, which resolves only up to "
            f"{limit:.2f} THz, but the fastest phonon is {max_frequency_THz:.2f} THz; modal analysis "
            f"needs frames at most {1e3 / (2 * max_frequency_THz):.2f} fs apart")


def with_velocities(traj: Trajectory, *, timestep_fs: float | None = None,
                    max_frequency_THz: float | None = None) -> Trajectory:
    """The trajectory with velocities: those of the file if present, else central differences.

    Derived velocities exist only for interior frames, so the result drops the first and last
    frame (F-2 frames) rather than mixing in less accurate one-sided differences.
    ``timestep_fs`` (the MD step) fills in an unknown one; with neither, this is an error.
    The frame interval is timestep × stride.
    ``max_frequency_THz`` (e.g. the highest phonon) triggers the stride check.
    """
    src = ", ".join(traj.metadata.get("source_files", [])) or "trajectory"
    if traj.timestep_fs is None and timestep_fs is not None:
        traj = traj.replace(timestep_fs=timestep_fs, times_fs=None)
    dt = traj.frame_interval_fs
    if max_frequency_THz is not None:
        check_stride_for_modes(dt, max_frequency_THz, src)
    if traj.velocities is not None and traj.frames_with("velocities").all():
        return traj
    if dt is None:
        raise TrajectoryError(
            f"{src}: velocities are needed but the file has none and its frame interval is unknown; "
            "give --timestep-fs (MD timestep × steps between saved frames)")
    if traj.n_frames < 3:
        raise TrajectoryError(f"{src}: {traj.n_frames} frames; deriving velocities needs at least 3")
    if dt > 10.0:
        warnings.warn(f"{src}: frames are {dt:g} fs apart; central-difference velocities resolve only "
                      f"up to {nyquist_THz(dt):.1f} THz and are unfit for VDOS or modal analysis",
                      stacklevel=2)
    vel = central_difference(traj.positions, dt)
    inner = traj.select_frames(slice(1, traj.n_frames - 1))
    meta = dict(inner.metadata)
    meta["velocities_source"] = "central-difference"
    return inner.replace(velocities=vel, metadata=meta)


def temperature_for(traj, velocities_source: str | None, temperature_K: float | None = None) -> tuple[float, str]:
    """(T in K, where it came from): the user's value, the file's mean temperature, or the kinetic one.

    The kinetic temperature is Σ m v² / (3 N k_B), averaged over frames (3N degrees of freedom: Langevin
    and Nosé–Hoover runs keep them all; a run that conserves total momentum has 3N − 3, 0.1 % less for 1000
    atoms). Central-difference velocities damp fast modes, so that estimate is slightly low.
    """
    from phonion.core.units import AMU_A2_PER_FS2_TO_EV as amu_a2_per_fs2_to_ev, K_B_EV_K

    if temperature_K is not None:
        if not temperature_K > 0:
            raise ValueError(f"--temperature-K must be > 0, got {temperature_K}")
        return float(temperature_K), "user (--temperature-K)"
    if traj.temperatures_K is not None and np.isfinite(traj.temperatures_K).any():
        return float(np.nanmean(traj.temperatures_K)), "file (mean of the recorded temperatures)"
    v = traj.velocities
    ke = 0.5 * np.einsum("i,fia->f", traj.masses, v ** 2) * amu_a2_per_fs2_to_ev  # eV per frame
    t = float(np.mean(2.0 * ke / (3.0 * traj.n_atoms * K_B_EV_K)))
    how = "central-difference " if velocities_source == "central-difference" else ""
    return t, f"kinetic (mean of Σ m v² / (3 N k_B) over the {how}velocities, 3N degrees of freedom)"
