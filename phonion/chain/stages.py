"""The stages of the whole chain (``phonion.chain.chain``), one function each.

Every stage takes the chain's :class:`StageContext`, checks its own outputs first (a finished
stage returns ``None`` without loading any model: a rerun of a finished chain takes seconds) and
otherwise runs or *continues* its work through the existing stage APIs, which all resume:

=============  ===================================================  ===============================
stage          runs                                                 finished when
=============  ===================================================  ===============================
``sites``      ``phonion.mdma.sites.classify_oxygens``                      ``sites.json`` exists
``reference``  ``phonion.mlip.reference`` / ``phonion.md.driver.run_md`` per T      every ``<T>K/run.json`` complete
                                                                    and ``reference.json`` exists
``train``      ``phonion.mlip.train.run`` (resumes from last.ckpt)          ``model.model`` + ``metrics.json``
``mlip_md``    ``phonion.md.sweep.run_sweep`` (resume=True), none at every  every run complete (or a run
               T, fixed O_e / O_c at the highest T                  the MD guards stopped)
``compare``    ``phonion.compare.run.run_compare``                         ``numbers.json`` + ``report.html``
=============  ===================================================  ===============================
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from phonion.core.threads import threads as torch_threads  # re-exported (in __all__)
from phonion.core.ticker import Ticker
from phonion.core.threads import worker_init


@dataclass(frozen=True)
class StageContext:
    """What every stage needs: resolved settings and paths (all absolute)."""

    out: Path
    settings: dict
    structure: str          # structure SPEC for MDConfig (bundled name or file)
    structure_file: str     # the file itself (for compare / reports)
    calculator: str         # reference calculator SPEC
    device: str | None      # None: each calculator's default
    seed: int
    progress: bool

    @property
    def model_file(self) -> Path:
        """The first member of the final committee (also ``learn/model.model``)."""
        return self.out / "learn" / "committee" / "member_0.model"

    @property
    def committee_files(self) -> list[Path]:
        """The final committee's model files (``phonion.workflows.learn`` exports them there)."""
        size = int(self.settings["learn"]["committee"]["size"])
        return [self.out / "learn" / "committee" / f"member_{k}.model" for k in range(size)]

    @property
    def mlip_spec(self) -> str:
        """Calculator SPEC of the committee (mean force drives the MD; the spread is the uncertainty)."""
        return "mace:" + ",".join(str(f) for f in self.committee_files) + (
            f"?device={self.device}" if self.device else "")


def _record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_state(md_cfg) -> str:
    """State of one MD run from its ``run.json``: ``complete``; ``invalid`` (an MD guard stopped it:
    finished, never re-run); ``failed`` (an error stopped it, ``message``; ``resume`` continues it);
    ``partial`` (running, killed, shorter, or other settings) or ``missing``."""
    rec = _record(Path(md_cfg.output) / "run.json")
    if not rec:
        return "missing"
    if rec.get("settings_key") != md_cfg.settings_key():
        return "partial"  # run_md will say what differs
    status = rec.get("status")
    if status == "complete" and rec.get("steps_done", -1) >= md_cfg.total_steps:
        return "complete"
    return status if status in ("invalid", "failed") else "partial"


#: seconds between the progress lines of the MD stages (stderr)
PROGRESS_EVERY_S = 30.0


