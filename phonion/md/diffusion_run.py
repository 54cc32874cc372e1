"""Diffusion analysis of one run: in memory from a Trajectory, or chunked from an H5MD file.

``analyse_trajectory(traj, "Li", temperature_K=...)`` and ``analyse_h5md(path, "Li", ...)`` give
the same :class:`DiffusionResult` (the H5MD path to round-off): both feed groups of atoms, one
species at a time, into :class:`phonion.md.diffusion.MSDAccumulator`; the H5MD path reads a few atoms at a
time (``memory_mb`` bounds the chunk), so 1,000 Li × 10⁵ frames never sit in memory at once.

Framework drift: the mean displacement of all non-carrier atoms (unweighted, as kinisi and
pymatgen do) is subtracted from every atom (``drift_correction=True``), exactly, through
:func:`phonion.md.diffusion.drift_correction_terms`. Velocities for Green–Kubo: the file's, when every
atom has them in every frame (minus the framework's mean velocity), else central differences of
the drift-corrected carrier displacement sum (``phonion.md.velocities.central_difference``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np

from phonion.md.conductivity import carrier_density_cm3, nernst_einstein_conductivity_mS_cm
from phonion.md.diffusion import (
    DiffusivityFit, GreenKubo, MSDAccumulator, MSDCurve, choose_fit_window, curve_from,
    drift_correction_terms, fit_diffusivity, green_kubo, haven_ratio, window_from_ps,
)
from phonion.md.trajectory import Trajectory, TrajectoryError
from phonion.md.velocities import central_difference


@dataclass(frozen=True)
class DiffusionResult:
    """Everything one diffusion analysis found (see :meth:`to_dict` for the JSON contract)."""

    species: str
    n_carriers: int
    frame_interval_fs: float
    window: tuple
    tracer: MSDCurve
    collective: MSDCurve
    tracer_fit: DiffusivityFit
    tracer_fit_xyz: tuple
    collective_fit: DiffusivityFit
    green_kubo: GreenKubo | None
    by_species: dict
    species_fits: dict
    volume_A3: float
    temperature_K: float | None
    charge: float = 1.0
    metadata: dict = field(default_factory=dict)

    @property
    def fit_range_ps(self) -> tuple[float, float]:
        return (self.window[0] * self.frame_interval_fs / 1e3, self.window[1] * self.frame_interval_fs / 1e3)

    def to_dict(self) -> dict:
        """JSON-ready summary; the first eight keys are the ``phonion diffusion --json`` contract."""
        t, c = self.tracer_fit, self.collective_fit
        h, h_err = haven_ratio(t.diffusivity_cm2_s, t.error_cm2_s, c.diffusivity_cm2_s, c.error_cm2_s)
        n_cm3 = carrier_density_cm3(self.n_carriers, self.volume_A3)
        sig = sig_err = ne = ne_err = None
        if self.temperature_K is not None:
            unit = nernst_einstein_conductivity_mS_cm(1.0, self.temperature_K, n_cm3, self.charge)
            sig, sig_err = c.diffusivity_cm2_s * unit, c.error_cm2_s * unit
            ne, ne_err = t.diffusivity_cm2_s * unit, t.error_cm2_s * unit
        gk = self.green_kubo
        return {
            "tracer_diffusivity_cm2_s": t.diffusivity_cm2_s,
            "tracer_diffusivity_err_cm2_s": t.error_cm2_s,
            "collective_diffusivity_cm2_s": c.diffusivity_cm2_s,
            "collective_diffusivity_err_cm2_s": c.error_cm2_s,
            "haven_ratio": h,
            "conductivity_mS_cm": sig,
            "temperature_K": self.temperature_K,
            "fit_range_ps": list(self.fit_range_ps),
            "haven_ratio_err": h_err,
            "conductivity_err_mS_cm": sig_err,
            "conductivity_definition": "n e^2 D_sigma / (k_B T), collective D_sigma (with ion-ion correlations)",
            "nernst_einstein_tracer_conductivity_mS_cm": ne,
            "nernst_einstein_tracer_conductivity_err_mS_cm": ne_err,
            "carrier_density_cm3": n_cm3,
            "volume_A3": self.volume_A3,
            "species": self.species,
            "n_carriers": self.n_carriers,
            "charge": self.charge,
            "tracer_diffusivity_xyz_cm2_s": [f.diffusivity_cm2_s for f in self.tracer_fit_xyz],
            "tracer_diffusivity_xyz_err_cm2_s": [f.error_cm2_s for f in self.tracer_fit_xyz],
            "tracer_diffusivity_err_model_cm2_s": t.error_model_cm2_s,
            "tracer_diffusivity_err_block_cm2_s": t.error_block_cm2_s,
            "tracer_diffusivity_blocks_cm2_s": t.block_values_cm2_s,
            "collective_diffusivity_err_model_cm2_s": c.error_model_cm2_s,
            "collective_diffusivity_err_block_cm2_s": c.error_block_cm2_s,
            "collective_diffusivity_blocks_cm2_s": c.block_values_cm2_s,
            "green_kubo_collective_diffusivity_cm2_s": None if gk is None else gk.diffusivity_cm2_s,
            "green_kubo_collective_diffusivity_err_cm2_s": None if gk is None else gk.error_cm2_s,
            "green_kubo_window_ps": None if gk is None else [w * self.frame_interval_fs / 1e3 for w in gk.window[:2]],
            "tracer_non_gaussian_factor": t.g_factor,
            "tracer_diffusivity_by_species_cm2_s": {s: f.diffusivity_cm2_s for s, f in self.species_fits.items()},
            "fit_start_rule": self.window[2],
            "n_frames": int(self.tracer.times_fs.size),
            "frame_interval_fs": self.frame_interval_fs,
            "duration_ps": (self.tracer.times_fs.size - 1) * self.frame_interval_fs / 1e3,
            **self.metadata,
        }


def _temperature(temperature_K, temps, src):
    if temperature_K is not None:
        if not np.isfinite(temperature_K) or temperature_K <= 0:
            raise ValueError(f"{src}: temperature must be > 0 K, got {temperature_K}")
        return float(temperature_K), "user"
    if temps is not None and np.isfinite(temps).any():
        t = float(np.nanmean(temps))
        if t <= 0:
            raise ValueError(f"{src}: the trajectory's mean temperature is {t:g} K (must be > 0)")
        return t, "trajectory mean"
    return None, None


@dataclass(frozen=True)
class _Options:
    """The fit settings of one analysis (defaults ``_OPTIONS``; see :func:`analyse_trajectory`)."""

    fit_range_ps: tuple | None = None
    gk_window_ps: tuple | None = None
    n_blocks: int = 5
    fit_fraction: float = 0.5
    slope_tolerance: float = 0.1
    drift_correction: bool = True
    charge: float = 1.0
    error_method: str = "max"
    estimator: str = "wls"


@dataclass(frozen=True)
class _Run:
    """What one analysis reads: carrier ``species``, atoms per species ``counts``, ``n_frames`` frames
    ``dt_fs`` apart, ``src`` (for messages); ``volume_A3`` and ``temperature`` are called once the groups
    are consumed; ``extra`` goes into the result's metadata."""

    species: str
    counts: dict
    n_frames: int
    dt_fs: float
    volume_A3: Callable
    temperature: Callable
    src: str
    extra: dict


