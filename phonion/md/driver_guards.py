"""The guard observer of one MD run (``phonion.md.driver``): every check of :mod:`phonion.md.guards`, the running
temperature window and the committee-uncertainty record.

:class:`RunGuards` is called by the integrator after every step (global step = equilibration +
production). It raises :class:`phonion.md.guards.MDGuardError` (with ``step`` and ``guard``) when the run
leaves physical reality; the driver then marks the run ``invalid`` in ``run.json``.

Committee uncertainty
---------------------
mace-torch's ``MACECalculator(model_paths=[a, b, c])`` (or ``models=[...]``) is a committee: its
``results`` hold the mean ``forces`` and ``forces_var`` (N, 3), the per-component variance over the
members (biased, eV²/Å²). Every ``uncertainty_every`` steps the observer reads it, if present, and
keeps u = max over atoms of sqrt(Σ_components forces_var) (eV/Å), the largest per-atom force
standard deviation. The history (step, u) travels with the checkpoint, so the run.json statistics
cover the whole run across restarts. The temperature window (thermostatted runs) is fed from
step ``max(equilibration_steps, settle_steps(cfg))`` on and restarts empty after a restart.
"""

from __future__ import annotations

import numpy as np

from phonion.md.guards import (MDGuardError, close_pair, excessive_force, non_finite, pair_floor_violation,
                       temperature_runaway, temperature_window)
from phonion.md.integrators import kinetic_temperature_K
from phonion.md.md_config import MDConfig

__all__ = ["RunGuards", "current_results", "force_uncertainty_max", "is_committee", "settle_steps"]


def settle_steps(cfg: MDConfig) -> int:
    """Steps of 5 thermostat relaxation times, when the start-up transient has died out.

    A run started on the ideal lattice loses half its kinetic energy to the potential within a
    vibration period and the thermostat restores it over its relaxation time: ``thermostat_time_fs``
    (Nosé–Hoover, Bussi) or 1 / (2 ``friction_per_fs``) (Langevin, kinetic energy). The temperature
    window starts after ``max(equilibration_steps, settle_steps)``, so a run without equilibration
    is not marked invalid for its start-up (0 for ``nve``).
    """
    if cfg.ensemble == "nve":
        return 0
    tau_fs = 0.5 / cfg.friction_per_fs if cfg.ensemble == "nvt-langevin" else cfg.thermostat_time_fs
    return int(np.ceil(5.0 * tau_fs / cfg.timestep_fs))


def is_committee(calc) -> bool:
    """True for a calculator that reports ``forces_var`` (a mace committee, or one that says so)."""
    return (getattr(calc, "num_models", 1) or 1) > 1 or \
        "forces_var" in getattr(calc, "implemented_properties", ())


def force_uncertainty_max(forces_var) -> float:
    """Largest per-atom force standard deviation, eV/Å, from a committee's ``forces_var`` (N, 3), eV²/Å²."""
    var = np.asarray(forces_var, dtype=float).reshape(-1, 3)
    return float(np.sqrt(var.sum(axis=1).max())) if len(var) else float("nan")


def current_results(atoms) -> tuple[np.ndarray, float]:
    """Forces (N, 3) eV/Å, before constraints, and potential energy (eV) at the current step.

    Observers run after the integrator has refreshed the forces for the current positions, so
    the calculator's public ``results`` are current; reading them skips ASE's per-access
    comparison of the atoms (~0.3 ms for 80 atoms, more than the rest of an observer).
    """
    results = getattr(atoms.calc, "results", None) or {}
    forces, energy = results.get("forces"), results.get("energy")
    if forces is None:
        forces = atoms.get_forces(apply_constraint=False)
    if energy is None:
        energy = atoms.get_potential_energy()
    return np.asarray(forces), float(energy)


