"""The structural and transport analyses of ``phonion compare``, run identically on each side.

Every function here takes one side's trajectories and returns ``(numbers, plot data)``; numbers are
:func:`number` objects. Nothing depends on the other side except the choice of runs the caller makes,
so identical inputs give identical numbers (no random seeds anywhere).

* RDF: partial g_ab(r) per element pair, averaged over (at most ``max_frames`` evenly strided) frames,
  up to r_max = min(6 Å, the shortest perpendicular cell width) (``phonion.md.rdf.partial_rdf``: minimum
  image below half the width, the 27 nearest images above it).
  g_ab(r) = ⟨n_ab(r)⟩ V / (P_ab · 4π/3 (r₂³ − r₁³)), P_ab = N_a N_b (a ≠ b) or N_a (N_a − 1)/2 pairs,
  so g → 1 for uncorrelated atoms. First-peak position, uncertainty and "is it a coordination shell":
  ``phonion.md.rdf.first_peaks`` — one definition for compare and the fit-for-MD gate.
* VDOS: ``phonion.md.vdos.vdos`` per species and per O class; number: the centroid (``spectral_summary``), not
  converged when the frequency bin is above 1 THz, the frames are more than 10 fs apart, or more than 2 % of
  the weight lies in the top 10 % below the Nyquist frequency (frames too far apart: aliased).
* Diffusion: ``phonion.md.diffusion_run.analyse_trajectory`` per run; Arrhenius of the tracer D* over the
  non-fixed runs (``phonion.md.conductivity.arrhenius_fit``); σ(300 K) by Nernst–Einstein with D* (the paper's
  convention, Haven ratio taken as 1); Haven ratio per temperature. Several runs at one temperature
  (seeds) are averaged: mean, σ = √(Σσ²)/n. Runs are grouped (and keys named) by their set-point; the T
  of the Arrhenius fit and of Nernst–Einstein is each run's *measured* mean kinetic temperature
  (``Run.fit_temperature_K``; the set-point only for files that record no temperatures, said in the note).

:data:`LIMITS` is the one place of the limits every number must also meet to count as converged (applied
to both sides by :func:`phonion.compare.checks.apply_limits`, stated in the report's "why not converged").
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from phonion.compare.warn import ours

from phonion.compare.rdf_shifts import (RDF_EXTRAPOLATE, RDF_SHIFT_LIMIT_A, mlip_peaks_at,  # noqa: F401
                                       rdf_peaks_by_temperature, rdf_shifts_by_temperature, tkey)
from phonion.md.rdf import PEAK, RDF_MAX_A, first_peak, first_peaks, half_width as _half_width, partial_rdf  # noqa: F401

__all__ = ["number", "combine", "tkey", "partial_rdf", "first_peak", "rdf_numbers", "rdf_peaks_by_temperature",
           "rdf_shifts_by_temperature", "vdos_numbers",
           "diffusion_numbers", "MIN_MSD_A2", "MIN_FIT_FRAMES", "LIMITS", "RELATIVE_UNCERTAINTY_LIMIT",
           "PARITY_FORCE_RMSE_LIMIT_MEV_A"]

#: a D from an MSD that never reaches this (Å², end of the fit window) is flagged "not converged"
MIN_MSD_A2 = 5.0
#: nor from a fit window shorter than this many frames
MIN_FIT_FRAMES = 10
#: a VDOS with more than this share of its weight in the top 10 % below the Nyquist frequency is aliased
ALIAS_FRACTION = 0.02
#: nor one from frames further apart than this (Nyquist 50 THz; phonion.md.velocities warns beyond it too)
MAX_VDOS_FRAME_FS = 10.0

#: limits beyond each analysis's own checks; a number that fails one is never converged (the failed
#: criterion goes into its note):
#: * ``transport_relative_uncertainty``: σ/|value| above this for the transport numbers (D*, D_σ, σ, Haven
#:   ratio, E_a, D0, D(300 K), σ(300 K), fixed-O ratios, MDMA D_σ) that carry an uncertainty;
#: * ``share_range``: MDMA shares (harmonic, anharmonic, O_e / O_c / O_n) outside [lo, hi];
#: * ``haven_ratio_range``: a Haven ratio outside (lo, hi];
#: * ``diffusivity_min_cm2_s``: a diffusivity (or conductivity) ≤ this;
#: * ``rdf_peak_min_fraction``: an MLIP RDF first peak closer than this fraction of the reference's first
#:   peak of the same pair, or than the reference's closest approach of that pair;
#: * ``parity_force_rmse_max_meV_A``: a parity force RMSE above this is not OK (red, never "yes").
LIMITS = {
    "transport_relative_uncertainty": 0.5,
    "share_range": (-0.1, 1.1),
    "haven_ratio_range": (0.0, 10.0),
    "diffusivity_min_cm2_s": 0.0,
    "rdf_peak_min_fraction": 0.8,
    "parity_force_rmse_max_meV_A": 100.0,
}
RELATIVE_UNCERTAINTY_LIMIT = LIMITS["transport_relative_uncertainty"]
PARITY_FORCE_RMSE_LIMIT_MEV_A = LIMITS["parity_force_rmse_max_meV_A"]


def _f(x):
    return None if x is None or not np.isfinite(x) else float(x)


def number(value, unit: str, side: str, source, *, uncertainty=None, converged: bool = True,
           note: str = "") -> dict:
    """One number of ``numbers.json``: value, uncertainty (1σ or None), unit, side, source, converged, note."""
    src = source if isinstance(source, str) else ", ".join(str(s) for s in source)
    return {"value": _f(value), "uncertainty": _f(uncertainty), "unit": unit, "side": side, "source": src,
            "converged": bool(converged) and _f(value) is not None, "note": note}


def combine(values, errors) -> tuple[float, float | None]:
    """Mean of several runs' values and σ = √(Σσ²)/n (None when any σ is unknown)."""
    v = np.asarray(values, float)
    e = [x for x in errors if x is not None and np.isfinite(x)]
    err = float(np.sqrt(np.sum(np.square(e))) / len(v)) if len(e) == len(v) else None
    return float(v.mean()), err


