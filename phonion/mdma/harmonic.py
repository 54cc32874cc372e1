"""Reference molecular dynamics for validating the modal analysis: an exactly harmonic calculator driven by
force constants, and a minimal Langevin run written to H5MD.

:class:`ForceConstantCalculator` gives F = −Φ·u and E = ½ uᵀΦu, with u_i the displacement of atom i from its
reference position (periodic image followed continuously from step to step). Driving MD with the very force
constants the modes come from makes the Hamiltonian exactly diagonal in those modes, so MDMA must find equipartition, vanishing modal cross
correlations and the sum rule (DESIGN.md "MDMA"). Atoms whose rows of Φ are zero (e.g. Li made free) feel
no force at all and, under Langevin dynamics, diffuse with D = k_B T / (m γ).

:func:`langevin_to_h5md` runs ASE's Langevin integrator (by default ``fixcm=False``: every atom, and so every
normal mode, is an independent Langevin process with the same friction γ) with any ASE calculator and streams
unwrapped positions, velocities (Å/fs), forces, energies and temperatures into an H5MD file. It is a
validation tool, not the production MD driver.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

__all__ = ["ForceConstantCalculator", "langevin_to_h5md"]


class ForceConstantCalculator(Calculator):
    """Exactly harmonic forces from force constants.

    Parameters
    ----------
    force_constants : ndarray, shape=(N, N, 3, 3) (phonopy's full layout) or (3N, 3N), eV/Å²
    reference_positions : ndarray, shape=(N, 3), Å — the equilibrium sites, in the MD atom order
    cell : ndarray, shape=(3, 3), Å (rows are lattice vectors), for the periodic images
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, force_constants, reference_positions, cell, **kwargs):
        super().__init__(**kwargs)
        ref = np.asarray(reference_positions, float)
        n = len(ref)
        fc = np.asarray(force_constants, float)
        if fc.shape == (n, n, 3, 3):
            fc = fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
        if fc.shape != (3 * n, 3 * n):
            raise ValueError(f"force constants of shape {np.shape(force_constants)} do not fit {n} atoms")
        self.fc = 0.5 * (fc + fc.T)
        self.reference = ref
        self.cell = np.asarray(cell, float)
        self._inv = np.linalg.inv(self.cell)

    @classmethod
    def from_phonopy(cls, phonon) -> ForceConstantCalculator:
        """For MD on phonopy's supercell, atoms in phonopy's supercell order."""
        sc = phonon.supercell
        return cls(phonon.force_constants, np.array(sc.positions), np.array(sc.cell))

    def displacements(self, positions) -> np.ndarray:
        """u_i: displacement from the reference sites, shape=(N, 3), Å, continuous from call to call.

        Each atom's displacement is taken as the periodic image nearest to its previous one (the minimum
        image on the first call), so a crystal that drifts as a whole, or positions wrapped into the cell,
        never make an atom jump by a lattice vector relative to the others.
        """
        d = np.asarray(positions, float) - self.reference
        prev = getattr(self, "_u_prev", None)
        if prev is None or prev.shape != d.shape:
            prev = np.zeros_like(d)
        frac = (d - prev) @ self._inv
        u = d - np.round(frac) @ self.cell  # not core.geometry.minimum_image: per MD step, whole cell vectors
        self._u_prev = u
        return u

    def check_state(self, atoms, tol=1e-15):
        """Only positions (and the atom count) matter; an exact comparison is enough and much cheaper than
        ASE's generic ``compare_atoms`` in an MD loop."""
        if self.atoms is None or len(atoms) != len(self.atoms) \
                or not np.array_equal(atoms.positions, self.atoms.positions):
            return ["positions"]
        return []

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if len(self.atoms) != len(self.reference):
            raise ValueError(f"{len(self.atoms)} atoms, but force constants for {len(self.reference)}")
        u = self.displacements(self.atoms.positions).ravel()
        f = -(self.fc @ u)
        e = -0.5 * float(u @ f)
        self.results = {"energy": e, "free_energy": e, "forces": f.reshape(-1, 3)}


