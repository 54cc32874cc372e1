"""Issue 16 must-shows, measured: σ_A and mode linewidths (``phonion anharmonicity``).

    OMP_NUM_THREADS=1 python scripts/anharmonicity_checks.py [--skip-cu] [--skip-ligaseo3]
        [--dynaphopy /tmp/dpvenv/bin/python] [--demo /tmp/ci/demo-out] -o scripts/results/anharmonicity_checks.json

1. harmonic crystal (LiO3 spring network, forces exactly −Φ·u): σ_A;
2. FPU-α-β springs with the same Φ: |σ_A − direct numpy| (all atoms, Li);
3. harmonic Langevin (γ = 3 ps⁻¹, 100 ps): fitted FWHM / (γ/2π) and peak − harmonic over the resolved modes;
4. EMT Cu (conventional 3×3×3, 108 atoms, ASE NVE 5 fs steps) at 300 K and 900 K: linewidths at the X point
   (Γ of the cubic cell) from phonion and from DynaPhoPy run on the same velocities in a side venv (why the two
   differ, with longer runs: scripts/dynaphopy_compare.py → scripts/results/anharmonicity_dynaphopy.json);
5. LiGa(SeO3)2 surrogate reference (CHGNet) vs MLIP (the demo's runs and phonons): σ_A and linewidths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "mdma"))


def spring_checks() -> dict:
    from mdma_systems import PairSpringCalculator, l12_phonons

    from phonion.mdma.anharmonicity import displacements, harmonic_forces, sigma_a
    from phonion.mdma.harmonic import ForceConstantCalculator
    from phonion.mdma.modes import modes_for_supercell
    from phonion.mdma.phonons import to_ase_atoms

    phonon = l12_phonons()
    atoms = to_ase_atoms(phonon.supercell)
    rng = np.random.default_rng(5)
    u = rng.normal(scale=0.12, size=(8, len(atoms), 3))
    pos = atoms.positions + u
    modes = modes_for_supercell(phonon, atoms)
    got_u, _ = displacements(pos, atoms.cell.array, modes.positions, atoms.get_chemical_symbols(), "Li")
    fh = harmonic_forces(got_u, modes.masses, modes.frequencies_THz, modes.eigenvectors)
    out = {}
    for name, calc in (("harmonic", ForceConstantCalculator.from_phonopy(phonon)),
                       ("fpu_alpha_beta", PairSpringCalculator(atoms, alpha=-4.0, beta=6.0))):
        forces = []
        for p in pos:
            a = atoms.copy()
            a.positions = p
            if hasattr(calc, "_u_prev"):
                calc._u_prev = None
            forces.append(calc.get_forces(a))
        forces = np.array(forces)
        n = len(atoms)
        phi = phonon.force_constants.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
        direct_fh = -(u.reshape(len(u), -1) @ phi.T).reshape(u.shape)
        direct = float(np.sqrt(((forces - direct_fh) ** 2).sum() / (forces ** 2).sum()))
        out[name] = {"sigma_A": sigma_a(forces, fh), "direct_numpy": direct,
                     "abs_difference": abs(sigma_a(forces, fh) - direct)}
    return out


def langevin_check(gamma_per_ps=3.0, steps=400000) -> dict:
    from mdma_systems import l12_phonons

    from phonion.md.io import read_trajectory
    from phonion.mdma.harmonic import ForceConstantCalculator, langevin_to_h5md
    from phonion.mdma.linewidths import fit_modes, modal_velocities
    from phonion.mdma.modes import modes_for_supercell
    from phonion.mdma.phonons import to_ase_atoms

    phonon = l12_phonons()
    atoms = to_ase_atoms(phonon.supercell)
    with tempfile.TemporaryDirectory() as d:
        langevin_to_h5md(atoms, ForceConstantCalculator.from_phonopy(phonon), Path(d) / "l.h5", 300.0, 2.0, steps,
                         friction_per_fs=gamma_per_ps * 1e-3, interval=5, seed=1)
        traj = read_trajectory([Path(d) / "l.h5"])
    modes = modes_for_supercell(phonon, atoms)
    out = fit_modes(modal_velocities(traj.velocities, traj.masses, modes.eigenvectors), traj.frame_interval_fs,
                    modes.frequencies_THz)
    exact = gamma_per_ps / (2 * np.pi)
    fit = [f for f in out["fits"] if f["status"] == "fitted"]
    r = np.array([f["linewidth_THz"] / exact for f in fit])
    z = np.array([(f["linewidth_THz"] - exact) / f["linewidth_err_THz"] for f in fit])
    dp = np.array([f["peak_frequency_THz"] - f["harmonic_frequency_THz"] for f in fit])
    perr = np.array([f["peak_frequency_err_THz"] for f in fit])
    return {"gamma_per_ps": gamma_per_ps, "exact_fwhm_THz": exact, "run_ps": traj.n_frames * traj.frame_interval_fs
            * 1e-3, "frequency_resolution_THz": out["frequency_resolution_THz"], "n_fitted": len(fit),
            "n_modes": len(out["fits"]), "mean_ratio": float(r.mean()), "std_ratio": float(r.std()),
            "fraction_within_10pct": float((np.abs(r - 1) < 0.1).mean()), "max_abs_z": float(np.abs(z).max()),
            "mean_rel_err": float(np.mean([f["linewidth_err_THz"] for f in fit]) / exact),
            "max_abs_peak_shift_THz": float(np.abs(dp).max()), "max_abs_peak_shift_over_err": float(np.abs(dp / perr).max()),
            "fraction_peak_within_resolution": float((np.abs(dp) <= out["frequency_resolution_THz"]).mean())}


_CU_FRAC = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])


def _cu_md(temperature_K, path, steps, dt_fs=5.0, every=2, seed=0):
    """ASE NVE of EMT Cu (conventional 3×3×3, atoms in DynaPhoPy's supercell order), written as H5MD."""
    from ase import Atoms, units
    from ase.calculators.emt import EMT
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    from phonion.md.io.h5md import H5MDWriter

    a = 3.59
    frac = _CU_FRAC
    S = 3
    cells = [(i % S, (i % (S * S)) // S, i // (S * S)) for i in range(S ** 3)]        # x fastest (DynaPhoPy)
    pos = np.array([(frac[k] + c) * a for k in range(4) for c in cells])
    atoms = Atoms(["Cu"] * len(pos), positions=pos, cell=np.eye(3) * a * S, pbc=True)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=2 * temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    dyn.run(400)                                                               # 2 ps equilibration
    with H5MDWriter(path, atoms.get_chemical_symbols(), atoms.get_masses(), timestep_fs=dt_fs, stride=every,
                    metadata={"ensemble": "NVE", "calculator_spec": "emt"},
                    observables=("potential_energy", "temperature")) as w:
        buf = {k: [] for k in ("p", "c", "v", "f", "e", "t")}
        for _ in range(steps // every):
            dyn.run(every)
            buf["p"].append(atoms.get_positions()), buf["c"].append(atoms.cell.array.copy())
            buf["v"].append(atoms.get_velocities() * units.fs), buf["f"].append(atoms.get_forces())
            buf["e"].append(atoms.get_potential_energy()), buf["t"].append(atoms.get_temperature())
        w.append(np.array(buf["p"]), np.array(buf["c"]), velocities=np.array(buf["v"]), forces=np.array(buf["f"]),
                 energies=np.array(buf["e"]), temperatures_K=np.array(buf["t"]))
    return float(np.mean(buf["t"])), frac, a


def _group(freqs, values, tol=0.02):
    """Average values over groups of degenerate frequencies (|Δf| < tol THz)."""
    order = np.argsort(freqs)
    groups, cur = [], [order[0]]
    for i in order[1:]:
        if abs(freqs[i] - freqs[cur[-1]]) < tol:
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    groups.append(cur)
    return groups


def cu_checks(dynaphopy: str | None, steps: int, workdir: Path) -> dict:
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from phonion.md.io import read_trajectory
    from phonion.mdma.modes import modes_for_supercell
    from phonion.mdma.phonon_io import save_phonons
    from phonion.mdma.phonons import compute_force_constants
    from phonion.workflows.anharmonicity import AnharmonicityConfig, run_anharmonicity

    unit = bulk("Cu", "fcc", a=3.59, cubic=True)
    phonon = compute_force_constants(unit, EMT(), (3, 3, 3), progress=False)
    save_phonons(phonon, workdir / "cu_phonons")
    out = {"system": "EMT Cu, conventional 3x3x3 (108 atoms), ASE VelocityVerlet NVE 5 fs, frames every 10 fs",
           "compared": "Γ of the 4-atom cubic cell (the X point of fcc), degenerate modes averaged", "runs": {}}
    for T in (300, 900):
        h5 = workdir / f"cu_{T}K.h5"
        t0 = time.perf_counter()
        if h5.exists():                                # --workdir of an earlier run: analyse its trajectories again
            t_mean, frac, a = float(np.nanmean(read_trajectory([h5]).temperatures_K)), _CU_FRAC, 3.59
        else:
            t_mean, frac, a = _cu_md(T, h5, steps)
        md_s = time.perf_counter() - t0
        run = run_anharmonicity(AnharmonicityConfig(files=(str(h5),), phonons=str(workdir / "cu_phonons"),
                                                    species="Cu", mdma=False, plots=False), phonon=phonon)
        s = run.summary
        traj = read_trajectory([h5])
        modes = modes_for_supercell(phonon, traj.to_atoms(0), 0.5)   # as the workflow (site_tolerance_A)
        gamma_q = np.flatnonzero(np.abs(modes.qpoints[modes.q_index]).max(axis=1) < 1e-8)
        rows = []
        for g in _group(modes.frequencies_THz[gamma_q], None):
            ms = [s["modes"][gamma_q[i]] for i in g]
            if ms[0]["harmonic_frequency_THz"] < 0.5:
                continue
            fitted = [m for m in ms if m["status"] == "fitted"]   # "not Lorentzian" ones are listed, not averaged
            lw = [m["linewidth_THz"] for m in fitted]
            err = [m["linewidth_err_THz"] for m in fitted]
            rows.append({"harmonic_THz": ms[0]["harmonic_frequency_THz"], "degeneracy": len(ms),
                         "phonion_peak_THz": float(np.mean([m["peak_frequency_THz"] for m in fitted])) if fitted else None,
                         "phonion_linewidth_THz": float(np.mean(lw)) if lw else None,
                         "phonion_linewidth_err_THz": float(np.sqrt(np.sum(np.square(err))) / len(err)) if err else None,
                         "phonion_status": [m["status"] for m in ms],
                         "phonion_all_modes": [{k: m[k] for k in ("peak_frequency_THz", "linewidth_THz",
                                                                  "linewidth_err_THz", "line_shape_chi2")} for m in ms]})
        entry = {"mean_temperature_K": t_mean, "md_wall_s": round(md_s, 1), "sigma_A": s["sigma_A"],
                 "frequency_resolution_THz": s["frequency_resolution_THz"],
                 "mean_linewidth_all_modes_THz": s["linewidth_summary"]["all"]["mean_linewidth_THz"],
                 "n_fitted": s["linewidth_summary"]["all"]["n_fitted"], "x_point": rows}
        entry["dynaphopy"] = _dynaphopy(dynaphopy, traj, phonon, frac, a, workdir / f"dp_{T}K", rows)
        out["runs"][f"{T}K"] = entry
    r3, r9 = out["runs"]["300K"], out["runs"]["900K"]
    out["linewidths_grow_with_T"] = bool(r9["mean_linewidth_all_modes_THz"] > r3["mean_linewidth_all_modes_THz"]
                                         and all(b["phonion_linewidth_THz"] > a_["phonion_linewidth_THz"]
                                                 for a_, b in zip(r3["x_point"], r9["x_point"])
                                                 if a_["phonion_linewidth_THz"] and b["phonion_linewidth_THz"]))
    return out


def _dynaphopy(python: str | None, traj, phonon, frac, a, stem: Path, rows: list) -> dict:
    if not python or not Path(python).exists():
        return {"error": f"no DynaPhoPy interpreter at {python!r} (python -m venv /tmp/dpvenv && "
                         "/tmp/dpvenv/bin/pip install dynaphopy)"}
    np.savez(f"{stem}.npz", unit_cell=np.eye(3) * a, scaled_positions=frac, symbols=np.array(["Cu"] * 4),
             fc=phonon.force_constants, fc_supercell=np.array([3, 3, 3]), md_supercell=np.array([3, 3, 3]),
             velocities=traj.velocities * 1e3, time=np.arange(traj.n_frames) * traj.frame_interval_fs * 1e-3,
             f_max_THz=10.0)
    p = subprocess.run([python, str(Path(__file__).with_name("dynaphopy_side.py")), f"{stem}.npz", f"{stem}.json"],
                       capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        return {"error": f"DynaPhoPy failed (exit {p.returncode}): {p.stderr.strip()[-600:]}"}
    dp = json.loads(Path(f"{stem}.json").read_text())
    h = np.array(dp["harmonic_THz"])
    for row in rows:                                  # the DynaPhoPy band(s) at the same harmonic frequency
        sel = np.flatnonzero(np.abs(h - row["harmonic_THz"]) < 0.02)
        row["dynaphopy_peak_THz"] = float(np.mean([dp["peak_THz"][i] for i in sel])) if sel.size else None
        row["dynaphopy_width_THz"] = float(np.mean([dp["width_THz"][i] for i in sel])) if sel.size else None
        row["dynaphopy_width_err_THz"] = float(np.mean([dp["width_err_THz"][i] for i in sel])) if sel.size else None
    return {"version": dp["dynaphopy_version"], "spectrum_resolution_THz": dp["spectrum_resolution_THz"],
            "method": "numpy FFT power spectrum, Lorentzian fit (fitting function 0), degeneracy averaged"}


def ligaseo3_checks(demo: Path, workdir: Path) -> dict:
    from phonion.workflows.anharmonicity import AnharmonicityConfig, run_anharmonicity

    sides = {"surrogate reference (CHGNet)": (demo / "reference", "{T}K/traj.h5", demo / "compare/phonons/reference"),
             "MLIP (MACE committee)": (demo / "mlip_md", "T{T}_seed0_fixnone/traj.h5", demo / "compare/phonons/mlip")}
    out = {}
    for label, (root, pattern, phon) in sides.items():
        for T in (900, 1300):
            f = root / pattern.format(T=T)
            run = run_anharmonicity(AnharmonicityConfig(files=(str(f),), phonons=str(phon), plots=False))
            s = run.to_dict()
            ls = s["linewidth_summary"]
            out[f"{label} {T} K"] = {
                "trajectory": str(f), "phonons": str(phon), "temperature_K": s["temperature_K"],
                "n_frames": s["n_frames"], "frame_interval_fs": s["frame_interval_fs"],
                "sigma_A": s["sigma_A"], "sigma_A_Li": s["sigma_A_by_species"]["Li"],
                "sigma_A_O_e": s["sigma_A_by_class"]["O_e"], "sigma_A_O_c": s["sigma_A_by_class"]["O_c"],
                "sigma_A_O_n": s["sigma_A_by_class"]["O_n"], "sigma_A_err": s["sigma_A_err"],
                "sigma_A_Li_err": s["sigma_A_by_species_err"]["Li"],
                **{f"sigma_A_{c}_err": s["sigma_A_by_class_err"][c] for c in ("O_e", "O_c", "O_n")},
                "sigma_A_error_blocks": s["sigma_A_error"], "hopping": {k: s["hopping"][k] for k in
                                                                         ("handling", "n_atom_frames_reanchored")},
                "frequency_resolution_THz": s["frequency_resolution_THz"], "status_counts": s["status_counts"],
                "O_e_mean_linewidth_THz": ls["O_e"]["mean_linewidth_THz"], "O_e_n_fitted": ls["O_e"]["n_fitted"],
                "O_c_mean_linewidth_THz": ls["O_c"]["mean_linewidth_THz"], "O_c_n_fitted": ls["O_c"]["n_fitted"],
                "mdma_anharmonic_fraction": s["mdma_anharmonic_fraction"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=str(ROOT / "scripts/results/anharmonicity_checks.json"))
    ap.add_argument("--dynaphopy", default="/tmp/dpvenv/bin/python")
    ap.add_argument("--demo", default="/tmp/ci/demo-out")
    ap.add_argument("--cu-steps", type=int, default=20000, help="NVE steps per temperature (5 fs each)")
    ap.add_argument("--skip-cu", action="store_true")
    ap.add_argument("--skip-ligaseo3", action="store_true")
    ap.add_argument("--skip-models", action="store_true", help="skip the spring and Langevin checks (1-3)")
    ap.add_argument("--workdir", default=None, help="keep the EMT Cu trajectories here (default: a temporary folder)")
    args = ap.parse_args()
    res = {"command": " ".join(["python", "scripts/anharmonicity_checks.py"] + sys.argv[1:])}
    t0 = time.perf_counter()
    if not args.skip_models:
        res["springs"] = spring_checks()
        res["langevin"] = langevin_check()
    with tempfile.TemporaryDirectory() as tmp:
        d = args.workdir or tmp
        Path(d).mkdir(parents=True, exist_ok=True)
        if not args.skip_cu:
            res["emt_cu"] = cu_checks(args.dynaphopy, args.cu_steps, Path(d))
        if not args.skip_ligaseo3:
            res["ligaseo3"] = ligaseo3_checks(Path(args.demo), Path(d))
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    from phonion.core.jsonutil import clean

    Path(args.output).write_text(json.dumps(clean(res), indent=1) + "\n")
    print(json.dumps(clean(res), indent=1))


if __name__ == "__main__":
    main()