# ---- RDF ------------------------------------------------------------------------------------------------
def rdf_numbers(traj, side: str, source: str, max_frames: int = 200):
    """Partial RDFs of one run and the first-peak position of every pair: ``rdf_first_peak_<A>_<B>_A``.

    Positions, uncertainties and what counts as a coordination shell are ``phonion.md.rdf.first_peaks``
    (the same definition as the fit-for-MD gate): a pair without a shell, or whose position is not
    resolved (block uncertainty above ``PEAK["resolved_A"]``), is reported but not converged, with the reason.
    """
    res = first_peaks(traj.positions, traj.cells, traj.symbols, max_frames)
    n_used, step = res["n_frames"], max(1, int(math.ceil(traj.n_frames / max_frames)))
    numbers = {}
    for pair, pk in res["peaks"].items():
        a, b = pair.split("-")
        note = (f"{n_used} frames (every {step}), centroid of the first shell above half its maximum (PEAK settings of "
                f"phonion.md.rdf), uncertainty from {PEAK['blocks']} blocks, r_max {res['r_max_A']:.2f} Å")
        why = []
        if pk is None:
            note += "; no first peak below r_max"
        elif not pk["shell"]:
            why.append(pk["why"])
        elif pk["err_A"] is not None and pk["err_A"] > PEAK["resolved_A"]:
            why.append(f"position not resolved (± {pk['err_A']:.2f} Å > {PEAK['resolved_A']:g} Å): longer run needed")
        if n_used < 10:
            why.append("fewer than 10 frames")
        numbers[f"rdf_first_peak_{a}_{b}_A"] = number(
            None if pk is None else pk["r_A"], "Å", side, source, uncertainty=None if pk is None else pk["err_A"],
            converged=pk is not None and not why, note=note + ("; not converged: " + "; ".join(why) if why else ""))
    return numbers, {"r_A": res["r_A"], "g": res["g"], "r_max_A": res["r_max_A"], "n_frames": n_used,
                     "peaks": res["peaks"]}


