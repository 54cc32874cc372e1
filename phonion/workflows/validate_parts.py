"""Pieces of the fit-for-MD gate (``phonion.workflows.validate``): the reference runs and their held-out frames,
predictions with the committee spread, closest approaches, RDF first peaks, and the RDF figure."""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

import numpy as np

from phonion.md.rdf import PEAK, first_peaks, peak_shifts


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


#: RDF first peaks: the one definition of ``phonion.md.rdf`` (``PEAK``: smoothing, FWHM-centroid of the first shell, block
#: uncertainty, what counts as a shell and as resolved); re-exported under the names used before
RDF_SMOOTH_A, RDF_BIN_A, RDF_MIN_PEAK = PEAK["smooth_A"], PEAK["bin_A"], PEAK["min_height"]


def rdf_peaks(traj, max_frames: int = 200) -> dict:
    """First peaks of every partial RDF of a run (``phonion.md.rdf.first_peaks``)."""
    return first_peaks(traj.positions, traj.cells, traj.symbols, max_frames)


def rdf_shifts(ref: dict, mlip: dict) -> tuple[dict, list]:
    """({pair: |MLIP − reference| first-peak shift, Å, or None when the MLIP lost the peak} of the
    compared pairs, ["pair (why not compared)", ...]) — ``phonion.md.rdf.peak_shifts``."""
    res = peak_shifts(ref, mlip)
    shifts = {k: None if v["shift_A"] is None else abs(v["shift_A"]) for k, v in res["shifts"].items()}
    return shifts, [f"{k} ({why})" for k, why in res["not_compared"].items()]


def coordination_check(ref: dict, ref_run: dict, runs: list[dict], t_rdf: float) -> dict:
    """Coordination numbers of the reference's bonded shells (``phonion.md.coordination``) in the gate.

    The MLIP's count at the reference run's measured mean T (linear between the complete validation
    runs, ``phonion.md.rdf.bracket``), over the same stretch from the start as the reference run
    covers, against the reference run's: a potential whose framework differs fails even when its
    first peaks stay in place. ``value`` = the largest |difference| (neighbours per centre atom).
    The drift (last − first quarter) of each validation run is reported, not judged: over 1.6 ps
    CHGNet's own LiGa(SeO3)2 loses Ga–O bonds at 1300–1430 K (−0.23 / −0.70), so a change beyond
    the reference's run is not by itself a fault of the potential.
    """
    from phonion.md.coordination import coordination_numbers, first_frames, reference_shells
    from phonion.md.rdf import bracket, bracket_text

    def cn(traj, duration_fs=None):
        n = first_frames(traj.n_frames, traj.frame_interval_fs, duration_fs)
        return coordination_numbers(traj.positions[:n], np.asarray(traj.cells)[:n] if np.ndim(traj.cells) == 3
                                    else traj.cells, traj.symbols, shells)

    shells, source = reference_shells([{"run": r["file"], "rdf": rdf_peaks(r["traj"]), "symbols": list(r["traj"].symbols)}
                                       for r in ref["runs"]])
    out = {"shells": shells, "shells_from": source, "difference": {}, "drift": {}, "value": None, "compared_at": None}
    if not shells:
        out["note"] = "the reference has no bonded shell separated from the next (nothing to count)"
        return out
    mlip = {r["run"]: r for r in runs if r["traj"] is not None and r["traj"].n_frames >= 8}
    out["drift"] = {name: {p: v["drift"] for p, v in cn(r["traj"]).items()} for name, r in mlip.items()}
    rt = ref_run["traj"]
    t_ref = None if rt.temperatures_K is None or not len(rt.temperatures_K) else float(np.mean(rt.temperatures_K))
    span = None if rt.frame_interval_fs is None else rt.frame_interval_fs * (rt.n_frames - 1)
    done = {k: r["mean_temperature_K"] for k, r in mlip.items() if r["status"] == "complete"}
    k1, k2, w, how = bracket(done, t_ref)
    if k1 is None and done:  # the complete run at the RDF set-point (or nearest it), said so
        k1 = k2 = min(done, key=lambda k: abs(mlip[k]["temperature_K"] - t_rdf))
        w, how = 0.0, f"{how}: MLIP run {k1} at {mlip[k1]['temperature_K']:g} K alone"
    if k1 is not None:
        want, a, b = cn(rt), cn(mlip[k1]["traj"], span), cn(mlip[k2]["traj"], span)
        out["difference"] = {p: (1 - w) * a[p]["cn"] + w * b[p]["cn"] - want[p]["cn"] for p in shells}
        out["compared_at"] = how if isinstance(how, str) else bracket_text(how, t_ref, k1, k2)
        out["over_fs"] = span
        out["value"] = max(abs(v) for v in out["difference"].values())
    return out


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
