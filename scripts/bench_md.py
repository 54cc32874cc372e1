#!/usr/bin/env python
"""Benchmark the MD driver: its overhead over bare force calls, and throughput in atom-steps/s.

    python scripts/bench_md.py                                   # CPU, ~5-10 min on 2 cores
    python scripts/bench_md.py --device cuda --dtype float32 --calculator mace:run/model.model

(a) overhead: ``run_md`` for ``--calls`` steps on the 80-atom LiGa(SeO3)2 cell (velocity Verlet +
    Bussi, guards every step, a distance check every 10 steps, H5MD frames every
    ``sample_every`` steps, a checkpoint, progress bar) with the calculator's own ``calculate``
    timed inside the same run: overhead = (wall − force time) / force time, robust to the load
    of a shared machine. Bare ``get_forces`` calls on rattled copies are timed beside it.
(b) throughput: atom-steps/s of ``run_md`` on the 80-atom cell with that calculator, and on a
    fcc Cu supercell of ≥ 10,000 atoms with EMT (cheap; CHGNet / MACE at 10^4 atoms on 2 CPU
    cores is minutes per step, which is what a GPU is for: rerun with ``--device cuda``).

Results go to ``scripts/results/md_bench.json`` and a table is printed.

``python scripts/bench_md.py --engines [options]`` instead runs ``scripts/bench_md_engines.py``: the
batched engine against ``--engine ase --workers 2`` (interleaved, min / median), their physics side
by side, and on a GPU ns/day against atom count and batch size (``scripts/results/bench_md_cpu.json``).

BLAS runs single-threaded here unless ``OPENBLAS_NUM_THREADS`` is set: on a shared 2-core
machine a multi-threaded BLAS call on a 10⁴-atom vector (ASE's ``get_kinetic_energy``, used by
the Bussi thermostat) waits ~15 ms for its threads against 0.01 ms on one thread. Likewise use
``--threads 1`` for torch there (CHGNet: 0.46 s/call on 1 thread vs 7 s on 2 under load).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported; see docstring

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _spec(args) -> str:
    opts = [f"{k}={v}" for k, v in (("device", args.device), ("dtype", args.dtype)) if v]
    if args.calculator.startswith("chgnet"):
        opts = [o for o in opts if not o.startswith("dtype")]  # CHGNet has no dtype option
    return args.calculator + ("?" + "&".join(opts) if opts else "")


def bare_calls(calc, atoms, n: int, rng) -> list[float]:
    """Seconds of each of ``n`` force calls on freshly rattled copies (no caching possible)."""
    times = []
    for _ in range(n):
        atoms.positions = atoms.positions + rng.normal(0, 0.02, atoms.positions.shape)
        t0 = time.perf_counter()
        atoms.get_forces()
        times.append(time.perf_counter() - t0)
    return times


def timed(calc):
    """Record the seconds of every ``calc.calculate`` call in ``calc.bench_s`` (list)."""
    inner = calc.calculate
    calc.bench_s = []

    def calculate(*a, **k):
        t0 = time.perf_counter()
        inner(*a, **k)
        calc.bench_s.append(time.perf_counter() - t0)

    calc.calculate = calculate
    return calc


def driver_run(cfg, calc) -> dict:
    """``run_md`` with a timed calculator: wall per step, and the force time inside the same run.

    The overhead (wall − force time) / force time is measured within one run, so the machine's
    load (this one is shared) affects both terms alike.
    """
    from phonion.md.driver import run_md

    calc = timed(calc)
    res = run_md(cfg, calculator=calc, progress=True)
    force_s = float(np.sum(calc.bench_s))
    return {"steps": cfg.total_steps, "force_calls": len(calc.bench_s), "wall_s": res.wall_s,
            "force_s": force_s, "driver_s_per_step": res.wall_s / cfg.total_steps,
            "force_s_per_step": force_s / cfg.total_steps,
            "overhead_percent": 100 * (res.wall_s - force_s) / force_s}


def overhead(args, spec: str, work: Path) -> dict:
    from phonion.md.driver import MDConfig
    from phonion.core.calculators import resolve_calculator
    from phonion.core.structures import load_structure

    calc = resolve_calculator(spec)
    atoms = load_structure("LiGa_SeO3_2")
    atoms.calc = calc
    atoms.get_forces()  # warm-up (model load, first-call costs)
    rng = np.random.default_rng(0)
    bare = bare_calls(calc, atoms, args.calls, rng)
    cfg = MDConfig(structure="LiGa_SeO3_2", calculator=spec, temperature_K=600.0, steps=args.calls,
                   timestep_fs=2.0, ensemble="nvt-bussi", sample_every=args.sample_every,
                   # one checkpoint at the end: a checkpoint costs one extra force call (the
                   # calculator reset), i.e. 1 / checkpoint_every of a step (0.1 % at 1000)
                   checkpoint_every=args.sample_every * -(-args.calls // args.sample_every),
                   output=str(work / "overhead"))
    run = driver_run(cfg, calc)
    return {"calculator": spec, "n_atoms": len(atoms), "sample_every": args.sample_every,
            "bare_s_per_call_median": float(np.median(bare)), "bare_s_per_call_min": float(np.min(bare)),
            **run, "atom_steps_per_s": len(atoms) / run["driver_s_per_step"]}


def emt_throughput(args, work: Path) -> dict:
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from phonion.md.driver import MDConfig

    atoms = bulk("Cu", cubic=True).repeat((args.cu_repeat,) * 3)
    path = work / "cu.xyz"
    ase.io.write(path, atoms)
    k = max(1, args.big_steps // 2)
    cfg = MDConfig(structure=str(path), calculator="emt", temperature_K=300.0, steps=2 * k,
                   timestep_fs=2.0, ensemble="nvt-bussi", sample_every=k, checkpoint_every=2 * k,
                   output=str(work / "cu_big"))
    run = driver_run(cfg, EMT())
    return {"calculator": "emt", "n_atoms": len(atoms), "sample_every": k, **run,
            "atom_steps_per_s": len(atoms) / run["driver_s_per_step"]}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--engines" in argv:  # engines side by side (--engine ase vs batched), GPU table: bench_md_engines.py
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_md_engines import main as engines_main

        return engines_main([a for a in argv if a != "--engines"])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calculator", default="chgnet", help="SPEC for the 80-atom cell (default chgnet)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: the SPEC's / automatic)")
    p.add_argument("--dtype", default=None, help="float32 | float64 (MACE)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's; on a shared 2-core machine 1 is much faster)")
    p.add_argument("--calls", type=int, default=20, help="force calls / MD steps per timed side")
    p.add_argument("--sample-every", type=int, default=1, help="driver frames every K steps (1: worst case)")
    p.add_argument("--cu-repeat", type=int, default=14, help="fcc Cu cubic cell repeats (14: 10,976 atoms)")
    p.add_argument("--big-steps", type=int, default=4)
    p.add_argument("--json", default=str(ROOT / "scripts" / "results" / "md_bench.json"))
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    spec = _spec(args)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = {"overhead_80_atoms": overhead(args, spec, work), "throughput_emt_cu": emt_throughput(args, work)}
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    result = {**rows, "machine": {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                                  "torch_threads": threads,
                                  "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "python": platform.python_version(),
                                  "platform": platform.platform()},
              "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:]))}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"\n{'case':<22} {'atoms':>7} {'steps':>6} {'force s/step':>13} {'driver s/step':>14} "
          f"{'overhead %':>11} {'atom-steps/s':>13}")
    for name, r in rows.items():
        print(f"{name:<22} {r['n_atoms']:>7} {r['steps']:>6} {r['force_s_per_step']:>13.4f} "
              f"{r['driver_s_per_step']:>14.4f} {r['overhead_percent']:>11.1f} {r['atom_steps_per_s']:>13.0f}")
    o = rows["overhead_80_atoms"]
    print(f"bare calls outside the driver: median {o['bare_s_per_call_median']:.4f} s, "
          f"min {o['bare_s_per_call_min']:.4f} s per call")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
