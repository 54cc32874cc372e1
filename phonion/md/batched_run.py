"""One run of the batched engine (``phonion.md.batched``): its state, integrator half-steps and files.

Each run keeps an ``ase.Atoms`` (positions, momenta, masses, cell) and its own
``numpy.random.Generator`` seeded as in :mod:`phonion.md.driver`; only the force call is shared
with the other runs of the batch. Its files are those of an ASE-engine run: ``traj.h5``
(:class:`phonion.md.io.h5md.H5MDWriter`), ``run.json`` (same keys and statuses, plus ``engine``
and ``batch_size``), ``checkpoint.npz`` (:mod:`phonion.md.restart`, same format) and ``run.log``.

The integrator (written here: no maintained library integrates many systems with per-system
Bussi targets and fixed atoms, see :mod:`phonion.md.batched_forces`) is ASE's ``Bussi`` step, in
the same order and drawing the same random numbers from the same generator: the stochastic
velocity rescaling of Bussi, Donadio & Parrinello, J. Chem. Phys. 126, 014101 (2007), eq. (A7),
with alpha² = c + (1 − c) K_target / (ndof K) (R1² + Σ_{2..ndof} R²) + 2 R1 sqrt(c (1 − c)
K_target / (ndof K)), c = exp(−dt/τ), then velocity Verlet. ``nve``: velocity Verlet alone.
Constraints as in :mod:`phonion.md.integrators`: ``fix: none`` — the total momentum is removed after
every kick (what ASE's ``FixCom`` does), ndof = 3N − 3; ``fix: O_e|O_c`` — the fixed atoms get zero
force and zero momentum, so they do not move at all, ndof = 3(N − k). ndof from
:func:`phonion.md.integrators.build_atoms` drives both the thermostat target and the reported T.
Same seed → same initial momenta and the same Bussi noise sequence as the ASE engine.

Exact restart: positions, momenta, step, generator state and ``transferred_energy`` are
checkpointed, so a resumed run is bit-identical to an uninterrupted one as long as its batch
holds the same runs (the model evaluates a batch as one set of matrix products, whose last bits
can depend on the batch size); with a different batch (e.g. a run of it finished or tripped a
guard) it continues the same ensemble with forces that differ by round-off (~1e-15 eV/Å).
"""

from __future__ import annotations

import math
import time

import numpy as np
from ase import units

from phonion.md.driver import _check_same_settings, _metadata, _open_log, _result, preflight
from phonion.md.driver_guards import RunGuards
from phonion.md.guards import MDGuardError
from phonion.md.integrators import build_atoms, initial_momenta, kinetic_temperature_K
from phonion.md.md_config import MDConfig
from phonion.md.restart import (CHECKPOINT_NAME, RECORD_NAME, TRAJECTORY_NAME, Checkpoint, check_output_dir,
                                load_checkpoint, rng_from_state, save_checkpoint, write_json_atomic)

__all__ = ["BatchedRun", "BATCHED_ENSEMBLES"]

#: ensembles the batched engine integrates (others: --engine ase)
BATCHED_ENSEMBLES = ("nvt-bussi", "nve")


