"""``phonion md --engine auto``: pick the MD engine of a sweep by measuring both on the device at hand.

Whether batching the runs of a sweep into one model call pays depends on the model and the device:
on this project's 2-core CPU the demo's small MACE model ran 4 temperatures 1.3× faster batched
(float32) than as 2 ASE workers, while a train.yaml-sized model batched 2-3× *slower* (compute
bound), and on a GPU batching is the point. So ``auto`` times the force call of each path on the
sweep's own structure and model before the sweep starts (a few seconds):

- ``ase``: one ``MACECalculator`` call on one system with the thread count each worker will get
  (``plan_threads(workers)``); the sweep's rate is (workers that run at once: at most the runs and
  the free cores / threads) × atoms / time;
- ``batched``: one :class:`phonion.md.batched_forces.BatchedMACE` call on the runs of one batch
  (``batch_size`` or all runs) with the free cores; rate = systems × atoms / time.

The faster one wins (ties within 5 % go to ``ase``: more calculators, every ensemble, a process
pool). Force calls are ~90 % of an MD step for both engines (measured: ASE loop 7 %, phonion hooks
2 %), so the call rates rank the engines as whole steps would. Without a measurement (not a MACE
model, one run, an ensemble the batched engine lacks, another executor than ``local``, a
``compile_mode`` model (the batched engine runs eager models only), or a directory whose runs already
started on one engine) the choice is made by rule and the reason is given. The result goes to
``sweep.json["engine_choice"]`` and each run's ``run.json["engine"]``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

__all__ = ["COMPILE_MIN_STEPS", "choose_engine", "mlip_md_spec"]

#: ties within this fraction go to the ASE engine
TIE = 0.05

#: steps per worker from which the chain's MLIP MD on a CPU compiles its float32 model (mace's
#: ``compile_mode=default``). Measured on 2 cores (scripts/results/bench_committee_engines.json): the
#: demo's committee ran 4 × 2000 steps in 113 s compiled (2 ASE workers, warm compile cache) against
#: 131 s batched eager and 145 s ASE eager; a cold cache costs 40–62 s per model and worker (~3 min
#: for a committee of 3), which a run repays only over ~20,000 steps. With the kept graph
#: (phonion.core.mace_graph) a compiled step is 5.9 ms against 11.1 eager float32 and a cold compile
#: ~60 s per model and worker: repaid after ~11,000 steps; 20,000 keeps the margin (a warm cache
#: compiles in ~5 s). Unmeasured on a GPU: eager there.
COMPILE_MIN_STEPS = 20000


def _rule(engine: str, why: str) -> dict:
    return {"engine": engine, "how": "rule", "why": why}


def _started_engine(out: Path) -> tuple[str, Path] | None:
    """(engine, the file that says so) of runs already started in ``out`` (older files without an
    ``engine`` key were written by the ASE engine), or None for a new directory."""
    try:
        paths = [out / "sweep.json", *sorted(out.glob("*/run.json"))] if out.is_dir() else []
    except OSError:  # an unusable output path: the sweep's own checks say what is wrong with it
        return None
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data:
            engine = data.get("engine") or "ase"
            if engine in ("ase", "batched"):
                return engine, path
    return None


def _by_rule(cfg, executor: str) -> dict | None:
    """The choice when no measurement is needed or possible (None: measure)."""
    from phonion.core.calculators import check_mace_options, parse_spec
    from phonion.md.batched_run import BATCHED_ENSEMBLES

    done = _started_engine(Path(cfg.output))
    if done is not None:
        return {"engine": done[0], "how": "kept", "why": f"this directory's runs were started with the {done[0]} "
                                                         f"engine ({done[1]}); a run continues on its engine"}
    parsed = parse_spec(cfg.run.calculator)
    if parsed.kind != "mace":
        return _rule("ase", f"{parsed.kind} calculator: only MACE models batch")
    check_mace_options(parsed)  # a bad option value is refused before any probe or file
    n = len(cfg.runs())
    if n < 2:
        return _rule("ase", "one run: nothing to batch")
    if cfg.run.ensemble not in BATCHED_ENSEMBLES:
        return _rule("ase", f"ensemble {cfg.run.ensemble}: the batched engine integrates "
                            f"{' and '.join(BATCHED_ENSEMBLES)} only")
    if executor != "local":
        return _rule("ase", f"--executor {executor}: the batched engine runs in this process only")
    if parsed.options.get("compile_mode"):
        return _rule("ase", "compile_mode: compiled models run on the ase engine (the batched engine runs "
                            "eager models)")
    return None


def _time(fn, calls: int) -> float:
    fn()
    fn()  # warm-up: first calls allocate and build caches
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _systems(cfg, n: int) -> list:
    """``n`` copies of the sweep's structure, rattled by 0.05 Å like thermal frames (same neighbours)."""
    import numpy as np

    from phonion.md.integrators import build_atoms

    atoms = build_atoms(cfg.runs()[0])[0]
    atoms.set_constraint()
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.normal(0.0, 0.05, a.positions.shape)
        out.append(a)
    return out


