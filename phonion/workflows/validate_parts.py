"""Pieces of the fit-for-MD gate (``phonion.workflows.validate``): the reference runs and their held-out frames,
predictions with the committee spread, closest approaches, RDF first peaks, and the RDF figure."""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

import numpy as np


# ---- reference side -------------------------------------------------------------------------------
def reference_files(reference) -> list[str]:
    """The reference trajectories: ``DIR/*K/traj.h5`` (sorted by temperature) or the files given."""
    if isinstance(reference, (list, tuple)):
        files = [str(f) for f in reference]
    elif Path(reference).is_dir():
        files = glob.glob(os.path.join(str(reference), "*K", "traj.h5")) or sorted(
            str(p) for p in Path(reference).glob("*.h5"))
    else:
        files = sorted(glob.glob(str(reference))) or [str(reference)]
    missing = [f for f in files if not Path(f).is_file()]
    if missing or not files:
        raise ValueError(f"{reference}: no reference trajectories found"
                         + (f" ({missing[0]} does not exist)" if missing else
                            " (expected <T>K/traj.h5 as written by phonion reference)"))
    from phonion.mlip.data import temperature_from_name

    return sorted(files, key=lambda f: temperature_from_name(f) or 0.0)


def load_reference(files: list[str], held_out_fraction: float) -> dict:
    """Reference runs: trajectories, temperatures, held-out frames (REF_* labels), all frames."""
    from phonion.md.io import read_trajectory
    from phonion.mlip.data import KEYS, run_temperature

    runs, held_out = [], []
    for path in files:
        traj = read_trajectory(path)
        usable = traj.frames_with("forces") & traj.frames_with("energies")
        if not usable.any():
            raise ValueError(f"{path}: no frame has both energy and forces; not a reference run")
        temp = run_temperature(traj, [path])
        start = int(math.floor(traj.n_frames * (1.0 - held_out_fraction)))
        for i in np.flatnonzero(usable[start:]) + start:
            atoms = traj.to_atoms(int(i))
            atoms.info[KEYS["energy"]] = float(traj.energies[i])
            atoms.arrays[KEYS["forces"]] = np.array(traj.forces[i])
            atoms.info["temperature_K"] = np.nan if temp is None else temp
            held_out.append(atoms)
        runs.append({"file": path, "traj": traj, "temperature_K": temp})
    return {"runs": runs, "held_out": held_out}


def predict_with_spread(calculator, frames) -> dict:
    """``phonion.mlip.evaluate.predict`` arrays plus the committee spread of every frame.

    Adds ``force_std`` (ΣN,) eV/Å — the per-atom norm of the committee standard deviation of the
    force (NaN for a single model) — and ``frame_force_error`` / ``frame_force_std`` (F,): per frame
    the RMS force error and the RMS committee spread, for the calibration of the uncertainty.
    """
    from phonion.mlip.evaluate import predict

    parts, stds = [], []
    for atoms in frames:  # one frame at a time: the calculator's results then hold its variance
        parts.append(predict(calculator, [atoms]))
        var = (getattr(calculator, "results", None) or {}).get("forces_var")
        stds.append(np.sqrt(np.asarray(var).sum(axis=1)) if var is not None else np.full(len(atoms), np.nan))
    if not parts:
        raise ValueError("no held-out frames to evaluate")
    pred = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    pred["force_std"] = np.concatenate(stds) if stds else np.zeros(0)
    n = pred["n_atoms"].astype(int)
    bounds = np.concatenate([[0], np.cumsum(n)])
    df = pred["forces_pred"] - pred["forces_ref"]
    pred["frame_force_error"] = np.array([np.sqrt(np.mean(df[a:b] ** 2)) for a, b in zip(bounds[:-1], bounds[1:])])
    pred["frame_force_std"] = np.array([np.sqrt(np.mean(pred["force_std"][a:b] ** 2))
                                        for a, b in zip(bounds[:-1], bounds[1:])])
    return pred


_SPREAD_KEYS = ("force_std", "frame_force_error", "frame_force_std")


def closest_approach(frames_or_trajs, cutoff_A: float = 4.0) -> dict:
    """Shortest distance of every species pair (``"A-B"``, sorted symbols) over frames, Å.

    ``frames_or_trajs``: ase.Atoms, or Trajectory objects (all their frames). Periodic images
    included (``phonion.md.guards.closest_pairs``); pairs never within ``cutoff_A`` are absent.
    """
    from phonion.md.guards import closest_pairs

    best: dict[str, float] = {}
    for item in frames_or_trajs:
        frames = (item.to_atoms(f) for f in range(item.n_frames)) if hasattr(item, "to_atoms") else [item]
        for atoms in frames:
            for key, (d, _, _) in closest_pairs(atoms, None, cutoff_A).items():
                best[key] = min(d, best.get(key, np.inf))
    return dict(sorted(best.items()))