class BatchedRun:
    """One run of a batch. ``open()`` then, per step, ``pre_force()`` / ``post_force(e, f, var)``.

    ``state`` is ``"skip"`` (found complete or invalid: not run), ``"active"``, ``"done"``,
    ``"invalid"`` or ``"failed"``; ``row`` is the sweep summary row once it is not active.
    """

    def __init__(self, cfg: MDConfig, resume: bool, batch_size: int, num_models: int, threads: int | None = None):
        self.cfg, self.resume, self.batch_size, self.threads = cfg, resume, batch_size, threads
        self.out = check_output_dir(cfg.output)
        self.num_models = num_models
        self.state, self.row, self.writer = "active", None, None
        self.record = preflight(cfg)

    # ---- set-up ------------------------------------------------------------------------------
    def check(self):
        """The verdict of a run found on disk: None (to run), or the summary fields to report."""
        record, cfg = self.record, self.cfg
        if record is None:
            if (self.out / TRAJECTORY_NAME).exists() and not self.resume:
                raise ValueError(f"{self.out / TRAJECTORY_NAME}: exists but is not a phonion md run; "
                                 "choose another output directory")
            return None
        if record.get("status") == "invalid":
            return {"status": "invalid", "reason": record.get("invalid_reason"),
                    "invalid_reason": record.get("invalid_reason"), "invalid_step": record.get("invalid_step")}
        if record.get("status") == "complete" and record.get("steps_done", -1) >= cfg.total_steps:
            res = _result(self.out, record, "already complete")
            return {"status": res.status, "steps": res.steps_done, "frames": res.n_frames,
                    "wall_s": res.wall_s, "mean_T_K": res.mean_temperature_K}
        if not self.resume:
            raise ValueError(f"{self.out}: holds an unfinished or shorter run ({record.get('status')}, "
                             f"{record.get('steps_done', 0)} steps); pass --resume to continue it, or "
                             "choose another output directory")
        return None

    def open(self, backend: str, graph: str | None = None) -> None:
        """Build the atoms, load the checkpoint (resume) or draw the momenta, open the files."""
        from phonion.md.io.h5md import H5MDWriter

        cfg, out = self.cfg, self.out
        self.log = _open_log(out / "run.log")
        ckpt = None
        if self.resume and self.record is not None:
            try:
                ckpt = load_checkpoint(out / CHECKPOINT_NAME)
            except ValueError as exc:
                write_json_atomic(out / RECORD_NAME, {**self.record, "status": "failed", "message": str(exc)})
                raise
        atoms, fixed, ndof = build_atoms(cfg)
        atoms.set_constraint()  # the engine applies the constraints itself (module docstring)
        self.atoms, self.fixed, self.ndof = atoms, fixed, ndof
        self.masses = atoms.get_masses()[:, None]
        self.free = np.ones(len(atoms), bool)
        self.free[fixed] = False
        from phonion.md.batched_forces import BatchResults

        atoms.calc = BatchResults(self.num_models)
        self._restore(ckpt)
        self.guards = RunGuards(cfg, atoms, ndof, ckpt.uncertainty if ckpt else None)
        committee = self.num_models > 1
        meta = {**_metadata(cfg, None, fixed, ndof), "engine": "batched", "batch_size": self.batch_size,
                "forces_note": "calculator forces before constraints (fixed atoms keep theirs)"}
        self.writer = H5MDWriter(out / TRAJECTORY_NAME, atoms.get_chemical_symbols(), atoms.get_masses(),
                                 timestep_fs=cfg.timestep_fs, stride=cfg.sample_every, metadata=meta,
                                 observables=("potential_energy", "temperature")
                                 + (("force_uncertainty_max",) if committee else ()), append=ckpt is not None)
        if ckpt is not None:
            self.writer.truncate(ckpt.n_frames)
        self.record = {"status": "running", "engine": "batched", "batch_size": self.batch_size,
                       "threads": self.threads, "force_backend": backend, "mace_graph": graph,
                       "settings": cfg.to_dict(),
                       "settings_key": cfg.settings_key(),
                       "n_atoms": len(atoms), "fixed_indices": fixed.tolist(), "n_degrees_of_freedom": ndof,
                       "restarts": self.restarts, "exact_restart": True,
                       "exact_restart_note": "bit-identical when the resumed batch holds the same runs; "
                                             "otherwise forces differ by round-off (same ensemble)",
                       "trajectory": TRAJECTORY_NAME, "steps_done": self.step,
                       "n_frames": self.writer.n_frames, "wall_s": self.wall0}
        write_json_atomic(out / RECORD_NAME, self.record)
        self.t0 = time.perf_counter()

    def _restore(self, ckpt: Checkpoint | None) -> None:
        cfg, atoms = self.cfg, self.atoms
        self.transferred_energy = 0.0
        if ckpt is None:
            self.rng = np.random.default_rng(cfg.seed)
            atoms.set_momenta(initial_momenta(atoms.get_masses(), cfg.temperature_K, self.free, self.ndof,
                                              self.rng), apply_constraint=False)
            self.step, self.wall0, self.restarts, self.fresh = 0, 0.0, [], True
            self.log.info("start (batched engine): %s", cfg.to_dict())
            return
        _check_same_settings(ckpt.settings_key, cfg, self.out / CHECKPOINT_NAME)
        if ckpt.step > cfg.total_steps:
            raise ValueError(f"{self.out}: the run there is at step {ckpt.step}, beyond the "
                             f"{cfg.total_steps} steps asked; ask for at least as many")
        self.rng = rng_from_state(ckpt.rng_state)
        atoms.set_positions(ckpt.positions, apply_constraint=False)
        atoms.set_momenta(ckpt.momenta, apply_constraint=False)
        self.transferred_energy = float(ckpt.thermostat.get("transferred_energy", 0.0))
        self.step, self.wall0, self.fresh = ckpt.step, ckpt.wall_s, False
        self.restarts = (self.record or {}).get("restarts", []) + [
            {"from_step": ckpt.step, "frames_kept": ckpt.n_frames, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
        self.log.info("resume from checkpoint at step %d (%d frames kept)", ckpt.step, ckpt.n_frames)

    # ---- one step: pre_force (thermostat, half kick, drift), forces, post_force ------------------
    def set_forces(self, energy: float, forces: np.ndarray, var) -> None:
        """Store the calculator results of the current positions (before constraints)."""
        self.atoms.calc.results = {"energy": energy, "forces": forces,
                                   **({"forces_var": var} if var is not None else {})}
        f = forces.copy()
        if self.fixed.size:
            f[self.fixed] = 0.0
        else:  # FixCom: no net force, the total momentum stays zero
            f -= self.masses * (f.sum(axis=0) / self.masses.sum())
        self._f = f

    def first_forces(self, energy: float, forces: np.ndarray, var) -> None:
        """Forces at the starting positions; a fresh run checkpoints step 0 (a kill resumes from it)."""
        self.set_forces(energy, forces, var)
        if self.fresh:
            self._checkpoint()
        if self.step == 0:  # as ASE's observers: called at step 0 of a run, not again on resume
            self._observe()
        elif self.step >= self.cfg.total_steps:
            self._finish()

    def pre_force(self) -> None:
        dt = self.cfg.timestep_fs * units.fs
        p = self.atoms.arrays["momenta"]
        if self.cfg.ensemble == "nvt-bussi":
            self._bussi(p)
        p += 0.5 * dt * self._f
        self.atoms.positions += dt * p / self.masses

    def _bussi(self, p: np.ndarray) -> None:
        """Bussi rescaling of the momenta, in place (the same draws in the same order as ase.md.bussi)."""
        cfg, ndof = self.cfg, self.ndof
        kinetic = 0.5 * float(np.einsum("ij,ij,i->", p, p, 1.0 / self.masses[:, 0]))
        c = math.exp(-cfg.timestep_fs / cfg.thermostat_time_fs)
        target = 0.5 * ndof * units.kB * cfg.temperature_K
        scale = (1.0 - c) * target / kinetic / ndof
        r1 = self.rng.standard_normal()
        rest = 2.0 * self.rng.standard_gamma(0.5 * (ndof - 1))
        alpha = math.sqrt(c + scale * (rest + r1 ** 2) + 2.0 * r1 * math.sqrt(c * scale))
        p *= alpha
        self.transferred_energy += (alpha ** 2 - 1.0) * kinetic

    def post_force(self, energy: float, forces: np.ndarray, var) -> None:
        """Second half kick, then the observers of the new step (guards, frame, checkpoint)."""
        dt = self.cfg.timestep_fs * units.fs
        self.set_forces(energy, forces, var)
        self.atoms.arrays["momenta"] += 0.5 * dt * self._f
        self.step += 1
        self._observe()

    def _observe(self) -> None:
        """Guards, frame, checkpoint and the end of the run, at the current step."""
        cfg, step = self.cfg, self.step
        try:
            self.guards(step)
        except MDGuardError as exc:
            self._stop("invalid", str(exc), exc)
            return
        if step >= cfg.equilibration_steps and step % cfg.sample_every == 0:
            self._sample(step - cfg.equilibration_steps)
        if step % cfg.checkpoint_every == 0 and step > 0:  # step 0: checkpointed in first_forces
            self._checkpoint()
        if step >= cfg.total_steps:
            if self.record["steps_done"] != step:
                self._checkpoint()
            self._finish()

    # ---- files -------------------------------------------------------------------------------
    def _sample(self, step: int) -> None:
        atoms = self.atoms
        res = atoms.calc.results
        extra = {}
        if self.writer.has("force_uncertainty_max_eV_A"):
            extra["force_uncertainty_max_eV_A"] = np.array([self.guards.last_uncertainty])
        self.writer.append(atoms.positions[None], atoms.cell.array[None],
                           velocities=(atoms.get_velocities() * units.fs)[None], forces=res["forces"][None],
                           energies=np.array([res["energy"]]),
                           temperatures_K=np.array([kinetic_temperature_K(atoms, self.ndof)]),
                           steps=np.array([step]), **extra)

    def _checkpoint(self) -> None:
        self.writer.flush()
        wall = self.wall0 + time.perf_counter() - getattr(self, "t0", time.perf_counter())
        save_checkpoint(self.out / CHECKPOINT_NAME, Checkpoint(
            self.atoms.get_positions(), self.atoms.get_momenta(), self.atoms.cell.array.copy(), self.step,
            self.writer.n_frames, self.rng.bit_generator.state, {"transferred_energy": self.transferred_energy},
            wall, self.cfg.settings_key(), self.guards.history()))
        self.record.update(steps_done=self.step, n_frames=self.writer.n_frames, wall_s=wall)
        write_json_atomic(self.out / RECORD_NAME, self.record)

    def fail(self, message: str) -> None:
        """Record ``failed`` (any error outside the guards); resume continues from the checkpoint."""
        self._stop("failed", message)

    def _stop(self, status: str, message: str, guard: MDGuardError | None = None) -> None:
        try:
            self.writer.flush()
        except OSError as exc:
            message = f"{message} (then flushing the frames failed: {exc})"
        self.record.update(status=status, message=message, n_frames_on_disk=self.writer.n_frames,
                           wall_s=self.wall0 + time.perf_counter() - self.t0, **self.guards.record_fields())
        if guard is not None:
            self.record.update(invalid_reason=message, invalid_step=guard.step, invalid_guard=guard.guard)
        write_json_atomic(self.out / RECORD_NAME, self.record)
        self.log.error("%s: %s (%d frames kept on disk)", status, message, self.writer.n_frames)
        self.state = status
        self.row = {"status": status, "reason": message, "wall_s": self.record["wall_s"],
                    **({"invalid_reason": message, "invalid_step": guard.step} if guard is not None else {})}
        self.close()

    def _finish(self) -> None:
        from phonion.md.io.h5md import H5MDReader
        from phonion.md.io.h5md_write import update_metadata

        self.writer.close()
        temps = H5MDReader(self.out / TRAJECTORY_NAME).read(atoms=[0]).temperatures_K
        self.record.update(status="complete", n_frames=int(temps.size), production_steps=self.cfg.steps,
                           mean_temperature_K=float(temps.mean()), std_temperature_K=float(temps.std()),
                           temperature_ratio=float(temps.mean()) / self.cfg.temperature_K,
                           transferred_energy_eV=self.transferred_energy,
                           wall_s=self.wall0 + time.perf_counter() - self.t0, **self.guards.record_fields())
        update_metadata(self.out / TRAJECTORY_NAME, mean_temperature_K=self.record["mean_temperature_K"],
                        std_temperature_K=self.record["std_temperature_K"], status="complete")
        write_json_atomic(self.out / RECORD_NAME, self.record)
        self.log.info("complete: %d frames, <T> = %.1f ± %.1f K", temps.size,
                      self.record["mean_temperature_K"], self.record["std_temperature_K"])
        self.state = "done"
        self.row = {"status": "complete", "steps": self.step, "frames": int(temps.size),
                    "wall_s": self.record["wall_s"], "mean_T_K": self.record["mean_temperature_K"]}
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        log = getattr(self, "log", None)
        for h in list(log.handlers if log is not None else []):
            h.close()
            log.removeHandler(h)