def _options(opts: dict) -> _Options:
    """``_Options`` from the merged option mapping; unknown keys fail as they did as keywords of ``_analyse``."""
    run_keys = [f.name for f in fields(_Run)]
    for key in opts:
        if key in run_keys:
            raise TypeError(f"{__name__}._analyse() got multiple values for keyword argument '{key}'")
    known = [f.name for f in fields(_Options)]
    for key in opts:
        if key not in known:
            raise TypeError(f"_analyse() got an unexpected keyword argument '{key}'")
    return _Options(**opts)


def _accumulate(groups, run: _Run, n_blocks: int):
    """Per-species MSD accumulators and velocity sums (F, 3); whether every group had finite velocities."""
    acc = {s: MSDAccumulator(run.n_frames, n_blocks) for s in run.counts}
    vsum = {s: np.zeros((run.n_frames, 3)) for s in run.counts}
    have_v = True
    for sym, pos, vel in groups:
        acc[sym].add(pos)
        if vel is None or not np.isfinite(vel).all():
            have_v = False
        elif have_v:
            vsum[sym] += vel.sum(axis=1)
    return acc, vsum, have_v


def _curves(acc, run: _Run, opts: _Options, n_fw: int):
    """Drift-corrected MSD curves per species, the collective curve, and the carrier mean displacement."""
    species, counts, n_frames, dt_fs, n_blocks = run.species, run.counts, run.n_frames, run.dt_fs, opts.n_blocks
    drift = np.zeros((n_frames, 3))
    if opts.drift_correction and n_fw:
        drift = sum(acc[s].disp_sum for s in counts if s != species) / n_fw
    curves = {}
    for s, a in acc.items():
        corr = drift_correction_terms(a.disp_sum / a.n, drift, n_blocks) if drift.any() else None
        curves[s] = curve_from(a, dt_fs, corr)
    n_c = counts[species]
    carrier_mean = acc[species].disp_sum / n_c - drift  # (F, 3)
    coll_acc = MSDAccumulator(n_frames, n_blocks)
    coll_acc.add(carrier_mean[:, None])
    collective = curve_from(coll_acc, dt_fs, scale=float(n_c), n_particles=1)  # |Σ Δr|² / N_c
    return curves, collective, carrier_mean


