"""The integrator table and the initial state of an MD run (atoms, constraints, momenta).

Degrees of freedom
------------------
``fix: none``: total momentum starts at zero and stays zero, so ndof = 3N − 3. For
``nve``, ``nvt-bussi`` and ``nvt-langevin`` this is made explicit with
``ase.constraints.FixCom`` (for Langevin it removes the random kicks' net momentum, as ASE
recommends instead of its deprecated ``fixcm``). ``nvt-nhc`` gets no FixCom: ASE's
Nosé–Hoover chain integrates a private copy of the positions, and FixCom's round-off
adjustment of every ``set_positions`` would make each step compute the forces twice; NHC
scales all momenta by one factor, so the momentum stays zero anyway.
``fix: O_e|O_c`` adds ``FixAtoms`` on that class (k atoms; forces zeroed during MD too, see
``FixAtomsMD``): ndof = 3(N − k); the fixed atoms
exert forces, so the momentum of the free atoms is *not* conserved and no COM constraint is
added. The reported temperature is 2 E_kin / (ndof k_B) (= ``Atoms.get_temperature`` whenever
the constraints carry the count). Bussi takes ndof from the constraints; Langevin's noise on
fixed atoms is removed by the constraint. ASE's ``NoseHooverChainNVT`` always couples to 3N:
it is given the target T × ndof / 3N, which makes its kinetic-energy target ndof · k_B T / 2
and its first chain mass ndof · k_B T τ² exactly (the particles sample T; only the chain
variables' own temperature is the scaled one). Initial momenta: Gaussian at T for the free
atoms, zero for the fixed ones, zero total momentum over the free atoms, rescaled to exactly T.
"""

from __future__ import annotations

import numpy as np
from ase import units
from ase.constraints import FixAtoms, FixCom

from phonion.md.md_config import MDConfig

__all__ = ["INTEGRATORS", "THERMOSTAT_STATE", "EXACT_RESTART", "FixAtomsMD", "build_atoms",
           "initial_momenta", "kinetic_temperature_K"]


def _nhc(atoms, cfg: MDConfig, rng, ndof: int):
    from ase.md.nose_hoover_chain import NoseHooverChainNVT

    t_coupled = cfg.temperature_K * ndof / (3 * len(atoms))  # ASE couples to 3N, see module doc
    return NoseHooverChainNVT(atoms, timestep=cfg.timestep_fs * units.fs, temperature_K=t_coupled,
                              tdamp=cfg.thermostat_time_fs * units.fs, tchain=cfg.nhc_chain_length)


def _bussi(atoms, cfg: MDConfig, rng, ndof: int):
    from ase.md.bussi import Bussi

    return Bussi(atoms, timestep=cfg.timestep_fs * units.fs, temperature_K=cfg.temperature_K,
                 taut=cfg.thermostat_time_fs * units.fs, rng=rng)


def _langevin(atoms, cfg: MDConfig, rng, ndof: int):
    from ase.md.langevin import Langevin

    return Langevin(atoms, timestep=cfg.timestep_fs * units.fs, temperature_K=cfg.temperature_K,
                    friction=cfg.friction_per_fs / units.fs, fixcm=False, rng=rng)


def _nve(atoms, cfg: MDConfig, rng, ndof: int):
    from ase.md.verlet import VelocityVerlet

    return VelocityVerlet(atoms, timestep=cfg.timestep_fs * units.fs)


#: ensemble name -> factory(atoms, cfg, rng, ndof) returning an ASE MolecularDynamics object
INTEGRATORS = {"nvt-nhc": _nhc, "nvt-bussi": _bussi, "nvt-langevin": _langevin, "nve": _nve}
#: public attributes of an integrator saved in checkpoints and restored on resume
THERMOSTAT_STATE = {"nvt-bussi": ("transferred_energy",)}
#: whether a resumed run continues bit-identically (deterministic calculator assumed)
EXACT_RESTART = {"nve": True, "nvt-langevin": True, "nvt-bussi": True, "nvt-nhc": False}


