"""Plots of an :class:`~phonion.mdma.mdma.MDMAResult` (matplotlib, explicit Agg canvas; files only).

- ``running_integral.png``: Σ D_{n,n'} and its diagonal (harmonic) part integrated up to τ, with the
  Green–Kubo D_σ of the same velocities and its block error: is τmax converged?
- ``cumulative.png``: cumulative contributions vs frequency: total, harmonic, anharmonic and the O_e-, O_c-,
  O_n-dominated modes (fractions of Σ D).
- ``per_mode.png``: contribution c_n of every mode vs its frequency, coloured by the mode's dominant O class.
- ``heatmap.png``: D_{n,n'} (modes in frequency order), or the frequency-binned D_{bb'} when the result
  holds one (exact block sums of D_{n,n'}); symmetric colour scale around 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from phonion.mdma.mdma import O_CLASSES, cumulative_contributions

__all__ = ["plot_running_integral", "plot_cumulative", "plot_per_mode", "plot_heatmap", "plot_mdma_results"]

CLASS_COLOURS = {"O_e": "C3", "O_c": "C0", "O_n": "C2", "": "0.55"}


def _figure(**kwargs):
    """A Figure on its own Agg canvas (the global matplotlib backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    return Path(path)


def plot_running_integral(result, path: str | os.PathLike) -> Path:
    """Running integral of Σ D and of its diagonal vs τ, with the Green–Kubo D_σ (± block error)."""
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    tau = result.tau_ps
    ax.plot(tau, result.running_total_cm2_s, color="k", lw=1.3, label="Σ D$_{nn'}$ (total)")
    ax.plot(tau, result.running_harmonic_cm2_s, color="C1", lw=1.1, label="Σ D$_{nn}$ (harmonic)")
    ax.plot(tau, result.running_total_cm2_s - result.running_harmonic_cm2_s, color="C4", lw=1.0, ls="--",
            label="off-diagonal (anharmonic)")
    gk, err = result.collective_diffusivity_cm2_s, result.collective_diffusivity_err
    ax.axhline(gk, color="C3", lw=0.9, ls=":", label=f"Green–Kubo D$_σ$ = {gk:.3g} cm²/s")
    if np.isfinite(err):
        ax.axhspan(gk - err, gk + err, color="C3", alpha=0.12, lw=0)
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.set_xlabel("τ (ps)")
    ax.set_ylabel("∫₀^τ … dτ' (cm²/s)")
    ax.set_title(f"MDMA running integral ({result.convention})", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


def plot_cumulative(result, path: str | os.PathLike) -> Path:
    """Cumulative contributions vs frequency (fractions of Σ D)."""
    cum = cumulative_contributions(result.frequencies_THz, result.contributions_cm2_s, result.diagonal_cm2_s,
                                   result.mode_class_labels)
    f = cum["frequency_THz"]
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.step(f, cum["total"], where="post", color="k", lw=1.3, label="total")
    ax.step(f, cum["harmonic"], where="post", color="C1", lw=1.0, label="harmonic (n = n')")
    ax.step(f, cum["anharmonic"], where="post", color="C4", lw=1.0, ls="--", label="anharmonic (n ≠ n')")
    for cls in O_CLASSES:
        if cls in cum:
            ax.step(f, cum[cls], where="post", color=CLASS_COLOURS[cls], lw=1.0, label=f"{cls}-dominated")
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("cumulative fraction of Σ D")
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


def plot_per_mode(result, path: str | os.PathLike) -> Path:
    """Per-mode contributions c_n (cm²/s) vs frequency, coloured by dominant O class."""
    fig = _figure(figsize=(7, 4))
    ax = fig.subplots()
    f, c = result.frequencies_THz, result.contributions_cm2_s
    labels = (np.full(len(f), "", dtype=object) if result.mode_class_labels is None
              else np.asarray(result.mode_class_labels).astype(str))
    for cls in list(O_CLASSES) + [""]:
        sel = labels == cls
        if not sel.any():
            continue
        ax.vlines(f[sel], 0.0, c[sel], color=CLASS_COLOURS.get(cls, "0.55"), lw=1.0,
                  label=f"{cls}-dominated" if cls else "no O class")
        ax.plot(f[sel], c[sel], "o", ms=2.5, color=CLASS_COLOURS.get(cls, "0.55"))
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("contribution c$_n$ (cm²/s)")
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


def plot_heatmap(result, path: str | os.PathLike) -> Path:
    """D_{n,n'} (or the binned D_{bb'}) on a symmetric diverging colour scale."""
    fig = _figure(figsize=(5.6, 4.8))
    ax = fig.subplots()
    if result.binned_matrix_cm2_s is not None:
        D, edges = result.binned_matrix_cm2_s, result.bin_edges_THz
        vmax = float(np.abs(D).max()) or 1.0
        mesh = ax.pcolormesh(edges, edges, D, cmap="RdBu_r", vmin=-vmax, vmax=vmax, shading="flat")
        ax.set_xlabel("frequency of n' (THz, binned)")
        ax.set_ylabel("frequency of n (THz, binned)")
        ax.set_title(f"binned D$_{{bb'}}$, {len(edges) - 1} bins of {np.diff(edges)[0]:.3g} THz", fontsize=10)
    elif result.matrix_cm2_s is not None:
        D = result.matrix_cm2_s
        vmax = float(np.abs(D).max()) or 1.0
        mesh = ax.imshow(D, cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower", interpolation="nearest")
        ax.set_xlabel("mode n' (frequency order)")
        ax.set_ylabel("mode n (frequency order)")
        ax.set_title("D$_{nn'}$", fontsize=10)
    else:
        raise ValueError("the MDMA result holds neither D_{n,n'} nor a binned matrix")
    fig.colorbar(mesh, ax=ax, label="cm²/s")
    ax.set_aspect("equal")
    return _save(fig, path)


def plot_mdma_results(result, directory: str | os.PathLike) -> dict[str, Path]:
    """All four plots into ``directory``; returns {name: path}."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = {"running_integral_png": plot_running_integral(result, out / "running_integral.png"),
             "cumulative_png": plot_cumulative(result, out / "cumulative.png"),
             "per_mode_png": plot_per_mode(result, out / "per_mode.png")}
    if result.matrix_cm2_s is not None or result.binned_matrix_cm2_s is not None:
        files["heatmap_png"] = plot_heatmap(result, out / "heatmap.png")
    return files