def _fits(curves, collective, window, species: str, opts: _Options):
    """The tracer (total and x, y, z), collective and per-species fits over ``window``."""
    error_method, estimator = opts.error_method, opts.estimator
    tracer = curves[species]
    fit = fit_diffusivity(tracer, window, "xyz", error_method, estimator)
    fits_xyz = tuple(fit_diffusivity(tracer, window, d, error_method, estimator) for d in "xyz")
    coll_fit = fit_diffusivity(collective, window, "xyz", error_method, estimator,
                               slope_floor_A2_fs=max(fit.slope_A2_fs, 0.0))
    species_fits = {s: fit if s == species else fit_diffusivity(c, window, "xyz", error_method, estimator)
                    for s, c in curves.items()}
    return fit, fits_xyz, coll_fit, species_fits


def _green_kubo_of(vsum, have_v, carrier_mean, window, run: _Run, opts: _Options, n_fw: int):
    """Green–Kubo from the file's velocities (minus the framework's mean) or central differences."""
    species, counts, dt_fs = run.species, run.counts, run.dt_fs
    n_c = counts[species]
    if have_v:
        fw_v = sum(vsum[s] for s in counts if s != species) / n_fw if (n_fw and opts.drift_correction) else 0.0
        v, v_src = vsum[species] - n_c * fw_v, "file"
    else:
        v, v_src = central_difference((n_c * carrier_mean)[:, None], dt_fs)[:, 0], "central-difference"
    if opts.gk_window_ps is not None:
        gk_window = window_from_ps(opts.gk_window_ps, dt_fs, v.shape[0], run.src)
    else:
        a = min(max(window[0], 2), window[1])
        gk_window = (a, min(2 * a, window[1]), "octave from the MSD fit start")
    return green_kubo(v, dt_fs, n_c, gk_window, opts.n_blocks), v_src


