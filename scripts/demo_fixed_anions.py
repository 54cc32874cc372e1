#!/usr/bin/env python
"""Fixed-O_e vs fixed-O_c MD on LiGa(SeO3)2 with CHGNet, read back by phonion's diffusion code.

    python scripts/demo_fixed_anions.py                      # 1200 K, 3 × 320 steps, ~10 min on 2 cores
    python scripts/demo_fixed_anions.py --steps 20000 --workers 3 --out runs/fixed   # the real thing

Three runs through ``phonion.md.sweep.run_sweep`` (fix none / O_e / O_c, classes from ``phonion.mdma.sites`` on
the cell), each into ``OUT/T1200_seed0_fix*/traj.h5``; then every trajectory goes through
``phonion.md.diffusion_run.analyse_h5md`` (the ``phonion diffusion`` code path) and the fixed atoms are
checked to have not moved. The defaults are sized for a shared 2-core CPU: a fraction of a ps,
so the diffusivities printed are *not* converged numbers; they show the chain works. The paper's
question (does freezing O_e or O_c slow Li more?) needs tens of ps per run: use a MACE model on
a GPU and ``--steps`` in the 10^4–10^5 range. Forces are CHGNet's: "surrogate reference", not DFT.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calculator", default="chgnet")
    p.add_argument("--temperature-K", type=float, default=1200.0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--equilibration-steps", type=int, default=20)
    p.add_argument("--timestep-fs", type=float, default=2.0)
    p.add_argument("--sample-every", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "scripts" / "results" / "fixed_anions_runs"))
    p.add_argument("--json", default=str(ROOT / "scripts" / "results" / "fixed_anions_demo.json"))
    args = p.parse_args(argv)

    from phonion.md.diffusion_run import analyse_h5md
    from phonion.md.io.h5md import H5MDReader
    from phonion.md.sweep import SweepConfig, format_summary, run_sweep

    cfg = SweepConfig.from_dict({
        "structure": "LiGa_SeO3_2", "calculator": args.calculator, "surrogate_reference": True,
        "temperatures_K": [args.temperature_K], "seeds": [0], "fix": ["none", "O_e", "O_c"],
        "ensemble": "nvt-bussi", "timestep_fs": args.timestep_fs, "steps": args.steps,
        "equilibration_steps": args.equilibration_steps, "sample_every": args.sample_every,
        "checkpoint_every": args.sample_every * 10, "output": args.out})
    t0 = time.perf_counter()
    rows = run_sweep(cfg, executor="local", workers=args.workers, resume=True)
    print(format_summary(rows))
    results = {"settings": cfg.to_dict(), "wall_s": time.perf_counter() - t0, "runs": []}
    for row in rows:
        entry = {k: row[k] for k in ("run", "status", "frames", "wall_s", "mean_T_K")}
        if not row["status"].endswith("complete"):  # failed, or invalid (a guard tripped)
            results["runs"].append(entry)
            continue
        reader = H5MDReader(row["path"])
        fixed = reader.metadata["fixed_indices"]
        if fixed:
            pos = reader.read(atoms=fixed).positions
            entry["fixed_atoms_max_displacement_A"] = float(np.abs(pos - pos[0]).max())
        li = reader.read(atoms=[i for i, s in enumerate(reader.symbols) if s == "Li"]).positions
        entry["li_msd_final_A2"] = float(np.mean(np.sum((li[-1] - li[0]) ** 2, axis=1)))
        try:
            diff = analyse_h5md(row["path"], "Li", temperature_K=args.temperature_K).to_dict()
            entry["diffusion"] = {k: diff[k] for k in list(diff)[:8]}
        except Exception as exc:  # too short a run for a fit window is expected with the defaults
            entry["diffusion"] = f"{type(exc).__name__}: {exc}"
        results["runs"].append(entry)
        print(f"{row['run']}: fixed {len(fixed)} atoms, Li MSD at the end {entry['li_msd_final_A2']:.3f} Å², "
              f"diffusion: {entry['diffusion'] if isinstance(entry['diffusion'], str) else 'ok'}")
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