def langevin_to_h5md(atoms: Atoms, calculator, path, temperature_K: float, timestep_fs: float, n_steps: int,
                     friction_per_fs: float = 0.01, interval: int = 1, seed: int = 0,
                     initial_temperature_K: float | None = None, metadata: dict | None = None,
                     max_wall_s: float | None = None, progress=None, fixcm: bool = False) -> dict:
    """Langevin MD (ASE) saved every ``interval`` steps as H5MD (velocities in Å/fs).

    ``fixcm=False`` (default) leaves every atom an independent Langevin process; ``fixcm=True`` holds the
    centre of mass fixed (ASE's ``FixCom`` constraint), so the acoustic modes carry no velocity.

    Velocities start from a Maxwell–Boltzmann draw at ``initial_temperature_K`` (default ``temperature_K``)
    unless the atoms already have momenta. ``max_wall_s`` stops early (at a saved frame) once the MD wall
    time exceeds it. Returns a dict: path, n_frames, n_steps, wall_s, ms_per_step, mean temperature.
    """
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from phonion.md.io.h5md import H5MDWriter

    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.calc = calculator
    if not np.any(atoms.get_momenta()):
        MaxwellBoltzmannDistribution(atoms, temperature_K=initial_temperature_K or temperature_K, rng=rng)
    if fixcm:  # ASE ≥ 3.28: FixCom instead of the deprecated Langevin(fixcm=True)
        from ase.constraints import FixCom

        atoms.set_constraint(FixCom())
        atoms.set_momenta(atoms.get_momenta())  # applies the constraint to the initial momenta
    dyn = Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    meta = {"thermostat": f"ASE Langevin (fixcm={fixcm})", "temperature_K": temperature_K,
            "friction_per_fs": friction_per_fs, "seed": seed, **(metadata or {})}
    path = Path(path)
    buf: dict[str, list] = {k: [] for k in ("positions", "cells", "velocities", "forces", "energies",
                                            "temperatures_K", "steps")}
    state = {"step": 0}
    with H5MDWriter(path, atoms.get_chemical_symbols(), atoms.get_masses(), timestep_fs=timestep_fs,
                    stride=interval, metadata=meta, observables=("potential_energy", "temperature")) as w:
        def flush():
            if buf["positions"]:
                w.append(np.array(buf["positions"]), np.array(buf["cells"]),
                         velocities=np.array(buf["velocities"]), forces=np.array(buf["forces"]),
                         energies=np.array(buf["energies"]), temperatures_K=np.array(buf["temperatures_K"]),
                         steps=np.array(buf["steps"]))
                for v in buf.values():
                    v.clear()

        def record():
            buf["positions"].append(atoms.get_positions())
            buf["cells"].append(np.array(atoms.cell.array))
            buf["velocities"].append(atoms.get_velocities() * units.fs)  # Å/(ASE time) → Å/fs
            buf["forces"].append(atoms.get_forces(apply_constraint=False))  # as phonion.md.driver: fixed atoms keep theirs
            buf["energies"].append(atoms.get_potential_energy())
            buf["temperatures_K"].append(atoms.get_temperature())
            buf["steps"].append(state["step"])
            if len(buf["positions"]) >= 1024:
                flush()

        t0 = time.perf_counter()
        record()
        done = 0
        while done < n_steps:
            dyn.run(interval)
            done += interval
            state["step"] = done
            record()
            if progress is not None:
                progress(done, n_steps)
            if max_wall_s is not None and time.perf_counter() - t0 > max_wall_s:
                break
        wall = time.perf_counter() - t0
        flush()
        n_frames = w.n_frames
    return {"path": str(path), "n_frames": n_frames, "n_steps": done, "wall_s": wall,
            "ms_per_step": 1e3 * wall / max(done, 1), "timestep_fs": timestep_fs, "interval": interval}