def initial_momenta(masses_amu: np.ndarray, temperature_K: float, free: np.ndarray, ndof: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Maxwell–Boltzmann momenta with zero total momentum over the free atoms.

    Parameters
    ----------
    masses_amu : ndarray, shape=(N,), amu
    temperature_K : float, K
    free : ndarray, shape=(N,), bool, atoms that move (fixed atoms get zero momentum)
    ndof : int, degrees of freedom used for the temperature (3N − 3 or 3(N − k))
    rng : numpy Generator

    Returns
    -------
    ndarray, shape=(N, 3), ASE momentum units (amu^½ eV^½), kinetic temperature exactly T
    """
    m = np.asarray(masses_amu, dtype=float)
    p = rng.standard_normal((len(m), 3)) * np.sqrt(m * units.kB * temperature_K)[:, None]
    p[~free] = 0.0
    p[free] -= m[free, None] * p[free].sum(axis=0) / m[free].sum()
    kinetic_eV = 0.5 * np.sum(p ** 2 / m[:, None])
    return p * np.sqrt(0.5 * ndof * units.kB * temperature_K / kinetic_eV)


class FixAtomsMD(FixAtoms):
    """``FixAtoms`` whose atoms also get zero force in ``get_forces(md=True)``.

    ASE applies a constraint's ``adjust_forces`` during MD only if the constraint defines
    ``adjust_potential_energy`` (the hook of constraints that add energy); plain FixAtoms acts
    on the momenta instead. ``NoseHooverChainNVT`` integrates a private copy of the momenta,
    so with plain FixAtoms the fixed atoms build up momentum there and the chain counts it as
    kinetic energy, cooling the free atoms (600 K target -> ~100 K on LiGa(SeO3)2 with fixed
    O_e). The added energy is zero, so nothing else changes: velocity Verlet, Bussi and
    Langevin move the atoms bit-identically with either class.
    """

    def adjust_potential_energy(self, atoms) -> float:
        return 0.0


def build_atoms(cfg: MDConfig):
    """The supercell with its constraints, the fixed atom indices and the degrees of freedom.

    Returns
    -------
    atoms : ase.Atoms, constraints set (FixAtoms on the ``cfg.fix`` class, else FixCom except
        for nvt-nhc; see the module docstring)
    fixed : ndarray of int, fixed atom indices (empty for ``fix: none``)
    ndof : int, 3(N − k) with k fixed atoms, else 3N − 3
    """
    from phonion.core.structures import load_structure

    atoms = load_structure(cfg.structure).repeat(cfg.supercell)
    atoms.set_constraint()
    fixed = np.array([], dtype=int)
    if cfg.fix != "none":
        from phonion.mdma.sites import classify_oxygens

        fixed = np.asarray(getattr(classify_oxygens(atoms), cfg.fix), dtype=int)
        if fixed.size == 0:
            raise ValueError(f"fix {cfg.fix}: the structure {cfg.structure!r} has no {cfg.fix} atoms")
    if fixed.size:
        atoms.set_constraint(FixAtomsMD(indices=fixed))
    elif cfg.ensemble != "nvt-nhc":
        atoms.set_constraint(FixCom())
    ndof = 3 * (len(atoms) - fixed.size) if fixed.size else 3 * len(atoms) - 3
    return atoms, fixed, ndof


def kinetic_temperature_K(atoms, ndof: int) -> float:
    """2 E_kin / (ndof k_B), K, with E_kin = Σ p² / 2m.

    Computed with ``einsum`` rather than ``Atoms.get_kinetic_energy`` (BLAS ``vdot``): on a
    loaded machine a multi-threaded BLAS call on 10⁴ atoms can wait ~15 ms for its threads,
    against 0.1 ms single-threaded.
    """
    p = atoms.arrays["momenta"]
    return float(np.einsum("ij,ij,i->", p, p, 1.0 / atoms.get_masses())) / (ndof * units.kB)