# ---- VDOS -----------------------------------------------------------------------------------------------
def common_vdos_window_fs(heads) -> float | None:
    """One correlation window (fs) for the headline runs of both sides, so both VDOS share one frequency grid
    (bin 1/(2 window), the same frequencies up to the lower Nyquist): half the shorter run, rounded down to
    a multiple of both frame intervals. None when a run lacks its frame interval or is too short."""
    heads = [h for h in heads if h is not None]
    if len(heads) < 2 or any(h.frame_interval_fs is None for h in heads):
        return None
    dts = [round(float(h.frame_interval_fs) * 1000) for h in heads]  # in 1e-3 fs, integers
    step = math.lcm(*dts) / 1000.0
    half = min((h.n_frames - 1) * h.frame_interval_fs / 2.0 for h in heads)
    window = math.floor(half / step + 1e-9) * step
    return window if all(window / (d / 1000.0) >= 4 for d in dts) else None


def vdos_numbers(traj, groups: dict, side: str, source: str, species: list[str], window_fs: float | None = None):
    """VDOS of the groups (species, O classes) from the trajectory's velocities (file or central
    differences, as given); numbers ``vdos_mean_frequency_<group>_THz`` (centroids)."""
    from phonion.md.vdos import spectral_summary, vdos
    from phonion.md.velocities import with_velocities

    v = with_velocities(traj)
    res = vdos(v.velocities, v.masses, v.frame_interval_fs, groups, total_of=species, window_fs=window_fs)
    f = res.frequencies_THz
    bin_thz = float(f[1] - f[0])
    how = v.metadata.get("velocities_source") or "file"
    base = (f"centroid ∫f g df / ∫g df; window {res.window_fs / 1e3:.3g} ps, bin {bin_thz:.3g} THz, "
            f"velocities: {how}")
    numbers = {}
    for k, g in res.spectra.items():
        why = [] if bin_thz <= 1.0 else ["the frequency bin is coarser than 1 THz (run too short)"]
        if v.frame_interval_fs > MAX_VDOS_FRAME_FS:
            why.append(f"frames {v.frame_interval_fs:g} fs apart resolve only up to {f[-1]:.3g} THz (aliased)")
        top = f >= 0.9 * f[-1]
        if np.trapezoid(np.abs(g[top]), f[top]) > ALIAS_FRACTION * np.trapezoid(np.abs(g), f):
            why.append(f"more than {100 * ALIAS_FRACTION:g} % of the weight lies near the Nyquist frequency "
                       f"{f[-1]:.3g} THz: frames too far apart (aliased)")
        numbers[f"vdos_mean_frequency_{k}_THz"] = number(
            spectral_summary(f, g)["centroid_THz"], "THz", side, source, converged=not why,
            note="; ".join([base] + why))
    return numbers, res


# ---- diffusion ----------------------------------------------------------------------------------------
def _diffusion_flags(d: dict, res) -> tuple[bool, str]:
    a, b = res.window[0], res.window[1]
    msd_end = float(res.tracer.msd_A2.sum(axis=1)[min(b, res.tracer.msd_A2.shape[0] - 1)])
    why = []
    if not d["tracer_diffusivity_cm2_s"] > 0:
        why.append("D* ≤ 0")
    if msd_end < MIN_MSD_A2:
        why.append(f"Li MSD at the end of the fit window is {msd_end:.2g} Å² (< {MIN_MSD_A2:g} Å²)")
    if b - a < MIN_FIT_FRAMES:
        why.append(f"fit window of {b - a} frames (< {MIN_FIT_FRAMES})")
    if str(res.window[2]).startswith("fallback"):
        why.append("the MSD never became linear (fallback fit window)")
    return not why, "; ".join(why)


def _one_run(traj, run, mobile: str, caught: list):
    from phonion.md.diffusion_run import analyse_trajectory

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = analyse_trajectory(traj, mobile, temperature_K=run.fit_temperature_K)
    caught.extend(ours(w, f"{run.side} {run.name}: "))
    d = res.to_dict()
    ok, why = _diffusion_flags(d, res)
    t_ps = res.tracer.times_fs / 1e3
    return {"run": run, "dict": d, "converged": ok, "why": why, "t_ps": t_ps,
            "msd_A2": res.tracer.msd_A2.sum(axis=1), "fit_range_ps": res.fit_range_ps}


