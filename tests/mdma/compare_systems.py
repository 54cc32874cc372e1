"""Small real trajectories for the ``phonion compare`` tests (imported by test_compare.py).

The bundled LiGa(SeO3)2 (80 atoms) with the force constants of the central springs of
``mdma_systems.PairSpringCalculator`` (every pair closer than 4.05 Å, at rest in the structure) with every
spring to Li removed, driven by ``phonion.mdma.harmonic.ForceConstantCalculator``: the framework is an exactly
harmonic crystal (so phonopy finite displacements give back the very force constants that drive the MD)
and the 8 Li are free particles that pass through it. Under ASE's Langevin thermostat (friction γ, no
centre-of-mass constraint) each Li diffuses with D = k_B T / (m_Li γ) exactly, independently of the others
(Haven ratio 1), whether or not any O is held fixed. ``free_li_harmonic`` is reachable as the calculator
SPEC ``compare_systems:free_li_harmonic``; its forces and energies do not depend on how positions are
wrapped (minimum-image displacements), so the parity of this "model" on its own frames is exactly zero.
"""

from __future__ import annotations

import json
from pathlib import Path

from ase import units
from ase.constraints import FixAtoms

SPEC = "compare_systems:free_li_harmonic"
FRICTION_PER_FS = 0.01
#: a ``phonion validate`` JSON of an MLIP that failed (two checks failed, no committee)
FAILED_VALIDATION = {
    "passed": False, "force_rmse_meV_A": 219.7, "force_rmse_by_temperature_meV_A": {"900": 219.7},
    "min_pair_distance_ratio": 0.55, "rdf_first_peak_max_shift_A": 2.55, "mean_temperature_ratio": 1.02,
    "uncertainty_p99_meV_A": None,
    "checks": {"force_rmse_meV_A": {"value": 219.7, "limit": 100.0, "passed": False},
               "min_pair_distance_ratio": {"value": 0.55, "limit": 0.8, "passed": False},
               "mean_temperature_ratio": {"value": 1.02, "limit": 1.1, "passed": True}}}


def write_run_record(run_dir, **record) -> Path:
    """A ``run.json`` (phonion md's run record) in a run directory, e.g. ``status="invalid"``."""
    path = Path(run_dir) / "run.json"
    path.write_text(json.dumps(record))
    return path


def structure():
    """The bundled LiGa(SeO3)2 (80 atoms)."""
    from phonion.core.structures import load_structure

    return load_structure("LiGa_SeO3_2")


_FC = {}


def free_li_harmonic(**_options):
    """ForceConstantCalculator of the free-Li spring network on the bundled LiGa(SeO3)2 (the SPEC factory)."""
    from phonion.mdma.harmonic import ForceConstantCalculator
    from phonion.mdma.phonons import compute_force_constants
    from mdma_systems import PairSpringCalculator

    atoms = structure()
    if "fc" not in _FC:
        calc = PairSpringCalculator(atoms, free_li=True)
        _FC["fc"] = compute_force_constants(atoms, calc, (1, 1, 1), progress=False).force_constants
    return ForceConstantCalculator(_FC["fc"], atoms.positions, atoms.cell.array)


def expected_li_diffusivity_cm2_s(temperature_K: float) -> float:
    """D = k_B T / (m γ) of a free Langevin particle, cm²/s."""
    m_li = 6.94 * units._amu  # kg
    d_m2_s = units._k * temperature_K / (m_li * FRICTION_PER_FS * 1e15)
    return d_m2_s * 1e4


def make_run(root, temperature_K: float, *, fix: str = "none", n_steps: int = 3000, seed: int = 0,
             interval: int = 5, timestep_fs: float = 2.0, reference_kind: str | None = "surrogate reference") -> Path:
    """One Langevin run written as ``root/T{T}_seed{seed}_fix{fix}/traj.h5`` with phonion's run metadata."""
    from phonion.mdma.harmonic import langevin_to_h5md
    from phonion.mdma.sites import classify_oxygens

    atoms = structure()
    fixed = []
    if fix != "none":
        fixed = [int(i) for i in getattr(classify_oxygens(atoms), fix)]
        atoms.set_constraint(FixAtoms(indices=fixed))
    meta = {"temperature_K_setting": float(temperature_K), "fix": fix, "fixed_indices": fixed,
            "calculator_spec": SPEC, "calculator": "free-Li harmonic network", "structure": "LiGa_SeO3_2",
            "supercell": [1, 1, 1], "source": "compare test (ASE Langevin)"}
    if reference_kind:
        meta["reference_kind"] = reference_kind
    path = Path(root) / f"T{temperature_K:g}_seed{seed}_fix{fix}" / "traj.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    langevin_to_h5md(atoms, free_li_harmonic(), path, temperature_K, timestep_fs, n_steps,
                     friction_per_fs=FRICTION_PER_FS, interval=interval, seed=seed + int(temperature_K),
                     metadata=meta)
    return path


def write_extxyz_copy(h5_path, out_path) -> Path:
    """The same run as extxyz without velocities (an AIMD-like file: positions, energies, forces only)."""
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from phonion.md.io import read_trajectory

    traj = read_trajectory(h5_path)
    frames = []
    for i in range(traj.n_frames):
        a = Atoms(traj.symbols, positions=traj.positions[i], cell=traj.cells[i], pbc=True)
        a.wrap()
        a.info.update(timestep_fs=traj.timestep_fs, stride=traj.stride)
        a.calc = SinglePointCalculator(a, energy=float(traj.energies[i]), forces=traj.forces[i])
        frames.append(a)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(out_path, frames, format="extxyz")
    return out_path