def choose_engine(cfg, *, workers: int = 1, threads: int | None = None, batch_size: int | None = None,
                  executor: str = "local", calls: int = 8) -> dict:
    """``{"engine": "ase" | "batched", "how": "measured" | "rule" | "kept", "why", ...}`` for a SweepConfig.

    Measured choices add ``ase_atom_steps_per_s``, ``batched_atom_steps_per_s``, ``ase_s_per_call``,
    ``batched_s_per_call``, ``batch_size``, ``threads_ase``, ``threads_batched`` and ``calls``.
    """
    rule = _by_rule(cfg, executor)
    if rule is not None:
        return rule
    from phonion.core.calculators import resolve_calculator
    from phonion.core.threads import plan_threads
    from phonion.core.threads import threads as thread_cap
    from phonion.md.batched_forces import BatchedMACE

    n_runs = len(cfg.runs())
    batch = min(batch_size or n_runs, n_runs)
    systems = _systems(cfg, batch)
    n_atoms = len(systems[0])
    plan_ase, plan_b = plan_threads(workers, threads), plan_threads(1, threads)
    calc = resolve_calculator(cfg.run.calculator)
    one = systems[0].copy()

    def ase_call():
        calc.calculate(one, ["energy", "forces"], ["positions"])

    with thread_cap(plan_ase["threads"]):
        t_ase = _time(ase_call, calls)
    batched = BatchedMACE(cfg.run.calculator, calculator=calc)
    with thread_cap(plan_b["threads"]):
        t_b = _time(lambda: batched.compute(systems), calls)
    free = max(1, plan_ase["cores"] - int(round(plan_ase.get("busy_cores") or 0)))
    side_by_side = max(1, min(workers, n_runs, free // plan_ase["threads"]))  # workers that really run at once
    rate_ase = side_by_side * n_atoms / t_ase
    rate_b = batch * n_atoms / t_b
    engine = "batched" if rate_b > (1.0 + TIE) * rate_ase else "ase"
    return {"engine": engine, "how": "measured",
            "why": (f"force calls on this device: batched {rate_b:,.0f} atom-steps/s ({batch} systems, "
                    f"{plan_b['threads']} thread(s)) vs ase {rate_ase:,.0f} ({side_by_side} worker(s) at once × "
                    f"{plan_ase['threads']} thread(s)); ties within {TIE:.0%} go to ase"),
            "ase_atom_steps_per_s": rate_ase, "batched_atom_steps_per_s": rate_b,
            "ase_s_per_call": t_ase, "batched_s_per_call": t_b, "batch_size": batch,
            "threads_ase": plan_ase["threads"], "threads_batched": plan_b["threads"], "workers_at_once": side_by_side,
            "free_cores": free, "calls": calls}


def mlip_md_spec(spec: str, dtype: str | None, compile_: str, md: dict, device: str) -> tuple[str, str]:
    """(calculator SPEC, why) of the chain's MLIP MD: ``dtype`` appended, and ``compile_mode=default`` when
    ``compile_`` is ``yes``, or ``auto`` on a CPU with float32 and ≥ ``COMPILE_MIN_STEPS`` steps per worker
    (``md``: the chain's ``mlip_md`` settings: steps, equilibration_steps, temperatures_K, seeds, fix, workers).
    A compiled model runs on the ASE engine (``choose_engine``'s rule)."""
    out = spec + (("&" if "?" in spec else "?") + f"dtype={dtype}" if dtype else "")
    runs = len(md.get("temperatures_K") or ()) * len(md.get("seeds") or (0,)) + len(md.get("fix") or ())
    per_worker = (int(md.get("steps", 0)) + int(md.get("equilibration_steps", 0))) * runs \
        // max(1, min(int(md.get("workers", 1)), max(runs, 1)))
    if compile_ == "no" or dtype != "float32":
        return out, "eager: " + ("mlip_md.compile is no" if compile_ == "no" else "compilation needs dtype float32")
    if compile_ == "auto" and str(device).split(":")[0] != "cpu":
        return out, f"eager: compilation is not measured on {device}"
    if compile_ == "auto" and per_worker < COMPILE_MIN_STEPS:
        return out, f"eager: {per_worker} steps per worker, fewer than the {COMPILE_MIN_STEPS} that repay compiling"
    return out + "&compile_mode=default", f"compiled: {per_worker} steps per worker (mlip_md.compile is {compile_})"