def run_steps_done(out, total_steps: int) -> int:
    """Integrator steps of the MD run in ``out`` so far: all of them once it ended (run.json), else its
    last checkpoint (the checkpoint lines of run.log; the run may be in another process)."""
    out = Path(out)
    if _record(out / "run.json").get("status") in ("complete", "invalid", "failed"):
        return total_steps
    try:
        with open(out / "run.log", "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 4096))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return 0
    marks = [line.split("checkpoint: step ", 1)[1].split(",", 1)[0] for line in tail.splitlines()
             if "checkpoint: step " in line]
    return min(int(marks[-1]), total_steps) if marks and marks[-1].isdigit() else 0


def _steps_done(cfg) -> int:
    return run_steps_done(cfg.output, cfg.total_steps)


def eta_text(left_s: float | None, what: str = "ETA") -> str:
    """``ETA 45 s`` / ``ETA 3 min`` / ``ETA unknown yet`` (the progress lines of the chain's stages)."""
    return (f"{what} unknown yet" if left_s is None else f"{what} {left_s:.0f} s" if left_s < 90
            else f"{what} {left_s / 60:.0f} min")


class StageProgress(Ticker):
    """A thread printing ``phonion chain: <stage>: 2/4 runs done, 47 %, ETA 3 min`` every
    :data:`PROGRESS_EVERY_S` seconds while the MD runs ``cfgs`` of a stage go on (read from each run's
    run.json and the checkpoint lines of its run.log; the runs themselves may be in other processes)."""

    prefix = "phonion chain: "

    def __init__(self, stage: str, cfgs: list, unit: str, enabled: bool = True):
        super().__init__(PROGRESS_EVERY_S, enabled and bool(cfgs))
        self.stage, self.cfgs, self.unit = stage, list(cfgs), unit
        self._f0 = 0.0

    def _fraction(self) -> float:
        total = sum(c.total_steps for c in self.cfgs)
        return sum(min(_steps_done(c), c.total_steps) for c in self.cfgs) / max(total, 1)

    def line(self, f0: float, elapsed: float) -> str:
        done = sum(_record(Path(c.output) / "run.json").get("status") in ("complete", "invalid", "failed")
                   for c in self.cfgs)
        f = self._fraction()
        left = elapsed * (1 - f) / (f - f0) if f > f0 else None
        return f"{self.stage}: {done}/{len(self.cfgs)} {self.unit} done, {100 * f:.0f} % of the steps, {eta_text(left)}"

    def status(self, elapsed_s: float) -> str:
        return self.line(self._f0, elapsed_s)

    def start(self) -> None:
        self._f0 = self._fraction()
        common = os.path.commonpath([str(Path(c.output).parent) for c in self.cfgs])
        print(f"phonion chain: {self.stage}: {len(self.cfgs)} MD runs; each logs to {common}/<run>/run.log "
              f"(progress every {PROGRESS_EVERY_S:g} s)", file=sys.stderr, flush=True)


# ---- sites --------------------------------------------------------------------------------------
def stage_sites(ctx: StageContext) -> dict | None:
    """O_e / O_c / O_n of the structure → ``sites.json``; returns the class sizes."""
    path = ctx.out / "sites.json"
    if path.is_file():
        return None
    from phonion.mdma.sites import classify_oxygens
    from phonion.core.structures import load_structure

    classes = classify_oxygens(load_structure(ctx.structure_file)).to_dict()
    path.write_text(json.dumps(classes, indent=2))
    return {k: classes[f"n_{k}"] for k in ("O_e", "O_c", "O_n")}


# ---- reference ----------------------------------------------------------------------------------
def reference_config(ctx: StageContext):
    """The ``ReferenceConfig`` of the profile (output ``OUT/reference``)."""
    from phonion.mlip.reference import ReferenceConfig

    s = {k: v for k, v in ctx.settings["reference"].items() if k != "workers"}
    return ReferenceConfig(structure=ctx.structure, calculator=ctx.calculator, seed=ctx.seed,
                           output=str(ctx.out / "reference"), **s)


def _reference_one(cfg, k: int, device: str | None) -> str:
    """Worker: the k-th temperature of a reference data set (one process, one torch thread)."""
    from phonion.md.driver import run_md
    from phonion.core.calculators import resolve_calculator

    calc = resolve_calculator(cfg.calculator, device=device or "cpu")
    return run_md(cfg.md_config(k), calculator=calc, resume=True, progress=False).status


class _CollectOnly:
    """Stands in for a calculator when every run is complete: run_reference only collects records."""


def stage_reference(ctx: StageContext) -> dict | None:
    """Surrogate-reference MD at every temperature (in ``workers`` processes) → ``reference/``."""
    cfg = reference_config(ctx)
    ks = range(len(cfg.temperatures_K))
    pending = [k for k in ks if run_state(cfg.md_config(k)) != "complete"]
    if not pending and (ctx.out / "reference" / "reference.json").is_file():
        return None
    with StageProgress("reference", [cfg.md_config(k) for k in pending], "temperatures", ctx.progress):
        return _run_reference(ctx, cfg, pending)


def _run_reference(ctx: StageContext, cfg, pending: list[int]) -> dict:
    ks = range(len(cfg.temperatures_K))
    workers = int(ctx.settings["reference"].get("workers", 1))
    if workers > 1 and len(pending) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(workers, len(pending)),
                                 mp_context=multiprocessing.get_context("spawn"),
                                 initializer=worker_init, initargs=(1, os.getpid())) as pool:
            futures = {pool.submit(_reference_one, cfg, k, ctx.device): k for k in pending}
            if ctx.progress:
                print(f"phonion chain: reference: {len(pending)} temperatures in {min(workers, len(pending))} "
                      "processes (1 thread each)", file=sys.stderr, flush=True)
            for f in as_completed(futures):
                f.result()
                if ctx.progress:
                    print(f"phonion chain: reference: {cfg.temperatures_K[futures[f]]:g} K done",
                          file=sys.stderr, flush=True)
    calc = None
    if all(run_state(cfg.md_config(k)) == "complete" for k in ks):
        calc = _CollectOnly()
    elif ctx.device:
        from phonion.core.calculators import resolve_calculator

        calc = resolve_calculator(cfg.calculator, device=ctx.device)
    from phonion.mlip.reference import run_reference

    with torch_threads(ctx.settings.get("threads")):
        summary = run_reference(cfg, calculator=calc, progress=ctx.progress)
    return summary