class RunGuards:
    """All guards of one run session, as an integrator observer.

    Parameters
    ----------
    cfg : MDConfig
    atoms : ase.Atoms being integrated (its calculator is read, never called)
    ndof : int, degrees of freedom of the kinetic temperature
    history : ndarray (E, 2) of (integrator step, u eV/Å) from the checkpoint, or None
    """

    def __init__(self, cfg: MDConfig, atoms, ndof: int, history: np.ndarray | None = None):
        self.cfg, self.atoms, self.ndof = cfg, atoms, ndof
        hist = np.empty((0, 2)) if history is None else np.asarray(history, dtype=float).reshape(-1, 2)
        self._steps = [int(s) for s in hist[:, 0]]
        self._values = hist[:, 1].tolist()
        #: u at the latest evaluation, eV/Å (NaN: none yet); written with every frame
        self.last_uncertainty = self._values[-1] if self._values else float("nan")
        width = cfg.temperature_window_steps if cfg.ensemble != "nve" else 0
        self._window = np.zeros(width)
        self._filled = 0
        #: first integrator step fed to the temperature window
        self.window_start = max(cfg.equilibration_steps, settle_steps(cfg))

    def __call__(self, step: int) -> None:
        """Run every check due at integrator ``step``; raise MDGuardError if one trips."""
        cfg, atoms = self.cfg, self.atoms
        forces, energy = current_results(atoms)
        temperature = kinetic_temperature_K(atoms, self.ndof)
        why, guard = non_finite(atoms.positions, forces, energy), "non_finite"
        if why is None:
            why, guard = excessive_force(forces, cfg.max_force_eV_A), "max_force"
        if why is None:
            why, guard = (temperature_runaway(temperature, cfg.temperature_K, cfg.max_temperature_factor),
                          "temperature_runaway")
        if why is None and self._window.size and step >= self.window_start:
            why, guard = self._temperature_window(temperature), "temperature_window"
        if why is None and step % cfg.distance_check_every == 0:
            pair = close_pair(atoms.positions, atoms.cell.array, atoms.pbc, cfg.min_distance_A)
            if pair is not None:
                why, guard = (f"atoms {pair[0]} and {pair[1]} are {pair[2]:.3f} Å apart "
                              f"(< min_distance_A = {cfg.min_distance_A:g})"), "min_distance"
            elif cfg.pair_floors_A:
                why, guard = pair_floor_violation(atoms, cfg.pair_floors_A), "pair_floor"
        if why is None and step % cfg.uncertainty_every == 0:
            why, guard = self._uncertainty(step), "uncertainty"
        if why is not None:
            phase = ("equilibration" if step < cfg.equilibration_steps
                     else f"production step {step - cfg.equilibration_steps}")
            raise MDGuardError(f"MD stopped at integrator step {step} ({phase}): {why}", step, guard)

    def _temperature_window(self, temperature: float) -> str | None:
        w = self._window
        w[self._filled % w.size] = temperature
        self._filled += 1
        if self._filled < w.size:
            return None
        return temperature_window(float(w.mean()), self.cfg.temperature_K, self.cfg.temperature_tolerance,
                                  w.size)

    def _uncertainty(self, step: int) -> str | None:
        var = (getattr(self.atoms.calc, "results", None) or {}).get("forces_var")
        if var is None:
            return None
        u = force_uncertainty_max(var)
        self._steps.append(step)
        self._values.append(u)
        self.last_uncertainty = u
        limit = self.cfg.uncertainty_threshold_eV_A
        if self.cfg.uncertainty_action == "stop" and limit is not None and not u <= limit:
            return (f"committee force uncertainty {u:.3g} eV/Å exceeds uncertainty_threshold_eV_A "
                    f"= {limit:g} (largest per-atom force std over the committee)")
        return None

    # ---- what goes to the checkpoint and to run.json -------------------------------------
    def history(self) -> np.ndarray | None:
        """(E, 2) array of (integrator step, u eV/Å) of every evaluation, or None when there was none."""
        if not self._values:
            return None
        return np.column_stack([np.asarray(self._steps, dtype=float), np.asarray(self._values)])

    def record_fields(self) -> dict:
        """run.json entries of a committee run (empty when nothing was evaluated).

        ``uncertainty_max_eV_A``, ``uncertainty_p99_eV_A`` (99th percentile over evaluations of
        the per-evaluation maximum), ``uncertainty_evaluations``; with a threshold that was
        exceeded, ``uncertainty_flags`` = {count, first_step (integrator step), max_eV_A}.
        """
        if not self._values:
            return {}
        u = np.asarray(self._values)
        ok = u[np.isfinite(u)]  # NaN / inf (a broken committee) would make run.json invalid JSON

        def top(values, q=100.0):
            return float(np.percentile(values, q)) if values.size else None

        out = {"uncertainty_max_eV_A": top(ok), "uncertainty_p99_eV_A": top(ok, 99.0),
               "uncertainty_evaluations": int(u.size)}
        limit = self.cfg.uncertainty_threshold_eV_A
        if limit is not None:
            over = np.flatnonzero(~(u <= limit))  # non-finite counts as over
            if over.size:
                out["uncertainty_flags"] = {"count": int(over.size), "first_step": int(self._steps[over[0]]),
                                            "max_eV_A": top(u[over][np.isfinite(u[over])]),
                                            "threshold_eV_A": float(limit)}
        return out
