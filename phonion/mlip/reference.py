"""Surrogate reference data when no DFT is at hand: MD with a reference calculator, one H5MD per T.

``phonion reference STRUCTURE --calculator chgnet --temperatures-K 600 900 --steps 2000
--timestep-fs 2 -o DIR`` runs ``phonion.md.driver.run_md`` once per temperature (``MDConfig`` with
``surrogate_reference=True``) into ``DIR/<T>K/`` and writes ``DIR/reference.json`` listing the
files. Each ``DIR/<T>K/traj.h5`` holds positions, velocities, forces, potential energies, stress
(when the calculator gives it) and temperatures of the production frames, and its metadata says
``reference_kind: "surrogate reference"`` and which calculator made it: such data stand in for
DFT and are never labelled DFT.

The MD itself (integrators, seeds, checkpoints, kill-safe resume) is ``phonion.md.driver``'s: rerunning
the same command continues unfinished temperatures and skips finished ones. Temperature k uses
seed ``seed + k`` so the runs are independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ReferenceConfig:
    """Settings of a surrogate-reference data set (units in the names)."""

    structure: str = "LiGa_SeO3_2"
    calculator: str = "chgnet"
    temperatures_K: tuple[float, ...] = (600.0,)
    steps: int = 1000
    timestep_fs: float = 2.0
    #: None: long enough for the thermostat (:func:`default_equilibration_steps`)
    equilibration_steps: int | None = None
    sample_every: int = 5
    ensemble: str = "nvt-bussi"
    thermostat_time_fs: float = 100.0
    supercell: tuple[int, int, int] = (1, 1, 1)
    seed: int = 0
    output: str = "reference"
    #: sanity floors of the reference MD: this × the sum of the two covalent radii of each species
    #: pair (``ase.data.covalent_radii``): "atoms on top of each other", never a close approach the
    #: reference itself makes (a hopping Li passes another at ~2.2 Å); None: only the absolute floor
    pair_floor_fraction: float | None = 0.5
    #: record the stress with every frame; False (a CHGNet reference only) skips CHGNet's second
    #: backward pass: 1.55× faster NVT reference MD (0.43 → 0.28 s a step, 80 atoms, one core),
    #: frames without stress (training then fits energies and forces only)
    stress: bool = True

    def __post_init__(self):
        if not self.stress:
            from phonion.core.calculators import parse_spec

            spec = parse_spec(self.calculator)
            if spec.kind != "chgnet":
                raise ValueError(f"reference: stress=false is a CHGNet option (skips its stress pass); the "
                                 f"calculator {self.calculator!r} computes what it computes — drop stress=false")
            if "stress" not in spec.options:
                object.__setattr__(self, "calculator", self.calculator + ("&" if "?" in self.calculator else "?")
                                   + "stress=false")
        object.__setattr__(self, "temperatures_K", tuple(float(t) for t in self.temperatures_K))
        object.__setattr__(self, "supercell", tuple(int(n) for n in self.supercell))
        if not self.temperatures_K:
            raise ValueError("reference: give at least one temperature (--temperatures-K)")
        for k in range(len(self.temperatures_K)):  # every MDConfig check, before any run starts
            self.md_config(k, floors=False).check_frames()

    @property
    def equilibration(self) -> int:
        """Equilibration steps: as given, or :func:`default_equilibration_steps`."""
        if self.equilibration_steps is not None:
            return self.equilibration_steps
        return default_equilibration_steps(self.ensemble, self.thermostat_time_fs, self.timestep_fs,
                                           self.sample_every)

    def md_config(self, k: int, floors: bool = True):
        """The ``MDConfig`` of the k-th temperature."""
        from phonion.md.driver import MDConfig

        temp = self.temperatures_K[k]
        checkpoint = max(self.sample_every, (self.steps // 10) // self.sample_every * self.sample_every)
        cfg = MDConfig(structure=self.structure, calculator=self.calculator, temperature_K=temp,
                       steps=self.steps, timestep_fs=self.timestep_fs,
                       equilibration_steps=self.equilibration, ensemble=self.ensemble,
                       thermostat_time_fs=self.thermostat_time_fs,
                       sample_every=self.sample_every, seed=self.seed + k, supercell=self.supercell,
                       checkpoint_every=checkpoint, surrogate_reference=True,
                       output=str(Path(self.output) / f"{temp:g}K"))
        if self.pair_floor_fraction and floors:
            import dataclasses
            import itertools

            from ase.data import atomic_numbers, covalent_radii

            from phonion.md.guards import pair_key
            from phonion.md.integrators import build_atoms

            kinds = sorted(set(build_atoms(cfg)[0].get_chemical_symbols()))
            floors = {pair_key(a, b): self.pair_floor_fraction * float(
                covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])
                for a, b in itertools.combinations_with_replacement(kinds, 2)}
            cfg = dataclasses.replace(cfg, pair_floors_A=floors)
        return cfg


def default_equilibration_steps(ensemble: str, thermostat_time_fs: float, timestep_fs: float,
                                sample_every: int) -> int:
    """5 thermostat times (``phonion.md.driver_guards.settle_steps``; the Bussi / Nosé–Hoover time,
    Langevin with its default friction), rounded up to a multiple of ``sample_every``; 0 for nve."""
    from phonion.md.driver_guards import settle_steps
    from phonion.md.md_config import MDConfig

    steps = settle_steps(MDConfig(ensemble=ensemble, thermostat_time_fs=thermostat_time_fs,
                                  timestep_fs=timestep_fs, sample_every=1, checkpoint_every=1))
    return -(-steps // sample_every) * sample_every


def run_reference(cfg: ReferenceConfig, *, calculator=None, progress: bool = True) -> dict:
    """Run the MD of every temperature (resuming unfinished ones); returns ``reference.json``'s content.

    Parameters
    ----------
    cfg : ReferenceConfig
    calculator : ASE calculator to use instead of building ``cfg.calculator`` once (the SPEC still
        labels the data)
    progress : tqdm progress bars
    """
    import warnings

    from phonion.core.calculators import parse_spec, resolve_calculator
    from phonion.md.driver import preflight, run_md
    from phonion.md.restart import check_output_dir

    configs = [cfg.md_config(k) for k in range(len(cfg.temperatures_K))]
    if calculator is None:
        spec = parse_spec(cfg.calculator)
        calculator = resolve_calculator(spec, device="cpu" if spec.kind == "emt" else None)
    check_output_dir(cfg.output)
    for md in configs:  # runs already there with other settings: refused before any MD
        preflight(md)
    for md in configs:
        check_output_dir(md.output)
    runs = []
    for md, temp in zip(configs, cfg.temperatures_K):
        result = run_md(md, calculator=calculator, resume=True, progress=progress)
        mean = result.mean_temperature_K
        runs.append({"temperature_K": temp, "file": str(result.trajectory), "status": result.status,
                     "n_frames": result.n_frames, "equilibration_steps": md.equilibration_steps,
                     "mean_temperature_K": mean, "std_temperature_K": result.std_temperature_K,
                     "temperature_ratio": mean / temp, "wall_s": result.wall_s})
        if abs(mean / temp - 1.0) > 0.10:
            warnings.warn(f"{result.trajectory}: mean temperature of the stored frames {mean:.0f} K is "
                          f"{100 * (mean / temp - 1):+.0f} % off the set-point {temp:g} K; equilibrate "
                          "longer (--equilibration-steps) or run more steps (--steps)", stacklevel=2)
    summary = {"reference_kind": "surrogate reference", "calculator": cfg.calculator,
               "structure": cfg.structure, "supercell": list(cfg.supercell), "timestep_fs": cfg.timestep_fs,
               "sample_every": cfg.sample_every, "frame_interval_fs": cfg.timestep_fs * cfg.sample_every,
               "ensemble": cfg.ensemble, "runs": runs,
               "note": f"energies, forces{' and stress' if cfg.stress else ''} from {cfg.calculator} standing in "
                       "for DFT; not DFT"}
    from phonion.md.restart import write_json_atomic

    write_json_atomic(Path(cfg.output) / "reference.json", summary)
    return summary


__all__ = ["ReferenceConfig", "run_reference"]