def reference_warnings(summary: dict) -> list[str]:
    """Runs whose production mean temperature is > 10 % off the target (equilibration too short)."""
    out = []
    for run in summary.get("runs", []):
        t, mean = run["temperature_K"], run.get("mean_temperature_K")
        if mean is not None and abs(mean - t) > 0.1 * t:
            out.append(f"reference {t:g} K: production mean temperature {mean:.0f} K is more than 10 % "
                       "off the target (equilibration too short for this thermostat)")
    return out


# ---- learn: committee, active learning, gate ------------------------------------------------------
def learn_config(ctx: StageContext) -> dict:
    """The ``phonion.workflows.learn`` settings of the profile: data = ``OUT/reference/*K/traj.h5``, members
    trained with the profile's ``train`` section, output ``OUT/learn``."""
    import copy

    from phonion.workflows.learn import learn_config_from_dict

    train = copy.deepcopy(ctx.settings["train"])
    train["seed"] = int(train.get("seed", 123)) + ctx.seed
    if ctx.device:
        train.setdefault("trainer", {})["accelerator"] = "gpu" if ctx.device.startswith("cuda") else "cpu"
        train.setdefault("export", {})["device"] = ctx.device
    d = copy.deepcopy(ctx.settings["learn"])
    d.update(output=str(ctx.out / "learn"), reference_calculator=ctx.calculator, device=ctx.device or "cpu",
             data={"files": [str(ctx.out / "reference" / "*K" / "traj.h5")]}, train=train)
    d.setdefault("explore", {}).setdefault("structure", ctx.structure)
    return learn_config_from_dict(d)


