#!/usr/bin/env python
"""Benchmark and validate the diffusion analysis (phonion.md.diffusion, phonion.md.diffusion_run).

(a) memory-bounded run: synthesize ATOMS Li × FRAMES frames of Gaussian random walks (known D)
    into an H5MD file with ``H5MDWriter`` in blocks, then analyse it chunked with
    ``analyse_h5md`` (tracer + collective MSD, Green–Kubo) in a fresh spawned process, whose peak
    resident memory (VmHWM; ru_maxrss is also reported but Linux carries it over from the parent
    across fork + exec) and Python-heap peak (tracemalloc, which counts numpy arrays) are its own.
    The positions alone would take ATOMS × FRAMES × 24 B in memory.
(b) real AIMD: Li6PS5I 700 K and 1100 K (416 atoms, 100 frames, 2 fs × 50) and kinisi's Li6PS5Cl
    example (500 K, 140 frames, 2 fs × 50, renumbered: stride 50 given) — D*, D_σ and errors next to
    kinisi's (same window: start_dt = our fit start, dt up to our window end) and
    pymatgen-analysis-diffusion's DiffusionAnalyzer (its own defaults: smoothed="max"), with ratios;
    and the Arrhenius E_a from the two Li6PS5I temperatures. Comparison packages are optional
    (never phonion dependencies): when absent the entry says so. kinisi 2.1 installs without torch
    (scipp, emcee, dynesty, statsmodels, scikit-learn); e.g. a separate venv:
    ``python -m venv --system-site-packages /tmp/cmpenv && /tmp/cmpenv/bin/pip install kinisi
    pymatgen-analysis-diffusion`` then run this script with /tmp/cmpenv/bin/python.

    python scripts/bench_diffusion.py                              # 1,000 Li × 1e5 frames (~GB file)
    python scripts/bench_diffusion.py --frames 10000 --atoms 200   # quick
    python scripts/bench_diffusion.py --skip-synthetic             # real data only

Writes scripts/results/diffusion.json (or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path("/work/shared/data/vasp")
if not DATA.exists():
    DATA = ROOT / "tests/data/vasp"
REAL = [("Li6PS5I_700K", "li6ps5i_aimd_xdatcar/700K/XDATCAR.gz", 700.0, None),
        ("Li6PS5I_1100K", "li6ps5i_aimd_xdatcar/1100K/XDATCAR.gz", 1100.0, None),
        ("Li6PS5Cl_500K", "li6ps5cl_aimd_xdatcar/example_XDATCAR.gz", 500.0, 50)]


def _rss_mb() -> float:
    """ru_maxrss, MB. Linux carries it across fork + exec, so a fresh child starts at its parent's peak."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _hwm_mb() -> float | None:
    """VmHWM (peak resident set of this process image, reset by exec), MB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---- (a) synthetic, memory-bounded ------------------------------------------------------------
def synthesize(path: Path, n_atoms: int, n_frames: int, d_A2_fs: float, dt_fs: float, seed: int = 0) -> float:
    """Write the random walk block by block (bounded memory); returns seconds."""
    from phonion.md.io.h5md import H5MDWriter

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    last = rng.random((n_atoms, 3)) * 40.0
    block = max(1, min(2000, int(64e6 // (n_atoms * 24))))
    with H5MDWriter(path, ["Li"] * n_atoms, timestep_fs=dt_fs, stride=1, fields=("position",),
                    observables=("temperature",)) as w:
        for a in range(0, n_frames, block):
            b = min(block, n_frames - a)
            steps = rng.normal(scale=np.sqrt(2 * d_A2_fs * dt_fs), size=(b, n_atoms, 3))
            pos = last + np.cumsum(steps, axis=0)
            last = pos[-1]
            w.append(pos, np.eye(3) * 40.0, temperatures_K=np.full(b, 600.0))
    return time.perf_counter() - t0


def _work_analyse(path: str, memory_mb: float) -> dict:
    from phonion.md.diffusion_run import analyse_h5md

    base = _hwm_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    res = analyse_h5md(path, "Li", memory_mb=memory_mb).to_dict()
    seconds = time.perf_counter() - t0
    heap = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    keys = ("tracer_diffusivity_cm2_s", "tracer_diffusivity_err_cm2_s", "collective_diffusivity_cm2_s",
            "collective_diffusivity_err_cm2_s", "green_kubo_collective_diffusivity_cm2_s",
            "green_kubo_collective_diffusivity_err_cm2_s", "haven_ratio", "haven_ratio_err", "fit_range_ps",
            "fit_start_rule", "memory_mode", "tracer_diffusivity_err_model_cm2_s",
            "tracer_diffusivity_err_block_cm2_s")
    return {"seconds": seconds, "rss_peak_mb": _hwm_mb(), "rss_after_imports_mb": base,
            "ru_maxrss_mb": _rss_mb(),
            "tracemalloc_peak_mb": heap, **{k: res[k] for k in keys}}


def _spawned(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def synthetic(args) -> dict:
    d, dt = 1e-3, 10.0  # Å²/fs (= 1e-4 cm²/s), fs between frames
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="bench_diffusion_"))
    path = tmp / f"walk_{args.atoms}x{args.frames}.h5"
    write_s = synthesize(path, args.atoms, args.frames, d, dt)
    size = path.stat().st_size
    out = {"atoms": args.atoms, "frames": args.frames, "true_diffusivity_cm2_s": d * 0.1,
           "write_seconds": write_s, "file_bytes": size,
           "positions_in_memory_would_be_mb": args.atoms * args.frames * 24 / 1e6, "memory_mb_budget": args.memory_mb}
    out.update(_spawned(_work_analyse, str(path), args.memory_mb))
    out["tracer_z"] = (out["tracer_diffusivity_cm2_s"] - d * 0.1) / out["tracer_diffusivity_err_cm2_s"]
    out["collective_z"] = (out["collective_diffusivity_cm2_s"] - d * 0.1) / out["collective_diffusivity_err_cm2_s"]
    if not args.keep:
        path.unlink()
    return out


# ---- (b) real data ----------------------------------------------------------------------------
def ours(path: Path, temperature: float, stride) -> dict:
    from phonion.md.diffusion_run import analyse_trajectory
    from phonion.md.io import read_trajectory

    traj = read_trajectory(path, timestep_fs=2.0, stride=stride)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = analyse_trajectory(traj, "Li", temperature_K=temperature).to_dict()
    res["seconds"] = time.perf_counter() - t0
    res["warnings"] = [str(w.message) for w in caught]
    return res


def kinisi_numbers(path: Path, temperature: float, start_ps: float, end_ps: float, n_density: float) -> dict:
    try:
        import kinisi
        import scipp as sc
        from kinisi.analyze import ConductivityAnalyzer, DiffusionAnalyzer
        from pymatgen.io.vasp import Xdatcar
    except ImportError as exc:
        return {"available": False, "reason": f"kinisi not importable ({exc})"}
    from phonion.md.conductivity import diffusivity_from_conductivity_cm2_s

    xd = Xdatcar(str(path))
    dt = sc.arange("time interval", 100.0, end_ps * 1e3 + 1.0, 100.0, unit="fs")
    p = {"specie": "Li", "time_step": 2.0 * sc.Unit("fs"), "step_skip": 50 * sc.Unit("dimensionless"),
         "progress": False, "dt": dt}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da = DiffusionAnalyzer.from_xdatcar(xd, **p)
        da.diffusion(start_ps * 1e3 * sc.Unit("fs"), progress=False, random_state=np.random.RandomState(0))
        ca = ConductivityAnalyzer.from_xdatcar(xd, ionic_charge=1 * sc.Unit("e"), **p)
        ca.conductivity(start_ps * 1e3 * sc.Unit("fs"), temperature * sc.Unit("K"), progress=False,
                        random_state=np.random.RandomState(0))
    s = np.asarray(ca.sigma.values) * float(sc.to_unit(1.0 * ca.sigma.unit, "mS/cm").value)
    d_sigma = diffusivity_from_conductivity_cm2_s(s, temperature, n_density)
    return {"available": True, "version": kinisi.__version__, "seconds": time.perf_counter() - t0,
            "window_ps": [start_ps, end_ps], "tracer_diffusivity_cm2_s": float(np.mean(da.D.values)),
            "tracer_diffusivity_err_cm2_s": float(np.std(da.D.values)),
            "conductivity_mS_cm": float(np.mean(s)), "conductivity_err_mS_cm": float(np.std(s)),
            "collective_diffusivity_cm2_s": float(np.mean(d_sigma)),
            "collective_diffusivity_err_cm2_s": float(np.std(d_sigma)),
            "note": "posterior mean ± std (MCMC, 3200 samples, random_state 0); D_σ from kinisi's σ by "
                    "inverting Nernst–Einstein with our carrier density"}


def pymatgen_numbers(path: Path, temperature: float) -> dict:
    try:
        from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
        from pymatgen.io.vasp import Xdatcar
    except ImportError as exc:
        return {"available": False, "reason": f"pymatgen-analysis-diffusion not importable ({exc})"}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = Xdatcar(str(path)).structures
        da = DiffusionAnalyzer.from_structures(structures, "Li", temperature, 2, 50)
    return {"available": True, "seconds": time.perf_counter() - t0,
            "tracer_diffusivity_cm2_s": da.diffusivity, "tracer_diffusivity_err_cm2_s": da.diffusivity_std_dev,
            "collective_diffusivity_cm2_s": da.chg_diffusivity,
            "collective_diffusivity_err_cm2_s": da.chg_diffusivity_std_dev, "haven_ratio": da.haven_ratio,
            "conductivity_mS_cm": da.chg_conductivity,
            "note": "DiffusionAnalyzer defaults: smoothed='max', min_obs=30 (fit over its own MSD range)"}


def _ratio(a, b):
    return None if not a or not b else a / b


def real_data(args) -> dict:
    from phonion.md.conductivity import arrhenius_fit, nernst_einstein_conductivity_mS_cm

    out = {}
    for name, rel, temperature, stride in REAL:
        path = DATA / rel
        if not path.exists():
            out[name] = {"skipped": f"{path} not found"}
            continue
        r = ours(path, temperature, stride)
        entry = {"file": str(path), "temperature_K": temperature, "ours": {k: r[k] for k in (
            "tracer_diffusivity_cm2_s", "tracer_diffusivity_err_cm2_s", "tracer_diffusivity_err_model_cm2_s",
            "tracer_diffusivity_err_block_cm2_s", "collective_diffusivity_cm2_s",
            "collective_diffusivity_err_cm2_s", "green_kubo_collective_diffusivity_cm2_s",
            "green_kubo_collective_diffusivity_err_cm2_s", "haven_ratio", "haven_ratio_err",
            "conductivity_mS_cm", "conductivity_err_mS_cm", "nernst_einstein_tracer_conductivity_mS_cm",
            "carrier_density_cm3", "fit_range_ps", "fit_start_rule", "tracer_non_gaussian_factor",
            "tracer_diffusivity_by_species_cm2_s", "seconds", "warnings")}}
        if not args.skip_kinisi:
            entry["kinisi"] = kinisi_numbers(path, temperature, *r["fit_range_ps"], r["carrier_density_cm3"])
        entry["pymatgen"] = pymatgen_numbers(path, temperature)
        for ref in ("kinisi", "pymatgen"):
            e = entry.get(ref, {})
            if e.get("available"):
                entry[f"ratio_ours_over_{ref}"] = {
                    "tracer": _ratio(r["tracer_diffusivity_cm2_s"], e["tracer_diffusivity_cm2_s"]),
                    "collective": _ratio(r["collective_diffusivity_cm2_s"], e["collective_diffusivity_cm2_s"])}
        out[name] = entry
        print(f"{name}: D* = {r['tracer_diffusivity_cm2_s']:.3e} ± {r['tracer_diffusivity_err_cm2_s']:.1e}, "
              f"D_σ = {r['collective_diffusivity_cm2_s']:.3e} ± {r['collective_diffusivity_err_cm2_s']:.1e} cm²/s "
              f"(window {r['fit_range_ps']} ps, {r['fit_start_rule']})", file=sys.stderr)
    pts = [out[n]["ours"] | {"T": out[n]["temperature_K"]}
           for n in ("Li6PS5I_700K", "Li6PS5I_1100K") if "ours" in out.get(n, {})]
    if len(pts) == 2:
        arr = {}
        for q in ("tracer", "collective"):
            d = [p[f"{q}_diffusivity_cm2_s"] for p in pts]
            if min(d) <= 0:
                arr[q] = {"skipped": "non-positive diffusivity"}
                continue
            fit = arrhenius_fit([p["T"] for p in pts], d, [p[f"{q}_diffusivity_err_cm2_s"] for p in pts])
            d300, lo, hi, _ = fit.predict(300.0)
            arr[q] = {"activation_energy_eV": fit.activation_energy_eV,
                      "activation_energy_err_eV": fit.activation_energy_err_eV,
                      "prefactor_cm2_s": fit.prefactor_cm2_s, "diffusivity_300K_cm2_s": d300,
                      "diffusivity_300K_band_cm2_s": [lo, hi],
                      "conductivity_300K_mS_cm": nernst_einstein_conductivity_mS_cm(
                          d300, 300.0, pts[0]["carrier_density_cm3"])}
        kin = [out[n].get("kinisi", {}) for n in ("Li6PS5I_700K", "Li6PS5I_1100K")]
        if all(k.get("available") for k in kin):
            fit = arrhenius_fit([700.0, 1100.0], [k["tracer_diffusivity_cm2_s"] for k in kin],
                                [k["tracer_diffusivity_err_cm2_s"] for k in kin])
            arr["tracer_from_kinisi_D"] = {"activation_energy_eV": fit.activation_energy_eV,
                                           "activation_energy_err_eV": fit.activation_energy_err_eV}
        out["arrhenius_Li6PS5I_700K_1100K"] = arr
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--atoms", type=int, default=1000)
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--memory-mb", type=float, default=1024)
    p.add_argument("--workdir", default=None, help="where the synthetic H5MD file goes (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the synthetic file")
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--skip-kinisi", action="store_true")
    p.add_argument("--json", type=Path, default=ROOT / "scripts/results/diffusion.json")
    args = p.parse_args(argv)
    result = {"host_cpus": os.cpu_count(), "python": sys.version.split()[0], "numpy": np.__version__}
    if not args.skip_real:
        result["real_data"] = real_data(args)
    if not args.skip_synthetic:
        result["synthetic_h5md"] = synthetic(args)
        s = result["synthetic_h5md"]
        print(f"synthetic {s['atoms']} Li × {s['frames']} frames: write {s['write_seconds']:.1f} s, analyse "
              f"{s['seconds']:.1f} s, peak RSS {s['rss_peak_mb']:.0f} MB, heap peak {s['tracemalloc_peak_mb']:.0f} MB "
              f"(positions alone {s['positions_in_memory_would_be_mb']:.0f} MB)", file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from phonion.core.jsonutil import clean as _clean

    old = json.loads(args.json.read_text()) if args.json.exists() else {}
    args.json.write_text(json.dumps(_clean({**old, **result}), indent=2) + "\n")  # keep skipped parts
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
