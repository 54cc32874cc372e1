"""``phonion demo``: the first thing a user runs.

For now (the training, MD-driver and analysis stages land later) it is a short real job on
the bundled LiGa(SeO3)2 cell: classify the O sites, run a short surrogate-reference MD with
the reference calculator (CHGNet by default) streamed into H5MD, and read it back through the
same reader every analysis uses.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo job (units in the names)."""

    output: str = "phonion-demo"
    calculator: str = "chgnet"
    temperature_K: float = 600.0
    steps: int = 40
    timestep_fs: float = 2.0
    friction_per_fs: float = 0.01
    seed: int = 7
    structure: str = "LiGa_SeO3_2"


def add_demo_parser(sub, formatter) -> None:
    p = sub.add_parser(
        "demo", formatter_class=formatter,
        help="run a short real job on the bundled LiGa(SeO3)2 (start here)",
        description="Short real job on the bundled LiGa(SeO3)2 cell (Materials Project, CC BY 4.0): "
                    "O-site classes, a short surrogate-reference MD (CHGNet by default) streamed to "
                    "H5MD, read back with the trajectory reader. Outputs in OUT: sites.json, "
                    "reference_<T>K/ (H5MD trajectory, run.json, run.log), summary.json.",
        epilog="example:\n  phonion demo -o demo-out --steps 40 --temperature-K 600")
    defaults = DemoConfig()
    p.add_argument("-o", "--output", default=defaults.output, metavar="OUT")
    p.add_argument("--calculator", default=defaults.calculator, metavar="SPEC")
    p.add_argument("--temperature-K", type=float, default=defaults.temperature_K)
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--timestep-fs", type=float, default=defaults.timestep_fs)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.set_defaults(func=lambda a: _print(run_demo(DemoConfig(
        output=a.output, calculator=a.calculator, temperature_K=a.temperature_K, steps=a.steps,
        timestep_fs=a.timestep_fs, seed=a.seed))))


def _print(summary: dict) -> int:
    print(json.dumps(summary, indent=2))
    return 0


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo job; returns the summary that is also written to OUT/summary.json."""
    from md.driver import MDConfig, run_md
    from md.io import read_trajectory
    from mdma.sites import classify_oxygens
    from phonion.structures import load_structure

    if cfg.steps < 3 or cfg.temperature_K <= 0 or cfg.timestep_fs <= 0:
        raise ValueError("demo needs steps ≥ 3, temperature_K > 0 and timestep_fs > 0")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)

    classes = classify_oxygens(load_structure(cfg.structure))
    (out / "sites.json").write_text(json.dumps(classes.to_dict(), indent=2))

    md_cfg = MDConfig(structure=cfg.structure, calculator=cfg.calculator,
                      temperature_K=cfg.temperature_K, steps=cfg.steps, timestep_fs=cfg.timestep_fs,
                      ensemble="nvt-langevin", friction_per_fs=cfg.friction_per_fs, sample_every=1,
                      seed=cfg.seed, checkpoint_every=cfg.steps, surrogate_reference=True,
                      output=str(out / f"reference_{cfg.temperature_K:g}K"))
    start = time.perf_counter()
    run = run_md(md_cfg, resume=True)  # a killed demo continues; a finished one is not re-run
    wall_s = time.perf_counter() - start

    traj = read_trajectory(run.trajectory)
    prod = traj.temperatures_K[traj.n_frames // 2:]
    summary = {
        "config": asdict(cfg),
        "sites": {k: len(v) for k, v in classes.to_dict().items() if k in ("O_e", "O_c", "O_n")},
        "framework": list(classes.framework),
        "trajectory_file": str(run.trajectory),
        "trajectory": traj.summary(),
        "temperature_K_mean_second_half": float(prod.mean()),
        "temperature_K_std_second_half": float(prod.std()),
        "max_force_eV_A": float(np.abs(traj.forces).max()),
        "md_wall_s": wall_s,
        "note": (f"{cfg.steps} steps ({cfg.steps * cfg.timestep_fs / 1000:g} ps) are far too short "
                 "for any converged transport number; this run checks the chain, not the physics. "
                 "All forces are surrogate reference (not DFT)."),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
