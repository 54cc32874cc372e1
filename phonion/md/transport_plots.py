"""Figures for diffusion, Arrhenius and VDOS results (matplotlib, explicit Agg canvas; files only, no windows).

Each ``plot_*`` takes a result object and an output path, writes one PNG and returns its path.
Numerics live in :mod:`phonion.md.diffusion`, :mod:`phonion.md.conductivity` and :mod:`phonion.md.vdos`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phonion.md.diffusion import local_slope


def _figure(**kwargs):
    """A Figure on its own Agg canvas (the global matplotlib backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_msd(result, path) -> Path:
    """Tracer and collective MSD with the fit window shaded and the fitted lines; the local
    log–log slope with the 1 ± tolerance band; the Green–Kubo running integral.

    ``result`` is a :class:`phonion.md.diffusion_run.DiffusionResult`.
    """
    t_ps = result.tracer.times_fs / 1e3
    a, b = result.fit_range_ps
    fig = _figure(figsize=(14, 4.2))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    tr = result.tracer.msd_A2.sum(axis=1)
    co = result.collective.msd_A2.sum(axis=1)
    ax.plot(t_ps, tr, color="C0", label=f"tracer {result.species}")
    for d, ls in zip("xyz", (":", "--", "-.")):
        ax.plot(t_ps, 3 * result.tracer.msd_A2[:, "xyz".index(d)], color="C0", lw=0.7, ls=ls,
                label=f"3 × MSD_{d}")
    ax.plot(t_ps, co, color="C1", label="collective |ΣΔr|²/N_c")
    for fit, color, name in ((result.tracer_fit, "C0", "D*"), (result.collective_fit, "C1", "D_σ")):
        tt = np.array([a, b])
        ax.plot(tt, fit.intercept_A2 + fit.slope_A2_fs * tt * 1e3, color=color, lw=2.5, alpha=0.5,
                label=f"{name} = {fit.diffusivity_cm2_s:.3g} ± {fit.error_cm2_s:.2g} cm²/s")
    ax.axvspan(a, b, color="0.85", zorder=0, label="fit window")
    ax.set(xlabel="t (ps)", ylabel="MSD (Å²)", title=f"MSD (fit start: {result.window[2]})")
    ax.legend(fontsize=7)
    ax = axes[1]
    alpha = local_slope(tr)
    tol = result.metadata.get("slope_tolerance", 0.1)
    ax.semilogx(t_ps[1:], alpha[1:], color="C0")
    ax.axhspan(1 - tol, 1 + tol, color="C2", alpha=0.2, label=f"1 ± {tol:g}")
    ax.axvspan(a, b, color="0.85", zorder=0)
    ax.set(xlabel="t (ps)", ylabel="d ln MSD / d ln t", ylim=(0, 2.2), title="local slope (tracer)")
    ax.legend(fontsize=7)
    ax = axes[2]
    gk = result.green_kubo
    if gk is not None:
        ax.plot(gk.times_fs / 1e3, gk.running_cm2_s, color="C3", label="running ∫⟨V·V⟩/(3N_c)")
        w0, w1 = (w * result.frame_interval_fs / 1e3 for w in gk.window[:2])
        ax.axvspan(w0, w1, color="C3", alpha=0.15, label="GK window")
        ax.axhline(gk.diffusivity_cm2_s, color="C3", ls="--",
                   label=f"D_σ(GK) = {gk.diffusivity_cm2_s:.3g} cm²/s")
        ax.axhline(result.collective_fit.diffusivity_cm2_s, color="C1", ls=":", label="D_σ(MSD)")
        ax.set_xlim(0, b)
    ax.set(xlabel="τ (ps)", ylabel="D (cm²/s)", title="Green–Kubo")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_arrhenius(fit, path, target_temperature_K: float = 300.0) -> Path:
    """ln D vs 1000/T with error bars, the weighted fit, and its ±1σ band extrapolated to the target.

    ``fit`` is a :class:`phonion.md.conductivity.ArrheniusFit`.
    """
    t = fit.temperatures_K
    inv = np.linspace(1000.0 / t.max() * 0.97, 1000.0 / min(target_temperature_K, t.min()) * 1.02, 200)
    d, lo, hi, _ = fit.predict(1000.0 / inv)
    fig = _figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    err = fit.diffusivity_errs_cm2_s
    yerr = None if np.isnan(err).all() else [fit.diffusivities_cm2_s - np.maximum(
        fit.diffusivities_cm2_s - err, fit.diffusivities_cm2_s * 1e-3), err]
    ax.errorbar(1000.0 / t, fit.diffusivities_cm2_s, yerr=yerr, fmt="o", color="C0", label="MD")
    ax.plot(inv, d, color="C1", label=f"E_a = {fit.activation_energy_eV:.3f} ± {fit.activation_energy_err_eV:.3f} eV")
    ax.fill_between(inv, lo, hi, color="C1", alpha=0.25, label="±1σ")
    dt, dlo, dhi, _ = fit.predict(target_temperature_K)
    ax.errorbar([1000.0 / target_temperature_K], [dt], yerr=[[dt - dlo], [dhi - dt]], fmt="s", color="C3",
                label=f"D({target_temperature_K:g} K) = {dt:.3g} cm²/s")
    ax.set_yscale("log")
    ax.set(xlabel="1000 / T (1/K)", ylabel="D (cm²/s)", title="Arrhenius")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_vdos(result, path, groups=None, reference=None) -> Path:
    """One panel per group (default all), and, if given, a reference VDOS (e.g. decoupled) dashed.

    ``result``, ``reference`` are :class:`phonion.md.vdos.VDOS`.
    """
    names = list(groups or result.spectra)
    fig = _figure(figsize=(6.5, 1.6 + 1.4 * len(names)))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        ax.plot(result.frequencies_THz, result.spectra[name], color="C0", lw=1)
        if reference is not None and name in reference.spectra:
            ax.plot(reference.frequencies_THz, reference.spectra[name], color="C3", lw=1, ls="--",
                    label="reference")
            ax.legend(fontsize=7)
        ax.set_ylabel(f"{name}\n(1/THz)", fontsize=8)
    f = result.frequencies_THz
    top = 0.0
    for name in names:  # show up to where 99.9 % of every group's weight lies (not the Nyquist)
        c = np.cumsum(np.abs(result.spectra[name]))
        top = max(top, f[min(np.searchsorted(c, 0.999 * c[-1]), f.size - 1)])
    axes[-1, 0].set_xlim(0, min(f[-1], 1.15 * top + 2 * (f[1] - f[0])))
    axes[-1, 0].set_xlabel("frequency (THz)")
    axes[0, 0].set_title(f"VDOS (each group ∫ = 3 n; window {result.window_fs / 1e3:g} ps, {result.taper})")
    return _save(fig, path)


__all__ = ["plot_arrhenius", "plot_msd", "plot_vdos"]
