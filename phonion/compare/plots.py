"""Figures of ``phonion compare``: reference and MLIP overlaid (matplotlib, explicit Agg canvas; PNG files only).

Each ``plot_*`` takes the plot data of both sides (``None`` for a side without it), the two side labels
and an output path, writes one PNG and returns its path. Reference: solid, black; MLIP: dashed, red.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["plot_rdf", "plot_vdos", "plot_msd", "plot_arrhenius", "plot_phonon_dos", "plot_mdma", "plot_pfc",
           "plot_fixed"]

STYLE = {"reference": dict(color="k", ls="-", lw=1.2), "mlip": dict(color="C3", ls="--", lw=1.2)}
SIDES = ("reference", "mlip")


def _figure(**kwargs):
    """A Figure on its own Agg canvas (the global matplotlib backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


NAMES = {"reference": "reference", "mlip": "MLIP"}


def _title(fig, labels: dict) -> None:
    """Both sides' labels above the panels, wrapped to the figure's width (never clipped at its edges)."""
    import textwrap

    text = "   ".join(f"{NAMES[s]}: {labels[s]}" for s in SIDES)
    width = max(30, int(fig.get_figwidth() * 14))  # characters of 8-pt text per figure inch
    fig.suptitle("\n".join(textwrap.wrap(text, width)), fontsize=8)


def _save(fig, path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:  # grids of panels are laid out by _grid (tight_layout costs seconds there)
        lines = fig._suptitle.get_text().count("\n") + 1 if fig._suptitle is not None else 0
        fig.tight_layout(rect=(0, 0, 1, 1 - (0.05 + 0.15 * lines) / fig.get_figheight()))  # room for the title
    fig.savefig(path, dpi=90, pil_kwargs={"compress_level": 3})
    return path


def _grid(n: int, ncols: int = 4, w: float = 3.2, h: float = 2.4):
    ncols = min(ncols, max(n, 1))
    nrows = int(math.ceil(n / ncols))
    fig = _figure(figsize=(w * ncols, h * nrows + 0.4))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.subplots_adjust(left=0.5 / (w * ncols), right=0.99, bottom=0.5 / (h * nrows + 0.4),
                        top=1 - 0.6 / (h * nrows + 0.4), wspace=0.35, hspace=0.6)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax in axes.ravel():
        ax.tick_params(labelsize=7)
    return fig, axes.ravel()


def plot_rdf(data: dict, labels: dict, path) -> Path:
    """Partial g(r) per element pair, both sides. ``data[side]``: {"r_A", "g": {pair: (B,)}} or None."""
    pairs = list(dict.fromkeys(p for s in SIDES if data.get(s) for p in data[s]["g"]))
    fig, axes = _grid(len(pairs))
    for ax, pair in zip(axes, pairs):
        for s in SIDES:
            if data.get(s) and pair in data[s]["g"]:
                ax.plot(data[s]["r_A"], data[s]["g"][pair], label=NAMES[s], **STYLE[s])
        ax.axhline(1.0, color="0.6", lw=0.6)
        ax.set(title=pair, xlabel="r (Å)", ylabel="g(r)")
    axes[0].legend(fontsize=7)
    _title(fig, labels)
    return _save(fig, path, tight=False)


def plot_vdos(data: dict, groups: list, labels: dict, path) -> Path:
    """VDOS per group (each ∫ = 3 n). ``data[side]``: an ``phonion.md.vdos.VDOS`` or None."""
    fig, axes = _grid(len(groups), ncols=3, w=4.0)
    top = 0.0
    for s in SIDES:
        res = data.get(s)
        if res is None:
            continue
        f = res.frequencies_THz
        for name in groups:
            if name in res.spectra:
                c = np.cumsum(np.abs(res.spectra[name]))
                top = max(top, f[min(np.searchsorted(c, 0.99 * c[-1]), f.size - 1)])  # 99 % of the weight
    for ax, name in zip(axes, groups):
        for s in SIDES:
            res = data.get(s)
            if res is not None and name in res.spectra:
                ax.plot(res.frequencies_THz, res.spectra[name], label=NAMES[s], **STYLE[s])
        ax.set(title=name, xlabel="frequency (THz)", ylabel="VDOS (1/THz)", xlim=(0, 1.1 * top + 0.5))
    axes[0].legend(fontsize=7)
    _title(fig, labels)
    return _save(fig, path, tight=False)


def plot_msd(data: dict, labels: dict, mobile: str, path) -> Path:
    """Tracer MSD of the mobile ion per non-fixed run: one panel per side, one line per run."""
    import matplotlib

    fig = _figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    temps = sorted({t for s in SIDES for (t, *_rest) in (data.get(s) or [])})
    cmap = matplotlib.colormaps["viridis"]
    for ax, s in zip(axes, SIDES):
        for t, name, t_ps, msd in sorted(data.get(s) or [], key=lambda row: (row[0], row[1])):  # by T, not text
            k = temps.index(t) / max(len(temps) - 1, 1)
            ax.plot(t_ps, msd, color=cmap(0.9 * k), lw=1, label=f"{t:g} K ({name})")
        ax.set(title=NAMES[s], xlabel="t (ps)", ylabel=f"{mobile} MSD (Å²)")
        if data.get(s):
            ax.legend(fontsize=6)
    _title(fig, labels)
    return _save(fig, path)


def plot_arrhenius(data: dict, labels: dict, path) -> Path:
    """D* vs 1000/T with error bars and each side's weighted Arrhenius line extrapolated to 300 K."""
    fig = _figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for s in SIDES:
        fit = data.get(s)
        if fit is None:
            continue
        st = STYLE[s]
        t = fit.temperatures_K
        err = fit.diffusivity_errs_cm2_s
        yerr = None if np.isnan(err).all() else np.vstack([np.minimum(err, 0.999 * fit.diffusivities_cm2_s), err])
        ax.errorbar(1000.0 / t, fit.diffusivities_cm2_s, yerr=yerr, fmt="o", color=st["color"], ms=4)
        inv = np.linspace(1000.0 / t.max() * 0.97, 1000.0 / 300.0, 100)
        d, lo, hi, _ = fit.predict(1000.0 / inv)
        ax.plot(inv, d, label=f"{NAMES[s]}: E_a = {1e3 * fit.activation_energy_eV:.0f} ± "
                              f"{1e3 * fit.activation_energy_err_eV:.0f} meV", **st)
        ax.fill_between(inv, lo, hi, color=st["color"], alpha=0.12)
    ax.axvline(1000.0 / 300.0, color="0.6", lw=0.6)
    ax.set_yscale("log")
    ax.set(xlabel="1000 / T (1/K)", ylabel="tracer D* (cm²/s)", title="Arrhenius (line to 300 K, ±1σ band)")
    ax.legend(fontsize=7)
    _title(fig, labels)
    return _save(fig, path)


def plot_phonon_dos(data: dict, labels: dict, path) -> Path:
    """Γ-mode phonon DOS of the MD cell per group. ``data[side]``: {"frequency_THz", "dos": {group: (K,)}}."""
    groups = list(dict.fromkeys(g for s in SIDES if data.get(s) for g in data[s]["dos"]))
    fig, axes = _grid(len(groups), ncols=3, w=4.0)
    for ax, g in zip(axes, groups):
        for s in SIDES:
            if data.get(s) and g in data[s]["dos"]:
                ax.plot(data[s]["frequency_THz"], data[s]["dos"][g], label=NAMES[s], **STYLE[s])
        ax.set(title=g, xlabel="frequency (THz)", ylabel="DOS (1/THz)")
    axes[0].legend(fontsize=7)
    _title(fig, labels)
    return _save(fig, path, tight=False)


def plot_mdma(data: dict, labels: dict, path) -> Path:
    """Cumulative MDMA contributions vs mode frequency (total, harmonic, O_e modes) and the running
    integral Σ D(τ) of the headline run of each side."""
    fig = _figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for s in SIDES:
        d = data.get(s)
        if not d or d.get("cumulative") is None:
            continue
        st = STYLE[s]
        c = d["cumulative"]
        axes[0].plot(c["frequency_THz"], c["total"], label=f"{NAMES[s]}: total", **st)
        axes[0].plot(c["frequency_THz"], c["harmonic"], label=f"{NAMES[s]}: harmonic", color=st["color"],
                     ls=":", lw=1)
        if "O_e" in c:
            axes[0].plot(c["frequency_THz"], c["O_e"], label=f"{NAMES[s]}: O_e modes", color=st["color"],
                         ls="-.", lw=1)
        r = d["running"]
        axes[1].plot(r["tau_ps"], r["total_cm2_s"], label=f"{NAMES[s]} ({d['temperature_K']:g} K)", **st)
        axes[1].plot(r["tau_ps"], r["harmonic_cm2_s"], color=st["color"], ls=":", lw=1)
    axes[0].set(xlabel="mode frequency (THz)", ylabel="cumulative share of D_σ",
                title="MDMA cumulative contributions")
    axes[1].set(xlabel="τ (ps)", ylabel="running Σ D_nn' (cm²/s)", title="running integral (dotted: harmonic)")
    for ax in axes:
        ax.axhline(0, color="0.6", lw=0.6)
        ax.legend(fontsize=6)
    _title(fig, labels)
    return _save(fig, path)


def _legend(ax, fontsize: int = 7) -> None:
    """A legend of the labelled artists only (none when nothing was drawn)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize)


def _bars(ax, names, data, key_fn):
    x = np.arange(len(names))
    for k, s in enumerate(SIDES):
        vals, errs = [], []
        for n in names:
            num = key_fn(s, n)
            vals.append(np.nan if num is None or num["value"] is None else num["value"])
            errs.append(0.0 if num is None or num["uncertainty"] is None else num["uncertainty"])
        shown = bool(np.isfinite(vals).any())  # a side without values gets no bars and no legend entry
        ax.bar(x + (k - 0.5) * 0.38, vals, 0.36, yerr=errs, color=STYLE[s]["color"], alpha=0.75, capsize=3,
               label=NAMES[s] if shown else "_nolegend_")
    ax.set_xticks(x, names, fontsize=8)


def plot_pfc(data: dict, labels: dict, mobile: str, path) -> Path:
    """mpFC(O_e), mpFC(O_c), ΔpFC and the bond pFC of both sides. ``data[side]``: that side's numbers."""
    fig = _figure(figsize=(7, 3.8))
    ax = fig.subplots()
    keys = {f"mpFC {mobile}–O_e": f"pfc_{mobile}_O_e_mpfc_eV_A2",
            f"mpFC {mobile}–O_c": f"pfc_{mobile}_O_c_mpfc_eV_A2",
            "ΔpFC": "delta_pfc_eV_A2", f"bond {mobile}–O_e": f"pfc_{mobile}_O_e_bond_eV_A2",
            f"bond {mobile}–O_c": f"pfc_{mobile}_O_c_bond_eV_A2"}
    _bars(ax, list(keys), data, lambda s, n: (data.get(s) or {}).get(keys[n]))
    ax.axhline(0, color="0.4", lw=0.6)
    ax.set(ylabel="eV/Å²", title="projected force constants (± spread over bonds)")
    _legend(ax)
    _title(fig, labels)
    return _save(fig, path)


def plot_fixed(data: dict, labels: dict, path) -> Path:
    """D* with O_e / O_c held fixed and unconstrained, per temperature and side (log scale).
    ``data[side]``: {T: {"none"|"O_e"|"O_c": number or None}}."""
    temps = sorted({t for s in SIDES for t in (data.get(s) or {})})
    fig = _figure(figsize=(4.2 * len(temps), 3.6))
    axes = fig.subplots(1, len(temps), squeeze=False)
    for ax, t in zip(axes[0], temps):
        _bars(ax, ["none", "O_e", "O_c"], data, lambda s, n: ((data.get(s) or {}).get(t) or {}).get(n))
        ax.set_yscale("log")
        ax.set(title=f"{t:g} K", ylabel="tracer D* (cm²/s)", xlabel="held fixed")
    _legend(axes[0][0])
    _title(fig, labels)
    return _save(fig, path)