def _per_t(records, side, key, dkey, ekey, unit, label, numbers, prefix=""):
    by_t: dict[float, list] = {}
    for rec in records:
        by_t.setdefault(rec["run"].temperature_K, []).append(rec)
    for t, recs in sorted(by_t.items()):
        vals = [r["dict"][dkey] for r in recs]
        if any(v is None for v in vals):
            continue
        val, err = combine(vals, [r["dict"].get(ekey) for r in recs])
        bad = [f"{r['run'].name}: {r['why']}" for r in recs if not r["converged"]]
        numbers[key.format(t=tkey(t))] = number(
            val, unit, side, [f for r in recs for f in r["run"].files], uncertainty=err, converged=not bad,
            note=f"{label}; {len(recs)} run(s); {_measured_note(recs)}"
                 + (f"; not converged: {' | '.join(bad)}" if bad else ""))


def _measured_note(recs) -> str:
    """Which temperatures the runs had: measured means beside the set-points (module docstring)."""
    runs = [r["run"] for r in recs]
    meas = ", ".join(f"{r.fit_temperature_K:.4g}" for r in runs)
    sets = ", ".join(f"{r.temperature_K:g}" for r in runs)
    fallback = [r.name for r in runs if r.temperature_K_measured is None
                or r.temperature_measured_source.startswith("set-point")]
    return (f"T measured {meas} K (set-point {sets} K)"
            + (f"; no recorded temperatures in {', '.join(fallback)}: set-point used" if fallback else ""))


def _arrhenius(free, side: str, numbers: dict, caught: list):
    """E_a, D0, D(300 K), σ(300 K) from the non-fixed runs with D* > 0 against their measured T; the fit."""
    from phonion.md.conductivity import arrhenius_fit, nernst_einstein_conductivity_mS_cm

    pts = [r for r in free if r["dict"]["tracer_diffusivity_cm2_s"] > 0]
    temps = sorted({r["run"].temperature_K for r in pts})
    if len(temps) < 2:
        caught.append(f"{side}: no Arrhenius fit: non-fixed runs with D* > 0 at {len(temps)} temperature(s) "
                      f"({', '.join(f'{t:g} K' for t in temps) or 'none'}); it needs at least 2")
        return None
    t = np.array([r["run"].fit_temperature_K for r in pts])
    d = np.array([r["dict"]["tracer_diffusivity_cm2_s"] for r in pts])
    e = np.array([r["dict"]["tracer_diffusivity_err_cm2_s"] or np.nan for r in pts])
    fit = arrhenius_fit(t, d, None if np.isnan(e).all() else e)
    n_cm3 = float(np.mean([r["dict"]["carrier_density_cm3"] for r in pts]))
    d300, lo, hi, s_ln = fit.predict(300.0)
    unit = nernst_einstein_conductivity_mS_cm(1.0, 300.0, n_cm3)
    bad = [f"{r['run'].name}: {r['why']}" for r in pts if not r["converged"]]
    ok = not bad
    src = [f for r in pts for f in r["run"].files]
    base = (f"weighted fit of ln D* vs 1/T over {len(pts)} run(s) at {len(temps)} temperatures, "
            f"{_measured_note(pts)}"
            + (" (2 temperatures: the line is exact, no check of linearity)" if len(temps) == 2 else "")
            + (f"; not converged: {' | '.join(bad)}" if bad else ""))
    numbers["E_a_meV"] = number(1e3 * fit.activation_energy_eV, "meV", side, src,
                                uncertainty=1e3 * fit.activation_energy_err_eV, converged=ok, note=base)
    numbers["D0_cm2_s"] = number(fit.prefactor_cm2_s, "cm²/s", side, src, uncertainty=fit.prefactor_err_cm2_s,
                                 converged=ok, note=base)
    band = f"; ±1σ band [{lo:.3g}, {hi:.3g}] cm²/s (σ = D·σ_lnD)"
    numbers["D_300K_cm2_s"] = number(d300, "cm²/s", side, src, uncertainty=d300 * s_ln, converged=ok,
                                     note="Arrhenius extrapolation of D* to 300 K" + band + "; " + base)
    numbers["sigma_300K_mS_cm"] = number(
        d300 * unit, "mS/cm", side, src, uncertainty=d300 * s_ln * unit, converged=ok,
        note=f"Nernst–Einstein with D*(300 K) (Haven ratio 1, as the paper), n = {n_cm3:.4g} cm⁻³; " + base)
    return fit


