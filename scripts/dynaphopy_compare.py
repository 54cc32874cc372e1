"""Why phonion's and DynaPhoPy's Cu linewidths differ (issue 16): the same EMT Cu NVE trajectories through both.

    OMP_NUM_THREADS=1 python scripts/dynaphopy_compare.py --runs 50ps=/tmp/cu16 400ps=/tmp/dp16/long \\
        --phonons /tmp/cu16/cu_phonons [--dynaphopy /tmp/dpvenv/bin/python] [--figure F.png] \\
        -o scripts/results/anharmonicity_dynaphopy.json

Each run folder holds cu_300K.h5 and cu_900K.h5 (scripts/anharmonicity_checks.py ``_cu_md``: conventional 3×3×3,
108 atoms, atoms in DynaPhoPy's supercell order). Per temperature and X-point band (TA ×6, LA ×3: Γ of the cubic
cell), with the same Q̇_n(t):

- ``phonion``: ``phonion anharmonicity``'s per-mode fits (model-weighted windowed Lorentzian), averaged over the
  fitted modes of the band (error: the larger of the propagated fit errors and the scatter between modes);
- ``phonion_band``: phonion's fitter on the band's mode-averaged periodogram (what DynaPhoPy fits);
- ``dynaphopy``: DynaPhoPy 1.19 (side venv) on the same velocities: its projection, numpy-FFT spectrum and
  unweighted Lorentzian fit of the band-averaged spectrum over 0–10 THz (fitting function 0);
- ``dynaphopy_fit_on_phonion_spectrum``: DynaPhoPy's Lorentzian fit applied to phonion's band-averaged periodogram
  (separates the spectrum estimate from the fit);
- ``segments`` (runs of ≥ 8 × 50 ps): the run cut into 50-ps pieces, each fitted by phonion and by DynaPhoPy's fit:
  the mean and scatter of each estimator at the length of the short runs, and a realistic error of the whole run's
  value (scatter/√pieces) where DynaPhoPy's own (its unweighted curve_fit covariance) is much smaller.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
BANDS = {"TA": (5.0, 6.0), "LA": (7.8, 8.6)}        # harmonic X-point frequencies of EMT Cu: 5.53, 8.14 THz


def _band_mean(fits):
    ok = [x for x in fits if x["status"] == "fitted"]
    if not ok:
        return {"peak_THz": None, "width_THz": None, "width_err_THz": None, "peak_err_THz": None}
    lw = np.array([x["linewidth_THz"] for x in ok])
    prop = float(np.sqrt(np.sum(np.square([x["linewidth_err_THz"] for x in ok]))) / len(ok))
    scat = float(lw.std(ddof=1) / np.sqrt(len(ok))) if len(ok) > 1 else 0.0
    pk = np.array([x["peak_frequency_THz"] for x in ok])
    return {"peak_THz": float(pk.mean()), "peak_err_THz": float(pk.std(ddof=1) / np.sqrt(len(ok))) if len(ok) > 1
            else ok[0]["peak_frequency_err_THz"], "width_THz": float(lw.mean()), "width_err_THz": max(prop, scat)}


def _dynaphopy(python, traj, phonon, stem: Path):
    from anharmonicity_checks import _CU_FRAC

    np.savez(f"{stem}.npz", unit_cell=np.eye(3) * 3.59, scaled_positions=_CU_FRAC, symbols=np.array(["Cu"] * 4),
             fc=phonon.force_constants, fc_supercell=np.array([3, 3, 3]), md_supercell=np.array([3, 3, 3]),
             velocities=traj.velocities * 1e3, time=np.arange(traj.n_frames) * traj.frame_interval_fs * 1e-3,
             f_max_THz=10.0)
    side = str(ROOT / "scripts" / "dynaphopy_side.py")
    subprocess.run([python, side, f"{stem}.npz", f"{stem}.json", f"{stem}_spectra.npz"], check=True,
                   capture_output=True, text=True)
    return json.loads(Path(f"{stem}.json").read_text()), np.load(f"{stem}_spectra.npz")


def analyse(h5: Path, phonon, python: str, work: Path) -> dict:
    from phonion.md.io import read_trajectory
    from phonion.mdma.linewidths import fit_mode, fit_modes, modal_velocities
    from phonion.mdma.modes import modes_for_supercell

    traj = read_trajectory([h5])
    modes = modes_for_supercell(phonon, traj.to_atoms(0), 0.5)
    g = np.flatnonzero(np.abs(modes.qpoints[modes.q_index]).max(axis=1) < 1e-8)
    qd = modal_velocities(traj.velocities, traj.masses, modes.eigenvectors[:, g])
    dt_ps, n = traj.frame_interval_fs * 1e-3, traj.n_frames
    out = fit_modes(qd, traj.frame_interval_fs, modes.frequencies_THz[g])
    f, power = out["frequencies_THz"], out["power"]
    dp, dps = _dynaphopy(python, traj, phonon, work / h5.stem)
    h_dp = np.array(dp["harmonic_THz"])
    spectra, cols = {}, []
    res = {"trajectory": str(h5), "n_frames": n, "run_ps": n * dt_ps, "frequency_resolution_THz": out[
        "frequency_resolution_THz"], "mean_temperature_K": float(np.nanmean(traj.temperatures_K)), "bands": {}}
    for band, (lo, hi) in BANDS.items():
        sel = [k for k, x in enumerate(out["fits"]) if lo < x["harmonic_frequency_THz"] < hi]
        p = power[:, sel].mean(axis=1)
        spectra[band] = p
        cols.append(p[f <= 10.0])
        whole = fit_mode(f, p, float(np.mean(modes.frequencies_THz[g][sel])), n, dt_ps, len(sel))
        i_dp = int(np.flatnonzero((h_dp > lo) & (h_dp < hi))[0])
        smooth = int(np.clip(0.03 / out["frequency_resolution_THz"], 1, 25)) | 1     # a 0.03-THz boxcar (plot)
        res["bands"][band] = {
            "harmonic_THz": float(np.mean(modes.frequencies_THz[g][sel])), "degeneracy": len(sel),
            "phonion_status": [out["fits"][k]["status"] for k in sel],
            "phonion": _band_mean([out["fits"][k] for k in sel]),
            "phonion_band": {"status": whole["status"], "peak_THz": whole["peak_frequency_THz"],
                             "width_THz": whole["linewidth_THz"], "width_err_THz": whole["linewidth_err_THz"],
                             "line_shape_chi2": whole.get("line_shape_chi2")},
            "dynaphopy": {k + "_THz": dp[k + "_THz"][i_dp] for k in ("peak", "width", "peak_err", "width_err")},
            "smooth_bins": smooth}
    fq = work / f"{h5.stem}_phonion_spectra.npz"
    np.savez(fq, frequencies=f[f <= 10.0], power=np.array(cols).T)
    jo = work / f"{h5.stem}_dpfit.json"
    subprocess.run([python, str(ROOT / "scripts" / "dynaphopy_side.py"), "--fit-spectra", str(fq), str(jo)],
                   check=True, capture_output=True, text=True)
    for band, fit in zip(BANDS, json.loads(jo.read_text())["fits"]):
        res["bands"][band]["dynaphopy_fit_on_phonion_spectrum"] = fit
    if n * dt_ps >= 8 * 50.0 - 1e-6:
        seg = segments(qd, modes.frequencies_THz[g], dt_ps, 50.0, python, work / h5.stem)
        for band, v in seg.items():
            b = res["bands"][band]
            b["segments"] = v
            b["dynaphopy_width_err_realistic_THz"] = max(b["dynaphopy"]["width_err_THz"] or 0.0,
                                                         v["dynaphopy_fit"]["std"] / np.sqrt(v["dynaphopy_fit"]["n"]))
    res["_spectra"] = {"f": f, "phonion": spectra, "dp_f": dps["frequencies"],
                       "dp": {b: dps["power"][:, [i for i, x in enumerate(h_dp) if lo < x < hi]].mean(axis=1)
                              for b, (lo, hi) in BANDS.items()}}
    return res


def segments(qd, h, dt_ps: float, segment_ps: float, python: str, stem: Path) -> dict:
    """Each band's width from phonion (band-averaged and per-mode mean) and DynaPhoPy's fit on ``segment_ps`` pieces."""
    from phonion.mdma.linewidths import fit_mode, fit_modes

    n = int(round(segment_ps / dt_ps))
    k = len(qd) // n
    rows, cols = {b: [] for b in BANDS}, []
    for s in range(k):
        out = fit_modes(qd[s * n:(s + 1) * n], dt_ps * 1e3, h)
        f = out["frequencies_THz"]
        for band, (lo, hi) in BANDS.items():
            sel = np.flatnonzero((h > lo) & (h < hi))
            p = out["power"][:, sel].mean(axis=1)
            ok = [out["fits"][j]["linewidth_THz"] for j in sel if out["fits"][j]["status"] == "fitted"]
            rows[band].append([fit_mode(f, p, float(h[sel].mean()), n, dt_ps, len(sel))["linewidth_THz"],
                               float(np.mean(ok)) if ok else None])
            cols.append(p[f <= 10.0])
    np.savez(f"{stem}_seg.npz", frequencies=f[f <= 10.0], power=np.array(cols).T)
    subprocess.run([python, str(ROOT / "scripts" / "dynaphopy_side.py"), "--fit-spectra", f"{stem}_seg.npz",
                    f"{stem}_seg.json"], check=True, capture_output=True, text=True)
    dp = iter(json.loads(Path(f"{stem}_seg.json").read_text())["fits"])
    for s in range(k):
        for band in BANDS:
            rows[band][s].append(next(dp)["width_THz"])

    def stats(v):
        v = np.array([x for x in v if x is not None], float)
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "n": len(v), "values": v.round(4).tolist()}

    return {band: {"segment_ps": segment_ps, "n_segments": k,
                   **{name: stats([r[i] for r in rows[band]]) for i, name in
                      enumerate(("phonion_band", "phonion_modes_mean", "dynaphopy_fit"))}} for band in BANDS}


def langevin(python: str, work: Path, seeds=(1, 2, 3), gammas=(0.5, 3.0), run_ps=50.0) -> dict:
    """The arbiter: harmonic Langevin MD (LiO3 spring network, tests/mdma) with friction γ, whose every mode's
    velocity spectrum is a Lorentzian of FWHM γ/2π; ``run_ps`` kept after 10 ps of equilibration; both fitters on
    the same Q̇: FWHM / (γ/2π) over the modes (DynaPhoPy: its own spectrum estimate and fit of each mode)."""
    sys.path.insert(0, str(ROOT / "tests" / "mdma"))
    from mdma_systems import l12_phonons

    from phonion.md.io import read_trajectory
    from phonion.mdma.harmonic import ForceConstantCalculator, langevin_to_h5md
    from phonion.mdma.linewidths import fit_modes, modal_velocities
    from phonion.mdma.modes import modes_for_supercell
    from phonion.mdma.phonons import to_ase_atoms

    phonon = l12_phonons()
    atoms = to_ase_atoms(phonon.supercell)
    modes = modes_for_supercell(phonon, atoms)
    keep = int(run_ps / 0.01)
    out = {}
    for gamma in gammas:
        exact = gamma / (2 * np.pi)
        ph, dp = [], []
        for seed in seeds:
            path = work / f"langevin_{gamma}_{seed}.h5"
            langevin_to_h5md(atoms, ForceConstantCalculator.from_phonopy(phonon), path, 300.0, 2.0,
                             int((run_ps + 10.0) / 0.01) * 5, friction_per_fs=gamma * 1e-3, interval=5, seed=seed)
            traj = read_trajectory([path])
            qd = modal_velocities(traj.velocities, traj.masses, modes.eigenvectors)[-keep:]
            fits = fit_modes(qd, traj.frame_interval_fs, modes.frequencies_THz)["fits"]
            ph += [f["linewidth_THz"] / exact for f in fits if f["status"] == "fitted"]
            opt = np.flatnonzero(modes.frequencies_THz > 0.5)
            np.savez(work / "lq.npz", qdot=qd[:, opt] * 1e3, dt_ps=0.01, f_max_THz=modes.frequencies_THz.max() + 3)
            subprocess.run([python, str(ROOT / "scripts" / "dynaphopy_side.py"), "--fit-qdot", str(work / "lq.npz"),
                            str(work / "lq.json")], check=True, capture_output=True, text=True)
            dp += [f["width_THz"] / exact for f in json.loads((work / "lq.json").read_text())["fits"]
                   if f["width_THz"] is not None]
        out[f"gamma_{gamma:g}_per_ps"] = {
            "exact_fwhm_THz": exact, "run_ps": run_ps, "resolution_THz": 1 / run_ps, "seeds": list(seeds),
            **{name: {"n_fits": len(r), "mean_ratio": float(np.mean(r)), "median_ratio": float(np.median(r)),
                      "std_ratio": float(np.std(r))} for name, r in (("phonion", ph), ("dynaphopy", dp))}}
    return out


def agree(a, ea, b, eb, k=2.0):
    if None in (a, ea, b, eb):
        return None
    return bool(abs(a - b) <= k * np.hypot(ea, eb))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    fig, axes = plt.subplots(len(keys), 2, figsize=(11, 2.8 * len(keys)), squeeze=False)
    for r, key in enumerate(keys):
        s = results[key]["_spectra"]
        for c, band in enumerate(BANDS):
            ax = axes[r, c]
            lo, hi = BANDS[band][0] - 0.6, BANDS[band][1] + 1.2
            m, md = (s["f"] > lo) & (s["f"] < hi), (s["dp_f"] > lo) & (s["dp_f"] < hi)
            b = results[key]["bands"][band]
            w = max(1, b["smooth_bins"])
            sm = np.convolve(s["phonion"][band], np.ones(w) / w, mode="same")
            ax.plot(s["f"][m], sm[m] / sm[m].max(), color="k", lw=0.8, label=f"phonion periodogram ({w}-bin mean)")
            dpp = np.convolve(s["dp"][band], np.ones(2 * w) / (2 * w), mode="same")     # its grid: half a bin
            ax.plot(s["dp_f"][md], dpp[md] / dpp[md].max(), color="r", lw=0.8, label="DynaPhoPy spectrum (same mean)")
            x = np.linspace(lo, hi, 800)
            for name, col in (("phonion_band", "b"), ("dynaphopy", "m")):
                pk, wd = b[name]["peak_THz"], b[name]["width_THz"]
                if pk and wd:
                    ax.plot(x, 1 / (1 + ((x - pk) / (wd / 2)) ** 2), color=col, ls="--", lw=1,
                            label=f"{name} Lorentzian FWHM {wd:.3f} (unit height)")
            ax.set_title(f"{key}: {band} at X, harmonic {b['harmonic_THz']:.2f} THz", fontsize=9)
            ax.legend(fontsize=6)
            ax.set_xlabel("THz")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="LABEL=DIR with cu_300K.h5 and cu_900K.h5")
    ap.add_argument("--phonons", required=True)
    ap.add_argument("--dynaphopy", default="/tmp/dpvenv/bin/python")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--langevin", action="store_true", help="also the harmonic Langevin known answer, both fitters")
    ap.add_argument("-o", "--output", default=str(ROOT / "scripts/results/anharmonicity_dynaphopy.json"))
    args = ap.parse_args()
    from phonion.mdma.phonon_io import load_phonons

    phonon = load_phonons(args.phonons)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.runs:
            label, folder = item.split("=", 1)
            for T in (300, 900):
                results[f"{label} {T}K"] = analyse(Path(folder) / f"cu_{T}K.h5", phonon, args.dynaphopy, Path(tmp))
    if args.figure:
        plot(results, Path(args.figure))
    table = []
    for key, r in results.items():
        r.pop("_spectra")
        for band, b in r["bands"].items():
            p, d = b["phonion"], b["dynaphopy"]
            table.append({"run": key, "band": band, "harmonic_THz": round(b["harmonic_THz"], 3),
                          "phonion_peak": p["peak_THz"], "phonion_width": p["width_THz"], "phonion_width_err":
                          p["width_err_THz"], "dynaphopy_peak": d["peak_THz"], "dynaphopy_width": d["width_THz"],
                          "dynaphopy_width_err": d["width_err_THz"],
                          "dynaphopy_width_err_realistic": b.get("dynaphopy_width_err_realistic_THz"),
                          "widths_agree_2sigma": agree(p["width_THz"], p["width_err_THz"], d["width_THz"],
                                                       b.get("dynaphopy_width_err_realistic_THz") or d["width_err_THz"]),
                          "peaks_agree_2sigma": agree(p["peak_THz"], p["peak_err_THz"], d["peak_THz"], d["peak_err_THz"])})
    from phonion.core.jsonutil import clean

    doc = {"command": " ".join(["python", "scripts/dynaphopy_compare.py"] + sys.argv[1:]), "table": table,
           "runs": results}
    if args.langevin:
        with tempfile.TemporaryDirectory() as tmp:
            doc["langevin_known_answer"] = langevin(args.dynaphopy, Path(tmp))
    Path(args.output).write_text(json.dumps(clean(doc), indent=1) + "\n")
    for row in table:
        print(json.dumps(clean(row)))


if __name__ == "__main__":
    main()
