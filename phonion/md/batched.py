"""``phonion md --engine batched``: every run of a sweep of one structure advanced together in one process.

All temperature × seed × fix variants of a :class:`phonion.md.sweep.SweepConfig` share one MACE
model (or committee); at every step the positions of all active runs go through one batched
model call (:class:`phonion.md.batched_forces.BatchedMACE`), and each run is integrated with its
own target temperature, degrees of freedom, fixed atoms and random generator
(:class:`phonion.md.batched_run.BatchedRun`: ASE's Bussi / velocity-Verlet step, per system). Each
run keeps today's layout ``OUT/T{T}_seed{s}_fix{f}/`` (traj.h5, run.json with ``engine`` and
``batch_size``, checkpoint.npz, run.log) and statuses (complete / invalid / failed / running): a
run that trips a guard is marked invalid and leaves the batch, the others go on.

Refused before any work: a calculator other than MACE, an ensemble other than ``nvt-bussi`` /
``nve`` (Nosé–Hoover and Langevin: ``--engine ase``), runs of different atom counts in one batch.
``batch_size`` caps the systems per model call (default: all runs at once); an out-of-memory
error halves it for the rest of the sweep without losing a step.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from phonion.core.mace_graph import graph_note
from phonion.md.batched_run import BATCHED_ENSEMBLES, BatchedRun
from phonion.md.md_config import MDConfig

__all__ = ["run_batched", "check_batched", "ENGINES"]

ENGINES = ("ase", "batched")


def check_batched(cfg, batch_size: int | None) -> None:
    """Refuse (ValueError) a sweep the batched engine cannot run, naming the setting and the way out."""
    from phonion.md.batched_forces import check_batched_spec

    run = cfg.run
    check_batched_spec(run.calculator)
    if run.ensemble not in BATCHED_ENSEMBLES:
        raise ValueError(f"ensemble {run.ensemble!r}: --engine batched integrates "
                         f"{' and '.join(BATCHED_ENSEMBLES)} only; use --engine ase for {run.ensemble}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be an integer ≥ 1, got {batch_size!r} (--batch-size)")


def check_same_size(runs: list[BatchedRun]) -> None:
    """One batch, one atom count: the sweep's runs share structure and supercell, so this holds
    unless a structure file changes under a resumed sweep; refuse clearly if it does not."""
    sizes = {len(r.atoms) for r in runs}
    if len(sizes) > 1:
        detail = ", ".join(f"{Path(r.cfg.output).name}: {len(r.atoms)}" for r in runs)
        raise ValueError(f"--engine batched: the runs of one batch must have the same number of atoms "
                         f"({detail}); run structures of different sizes as separate sweeps")


def run_batched(cfg, *, resume: bool = False, batch_size: int | None = None, progress: bool = True,
                threads: int | None = None, engine: str = "batched", executor: str = "local",
                workers: int = 1, device: str | None = None, forces=None,
                engine_choice: dict | None = None) -> list[dict]:
    """Run every run of ``cfg`` (a SweepConfig) in one batch; return the sweep summary rows.

    Parameters
    ----------
    cfg : SweepConfig
    resume : continue interrupted runs from their checkpoints
    batch_size : systems per model call (None: all active runs)
    progress : one progress bar over the slowest run's steps
    threads : torch / OpenMP threads of this process (None: the free cores,
        ``phonion.core.threads.plan_threads``); recorded in every run.json
    engine, executor, workers : as given to ``run_sweep``; anything but ``batched``, ``local``, 1 is refused
    engine_choice : how the engine was chosen (``phonion.md.engine_choice``), for sweep.json
    device : torch device of the model (None: the SPEC's or the default)
    forces : a :class:`BatchedMACE` to use (tests); default built from ``cfg.run.calculator``

    Returns
    -------
    The rows of :func:`phonion.md.sweep.run_sweep` (also written to ``OUT/sweep_summary.json``).
    """
    from phonion.md.sweep import preflight_sweep

    from phonion.core.threads import plan_threads
    from phonion.core.threads import threads as thread_cap

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r} (--engine)")
    if executor != "local" or workers != 1:
        raise ValueError(f"--engine batched runs every run in this one process; --executor {executor} "
                         f"--workers {workers} do not apply (use --engine ase for a process pool or dask)")
    check_batched(cfg, batch_size)
    preflight_sweep(cfg)
    plan = plan_threads(1, threads)
    with thread_cap(plan["threads"]):
        return _run_batched(cfg, resume, batch_size, progress, plan, device, forces, engine_choice)


def _run_batched(cfg, resume, batch_size, progress, plan, device, forces, engine_choice=None) -> list[dict]:
    from phonion.md.batched_forces import BatchedMACE
    from phonion.md.restart import RunLock, check_output_dir
    from phonion.md.sweep import SUMMARY_NAME, _row, _write, failed_row

    configs: list[MDConfig] = cfg.runs()
    out = Path(cfg.output)
    _write(out / "sweep.json", {**cfg.to_dict(), "engine": "batched", "batch_size": batch_size, "threads": plan,
                                "engine_choice": engine_choice or {"engine": "batched", "how": "given",
                                                                   "why": "--engine batched"}})
    rows: list = [None] * len(configs)
    with contextlib.ExitStack() as stack:
        for c in configs:
            stack.enter_context(RunLock(check_output_dir(c.output)))
        runs = [BatchedRun(c, resume, batch_size or len(configs), 1, plan["threads"]) for c in configs]
        verdicts = [r.check() for r in runs]  # refusals (unfinished run without --resume) before any work
        forces = forces or BatchedMACE(cfg.run.calculator, device=device)
        for r in runs:
            r.num_models = forces.num_models
        try:
            _drive(runs, verdicts, forces, batch_size, progress)
        finally:
            for i, (r, c, v) in enumerate(zip(runs, configs, verdicts)):
                r.close()
                if v is not None:
                    rows[i] = {**_blank(_row(c)), **v}
                elif r.row is not None:
                    rows[i] = {**_blank(_row(c)), **r.row}
                else:
                    rows[i] = {**failed_row(_row(c), "interrupted before it finished"), "status": "interrupted"}
            _write(out / SUMMARY_NAME, rows)
    return rows


def _blank(row: dict) -> dict:
    return {**row, "steps": None, "frames": None, "mean_T_K": None, "invalid_reason": None,
            "invalid_step": None, "reason": None, "wall_s": None}


def _drive(runs: list[BatchedRun], verdicts: list, forces, batch_size: int | None, progress: bool) -> None:
    """Open the runs to do, evaluate their first forces, then step them together until all are done."""
    from tqdm import tqdm

    todo = [r for r, v in zip(runs, verdicts) if v is None]
    for r in todo:
        r.open(backend=f"mace batched ({forces.num_models} model{'s' if forces.num_models > 1 else ''})",
               graph=graph_note(forces))
    if not todo:
        return
    check_same_size(todo)
    if batch_size is not None:
        forces.max_batch = batch_size
    _evaluate(todo, forces, first=True)
    start = min(r.step for r in todo)
    total = max(r.cfg.total_steps for r in todo)
    with tqdm(total=total, initial=start, unit="step", disable=not progress, mininterval=1.0,
              desc=f"MD batched × {len(todo)}") as bar:
        while True:
            active = [r for r in todo if r.state == "active"]
            if not active:
                break
            for r in active:
                r.pre_force()
            _evaluate(active, forces)
            bar.update(max(r.step for r in todo) - bar.n)


def _evaluate(active: list[BatchedRun], forces, first: bool = False) -> None:
    """One batched force call for ``active``; hand each run its results. A failing call marks the
    runs ``failed`` (resume continues from their checkpoints) and is raised again."""
    try:
        results = forces.compute([r.atoms for r in active])
    except BaseException as exc:
        for r in active:
            r.fail(f"{type(exc).__name__}: {exc}")
        raise
    for r, (energy, f, var) in zip(active, results):
        (r.first_forces if first else r.post_force)(energy, f, var)
