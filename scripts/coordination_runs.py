"""Coordination numbers and their drift for any runs, with the bonded shells of a reference directory.

    python scripts/coordination_runs.py --reference demo-out/reference RUN.h5 [RUN.h5 ...] -o out.json

Shells: ``phonion.md.coordination.reference_shells`` over the reference's runs (as compare and the gate
use them). Per run: mean count per centre atom ± block error, the drift (last − first quarter) ± error,
the mean temperature and the length, and the count in eighths of the run (how it changed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    from phonion.md.coordination import coordination_numbers, coordination_series, reference_shells
    from phonion.md.io import read_trajectory
    from phonion.md.rdf import first_peaks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, help="directory of reference runs (*K/traj.h5)")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("-o", "--output", default=None)
    a = ap.parse_args()
    refs = sorted(Path(a.reference).glob("*K/traj.h5"))
    ref = []
    for p in refs:
        t = read_trajectory(p)
        ref.append({"run": str(p), "symbols": list(t.symbols), "rdf": first_peaks(t.positions, t.cells, t.symbols)})
    shells, source = reference_shells(ref)
    out = {"reference": a.reference, "shells": shells, "shells_from": source, "runs": {}}
    for path in a.runs:
        t = read_trajectory(path)
        cells = np.broadcast_to(np.asarray(t.cells, float), (t.n_frames, 3, 3))
        cn = coordination_numbers(t.positions, cells, t.symbols, shells)
        series = coordination_series(t.positions, cells, t.symbols, shells)
        dt = t.frame_interval_fs
        out["runs"][path] = {
            "n_frames": int(t.n_frames), "duration_ps": None if dt is None else dt * (t.n_frames - 1) / 1e3,
            "mean_temperature_K": None if t.temperatures_K is None else float(np.mean(t.temperatures_K)),
            **{p: {"cn": round(v["cn"], 3), "err": v["err"] and round(v["err"], 3), "drift": round(v["drift"], 3),
                   "drift_err": v["drift_err"] and round(v["drift_err"], 3),
                   "eighths": [round(float(x.mean()), 2) for x in np.array_split(series[p], 8)]}
               for p, v in cn.items()}}
        print(path, {p: (out["runs"][path][p]["cn"], out["runs"][path][p]["drift"]) for p in cn})
    if a.output:
        Path(a.output).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
