"""``phonion demo``: the first thing a user runs.

For now (the training, MD-driver and analysis stages land later) it is a short real job on
the bundled LiGa(SeO3)2 cell: classify the O sites, run a short surrogate-reference MD with
the reference calculator (CHGNet by default) streamed into H5MD, and read it back through the
same reader every analysis uses.
"""

from __future__ import annotations

import json
import os
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
                    "reference_<T>K.h5, summary.json.",
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
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from tqdm import tqdm

    from md.io import read_trajectory
    from md.io.h5md import H5MDWriter
    from mdma.sites import classify_oxygens
    from mlip.calculators import calculator_metadata, resolve_calculator
    from phonion.structures import load_structure

    if cfg.steps < 3 or cfg.temperature_K <= 0 or cfg.timestep_fs <= 0:
        raise ValueError("demo needs steps ≥ 3, temperature_K > 0 and timestep_fs > 0")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    atoms = load_structure(cfg.structure)

    classes = classify_oxygens(atoms)
    (out / "sites.json").write_text(json.dumps(classes.to_dict(), indent=2))

    atoms.calc = resolve_calculator(cfg.calculator)
    rng = np.random.default_rng(cfg.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=cfg.temperature_K, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, timestep=cfg.timestep_fs * units.fs, temperature_K=cfg.temperature_K,
                   friction=cfg.friction_per_fs / units.fs, rng=rng)

    h5 = out / f"reference_{cfg.temperature_K:g}K.h5"
    part = h5.with_name(h5.name + ".part")
    meta = {**calculator_metadata(cfg.calculator, surrogate_reference=True),
            "ensemble": "nvt-langevin", "temperature_K_setting": cfg.temperature_K,
            "seed": cfg.seed, "structure": cfg.structure, "source_files": [str(h5)]}
    start = time.perf_counter()
    with H5MDWriter(part, atoms.get_chemical_symbols(), atoms.get_masses(),
                    timestep_fs=cfg.timestep_fs, stride=1, metadata=meta) as writer, \
            tqdm(total=cfg.steps + 1, desc=f"surrogate-reference MD {cfg.temperature_K:g} K",
                 unit="step", disable=None) as bar:
        def record():
            writer.append(atoms.get_positions(wrap=False)[None], atoms.get_cell().array[None],
                          # ASE velocities are Å per ASE time unit; × units.fs gives Å/fs
                          velocities=(atoms.get_velocities() * units.fs)[None],
                          forces=atoms.get_forces()[None],
                          energies=np.array([atoms.get_potential_energy()]),
                          stress=atoms.get_stress(voigt=False)[None],
                          temperatures_K=np.array([atoms.get_temperature()]),
                          steps=np.array([dyn.nsteps]))
            bar.update(1)

        dyn.attach(record, interval=1)  # ASE calls observers at step 0 too: steps + 1 frames
        dyn.run(cfg.steps)
    os.replace(part, h5)
    wall_s = time.perf_counter() - start

    traj = read_trajectory(h5)
    prod = traj.temperatures_K[traj.n_frames // 2:]
    summary = {
        "config": asdict(cfg),
        "sites": {k: len(v) for k, v in classes.to_dict().items() if k in ("O_e", "O_c", "O_n")},
        "framework": list(classes.framework),
        "trajectory": traj.summary(),
        "temperature_K_mean_second_half": float(prod.mean()),
        "temperature_K_std_second_half": float(prod.std()),
        "max_force_eV_A": float(np.abs(traj.forces).max()),
        "md_wall_s": wall_s,
        "ms_per_step": 1e3 * wall_s / (cfg.steps + 1),
        "note": (f"{cfg.steps} steps ({cfg.steps * cfg.timestep_fs / 1000:g} ps) are far too short "
                 "for any converged transport number; this run checks the chain, not the physics. "
                 "All forces are surrogate reference (not DFT)."),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