def _notes(window, fit, coll_fit, src: str, n_blocks: int) -> list:
    """What the reader of the result should know (fallback window, D ≤ 0, no block error)."""
    notes = []
    if window[2].startswith("fallback"):
        notes.append("the tracer MSD never became linear (local-slope rule); window = fallback, D uncertain")
    for name, f in (("tracer", fit), ("collective", coll_fit)):
        if f.diffusivity_cm2_s <= 0:
            notes.append(f"{name} MSD does not grow over the window (D ≤ 0): the run is too short or the "
                         f"ions do not diffuse; D, Haven ratio and σ from it are not meaningful")
            warnings.warn(f"{src}: {notes[-1]}", stacklevel=4)  # the caller of analyse_trajectory/_h5md
        if f.error_block_cm2_s is None:
            notes.append(f"{name}: no block error (the window does not fit in half of 1/{n_blocks} of the run)")
    return notes


def _analyse(groups, run: _Run, opts: _Options):
    """Core: ``groups`` yields (symbol, positions (F, k, 3) Å, velocities (F, k, 3) or None);
    ``run.volume_A3`` and ``run.temperature`` are called once the groups are consumed."""
    species, counts, src, n_blocks = run.species, run.counts, run.src, opts.n_blocks
    if n_blocks < 2:
        raise ValueError(f"n_blocks must be ≥ 2 (≥ 4 recommended), got {n_blocks}")
    if counts.get(species, 0) == 0:
        raise TrajectoryError(f"{src}: no {species} atoms; the file has "
                              f"{', '.join(f'{s}{n}' for s, n in counts.items())}")
    if run.n_frames < 8:
        raise TrajectoryError(f"{src}: {run.n_frames} frames are too few for a diffusion fit (need ≥ 8)")
    acc, vsum, have_v = _accumulate(groups, run, n_blocks)
    n_fw = sum(n for s, n in counts.items() if s != species)
    curves, collective, carrier_mean = _curves(acc, run, opts, n_fw)
    total = curves[species].msd_A2.sum(axis=1)  # the window is chosen here: its warning names the analyse_* call
    window = (window_from_ps(opts.fit_range_ps, run.dt_fs, run.n_frames, src) if opts.fit_range_ps is not None
              else choose_fit_window(total, opts.fit_fraction, opts.slope_tolerance, src))
    fit, fits_xyz, coll_fit, species_fits = _fits(curves, collective, window, species, opts)
    gk, v_src = _green_kubo_of(vsum, have_v, carrier_mean, window, run, opts, n_fw)
    notes = _notes(window, fit, coll_fit, src, n_blocks)
    meta = {"fit_fraction": opts.fit_fraction, "slope_tolerance": opts.slope_tolerance, "n_blocks": n_blocks,
            "error_method": opts.error_method, "estimator": opts.estimator,
            "drift_correction": bool(opts.drift_correction and n_fw), "velocities_source_green_kubo": v_src,
            "notes": notes, **run.extra}
    temperature = run.temperature
    return DiffusionResult(species, counts[species], float(run.dt_fs), window, curves[species], collective, fit,
                           fits_xyz, coll_fit, gk, curves, species_fits, float(run.volume_A3()),
                           *temperature()[:1], float(opts.charge), {"temperature_source": temperature()[1], **meta})


_OPTIONS = dict(fit_range_ps=None, gk_window_ps=None, n_blocks=5, fit_fraction=0.5, slope_tolerance=0.1,
                drift_correction=True, charge=1.0, error_method="max", estimator="wls")


def _frame_interval(timestep_fs, stride, src):
    if timestep_fs is None:
        raise TrajectoryError(f"{src}: the MD timestep is unknown; give --timestep-fs "
                              "(the frame interval is timestep × stride)")
    return timestep_fs * stride


