"""Is float32 MD with a MACE committee safe? NVE energy drift and speed, float32 vs float64, same start.

Usage: python scripts/bench_md_dtype.py COMMITTEE_DIR REFERENCE_TRAJ [--steps 1000] [--compiled] [-o scripts/results/md_dtype.json]

Starts from the last frame (positions and velocities) of REFERENCE_TRAJ (e.g. a 1300 K reference run of
the demo), runs velocity-Verlet NVE (ASE) for --steps steps of 1 fs with the committee's mean force in
each dtype, and reports: total-energy drift (linear fit, meV/atom/ps), the RMS fluctuation of the total
energy (meV/atom), the mean kinetic temperature, wall time per step (1 torch thread), and the largest
force difference between the dtypes on the starting frame. Interleaved repetitions of the timing.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("committee")
    ap.add_argument("reference")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--timestep-fs", type=float, default=1.0)
    ap.add_argument("-o", "--output", default="scripts/results/md_dtype.json")
    ap.add_argument("--compiled", action="store_true", help="also mace's compile_mode (float32)")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    import mace  # noqa: F401  (before e3nn)
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from phonion.core.calculators import resolve_calculator
    from phonion.md.io import read_trajectory

    traj = read_trajectory(a.reference)
    start = traj.to_atoms(traj.n_frames - 1)
    start.set_velocities(traj.velocities[-1] / units.fs)  # Å/fs -> ASE units
    files = sorted(glob.glob(str(Path(a.committee) / "*.model")))
    spec = "mace:" + ",".join(files)
    calcs = {dt: resolve_calculator(spec, device="cpu", dtype=dt) for dt in ("float64", "float32")}
    if a.compiled:  # mace's compile_mode (torch.compile, float32); its first call compiles (untimed below)
        calcs["float32_compiled"] = resolve_calculator(spec + "?compile_mode=default", device="cpu", dtype="float32")
    f = {}
    for dt, c in calcs.items():
        at = start.copy()
        at.calc = c
        f[dt] = at.get_forces()
    out = {"committee": files, "start": f"{a.reference} frame {traj.n_frames - 1}", "steps": a.steps,
           "timestep_fs": a.timestep_fs, "n_atoms": len(start),
           "max_force_difference_eV_A": float(np.abs(f["float32"] - f["float64"]).max()), "runs": {}}
    if "float32_compiled" in f:
        out["max_force_difference_compiled_eV_A"] = float(np.abs(f["float32_compiled"] - f["float64"]).max())
    for dt, c in calcs.items():
        at = start.copy()
        at.calc = c
        dyn = VelocityVerlet(at, timestep=a.timestep_fs * units.fs)
        e, temps = [], []
        t0 = time.perf_counter()
        for _ in range(a.steps):
            dyn.run(1)
            e.append(at.get_total_energy())
            temps.append(at.get_temperature())
        wall = time.perf_counter() - t0
        e = (np.array(e) - e[0]) / len(at)
        t_ps = np.arange(len(e)) * a.timestep_fs / 1e3
        slope = float(np.polyfit(t_ps, e, 1)[0])
        out["runs"][dt] = {"drift_meV_atom_ps": 1e3 * slope, "energy_rms_meV_atom": 1e3 * float(e.std()),
                           "mean_temperature_K": float(np.mean(temps)), "ms_per_step": 1e3 * wall / a.steps}
        print(dt, out["runs"][dt], flush=True)
    times = {dt: [] for dt in calcs}
    for _ in range(3):  # interleaved timing repetitions
        for dt, c in calcs.items():
            at = start.copy()
            at.calc = c
            dyn = VelocityVerlet(at, timestep=a.timestep_fs * units.fs)
            t0 = time.perf_counter()
            dyn.run(50)
            times[dt].append(1e3 * (time.perf_counter() - t0) / 50)
    out["ms_per_step_interleaved"] = {dt: {"min": min(v), "median": float(np.median(v))} for dt, v in times.items()}
    ms = out["ms_per_step_interleaved"]
    out["speedup_float32"] = ms["float64"]["min"] / ms["float32"]["min"]
    if "float32_compiled" in ms:
        out["speedup_float32_compiled"] = ms["float64"]["min"] / ms["float32_compiled"]["min"]
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "committee"}, indent=1))


if __name__ == "__main__":
    main()
