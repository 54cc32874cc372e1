"""Plots of ``phonion anharmonicity`` (matplotlib, explicit Agg canvas; files only).

- ``sigma_A.png``: σ_A in total, per species and per O class (bars; none without forces).
- ``linewidths.png``: linewidth (FWHM, with errors) and frequency shift (peak − harmonic) of every fitted mode
  against its harmonic frequency, coloured by the mode's dominant O class; the frequency resolution as a line.
- ``mode_spectra.png``: the power spectra of the top MDMA modes with their Lorentzian fits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from phonion.mdma.mdma_plots import CLASS_COLOURS, _figure, _save

__all__ = ["plot_sigma_a", "plot_linewidths", "plot_mode_spectra", "plot_anharmonicity"]


def plot_sigma_a(summary: dict, path: str | os.PathLike) -> Path | None:
    """Bars of σ_A: total, by species, by O class. None when σ_A is null (no forces)."""
    if summary.get("sigma_A") is None:
        return None
    labels, values, colours, errs = ["all"], [summary["sigma_A"]], ["0.3"], [summary.get("sigma_A_err")]
    sp_err, cl_err = summary.get("sigma_A_by_species_err") or {}, summary.get("sigma_A_by_class_err") or {}
    for s, v in (summary.get("sigma_A_by_species") or {}).items():
        labels.append(s), values.append(v), colours.append("0.6"), errs.append(sp_err.get(s))
    for c, v in (summary.get("sigma_A_by_class") or {}).items():
        labels.append(c), values.append(v), colours.append(CLASS_COLOURS.get(c, "0.6")), errs.append(cl_err.get(c))
    fig = _figure(figsize=(max(4.0, 0.6 * len(labels)), 3.2))
    ax = fig.add_subplot()
    ax.bar(labels, [np.nan if v is None else v for v in values], color=colours,
           yerr=[np.nan if e is None else e for e in errs], capsize=3)
    ax.set_ylabel("σ_A (± block-averaging SE)")
    ax.set_title(f"σ_A (hopping {summary.get('hopping', {}).get('handling')})", fontsize=9)
    return _save(fig, path)


def plot_linewidths(summary: dict, path: str | os.PathLike) -> Path:
    """Linewidth and shift of the fitted modes against the harmonic frequency, by O class."""
    fig = _figure(figsize=(6.4, 5.6))
    ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2, sharex=None)
    fitted = [m for m in summary["modes"] if m["status"] == "fitted"]
    for cls in ("O_e", "O_c", "O_n", None):
        sel = [m for m in fitted if m["class"] == cls]
        if not sel:
            continue
        f = [m["harmonic_frequency_THz"] for m in sel]
        ax1.errorbar(f, [m["linewidth_THz"] for m in sel], yerr=[m["linewidth_err_THz"] for m in sel], fmt="o",
                     ms=3, color=CLASS_COLOURS.get(cls or "", "0.55"), label=cls or "no class")
        ax2.errorbar(f, [m["frequency_shift_THz"] for m in sel], yerr=[m["peak_frequency_err_THz"] for m in sel],
                     fmt="o", ms=3, color=CLASS_COLOURS.get(cls or "", "0.55"))
    ax1.axhline(summary["frequency_resolution_THz"], color="k", ls=":", lw=0.8, label="resolution")
    ax1.set_ylabel("linewidth (FWHM), THz")
    ax1.legend(fontsize=7)
    n_other = len(summary["modes"]) - len(fitted)
    ax1.set_title(f"{len(fitted)} modes fitted, {n_other} not (see modes.csv status)", fontsize=9)
    ax2.axhline(0.0, color="k", lw=0.6)
    ax2.set_xlabel("harmonic frequency, THz")
    ax2.set_ylabel("peak − harmonic, THz")
    return _save(fig, path)


def plot_mode_spectra(summary: dict, spectra: dict, path: str | os.PathLike) -> Path:
    """Spectra of the top MDMA modes (``summary["top_mdma_modes"]``) with their fits."""
    from phonion.mdma.linewidths import window_lorentzian

    top = list(summary.get("top_mdma_modes") or [])[:6]
    fig = _figure(figsize=(7.0, 1.9 * max(1, len(top))))
    f, power = spectra["frequencies_THz"], spectra["power"]
    dt_ps = spectra["dt_fs"] * 1e-3
    for k, idx in enumerate(top):
        ax = fig.add_subplot(max(1, len(top)), 1, k + 1)
        m = summary["modes"][idx]
        ax.plot(f, power[:, idx], color="0.5", lw=0.7)
        if m["status"] == "fitted":
            # amplitude and background of the drawn fit from a one-parameter least squares on the shape
            shape = window_lorentzian(f, m["peak_frequency_THz"], m["linewidth_THz"], 1.0, 0.0, spectra["n"], dt_ps)
            a = float(shape @ power[:, idx] / max(shape @ shape, 1e-300))
            ax.plot(f, a * shape, color=CLASS_COLOURS.get(m["class"] or "", "C1"), lw=1.2)
        ax.axvline(m["harmonic_frequency_THz"], color="k", ls=":", lw=0.8)
        ax.set_xlim(0, min(f[-1], 1.6 * max(m["harmonic_frequency_THz"], 1.0)))
        lw = "—" if m["linewidth_THz"] is None else f"{m['linewidth_THz']:.3f} ± {m['linewidth_err_THz']:.3f}"
        ax.set_title(f"mode {idx} ({m['class'] or '-'}), harmonic {m['harmonic_frequency_THz']:.2f} THz: "
                     f"{m['status']}, FWHM {lw} THz", fontsize=8)
    fig.axes[-1].set_xlabel("frequency, THz") if fig.axes else None
    return _save(fig, path)


def plot_anharmonicity(summary: dict, spectra: dict, directory: str | os.PathLike) -> dict[str, Path]:
    """All three figures into ``directory``; returns ``{name: path}``."""
    d = Path(directory)
    out = {"linewidths_png": plot_linewidths(summary, d / "linewidths.png"),
           "mode_spectra_png": plot_mode_spectra(summary, spectra, d / "mode_spectra.png")}
    s = plot_sigma_a(summary, d / "sigma_A.png")
    if s is not None:
        out["sigma_A_png"] = s
    return out
