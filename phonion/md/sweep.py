"""Sweeps of MD runs (temperatures × seeds × fixed-anion variants) through a real executor.

Each run has its own directory ``OUT/T{T}_seed{s}_fix{f}/`` (``traj.h5``, ``run.json``,
``checkpoint.npz``, ``run.log``) and is an independent :func:`phonion.md.driver.run_md` call, so
any executor that maps a function over arguments will do:

============  ===============================================================================
executor      how
============  ===============================================================================
``local``     ``concurrent.futures.ProcessPoolExecutor`` (spawn context), ``workers``
              processes with (free cores) // workers torch / OpenMP threads each (or
              ``threads``). One worker runs the runs one after another in this process
              (progress bar visible), with its threads capped the same way.
``dask``      ``dask.distributed``: the scheduler at ``scheduler_address``, or a
              ``LocalCluster`` of ``workers`` single-threaded worker processes.
``slurm``     ``dask_jobqueue.SLURMCluster(**slurm)`` scaled to ``workers`` jobs, e.g.
              ``slurm={"cores": 8, "memory": "16GB", "walltime": "24:00:00",
              "queue": "gpu", "job_extra_directives": ["--gres=gpu:1"]}``
              (not tested here: no SLURM on this machine).
============  ===============================================================================

Runs are idempotent: a finished run is not re-run (its files are left untouched), and with
``resume=True`` an interrupted one continues from its checkpoint. A run stopped by a guard
(status ``invalid``, never re-run, reason in ``invalid_reason``) or by any error (status
``failed``, the error in ``reason``) is reported in the summary; the other runs go on, and
``sweep_summary.json`` is always written (runs cut short by Ctrl-C: ``interrupted``). Settings
that clash with runs already in the output directory are refused before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from phonion.core.threads import limit_threads, plan_threads, worker_init
from phonion.core.threads import threads as thread_cap
from phonion.md.md_config import FIX_CHOICES, MDConfig, coerce, read_yaml

EXECUTORS = ("local", "dask", "slurm")
SUMMARY_NAME = "sweep_summary.json"


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: every combination of ``temperatures_K`` × ``seeds`` × ``fix``.

    Attributes
    ----------
    temperatures_K : tuple of float, K
    seeds : tuple of int
    fix : tuple of str, each ``none``, ``O_e`` or ``O_c``
    output : str, sweep directory (one sub-directory per run)
    run : MDConfig, the settings shared by all runs (its temperature_K, seed, fix and output
        are replaced per run)
    """

    temperatures_K: tuple[float, ...] = (600.0,)
    seeds: tuple[int, ...] = (0,)
    fix: tuple[str, ...] = ("none",)
    output: str = "md-sweep"
    run: MDConfig = MDConfig()

    def __post_init__(self):
        for name in ("temperatures_K", "seeds", "fix"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not value:
                raise ValueError(f"sweep settings: {name} must be a non-empty list, got {value!r}")
            if len(set(value)) != len(value):
                raise ValueError(f"sweep settings: {name} has repeated values {list(value)}")
        bad = [f for f in self.fix if f not in FIX_CHOICES]
        if bad:
            raise ValueError(f"sweep settings: fix must be from {', '.join(FIX_CHOICES)}, got {bad}")
        for name, values in (("temperatures_K", self.temperatures_K), ("seeds", self.seeds)):
            for v in values:  # validates each value the way MDConfig does
                dataclasses.replace(self.run, **{name[:-1] if name == "seeds" else "temperature_K": v})

    def run_name(self, temperature_K: float, seed: int, fix: str) -> str:
        """Directory name of one run: ``T{T:g}_seed{seed}_fix{fix}``."""
        return f"T{temperature_K:g}_seed{seed}_fix{fix}"

    def runs(self) -> list[MDConfig]:
        """The MDConfig of every run, temperatures outermost, then seeds, then fix."""
        return [dataclasses.replace(self.run, temperature_K=float(t), seed=int(s), fix=f,
                                    output=str(Path(self.output) / self.run_name(t, s, f)))
                for t in self.temperatures_K for s in self.seeds for f in self.fix]

    def to_dict(self) -> dict:
        """Flat dictionary: the sweep lists plus the shared MDConfig fields."""
        shared = {k: v for k, v in self.run.to_dict().items()
                  if k not in ("temperature_K", "seed", "fix", "output")}
        return {"temperatures_K": list(self.temperatures_K), "seeds": list(self.seeds),
                "fix": list(self.fix), "output": self.output, **shared}

    @classmethod
    def from_dict(cls, data: dict) -> SweepConfig:
        """From one flat mapping: sweep lists (``temperatures_K``, ``seeds``, ``fix``; scalars
        ``temperature_K`` / ``seed`` accepted) plus any MDConfig field."""
        data = {k: v for k, v in data.items() if v is not None}
        sweep = {}
        for plural, singular in (("temperatures_K", "temperature_K"), ("seeds", "seed")):
            if plural in data and singular in data:
                raise ValueError(f"sweep settings: give {plural} or {singular}, not both")
            value = data.pop(plural, data.pop(singular, None))
            if value is not None:
                sweep[plural] = value
        if "fix" in data:
            sweep["fix"] = data.pop("fix")
        if "output" in data:
            sweep["output"] = data.pop("output")
        sweep = coerce(cls, sweep)
        return cls(**sweep, run=MDConfig.from_dict(data))

    @classmethod
    def from_yaml(cls, path, **overrides) -> SweepConfig:
        """Read a flat YAML mapping; ``overrides`` (not None) win over the file."""
        return cls.from_dict({**read_yaml(path), **{k: v for k, v in overrides.items() if v is not None}})


#: the pool initialiser, under its old name (phonion.workflows.learn_steps imports it from here)
_worker_init = worker_init


def run_one(cfg_dict: dict, resume: bool, threads: int | None = None, progress: bool = False) -> dict:
    """Run one MD run and return its summary row (never raises for a failed run).

    Parameters
    ----------
    cfg_dict : MDConfig as a plain dict (pickles across any executor)
    resume : continue an interrupted run from its checkpoint
    threads : cap torch / OpenMP threads in the worker (None: leave as is)
    progress : show the run's progress bar
    """
    from phonion.md.driver import MDGuardError, run_md

    if threads:
        limit_threads(threads)
    cfg = MDConfig.from_dict(cfg_dict)
    row = _row(cfg)
    t0 = time.perf_counter()
    none = {"steps": None, "frames": None, "mean_T_K": None, "invalid_reason": None, "invalid_step": None}
    try:
        res = run_md(cfg, resume=resume, progress=progress)
    except MDGuardError as exc:  # the run left physical reality: recorded, never re-run
        return {**row, **none, "reason": str(exc), "status": "invalid", "wall_s": time.perf_counter() - t0,
                "invalid_reason": str(exc), "invalid_step": exc.step}
    except Exception as exc:  # noqa: BLE001 - one failing run never takes the sweep down
        return failed_row(row, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
    return {**row, **none, "reason": None, "status": res.status, "steps": res.steps_done, "frames": res.n_frames,
            "wall_s": res.wall_s, "mean_T_K": res.mean_temperature_K}


def failed_row(row: dict, reason: str, wall_s: float | None = None) -> dict:
    """The summary row of a run that ended in an error: status ``failed``, ``reason`` the error."""
    return {**row, "steps": None, "frames": None, "mean_T_K": None, "invalid_reason": None,
            "invalid_step": None, "status": "failed", "reason": reason, "wall_s": wall_s}


def _row(cfg: MDConfig) -> dict:
    return {"run": Path(cfg.output).name, "path": str(Path(cfg.output) / "traj.h5"),
            "temperature_K": cfg.temperature_K, "seed": cfg.seed, "fix": cfg.fix}


def check_calculator(spec: str) -> None:
    """Fail early (CalculatorSpecError naming the SPEC) on a calculator SPEC that cannot work:
    a malformed SPEC, a missing mace model file, a ``module:function`` that does not return an
    ASE calculator (that one is built once here, as a check)."""
    from phonion.core.calculators import (CalculatorSpecError, check_mace_options, committee_files, parse_spec,
                                          resolve_calculator)

    parsed = parse_spec(spec)
    if parsed.kind == "mace":
        check_mace_options(parsed)
        missing = [f for f in committee_files(parsed.target) if not Path(f).is_file()]
        if missing:
            raise CalculatorSpecError(f"{spec!r}: no such MACE model file {', '.join(missing)}")
    elif parsed.kind == "python":
        resolve_calculator(parsed, device="cpu")


def preflight_sweep(cfg: SweepConfig) -> None:
    """Every check a sweep can make before it writes anything: output directory, calculator SPEC,
    and runs already in the output directory made with other settings (ValueError)."""
    from phonion.md.driver import preflight
    from phonion.md.restart import check_output_dir

    cfg.run.check_frames()
    check_calculator(cfg.run.calculator)
    check_output_dir(cfg.output)
    for run in cfg.runs():
        preflight(run)


def run_sweep(cfg: SweepConfig, executor: str = "local", workers: int = 1,
              scheduler_address: str | None = None, resume: bool = False,
              slurm: dict | None = None, progress: bool = True, threads: int | None = None,
              engine: str = "ase", batch_size: int | None = None) -> list[dict]:
    """Run every run of a sweep through an executor; return one summary row per run.

    Parameters
    ----------
    cfg : SweepConfig
    executor : ``local`` | ``dask`` | ``slurm`` (see module docstring)
    workers : processes (local), LocalCluster workers (dask) or SLURM jobs (slurm)
    scheduler_address : a running dask scheduler, e.g. ``tcp://10.0.0.1:8786`` (dask only)
    resume : continue interrupted runs from their checkpoints
    slurm : keyword arguments of ``dask_jobqueue.SLURMCluster``
    progress : progress bars (only when the runs execute in this process)
    engine : ``ase`` (one ASE integrator per run, any calculator), ``batched`` (MACE only: all runs
        advanced together in this process, :func:`phonion.md.batched.run_batched`) or ``auto`` (the
        faster of the two, measured on this device: :func:`phonion.md.engine_choice.choose_engine`)
    batch_size : batched engine: systems per model call (None: all runs)
    threads : torch / OpenMP threads of each run (local executor); None: the cores free when the sweep
        starts divided among the workers (``phonion.core.threads.plan_threads``; never more threads than
        cores). The plan is written to ``sweep.json`` and each run's thread count to its ``run.json``.

    Returns
    -------
    list of dict: run, path, status ("complete", "already complete", "invalid", "failed",
    "interrupted"), reason (the error of a failed run, the guard of an invalid one),
    steps, frames, wall_s (s), mean_T_K (K), temperature_K, seed, fix, invalid_reason and
    invalid_step (integrator step) for an invalid run (None otherwise). Also written to
    ``OUT/sweep_summary.json``; the sweep settings go to ``OUT/sweep.json``.
    """
    choice = None
    if engine == "auto":  # measured on this device (phonion.md.engine_choice), written to sweep.json
        from phonion.md.engine_choice import choose_engine

        choice = choose_engine(cfg, workers=workers, threads=threads, batch_size=batch_size, executor=executor)
        engine = choice["engine"]
        if progress:
            print(f"phonion md: engine {engine} ({choice['why']})", file=sys.stderr, flush=True)
        if engine == "batched":
            workers, executor = 1, "local"
    if engine != "ase":  # engine / batch_size: phonion.md.batched (one process, all runs in one batch)
        from phonion.md.batched import run_batched

        return run_batched(cfg, resume=resume, batch_size=batch_size, progress=progress, threads=threads,
                           engine=engine, executor=executor, workers=workers, engine_choice=choice)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if scheduler_address and executor != "dask":
        raise ValueError("--scheduler-address needs --executor dask")
    here = executor == "local" or (executor == "dask" and not scheduler_address)  # workers on this machine
    plan = plan_threads(workers, threads) if here else {
        "threads": threads or 1, "workers": workers, "how": f"{executor}: {threads or 1} per worker (given or 1)"}
    preflight_sweep(cfg)
    out = Path(cfg.output)
    _write(out / "sweep.json", {**cfg.to_dict(), "threads": plan, "engine": "ase",
                                "engine_choice": choice or {"engine": "ase", "how": "given", "why": "--engine ase"}})
    runs = cfg.runs()
    jobs = [c.to_dict() for c in runs]
    threads = plan["threads"]
    rows: list = [None] * len(jobs)
    try:
        if executor == "local":
            _run_local(jobs, resume, workers, threads, progress, rows)
        else:
            rows[:] = _run_dask(jobs, resume, workers, scheduler_address, executor, slurm or {}, threads)
    finally:  # the summary is always written, also after Ctrl-C (unfinished runs: "interrupted")
        rows[:] = [r if r is not None else {**failed_row(_row(c), "interrupted before it finished"),
                                            "status": "interrupted"} for r, c in zip(rows, runs)]
        _write(out / SUMMARY_NAME, rows)
    return rows


def _write(path: Path, data) -> None:
    from phonion.md.restart import write_json_atomic

    try:
        write_json_atomic(path, data)
    except OSError as exc:
        raise ValueError(f"{path}: cannot write ({exc.strerror or exc}); free space or choose "
                         "another output directory (-o)") from None


def _run_local(jobs, resume, workers, threads, progress, rows: list) -> None:
    if workers == 1:
        with thread_cap(threads):  # this process: capped for the runs, restored afterwards
            for i, job in enumerate(jobs):
                rows[i] = run_one(job, resume, None, progress)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=worker_init, initargs=(threads, os.getpid())) as pool:
        futures = [pool.submit(run_one, job, resume) for job in jobs]
        for i, (job, f) in enumerate(zip(jobs, futures)):
            try:
                rows[i] = f.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (e.g. killed): that run failed
                rows[i] = failed_row(_row(MDConfig.from_dict(job)), f"{type(exc).__name__}: {exc}")


def _run_dask(jobs, resume, workers, address, executor, slurm, threads) -> list[dict]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ValueError("executor dask needs the dask and distributed packages "
                         "(pip install dask distributed)") from exc
    if executor == "slurm":
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError as exc:
            raise ValueError("executor slurm needs dask-jobqueue (pip install dask-jobqueue)") from exc
        cluster = SLURMCluster(**slurm)
        cluster.scale(jobs=workers)
        threads = int(slurm.get("cores", threads))
    elif address:
        cluster = None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    try:
        with Client(address if cluster is None else cluster) as client:
            futures = [client.submit(run_one, job, resume, threads, pure=False) for job in jobs]
            return client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()


def format_summary(rows: list[dict]) -> str:
    """The summary rows as a plain-text table (long statuses cut; the rows hold them whole)."""
    head = f"{'run':<28} {'status':<18} {'steps':>8} {'frames':>7} {'wall_s':>9} {'<T>/K':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        num = (lambda v, f: "-" if v is None else format(v, f))
        status = r["status"] if len(r["status"]) <= 18 else r["status"][:15] + "..."
        lines.append(f"{r['run']:<28} {status:<18} {num(r['steps'], 'd'):>8} {num(r['frames'], 'd'):>7} "
                     f"{num(r['wall_s'], '.1f'):>9} {num(r['mean_T_K'], '.1f'):>8}")
    return "\n".join(lines)
