#!/usr/bin/env python
"""Benchmark ``phonion md --engine batched`` against ``--engine ase`` side by side, and check they agree on physics.

    python scripts/bench_md.py --engines                       # (= python scripts/bench_md_engines.py)
    python scripts/bench_md_engines.py --model MODEL --committee 'DIR/member_*.model' --reps 3 --steps 200

CPU (always):
(a) throughput: the same sweep (4 temperatures of the 80-atom LiGa(SeO3)2 cell, ``--steps`` steps) run
    end to end as the user runs it, as ``phonion md`` subprocesses, settings interleaved in ``--reps``
    rounds (A B C A B C …, so a shared machine's load hits all alike): ``--engine ase --workers 2``
    (today), ``--engine batched`` (threads: the free cores, phonion.core.threads.plan_threads) and
    ``--engine batched --threads 1``. Reported per
    setting: min and median of the sweep wall time, atom-steps/s, and the ratio to today's path.
(b) physics (``--physics-steps``, 0: skip): both engines on temperatures × {none, O_e}, Bussi: mean T
    and its relative fluctuation against the canonical sqrt(2/ndof), fixed-atom displacement, ndof;
    NVE drift of one run per engine; Li VDOS centroid (phonion.md.vdos) at the highest temperature.
GPU (only when ``torch.cuda.is_available()``; skipped with a note otherwise): ns/day of the batched
engine against atom count (supercells of the 80-atom cell up to ~10,000 atoms) and batch size, for
float32 / float64, with peak GPU memory, and ASE's ``MACECalculator`` eager vs ``compile_mode``.

Results: ``scripts/results/bench_md_cpu.json`` (``--json``); GPU results ``bench_md_gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path("/tmp/ci/demo-out/learn")


def _phonion_md(args: list[str], env_threads: int) -> float:
    """Wall time of one ``phonion md`` subprocess; its CPU time (with its workers') goes to ``CPU_S``."""
    import resource

    env = {**os.environ, "OMP_NUM_THREADS": str(env_threads), "OPENBLAS_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "phonion.cli.md", "md", *args], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_S.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"phonion md {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall


def _spin() -> None:
    x = 0
    while True:
        x += 1


#: CPU seconds (user + system, the process and its workers) of each _phonion_md call, in order
CPU_S: list[float] = []


def throughput(a, work: Path) -> dict:
    """(a): interleaved end-to-end sweeps; min / median wall and atom-steps/s per setting."""
    common = ["--structure", "LiGa_SeO3_2", "--temperatures-K", *map(str, a.temps),
              "--steps", str(a.steps), "--sample-every", "10", "--checkpoint-every", str(a.steps), "--no-progress"]
    f64, f32 = ["--calculator", f"mace:{a.model}"], ["--calculator", f"mace:{a.model}?dtype=float32"]
    fc = ["--calculator", f"mace:{a.model}?dtype=float32&compile_mode=default"]
    # today's path (the baseline): `phonion md --workers 2` with mace's graph built at every call
    # (skin=0: phonion before the kept graph of phonion.core.mace_graph)
    today = ["--calculator", f"mace:{a.model}?skin=0"]
    settings = {"ase_workers2": (today + ["--engine", "ase", "--workers", "2"], 1),
                "ase_workers2_kept_graph": (f64 + ["--engine", "ase", "--workers", "2"], 1),
                "ase_workers2_float32_compiled_mace_graph": (
                    ["--calculator", f"mace:{a.model}?dtype=float32&compile_mode=default&skin=0",
                     "--engine", "ase", "--workers", "2"], 1),
                "batched_auto_threads": (f64 + ["--engine", "batched"], 2),
                "batched_threads1": (f64 + ["--engine", "batched", "--threads", "1"], 1),
                "batched_float32_auto_threads": (f32 + ["--engine", "batched"], 2),
                "ase_workers2_float32": (f32 + ["--engine", "ase", "--workers", "2"], 1),
                "ase_workers2_float32_compiled": (fc + ["--engine", "ase", "--workers", "2"], 1),
                "auto_workers2": (f64 + ["--engine", "auto", "--workers", "2"], 1)}
    if a.settings:
        settings = {k: v for k, v in settings.items() if k in a.settings or k == "ase_workers2"}
    busy = None
    if a.busy:  # one other CPU-bound process on the machine for the whole measurement
        import multiprocessing as mp

        busy = mp.Process(target=_spin, daemon=True)
        busy.start()
        time.sleep(1.0)
    warm = {}
    if any("compiled" in k for k in settings) and not a.cold_compile:  # the first compile here (cache cold)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor_cache")
        for name in [k for k in settings if "compiled" in k]:
            extra, env_threads = settings[name]
            out = work / f"warm_{name}"
            short = [x if x != str(a.steps) else "50" for x in common]
            warm[name] = _phonion_md(short + extra + ["-o", str(out)], env_threads)
            shutil.rmtree(out, ignore_errors=True)
            print(f"  cold-cache compile run {name} (50 steps): {warm[name]:.1f} s", flush=True)
    walls: dict[str, list[float]] = {k: [] for k in settings}
    cpus: dict[str, list[float]] = {k: [] for k in settings}
    for rep in range(a.reps):
        for name, (extra, env_threads) in settings.items():
            out = work / f"tp_{name}_{rep}"
            if a.cold_compile:  # every timed run compiles from an empty inductor cache (a new machine)
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / f"inductor_cache_{name}_{rep}")
            walls[name].append(_phonion_md(common + extra + ["-o", str(out)], env_threads))
            cpus[name].append(CPU_S[-1])
            shutil.rmtree(out, ignore_errors=True)
            print(f"  rep {rep} {name}: {walls[name][-1]:.1f} s wall, {cpus[name][-1]:.1f} s CPU, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    if busy is not None:
        busy.terminate()
    atom_steps = len(a.temps) * 80 * a.steps
    base = walls["ase_workers2"]
    return {"atom_steps_per_sweep": atom_steps, "steps": a.steps, "temperatures_K": a.temps, "reps": a.reps,
            "other_busy_process": bool(a.busy), "cold_compile_every_run": bool(a.cold_compile),
            "cold_compile_run_50_steps_s": warm,
            "compile_note": "compiled settings: the first run on a machine compiles with a cold inductor cache "
                            "(cold_compile_run_50_steps_s, untimed warm-up); the timed repetitions reuse the "
                            "on-disk cache and still compile once per worker process",
            "note": "wall: end to end incl. start-up (imports, model load, worker spawn); cpu_s: user + system "
                    "time of the command and its workers, the fair measure when other processes share the cores",
            **{name: {"wall_s": w, "wall_min_s": min(w), "wall_median_s": statistics.median(w),
                      "cpu_s": cpus[name], "cpu_min_s": min(cpus[name]),
                      "cpu_speedup_vs_ase_workers2_min": min(cpus["ase_workers2"]) / min(cpus[name]),
                      "atom_steps_per_s_best": atom_steps / min(w),
                      "speedup_vs_ase_workers2_min": min(base) / min(w),
                      "speedup_vs_ase_workers2_median": statistics.median(base) / statistics.median(w)}
               for name, w in walls.items()}}


def _run_stats(path: Path) -> dict:
    from phonion.md.io.h5md import read_h5md

    rec = json.loads((path.parent / "run.json").read_text())
    traj = read_h5md(path)
    t = traj.temperatures_K[len(traj.temperatures_K) // 5:]  # drop the first 20 % (start-up)
    fixed = np.asarray(rec["fixed_indices"], dtype=int)
    moved = float(np.abs(traj.positions[:, fixed] - traj.positions[0, fixed]).max()) if fixed.size else None
    ndof = rec["n_degrees_of_freedom"]
    return {"ndof": ndof, "fixed": int(fixed.size), "fixed_max_displacement_A": moved,
            "mean_T_K": float(t.mean()), "block_error_T_K": _block_error(t),
            "relative_std_T": float(t.std() / t.mean()), "canonical_relative_std_T": float(np.sqrt(2.0 / ndof)),
            "energies": traj.energies, "velocities": traj.velocities, "masses": traj.masses,
            "symbols": traj.symbols, "dt_fs": float(traj.times_fs[1] - traj.times_fs[0])}


def _block_error(x: np.ndarray, blocks: int = 8) -> float:
    b = np.array_split(x, blocks)
    return float(np.std([v.mean() for v in b], ddof=1) / np.sqrt(blocks))


def _li_vdos_centroid(s: dict) -> float:
    from phonion.md.vdos import spectral_summary, vdos

    li = [i for i, e in enumerate(s["symbols"]) if e == "Li"]
    res = vdos(s["velocities"], s["masses"], s["dt_fs"], {"Li": li})
    return float(spectral_summary(res.frequencies_THz, res.spectra["Li"])["centroid_THz"])


def _li_diffusivity(path: Path) -> dict:
    from phonion.md.diffusion_run import analyse_h5md

    d = analyse_h5md(path, "Li").to_dict()
    return {"D_star_cm2_s": d["tracer_diffusivity_cm2_s"], "D_star_err_cm2_s": d["tracer_diffusivity_err_cm2_s"]}


def physics_settings(model: str) -> dict:
    """name -> (calculator SPEC, engine, extra options, OMP threads): the settings whose physics is compared
    (``ase``, eager float64 with mace's graph built at every call, is the reference every faster setting
    must agree with; the other mace settings keep the graph between steps, phonion.core.mace_graph)."""
    f64, fast = f"mace:{model}", f"mace:{model}?dtype=float32&compile_mode=default"
    return {"ase": (f"mace:{model}?skin=0", "ase", ["--workers", "2", "--threads", "1"], 1),
            "ase_kept_graph": (f64, "ase", ["--workers", "2", "--threads", "1"], 1),
            "batched": (f64, "batched", ["--threads", "1"], 1),
            "ase_float32": (f"mace:{model}?dtype=float32", "ase", ["--workers", "2", "--threads", "1"], 1),
            "ase_float32_compiled": (fast, "ase", ["--workers", "2", "--threads", "1"], 1)}


def physics(a, work: Path) -> dict:
    """(b): every setting on the same sweep; per-run statistics, Li D* and VDOS at the top T, NVE drift."""
    out: dict = {"steps": a.physics_steps, "temperatures_K": a.temps, "ensemble": "nvt-bussi",
                 "thermostat_time_fs": 50.0, "timestep_fs": 1.0}
    common = ["--structure", "LiGa_SeO3_2", "--no-progress"]
    nvt = common + ["--temperatures-K", *map(str, a.temps), "--fix", "none", "O_e", "--steps", str(a.physics_steps),
                    "--timestep-fs", "1", "--thermostat-time-fs", "50", "--sample-every", "5",
                    "--checkpoint-every", str(a.physics_steps)]
    nve = common + ["--temperatures-K", str(max(a.temps)), "--ensemble", "nve", "--steps",
                    str(a.physics_steps // 2), "--timestep-fs", "1", "--sample-every", "5",
                    "--checkpoint-every", str(a.physics_steps // 2)]
    settings = physics_settings(a.model)
    if a.settings:
        settings = {k: v for k, v in settings.items() if k in a.settings or k == "ase"}
    for name, (spec, engine, extra, env_t) in settings.items():
        t0 = time.perf_counter()
        _phonion_md(nvt + ["--calculator", spec, "--engine", engine, "-o", str(work / f"nvt_{name}")] + extra, env_t)
        _phonion_md(nve + ["--calculator", spec, "--engine", engine, "-o", str(work / f"nve_{name}"),
                           "--threads", "1"], 1)
        runs = {}
        for p in sorted((work / f"nvt_{name}").glob("T*/traj.h5")):
            s = _run_stats(p)
            arrays = ("energies", "velocities", "masses", "symbols", "dt_fs")
            runs[p.parent.name] = {k: v for k, v in s.items() if k not in arrays}
            if p.parent.name == f"T{max(a.temps):g}_seed0_fixnone":
                try:
                    runs[p.parent.name]["li_vdos_centroid_THz"] = _li_vdos_centroid(s)
                    runs[p.parent.name].update(_li_diffusivity(p))
                except Exception as exc:  # noqa: BLE001 - say why a number is missing
                    runs[p.parent.name]["li_analysis"] = f"not computed: {exc}"
        nve_traj = next((work / f"nve_{name}").glob("T*/traj.h5"))
        from ase import units

        from phonion.md.io.h5md import read_h5md

        tr = read_h5md(nve_traj)
        kin = 0.5 * np.einsum("fij,i->f", (tr.velocities / units.fs) ** 2, tr.masses)  # Å/fs -> ASE
        etot = tr.energies + kin
        ps = (tr.times_fs[-1] - tr.times_fs[0]) / 1000.0
        out[name] = {"calculator": spec, "engine": engine, "runs": runs, "wall_s": time.perf_counter() - t0,
                     "nve_drift_meV_per_atom_per_ps": float(np.polyfit(tr.times_fs / 1000.0, etot, 1)[0] / 80 * 1000),
                     "nve_etot_std_meV_per_atom": float(etot.std() / 80 * 1000), "nve_ps": ps}
        print(f"  physics {name}: {out[name]['wall_s']:.0f} s", flush=True)
    return out


def gpu(a) -> dict:
    """ns/day vs atoms and batch size, float32/float64, eager vs compiled, peak memory (CUDA; ``--gpu-device cpu``
    runs the same code small, as a check that it works where no GPU is at hand)."""
    import torch

    device = a.gpu_device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        return {"skipped": "no CUDA device here; rerun this script on a GPU machine"}
    cuda = device.startswith("cuda")
    from phonion.core.structures import load_structure
    from phonion.md.batched_forces import BatchedMACE

    def sync():
        if cuda:
            torch.cuda.synchronize()

    rows = []
    base = load_structure("LiGa_SeO3_2")
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        engine = BatchedMACE(f"mace:{a.model}?dtype={dtype}", device=device)
        for reps in ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2), (4, 2, 2), (4, 4, 2), (4, 4, 4), (5, 5, 5)):
            cell = base.repeat(reps)
            for batch in (1, 4, 16, 64):
                if len(cell) * batch > a.gpu_max_atoms:
                    continue
                systems = [cell.copy() for _ in range(batch)]
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                builds = engine.n_graph_builds
                try:
                    engine.compute(systems)  # warm-up
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(a.gpu_calls):
                        for s_ in systems:  # MD-like moves (0.01 Å rms): the kept graph is rebuilt as in MD
                            s_.positions += rng.normal(0, 0.01, s_.positions.shape)
                        engine.compute(systems)
                    sync()
                except ValueError as exc:  # one system did not fit
                    rows.append({"dtype": dtype, "atoms": len(cell), "batch": batch, "error": str(exc)})
                    continue
                per_call = (time.perf_counter() - t0) / a.gpu_calls
                rows.append({"dtype": dtype, "atoms": len(cell), "batch": batch, "s_per_step": per_call,
                             "ns_per_day_each": 86400 / per_call * 1e-6,
                             "ns_per_day_total": batch * 86400 / per_call * 1e-6,
                             "peak_memory_GiB": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
                             "max_batch_after_oom": engine.max_batch,
                             "graph_builds": engine.n_graph_builds - builds})
                engine.max_batch = None
                print(rows[-1], flush=True)
    name = torch.cuda.get_device_name() if cuda else device
    return {"device": name, "timestep_fs_for_ns_per_day": 1.0, "rows": rows,
            "compiled": _compiled(a, device) if not a.gpu_no_compile else "not run (--gpu-no-compile)"}


def _compiled(a, device: str) -> dict:
    """One MACE calculator on the 80-atom cell, float32: eager vs mace's compile_mode, graph kept or not.
    The order matters: a compiled kept-graph calculator makes torch trace shapes as dynamic process-wide
    (phonion.core.mace_graph), so mace's own compiled calculator (skin=0) is built and timed before it."""
    from phonion.core.calculators import resolve_calculator
    from phonion.core.structures import load_structure

    atoms = load_structure("LiGa_SeO3_2")
    rng = np.random.default_rng(0)
    out = {}
    for name, opts in (("eager", "skin=0"), ("eager_kept_graph", "skin=0.5"),
                       ("compiled", "skin=0&compile_mode=default"),
                       ("compiled_kept_graph", "skin=0.5&compile_mode=default")):
        try:
            calc = resolve_calculator(f"mace:{a.model}?dtype=float32&{opts}", device=device)
            atoms.calc = calc
            t0 = time.perf_counter()
            atoms.get_forces()
            first = time.perf_counter() - t0
            times = []
            for _ in range(a.gpu_calls):
                atoms.positions = atoms.positions + rng.normal(0, 0.01, atoms.positions.shape)
                t0 = time.perf_counter()
                atoms.get_forces()
                times.append(time.perf_counter() - t0)
            out[name] = {"first_call_s": first, "s_per_call_min": min(times),
                         "s_per_call_median": statistics.median(times)}
        except Exception as exc:  # noqa: BLE001 - compile may be unavailable: record why
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEMO / "model.model"))
    p.add_argument("--temps", type=float, nargs="+", default=[300.0, 600.0, 900.0, 1200.0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--physics-steps", type=int, default=0)
    p.add_argument("--gpu-calls", type=int, default=20)
    p.add_argument("--gpu-device", default=None, help="device of the GPU part (default: cuda when available; "
                                                         "cpu runs it small, to check the code)")
    p.add_argument("--gpu-max-atoms", type=int, default=200_000, help="largest atoms × batch in the GPU table")
    p.add_argument("--gpu-no-compile", action="store_true", help="skip the eager-vs-compiled part of the GPU table")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--settings", nargs="+", default=None,
                   help="only these throughput settings (and ase_workers2) / physics settings (and ase)")
    p.add_argument("--busy", action="store_true", help="run the throughput part next to one CPU-bound process")
    p.add_argument("--cold-compile", action="store_true",
                   help="every timed compiled run starts from an empty inductor cache (as on a new machine)")
    p.add_argument("--json", default=str(ROOT / "scripts" / "results" / "bench_md_cpu.json"))
    a = p.parse_args(argv)
    if not Path(a.model).is_file():
        raise SystemExit(f"{a.model}: no such MACE model file (--model); run the demo first or give one")
    result = {"host": platform.node(), "cores": os.cpu_count(), "load_average_start": os.getloadavg(),
              "model": a.model, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    work = Path(tempfile.mkdtemp(prefix="bench_md_engines."))
    try:
        if not a.skip_throughput:
            result["throughput"] = throughput(a, work)
        if a.physics_steps:
            result["physics"] = physics(a, work)
        result["gpu"] = gpu(a)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average_end"] = os.getloadavg()
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps({k: v for k, v in result.get("throughput", {}).items() if isinstance(v, dict)}, indent=1,
                     default=float))
    print(f"written {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