def stage_learn(ctx: StageContext) -> dict | None:
    """Committee training, active-learning rounds and the fit-for-MD gate (``phonion.workflows.learn``) → ``learn/``."""
    if (ctx.out / "learn" / "committee.json").is_file() and (ctx.out / "learn" / "validation.json").is_file():
        return None
    from phonion.chain.learn_progress import LearnProgress
    from phonion.workflows.learn import run_learn

    with torch_threads(ctx.settings.get("threads")), \
            LearnProgress(ctx.out / "learn", ctx.settings, PROGRESS_EVERY_S, ctx.progress):
        rounds = run_learn(learn_config(ctx), progress=ctx.progress)
    return {"rounds": rounds, "validation": _record(ctx.out / "learn" / "validation.json")}


def gate_verdict(ctx: StageContext) -> dict:
    """``learn/validation.json`` (the gate on the final committee); {} when there is none yet."""
    return _record(ctx.out / "learn" / "validation.json")


# ---- MLIP MD ------------------------------------------------------------------------------------
def sweep_configs(ctx: StageContext, floors: dict | None = None) -> list:
    """``phonion.md.sweep.SweepConfig``s: every temperature × seed unconstrained, then fixed O_e / O_c
    at ``fix_temperature_K`` (default the highest temperature) with the first seed."""
    import dataclasses

    from phonion.md.driver import MDConfig
    from phonion.md.engine_choice import mlip_md_spec
    from phonion.md.sweep import SweepConfig

    s = dict(ctx.settings["mlip_md"])
    temps = tuple(float(t) for t in s.pop("temperatures_K"))
    seeds = tuple(int(x) + ctx.seed for x in s.pop("seeds"))
    fix = tuple(s.pop("fix") or ())
    fix_t = s.pop("fix_temperature_K", None) or max(temps)
    s.pop("workers", None)
    s.pop("allow_failed_gate", None)
    s.pop("engine", None)
    dtype, compile_ = s.pop("dtype", None), s.pop("compile", "auto")  # of the MD only (compare: float64, eager)
    if floors:
        s["pair_floors_A"] = dict(floors)
    s["supercell"] = tuple(s.get("supercell", (1, 1, 1)))
    every = int(s["sample_every"])
    s.setdefault("checkpoint_every", max(every, (int(s["steps"]) // 10) // every * every))
    spec, _ = mlip_md_spec(ctx.mlip_spec, dtype, compile_, ctx.settings["mlip_md"], ctx.device)
    run = MDConfig(structure=ctx.structure, calculator=spec, output="-", **s)
    out = str(ctx.out / "mlip_md")
    sweeps = [SweepConfig(temperatures_K=temps, seeds=seeds, fix=("none",), output=out, run=run)]
    if fix:
        sweeps.append(SweepConfig(temperatures_K=(float(fix_t),), seeds=seeds[:1], fix=fix, output=out,
                                  run=dataclasses.replace(run)))
    return sweeps


def stage_mlip_md(ctx: StageContext, previous: dict | None) -> list | None:
    """MLIP MD sweep (resuming killed runs) → ``mlip_md/T{T}_seed{s}_fix{f}/``; returns its rows.

    ``previous``: this stage's record in an earlier summary.json; a stage recorded as finished
    whose runs are all complete or stopped by an MD guard is not retried.
    """
    from phonion.md.sweep import SUMMARY_NAME, format_summary, run_sweep

    gate = gate_verdict(ctx)
    if not gate.get("passed") and not ctx.settings["mlip_md"].get("allow_failed_gate"):
        failed = ", ".join(gate.get("failed_checks") or ["no verdict"])
        raise RuntimeError(
            f"the MLIP failed the fit-for-MD gate ({failed}; see {ctx.out / 'learn' / 'validation.json'} and "
            f"rounds.json): long MLIP MD refused. Continue active learning with --set "
            "learn.rounds.max_rounds=N (more rounds) or a larger train section; --set "
            "mlip_md.allow_failed_gate=true runs anyway and every MLIP number is then marked untrustworthy")
    sweeps = sweep_configs(ctx, mlip_pair_floors(ctx))
    states = [run_state(c) for sw in sweeps for c in sw.runs()]
    summary_file = ctx.out / "mlip_md" / SUMMARY_NAME
    finished = (previous or {}).get("status", "").startswith("done")
    if summary_file.is_file() and (all(s == "complete" for s in states)
                                   or (finished and all(s in ("complete", "invalid") for s in states))):
        return None
    workers = int(ctx.settings["mlip_md"].get("workers", 1))
    engine = ctx.settings["mlip_md"].get("engine", "auto")  # measured on this device (phonion.md.engine_choice)
    rows = []
    with torch_threads(ctx.settings.get("threads") if workers == 1 else None), \
            StageProgress("mlip_md", [c for sw in sweeps for c in sw.runs()], "runs", ctx.progress):
        for sw in sweeps:
            if ctx.progress:
                print(f"phonion chain: mlip_md: {len(sw.runs())} runs (fix {', '.join(sw.fix)}) in {workers} "
                      f"process(es)", file=sys.stderr, flush=True)
            rows += run_sweep(sw, workers=workers, resume=True, progress=ctx.progress, engine=engine)
    if ctx.progress:
        print(format_summary(rows), file=sys.stderr, flush=True)
    summary_file.write_text(json.dumps(rows, indent=2))
    (ctx.out / "mlip_md" / "sweep.json").write_text(json.dumps([sw.to_dict() for sw in sweeps], indent=2))
    return rows


def mlip_pair_floors(ctx: StageContext, fraction: float = 0.7) -> dict:
    """Sanity floors of the MLIP runs: ``fraction`` × each pair's closest approach in the reference
    frames and the frames labelled by active learning (``phonion.md.guards.learn_pair_floors``)."""
    from phonion.md.guards import learn_pair_floors
    from phonion.md.io import read_trajectory

    frames = []
    for path in sorted((ctx.out / "reference").glob("*K/traj.h5")):
        traj = read_trajectory(path)
        frames += [traj.to_atoms(i) for i in range(0, traj.n_frames, max(1, traj.n_frames // 50))]
    for path in sorted((ctx.out / "learn").glob("round_*/labelled_*K.extxyz")):
        import ase.io

        frames += ase.io.read(path, index=":")
    return learn_pair_floors(frames, fraction=fraction) if frames else {}


# ---- compare ------------------------------------------------------------------------------------
def compare_config(ctx: StageContext):
    """The ``CompareConfig`` of the chain: reference vs MLIP side, plus the profile's ``compare`` section."""
    from phonion.compare.run import CompareConfig
    from phonion.core.config import from_dict

    return from_dict(CompareConfig, {
        "reference": str(ctx.out / "reference"), "mlip": str(ctx.out / "mlip_md"),
        "output": str(ctx.out / "compare"), "model": ctx.mlip_spec, "reference_calculator": ctx.calculator,
        "mlip_calculator": ctx.mlip_spec, "structure": ctx.structure_file, "mobile": "Li", "anion": "O",
        "device": ctx.device, "validation": str(ctx.out / "learn" / "validation.json"),
        **ctx.settings.get("compare", {})}, "compare settings")


def stage_compare(ctx: StageContext) -> dict | None:
    """``phonion.compare.run.run_compare`` on reference vs MLIP (phonons, MDMA, pFC inside) → ``compare/``."""
    numbers = ctx.out / "compare" / "numbers.json"
    if numbers.is_file() and (ctx.out / "compare" / "report.html").is_file():
        return None
    from phonion.compare.run import run_compare

    cfg = compare_config(ctx)
    with torch_threads(ctx.settings.get("threads")):
        return run_compare(cfg, progress=ctx.progress)


__all__ = ["PROGRESS_EVERY_S", "StageContext", "StageProgress", "compare_config", "gate_verdict", "learn_config",
           "mlip_pair_floors", "reference_config",
           "reference_warnings", "run_state", "stage_compare", "stage_learn", "stage_mlip_md", "stage_reference",
           "stage_sites", "sweep_configs", "torch_threads"]
