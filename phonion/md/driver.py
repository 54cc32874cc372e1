"""Long MD with any calculator: a thin driver over ASE's integrators, streamed to H5MD.

``run_md(cfg)`` builds the (super)cell, holds an oxygen class fixed if asked, draws
Maxwell–Boltzmann velocities from a seeded ``numpy.random.Generator``, picks the integrator
from :data:`INTEGRATORS` and attaches observers (``dyn.attach``): guards, the H5MD frame
writer, checkpoints, the progress bar. Equilibration steps are run first and not written;
production frames are written every ``sample_every`` steps with their production step
numbers (time origin = start of production).

Degrees of freedom and constraints: see ``phonion.md.integrators``.

Restart
-------
Every ``checkpoint_every`` steps the writer is flushed, then ``checkpoint.npz`` (positions,
momenta, step, frame count, generator state, public thermostat state) replaces the old one
atomically, then the calculator is ``reset()`` so that its cached state (e.g. EMT's neighbour
list) is that of a fresh calculator, as after a restart. ``resume=True`` truncates the H5MD
to the checkpoint's frame count and continues: no missing or duplicated frame, whatever the
moment of the kill. Bit-exact continuation holds for ``nve``, ``nvt-langevin`` and
``nvt-bussi`` (their only state is positions, momenta and the generator; Bussi's diagnostic
``transferred_energy`` is restored too), given a calculator that is a deterministic function
of the positions. ``nvt-nhc``: ASE exposes no public way to read or set the chain variables
(η, p_η), so they restart at zero; the continued run samples the same ensemble but is not
bit-identical to an uninterrupted one.

Run status (``run.json`` ``status``, a contract scripts rely on)
---------------------------------------------------------------
``running`` while it runs (or after a kill), ``complete``, ``invalid`` (a guard tripped: the run
left physical reality; ``invalid_reason``, ``invalid_step``, ``invalid_guard``; every frame written
before is kept; never re-run, resuming raises the same MDGuardError), ``failed`` (any other
exception, ``message``; ``resume=True`` continues from the checkpoint). Guards: ``phonion.md.guards``
and ``phonion.md.driver_guards`` (pair floors, temperature window, committee uncertainty).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import units

from phonion.core.mace_graph import graph_note
from phonion.core.threads import current_threads
from phonion.md.driver_guards import RunGuards, current_results, is_committee
from phonion.md.guards import MDGuardError
from phonion.md.integrators import (EXACT_RESTART, INTEGRATORS, THERMOSTAT_STATE, build_atoms,
                            initial_momenta, kinetic_temperature_K)
from phonion.md.md_config import ENSEMBLES, FIX_CHOICES, MDConfig
from phonion.md.restart import (CHECKPOINT_NAME, LOG_NAME, RECORD_NAME, TRAJECTORY_NAME, Checkpoint, QuietFileHandler, RunLock,
                        check_output_dir, load_checkpoint, read_json, rng_from_state, save_checkpoint,
                        write_json_atomic)

__all__ = ["MDConfig", "RunResult", "MDGuardError", "run_md", "initial_momenta", "build_atoms",
           "kinetic_temperature_K", "INTEGRATORS", "ENSEMBLES", "FIX_CHOICES", "EXACT_RESTART"]


@dataclass(frozen=True)
class RunResult:
    """What a run left on disk and how it went.

    Attributes
    ----------
    trajectory, settings : Path, the H5MD file and its ``run.json``
    status : "complete" (ran now) or "already complete" (found finished, not re-run); an
        invalid run raises MDGuardError instead
    steps_done : int, integrator steps (equilibration + production)
    n_frames : int, frames in the H5MD file
    wall_s : float, wall time over all sessions of the run, s
    mean_temperature_K, std_temperature_K : float, over the production frames, K
    """

    trajectory: Path
    settings: Path
    status: str
    steps_done: int
    n_frames: int
    wall_s: float
    mean_temperature_K: float
    std_temperature_K: float


def _resolve(cfg: MDConfig, calculator):
    from phonion.core.calculators import parse_spec, resolve_calculator

    if calculator is not None:
        return calculator
    spec = parse_spec(cfg.calculator)  # EMT needs no device; passing one keeps torch out of EMT runs
    return resolve_calculator(spec, device="cpu" if spec.kind == "emt" else None)


def _metadata(cfg: MDConfig, calculator, fixed, ndof) -> dict:
    from phonion.core.calculators import CalculatorSpecError, calculator_metadata

    try:
        meta = calculator_metadata(cfg.calculator, surrogate_reference=cfg.surrogate_reference)
    except CalculatorSpecError:
        meta = {"calculator": cfg.calculator}
    if calculator is not None:
        meta["calculator_object"] = type(calculator).__name__
    return {**meta, "source": "phonion md", "ensemble": cfg.ensemble,
            "temperature_K_setting": cfg.temperature_K, "seed": cfg.seed, "fix": cfg.fix,
            "fixed_indices": [int(i) for i in fixed], "n_degrees_of_freedom": int(ndof),
            "structure": cfg.structure, "supercell": list(cfg.supercell),
            "timestep_fs": cfg.timestep_fs, "sample_every": cfg.sample_every,
            "equilibration_steps": cfg.equilibration_steps, "settings": cfg.to_dict(),
            "step_origin": "start of production (equilibration steps are not counted)",
            "forces_note": "calculator forces before constraints (fixed atoms keep theirs)"}


def run_md(cfg: MDConfig, *, calculator=None, resume: bool = False, progress: bool = True) -> RunResult:
    """Run (or resume, or find finished) one MD run into ``cfg.output``.

    Parameters
    ----------
    cfg : MDConfig
    calculator : ASE calculator, optional; default: built from ``cfg.calculator``
    resume : continue from ``checkpoint.npz`` (or start if there is none); without it an
        unfinished run in ``cfg.output`` is an error (nothing is overwritten)
    progress : show a tqdm progress bar with ETA

    Returns
    -------
    RunResult. A run found complete in ``run.json`` (same settings, ≥ the steps) is not re-run.

    Raises
    ------
    ValueError : bad settings, or settings that differ from the run found in ``cfg.output``
    MDGuardError : a guard tripped (message: step and cause; ``.step``, ``.guard``); frames
        before it are kept and run.json says ``invalid``. A run found invalid is not re-run
        (with or without ``resume``): the recorded verdict is raised again.
    """
    cfg.check_frames()
    out = check_output_dir(cfg.output)
    with RunLock(out):
        record = preflight(cfg)
        if record is not None:
            if record.get("status") == "invalid":
                raise MDGuardError(str(record.get("invalid_reason")), record.get("invalid_step"),
                                   record.get("invalid_guard"))
            if record.get("status") == "complete" and record.get("steps_done", -1) >= cfg.total_steps:
                return _result(out, record, "already complete")
            if not resume:
                raise ValueError(f"{out}: holds an unfinished or shorter run ({record.get('status')}, "
                                 f"{record.get('steps_done', 0)} steps); pass resume=True (--resume) "
                                 "to continue it, or choose another output directory")
        elif (out / TRAJECTORY_NAME).exists() and not resume:
            raise ValueError(f"{out / TRAJECTORY_NAME}: exists but is not a phonion md run; "
                             "choose another output directory")
        try:
            ckpt = load_checkpoint(out / CHECKPOINT_NAME) if resume and record is not None else None
        except ValueError as exc:  # unreadable checkpoint: run.json says so, the frames stay
            write_json_atomic(out / RECORD_NAME, {**record, "status": "failed", "message": str(exc)})
            raise
        if ckpt is not None:
            _check_same_settings(ckpt.settings_key, cfg, out / CHECKPOINT_NAME)
            if ckpt.step > cfg.total_steps:
                raise ValueError(f"{out}: the run there is at step {ckpt.step}, beyond the "
                                 f"{cfg.total_steps} steps asked; ask for at least as many")
        return _Run(cfg, out, calculator, progress).execute(ckpt, record)


def preflight(cfg: MDConfig) -> dict | None:
    """The ``run.json`` found in ``cfg.output`` (None: none), after checking that it was made with
    the same settings (ValueError naming the file and the settings otherwise). Writes nothing."""
    record = read_json(Path(cfg.output) / RECORD_NAME)
    if record is not None:
        _check_same_settings(record.get("settings_key", {}), cfg, Path(cfg.output) / RECORD_NAME)
    return record


def _check_same_settings(key: dict, cfg: MDConfig, where: Path) -> None:
    want = cfg.settings_key()
    diff = sorted(k for k in set(key) | set(want) if key.get(k) != want.get(k))
    if diff:
        raise ValueError(f"{where}: the run there has other settings ({', '.join(diff)}: "
                         f"{[key.get(k) for k in diff]} there, {[want.get(k) for k in diff]} now); "
                         "choose another output directory")


def _result(out: Path, record: dict, status: str) -> RunResult:
    return RunResult(out / TRAJECTORY_NAME, out / RECORD_NAME, status, int(record["steps_done"]),
                     int(record["n_frames"]), float(record["wall_s"]),
                     float(record["mean_temperature_K"]), float(record["std_temperature_K"]))


class _Run:
    """One session of a run: set up, attach observers, integrate, record."""

    def __init__(self, cfg: MDConfig, out: Path, calculator, progress: bool):
        self.cfg, self.out, self.progress = cfg, out, progress
        self.calculator = calculator
        self.log = _open_log(out / LOG_NAME)

    def execute(self, ckpt: Checkpoint | None, record: dict | None) -> RunResult:
        from phonion.md.io.h5md import H5MDWriter

        cfg, out = self.cfg, self.out
        atoms, fixed, ndof = build_atoms(cfg)
        self.ndof = ndof
        free = np.ones(len(atoms), bool)
        free[fixed] = False
        atoms.calc = _resolve(cfg, self.calculator)
        self.wall0, self.t0 = (ckpt.wall_s if ckpt else 0.0), time.perf_counter()
        restarts = (record or {}).get("restarts", []) if ckpt else []
        if ckpt is None:
            rng = np.random.default_rng(cfg.seed)
            atoms.set_momenta(initial_momenta(atoms.get_masses(), cfg.temperature_K, free, ndof, rng),
                              apply_constraint=False)
            self.log.info("start: %s", cfg.to_dict())
        else:
            rng = rng_from_state(ckpt.rng_state)
            atoms.set_positions(ckpt.positions, apply_constraint=False)
            atoms.set_momenta(ckpt.momenta, apply_constraint=False)
            restarts = restarts + [{"from_step": ckpt.step, "frames_kept": ckpt.n_frames,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
            self.log.info("resume from checkpoint at step %d (%d frames kept; bit-exact: %s)",
                          ckpt.step, ckpt.n_frames, EXACT_RESTART[cfg.ensemble])
        self.record = {"status": "running", "settings": cfg.to_dict(), "settings_key": cfg.settings_key(),
                       "n_atoms": len(atoms), "fixed_indices": fixed.tolist(), "n_degrees_of_freedom": ndof,
                       "restarts": restarts, "exact_restart": EXACT_RESTART[cfg.ensemble], "engine": "ase",
                       "trajectory": TRAJECTORY_NAME, "steps_done": ckpt.step if ckpt else 0,
                       "n_frames": ckpt.n_frames if ckpt else 0, "wall_s": self.wall0, "threads": current_threads(),
                       "mace_graph": graph_note(atoms.calc)}
        write_json_atomic(out / RECORD_NAME, self.record)
        self.atoms, self.rng = atoms, rng
        self.guards = RunGuards(cfg, atoms, ndof, ckpt.uncertainty if ckpt else None)
        self.dyn = dyn = INTEGRATORS[cfg.ensemble](atoms, cfg, rng, ndof)
        self.has_stress = "stress" in getattr(atoms.calc, "implemented_properties", ())
        committee = is_committee(atoms.calc)
        if cfg.uncertainty_threshold_eV_A is not None and not committee:
            self.log.warning("uncertainty_threshold_eV_A is set but the calculator is not a committee "
                             "(no forces_var): no uncertainty check")
        self.writer = H5MDWriter(out / TRAJECTORY_NAME, atoms.get_chemical_symbols(), atoms.get_masses(),
                                 timestep_fs=cfg.timestep_fs, stride=cfg.sample_every,
                                 metadata=_metadata(cfg, self.calculator, fixed, ndof),
                                 observables=("potential_energy", "temperature")
                                 + (("stress",) if self.has_stress else ())
                                 + (("force_uncertainty_max",) if committee else ()),
                                 append=ckpt is not None)
        try:
            if ckpt is not None:
                self.writer.truncate(ckpt.n_frames)
                dyn.nsteps = ckpt.step  # public step counter: observers fire on the global grid
                for name, value in ckpt.thermostat.items():
                    setattr(dyn, name, value)
            else:
                self._checkpoint()  # step 0, no frame yet: a kill from here on resumes
            _reset(atoms.calc)      # same calculator state as a fresh one (exact restart)
            return self._integrate(ckpt.step if ckpt else 0)
        finally:
            self.writer.close()
            for h in list(self.log.handlers):
                h.close()
                self.log.removeHandler(h)

    def _integrate(self, start: int) -> RunResult:
        from tqdm import tqdm

        cfg, dyn = self.cfg, self.dyn
        dyn.attach(self._guard, interval=1)
        dyn.attach(self._sample, interval=cfg.sample_every)
        dyn.attach(self._periodic_checkpoint, interval=cfg.checkpoint_every)
        bar = tqdm(total=cfg.total_steps, initial=start, unit="step", disable=not self.progress,
                   desc=f"MD {cfg.temperature_K:g} K {cfg.ensemble} fix {cfg.fix}", mininterval=1.0)
        dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=cfg.sample_every)
        try:
            dyn.run(cfg.total_steps - start)
        except MDGuardError as exc:
            self._stop("invalid", str(exc), exc)
            raise
        except BaseException as exc:
            self._stop("failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            bar.update(dyn.nsteps - bar.n)
            bar.close()
        if self.record["steps_done"] != dyn.nsteps:
            self._checkpoint()
        self.writer.close()
        return self._finish()

    # ---- observers (called by the integrator after each step; global step = dyn.nsteps) ----
    def _guard(self) -> None:
        self.guards(self.dyn.nsteps)

    def _sample(self) -> None:
        from ase.stress import voigt_6_to_full_3x3_stress

        atoms, step = self.atoms, self.dyn.nsteps - self.cfg.equilibration_steps
        if step < 0:
            return
        forces, energy = current_results(atoms)
        extra = {}
        if self.writer.has("force_uncertainty_max_eV_A"):
            extra["force_uncertainty_max_eV_A"] = np.array([self.guards.last_uncertainty])
        if self.has_stress:  # only if the calculator computed it with the forces (no extra call)
            stress = atoms.calc.results.get("stress")
            stress = np.full((3, 3), np.nan) if stress is None else np.asarray(stress, dtype=float)
            extra["stress"] = (voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress)[None]
        self.writer.append(
            atoms.positions[None], atoms.cell.array[None],
            velocities=(atoms.get_velocities() * units.fs)[None],  # Å/(ASE time) -> Å/fs
            forces=forces[None], energies=np.array([energy]),
            temperatures_K=np.array([kinetic_temperature_K(atoms, self.ndof)]), steps=np.array([step]), **extra)

    def _periodic_checkpoint(self) -> None:
        if self.dyn.nsteps > 0:  # step 0 is checkpointed before the run starts
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Flush frames, then write the checkpoint atomically, then reset the calculator."""
        self.writer.flush()
        dyn, step = self.dyn, self.dyn.nsteps
        state = {name: getattr(dyn, name) for name in THERMOSTAT_STATE.get(self.cfg.ensemble, ())}
        wall = self.wall0 + time.perf_counter() - self.t0
        save_checkpoint(self.out / CHECKPOINT_NAME, Checkpoint(
            self.atoms.get_positions(), self.atoms.get_momenta(), self.atoms.cell.array.copy(), step,
            self.writer.n_frames, self.rng.bit_generator.state, state, wall, self.cfg.settings_key(),
            self.guards.history()))
        _reset(self.atoms.calc)
        self.record.update(steps_done=step, n_frames=self.writer.n_frames, wall_s=wall)
        self.log.info("checkpoint: step %d, %d frames, T = %.1f K, wall %.1f s", step,
                      self.writer.n_frames, kinetic_temperature_K(self.atoms, self.ndof), wall)

    # ---- endings ---------------------------------------------------------------------------
    def _stop(self, status: str, message: str, guard: MDGuardError | None = None) -> None:
        """Record ``invalid`` (a guard tripped) or ``failed`` (anything else) with the frames kept."""
        try:
            self.writer.flush()  # keep every frame written before the failing step
        except OSError as exc:  # e.g. a full disk: the frames already on disk stay readable
            message = f"{message} (then flushing the frames failed: {exc})"
        self.record.update(status=status, message=message, n_frames_on_disk=self.writer.n_frames,
                           wall_s=self.wall0 + time.perf_counter() - self.t0, **self.guards.record_fields())
        if guard is not None:
            self.record.update(invalid_reason=message, invalid_step=guard.step, invalid_guard=guard.guard)
        try:
            write_json_atomic(self.out / RECORD_NAME, self.record)
        except OSError as exc:  # a full disk: run.json keeps its last version ("running")
            self.log.error("cannot record the %s status in run.json: %s", status, exc)
        self.log.error("%s: %s (%d frames kept on disk; %s)", status, message, self.writer.n_frames,
                       "the run is invalid and is never re-run" if guard is not None else
                       f"resume restarts from the checkpoint at step {self.record['steps_done']}")

    def _finish(self) -> RunResult:
        from phonion.md.io.h5md import H5MDReader, update_metadata

        traj = H5MDReader(self.out / TRAJECTORY_NAME).read(atoms=[0])
        temps = traj.temperatures_K
        self.record.update(status="complete", n_frames=traj.n_frames,
                           production_steps=self.cfg.steps, mean_temperature_K=float(temps.mean()),
                           std_temperature_K=float(temps.std()),
                           temperature_ratio=float(temps.mean()) / self.cfg.temperature_K,
                           wall_s=self.wall0 + time.perf_counter() - self.t0, **self.guards.record_fields())
        update_metadata(self.out / TRAJECTORY_NAME, mean_temperature_K=self.record["mean_temperature_K"],
                        std_temperature_K=self.record["std_temperature_K"], status="complete")
        write_json_atomic(self.out / RECORD_NAME, self.record)
        self.log.info("complete: %d frames, <T> = %.1f ± %.1f K, wall %.1f s", traj.n_frames,
                      self.record["mean_temperature_K"], self.record["std_temperature_K"],
                      self.record["wall_s"])
        return _result(self.out, self.record, "complete")


def _reset(calc) -> None:
    """Drop the calculator's cached state (results, neighbour lists) if it can."""
    if hasattr(calc, "reset"):
        calc.reset()


def _open_log(path: Path) -> logging.Logger:
    log = logging.getLogger(f"phonion.md.driver.{path.resolve()}")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = QuietFileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log


def main(argv=None) -> int:
    """``python -m phonion.md.driver --config run.yaml [--resume] [key=value ...]``: one run, in-process."""
    import argparse

    from phonion.md.md_config import read_yaml

    p = argparse.ArgumentParser(prog="python -m phonion.md.driver", description=main.__doc__)
    p.add_argument("--config", required=True, help="YAML mapping of MDConfig fields")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    result = run_md(MDConfig.from_dict(read_yaml(args.config)), resume=args.resume,
                    progress=not args.no_progress)
    print(f"{result.status}: {result.trajectory} ({result.n_frames} frames)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