def analyse_trajectory(traj: Trajectory, species: str = "Li", *, temperature_K: float | None = None,
                       timestep_fs: float | None = None, **options) -> DiffusionResult:
    """Tracer / collective / Green–Kubo diffusion of ``species`` in an in-memory trajectory.

    Parameters
    ----------
    traj : Trajectory, unwrapped positions (F, N, 3) Å; velocities (F, N, 3) Å/fs used if complete
    species : carrier element symbol
    temperature_K : K; default the mean of ``traj.temperatures_K`` if present, else None
        (then no conductivity)
    timestep_fs : fills in an unknown MD timestep (the frame interval is timestep × stride)
    options : fit_range_ps (A, B) | None, gk_window_ps (A, B) | None, n_blocks (5),
        fit_fraction (0.5), slope_tolerance (0.1),
        drift_correction (True), charge (1.0, units of e), error_method ("max" | "model" | "block"),
        estimator ("wls" | "gls"); see :mod:`phonion.md.diffusion`
    """
    opts = {**_OPTIONS, **options}
    src = ", ".join(traj.metadata.get("source_files", [])) or "trajectory"
    _temperature(temperature_K, None, src)  # a bad user temperature fails before the long part
    dt = _frame_interval(traj.timestep_fs or timestep_fs, traj.stride, src)
    counts = traj.species_counts
    vel_ok = traj.velocities is not None and traj.frames_with("velocities").all()

    def groups():
        for s in counts:
            idx = traj.indices_of(s)
            yield s, traj.positions[:, idx], traj.velocities[:, idx] if vel_ok else None

    run = _Run(species=species, counts=counts, n_frames=traj.n_frames, dt_fs=dt,
               volume_A3=lambda: traj.volumes_A3.mean(),
               temperature=lambda: _temperature(temperature_K, traj.temperatures_K, src), src=src,
               extra={"source_files": list(traj.metadata.get("source_files", [])), "memory_mode": "in-memory"})
    return _analyse(groups(), run, _options(opts))


def analyse_h5md(path, species: str = "Li", *, temperature_K: float | None = None,
                 timestep_fs: float | None = None, stride: int | None = None, memory_mb: float = 1024,
                 **options) -> DiffusionResult:
    """As :func:`analyse_trajectory`, reading an H5MD file a few atoms at a time.

    ``memory_mb`` bounds one chunk (positions, velocities, forces of k atoms over all frames plus
    the FFT work space, ≈ F × 8 B × (3 × fields + 10) per atom); accumulators are O(F).
    """
    from phonion.md.io.h5md import H5MDReader

    opts = {**_OPTIONS, **options}
    reader = H5MDReader(path)
    src = str(path)
    _temperature(temperature_K, None, src)  # a bad user temperature fails before the long part
    head = reader.read(frames=slice(0, 1), atoms=[0])  # which per-atom fields exist (cheap)
    if timestep_fs is not None and reader.timestep_fs is not None and abs(timestep_fs - reader.timestep_fs) > 1e-9:
        raise TrajectoryError(f"{src}: the file says the timestep is {reader.timestep_fs:g} fs but "
                              f"{timestep_fs:g} fs was given")
    dt = _frame_interval(reader.timestep_fs or timestep_fs, stride or reader.stride, src)
    n_fields = 1 + sum(getattr(head, k) is not None for k in ("velocities", "forces"))
    per_atom = reader.n_frames * 8.0 * (3 * n_fields + 10)
    k = max(1, int(memory_mb * 2**20 // per_atom))
    sym = np.asarray(reader.symbols)
    counts = {s: int((sym == s).sum()) for s in dict.fromkeys(reader.symbols)}

    seen = {}  # cells and temperatures of all frames, from the first chunk read

    def groups():
        for s in counts:
            idx = np.flatnonzero(sym == s)
            for a in range(0, idx.size, k):
                part = reader.read(atoms=idx[a:a + k])
                seen.setdefault("volume", part.volumes_A3.mean())
                seen.setdefault("temps", part.temperatures_K)
                yield s, part.positions, part.velocities

    run = _Run(species=species, counts=counts, n_frames=reader.n_frames, dt_fs=dt,
               volume_A3=lambda: seen["volume"],
               temperature=lambda: _temperature(temperature_K, seen["temps"], src), src=src,
               extra={"source_files": [src], "memory_mode": f"chunked ({k} atoms per read)"})
    return _analyse(groups(), run, _options(opts))


__all__ = ["DiffusionResult", "analyse_h5md", "analyse_trajectory"]