#: RDF first peaks: Gaussian smoothing (Å: 0.15 merges the two humps of a broad shell such as
#: Se–Se near 4.3 Å, whose argmax otherwise jumps by 0.16 Å between equally good runs; sharp
#: peaks keep their position), histogram bin (Å), the smallest smoothed reference peak
#: height that counts as a coordination shell (a minority pair with 8 atoms has no clear first
#: peak in a short run: its "peak" moves by tenths of an Å with noise), and the margin below r_max
RDF_SMOOTH_A, RDF_BIN_A, RDF_MIN_PEAK, RDF_EDGE_A = 0.15, 0.02, 2.0, 0.3


def rdf_peaks(traj, max_frames: int = 200) -> dict:
    """First-peak position (Å) and height of every partial RDF of a run.

    The RDFs are ``phonion.md.rdf.partial_rdf`` (bins of ``RDF_BIN_A``); each is smoothed by
    a Gaussian of ``RDF_SMOOTH_A`` and its first peak is the first local maximum after g first
    exceeds 0.5. Returns ``{"peaks": {pair: (r_A, height)}, "r_A", "g", "r_max_A"}``.
    """
    from scipy.ndimage import gaussian_filter1d

    from phonion.md.rdf import RDF_MAX_A, half_width, partial_rdf

    step = max(1, int(math.ceil(traj.n_frames / max_frames)))
    cells = traj.cells[::step]
    r_max = min(RDF_MAX_A, min(half_width(c) for c in cells) - 1e-6)
    r, g = partial_rdf(traj.positions[::step], cells, traj.symbols, r_max, RDF_BIN_A)
    peaks = {}
    for pair, gp in g.items():
        gs = gaussian_filter1d(gp, RDF_SMOOTH_A / RDF_BIN_A)
        above = np.flatnonzero(gs > 0.5)
        if not above.size:
            peaks[pair] = None
            continue
        k = int(above[0])
        while k + 1 < gs.size and gs[k + 1] >= gs[k]:
            k += 1
        peaks[pair] = (float(r[k]), float(gs[k]))
    return {"peaks": peaks, "r_A": r, "g": g, "r_max_A": r_max}


def rdf_shifts(ref: dict, mlip: dict) -> tuple[dict, list]:
    """|first-peak shift| (Å) of every pair whose reference peak is a coordination shell
    (smoothed height ≥ ``RDF_MIN_PEAK``, ≥ ``RDF_EDGE_A`` inside r_max); pairs skipped as too
    noisy are listed with the reason. A pair whose MLIP RDF has no peak gets None (a failure)."""
    shifts, skipped = {}, []
    for pair, pa in ref["peaks"].items():
        if pa is None or pa[1] < RDF_MIN_PEAK or pa[0] > ref["r_max_A"] - RDF_EDGE_A:
            skipped.append(f"{pair} (no clear reference first peak"
                           + ("" if pa is None else f": g = {pa[1]:.2f} at {pa[0]:.2f} Å") + ")")
            continue
        pb = mlip["peaks"].get(pair)
        shifts[pair] = None if pb is None else abs(pb[0] - pa[0])
    return shifts, skipped


def _frame_max_spread(pred: dict) -> np.ndarray:
    """Largest per-atom committee force spread of every held-out frame, eV/Å (NaN-free)."""
    n = pred["n_atoms"].astype(int)
    bounds = np.concatenate([[0], np.cumsum(n)])
    out = np.array([np.nanmax(pred["force_std"][a:b]) if b > a else np.nan for a, b in zip(bounds[:-1], bounds[1:])])
    return out[np.isfinite(out)]


def _check(value, limit, passed) -> dict:
    return {"value": value, "limit": limit, "passed": bool(passed)}


def _spearman(x, y) -> float | None:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 5:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x[ok], y[ok]).statistic)


def _plot_rdf(rdf: dict, path: Path) -> None:
    """Partial RDFs, reference vs MLIP validation run, one panel per pair (explicit Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    a, b = rdf.get("reference"), rdf.get("mlip")
    pairs = sorted(a["g"]) if a else []
    ncol = 4
    nrow = max(1, math.ceil(len(pairs) / ncol))
    fig = Figure(figsize=(3.2 * ncol, 2.4 * nrow), layout="constrained")
    FigureCanvasAgg(fig)
    for k, pair in enumerate(pairs):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        ax.plot(a["r_A"], a["g"][pair], color="k", lw=1.2, label=f"reference {rdf['t_ref']:g} K")
        if b and pair in b["g"]:
            ax.plot(b["r_A"], b["g"][pair], color="C3", lw=1.0, ls="--", label=f"MLIP {rdf['t_mlip']:g} K")
        ax.set_title(pair, fontsize=9)
        ax.set_xlabel("r (Å)", fontsize=8)
        if k == 0:
            ax.legend(fontsize=7)
    if not pairs:
        fig.add_subplot(1, 1, 1).text(0.5, 0.5, "no validation frames", ha="center")
    fig.savefig(path, dpi=90)