def diffusion_numbers(loaded, side: str, mobile: str, caught: list):
    """Diffusion of every run, per-temperature D*, D_σ, Haven ratio, the Arrhenius fit over the non-fixed
    runs, and the fixed-anion runs. ``loaded``: list of (trajectory, run). Returns (numbers, plot data)."""
    records = []
    for traj, run in loaded:
        try:
            records.append(_one_run(traj, run, mobile, caught))
        except ValueError as exc:
            caught.append(f"{side} {run.name}: no diffusion analysis: {exc}")
    free = [r for r in records if not r["run"].fixed]
    numbers: dict = {}
    _per_t(free, side, "D_tracer_{t}_cm2_s", "tracer_diffusivity_cm2_s", "tracer_diffusivity_err_cm2_s",
           "cm²/s", "tracer D* (MSD fit)", numbers)
    _per_t(free, side, "D_sigma_{t}_cm2_s", "collective_diffusivity_cm2_s", "collective_diffusivity_err_cm2_s",
           "cm²/s", "collective D_σ (MSD of the summed displacement)", numbers)
    _per_t(free, side, "haven_ratio_{t}", "haven_ratio", "haven_ratio_err", "", "H = D*/D_σ", numbers)
    _per_t(free, side, "sigma_{t}_mS_cm", "conductivity_mS_cm", "conductivity_err_mS_cm", "mS/cm",
           "Nernst–Einstein σ with D_σ", numbers)
    plot = {"msd": [(r["run"].temperature_K, r["run"].name, r["t_ps"], r["msd_A2"]) for r in free],
            "arrhenius": _arrhenius(free, side, numbers, caught), "fixed": {}}
    fixed = [r for r in records if r["run"].fixed]
    for cls in ("O_e", "O_c"):
        recs = [r for r in fixed if r["run"].fix == cls]
        _per_t(recs, side, f"D_fixed_{cls}_{{t}}_cm2_s", "tracer_diffusivity_cm2_s",
               "tracer_diffusivity_err_cm2_s", "cm²/s", f"tracer D* with {cls} held fixed", numbers)
        _fixed_ratios(recs, cls, side, numbers, plot)
    return numbers, plot


def _fixed_ratios(recs, cls: str, side: str, numbers: dict, plot: dict) -> None:
    """D*(cls fixed) / D*(unconstrained) per temperature."""
    for t in sorted({r["run"].temperature_K for r in recs}):
        k_fix, k_free = f"D_fixed_{cls}_{tkey(t)}_cm2_s", f"D_tracer_{tkey(t)}_cm2_s"
        a, b = numbers.get(k_fix), numbers.get(k_free)
        plot["fixed"].setdefault(t, {})[cls] = a
        plot["fixed"][t]["none"] = b
        if a is None or b is None or not a["value"] or not b["value"] or b["value"] <= 0:
            continue
        ratio = a["value"] / b["value"]
        err = None
        if a["uncertainty"] is not None and b["uncertainty"] is not None:
            err = abs(ratio) * math.hypot(a["uncertainty"] / a["value"], b["uncertainty"] / b["value"])
        numbers[f"D_fixed_{cls}_{tkey(t)}_over_free"] = number(
            ratio, "", side, a["source"] + ", " + b["source"], uncertainty=err,
            converged=a["converged"] and b["converged"],
            note=f"D*({cls} fixed) / D*(unconstrained) at {t:g} K")
