"""Plots of :func:`phonion.mdma.phonons.phonon_summary` results (matplotlib, explicit Agg canvas; files only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["plot_dos", "plot_band", "plot_phonon_results"]


def _figure(**kwargs):
    """A Figure on its own Agg canvas (the global matplotlib backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def plot_dos(summary: dict, path: str | os.PathLike) -> Path:
    """``dos.png``: total DOS, projected DOS by species and (dashed) by O class."""
    d, pd = summary["dos"], summary["pdos"]
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(d["frequency_THz"], d["total"], color="k", lw=1.2, label="total")
    for s, g in pd["by_species"].items():
        ax.plot(pd["frequency_THz"], g, lw=1.0, label=s)
    for c, g in pd["by_class"].items():
        ax.plot(pd["frequency_THz"], g, lw=1.0, ls="--", label=c)
    centre = summary.get("li_band_centre_THz")
    if centre is not None and np.isfinite(centre):
        ax.axvline(centre, color="grey", lw=0.8, ls=":",
                   label=f"{summary.get('mobile', 'Li')} centre {centre:.2f} THz")
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("DOS (states/THz per cell)")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    return Path(path)


def plot_band(summary: dict, path: str | os.PathLike) -> Path:
    """``band.png``: phonon bands along the path, special points labelled, breaks marked."""
    b = summary["band"]
    fig = _figure(figsize=(7, 4))
    ax = fig.subplots()
    ticks, tick_labels = [], []
    labels = list(b["labels"])
    li = 0
    for k, (dist, f) in enumerate(zip(b["distances"], b["frequencies_THz"])):
        ax.plot(dist, f, color="C0", lw=0.8)
        start_of_branch = k == 0 or not b["connections"][k - 1]
        if start_of_branch and li < len(labels):
            if ticks and np.isclose(ticks[-1], dist[0]):
                tick_labels[-1] = f"{tick_labels[-1]}|{labels[li]}"
            else:
                ticks.append(dist[0])
                tick_labels.append(labels[li])
            li += 1
        if li < len(labels):
            ticks.append(dist[-1])
            tick_labels.append(labels[li])
            li += 1
    for t in ticks:
        ax.axvline(t, color="grey", lw=0.5)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xticks(ticks, tick_labels)
    ax.set_xlim(b["distances"][0][0], b["distances"][-1][-1])
    ax.set_ylabel("frequency (THz)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    return Path(path)


def plot_phonon_results(summary: dict, directory: str | os.PathLike) -> dict[str, Path]:
    """``dos.png`` and ``band.png`` in ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return {"dos_png": plot_dos(summary, out / "dos.png"),
            "band_png": plot_band(summary, out / "band.png")}
