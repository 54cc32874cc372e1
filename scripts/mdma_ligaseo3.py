"""LiGa(SeO3)2 with CHGNet end to end: phonons, mode classes, a short hot MD, MDMA and pFC (issue 4).

CHGNet (pretrained, offline) stands in for DFT: every number here is a *surrogate reference*, not DFT.

1. ``phonion phonons`` (run_phonons): the bundled 80-atom cell, phonopy 1×1×1 supercell, DOS/PDOS/bands,
   dynamic stability (imaginary modes with their frequencies and dominant atoms), Li band centre.
2. Γ modes of the 80-atom MD cell (modes_for_supercell) classified by dominant O class (O_e/O_c/O_n).
3. CHGNet Langevin NVT MD (default 900 K, 2 fs, centre of mass fixed so the acoustic modes carry nothing,
   every step saved as H5MD) for as many steps as fit in ``--md-seconds`` of wall time.
4. ``phonion mdma`` on it (Gordiz, and the published-notebook convention for comparison), plots written;
   ``phonion pfc`` (structure directions, and hop directions if any Li hopped).

Large outputs go to --out (default /tmp/phonion_mdma_ligaseo3); only a small JSON with the numbers is written
to scripts/results/mdma_ligaseo3.json. A few ps of MD are far too short for converged MDMA shares or D_σ:
the numbers are a demonstration of the pipeline, reported with their block errors, not results.

Usage: python scripts/mdma_ligaseo3.py [--out DIR] [--md-seconds 300] [--temperature-K 900] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phonion.md.io import read_trajectory  # noqa: E402
from phonion.mdma.harmonic import langevin_to_h5md  # noqa: E402
from phonion.cli.mdma import run_mdma_command  # noqa: E402
from phonion.cli.pfc import run_pfc_command  # noqa: E402
from phonion.mdma.modes import mode_classes, modes_for_supercell  # noqa: E402
from phonion.cli.phonons import run_phonons  # noqa: E402
from phonion.mdma.phonon_io import load_phonons  # noqa: E402
from phonion.mdma.sites import classify_oxygens  # noqa: E402
from phonion.core.calculators import resolve_calculator  # noqa: E402
from phonion.core.structures import load_structure  # noqa: E402

MDMA_KEYS = ("collective_diffusivity_cm2_s", "mdma_total_cm2_s", "sum_rule_relative_error", "harmonic_fraction",
             "anharmonic_fraction", "class_fractions", "oe_mean_frequency_THz", "equal_time_anharmonic_fraction",
             "modal_equipartition", "top_modes", "errors", "tau_max_ps", "n_frames", "temperature_K",
             "temperature_source", "zero_frequency_modes", "notes")


def li_msd(path) -> dict:
    traj = read_trajectory(path)
    li = traj.indices_of("Li")
    d = traj.positions[-1, li] - traj.positions[0, li]
    disp = np.linalg.norm(traj.positions[:, li] - traj.positions[0, li], axis=2)
    return {"li_msd_end_A2": float(np.mean(np.sum(d ** 2, axis=1))),
            "li_max_displacement_A": float(disp.max()),
            "n_li_beyond_2A": int((disp.max(axis=0) > 2.0).sum())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/phonion_mdma_ligaseo3")
    p.add_argument("--md-seconds", type=float, default=300.0, help="wall-time budget for the MD")
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--temperature-K", type=float, default=900.0)
    p.add_argument("--timestep-fs", type=float, default=2.0)
    p.add_argument("--friction-per-fs", type=float, default=0.01)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads on CPU (1: on a shared 2-core machine, 2 threads were 10× slower)")
    p.add_argument("--skip-phonons", action="store_true", help="reuse OUT/phonons")
    p.add_argument("--skip-md", action="store_true", help="reuse OUT/md.h5")
    p.add_argument("--results", default=str(Path(__file__).parent / "results" / "mdma_ligaseo3.json"))
    args = p.parse_args(argv)
    if args.device == "cpu" and args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"calculator": "chgnet (pretrained; surrogate reference, NOT DFT)",
                    "structure": "LiGa_SeO3_2 (bundled, Materials Project PBE-relaxed, 80 atoms, I-42d)",
                    "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "affinity": len(os.sched_getaffinity(0)), "device": args.device,
                                "torch_threads": args.torch_threads, "load_average_at_start": os.getloadavg()},
                    "outputs_directory": str(out)}

    # 1. phonons -------------------------------------------------------------------------------------------
    ph_dir = out / "phonons"
    t0 = time.perf_counter()
    if not args.skip_phonons:
        s = run_phonons("LiGa_SeO3_2", "chgnet", ph_dir, supercell=(1, 1, 1), mesh=(4, 4, 4), device=args.device,
                        progress=False)
        summary = {k: s.get(k) for k in ("min_frequency_THz", "max_frequency_THz", "n_imaginary", "n_imaginary_gamma",
                                         "li_band_centre_THz", "band_centres_THz", "force_constants_wall_s",
                                         "n_displacements")}
        summary["imaginary_modes"] = (s.get("stability") or {}).get("imaginary_modes", [])[:10]
        summary["wall_s"] = time.perf_counter() - t0
        (out / "phonons_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    summary = json.loads((out / "phonons_summary.json").read_text())
    report["phonons"] = summary
    print("phonons:", json.dumps(summary, default=str)[:600], flush=True)

    # 2. Γ modes of the MD cell, classified ----------------------------------------------------------------------
    atoms = load_structure("LiGa_SeO3_2")
    phonon = load_phonons(ph_dir)
    modes = modes_for_supercell(phonon, atoms)
    classes = classify_oxygens(atoms)
    mc = mode_classes(modes, classes)
    f = modes.frequencies_THz
    report["gamma_modes"] = {
        "n_modes": int(len(f)), "min_THz": float(f.min()), "max_THz": float(f.max()),
        "n_below_minus_0.05_THz": int((f < -0.05).sum()), "lowest_five_THz": [float(x) for x in f[:5]],
        "dominant_class_counts": {c: int((mc.dominant == c).sum()) for c in ("O_e", "O_c", "O_n", "")},
        "site_classes": {c: len(getattr(classes, c)) for c in ("O_e", "O_c", "O_n")},
        "mean_participation_ratio": float(mc.participation_ratio.mean()),
    }
    print("gamma modes:", report["gamma_modes"], flush=True)

    # 3. CHGNet Langevin MD ------------------------------------------------------------------------------------------
    md_path = out / "md.h5"
    if not args.skip_md:
        calc = resolve_calculator("chgnet", device=args.device)
        last = [time.perf_counter()]

        def progress(done, total):
            if time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                print(f"  MD step {done}", flush=True)

        md = langevin_to_h5md(atoms, calc, md_path, args.temperature_K, args.timestep_fs, args.max_steps,
                              friction_per_fs=args.friction_per_fs, seed=args.seed, max_wall_s=args.md_seconds, fixcm=True,
                              progress=progress,
                              metadata={"calculator": "chgnet", "reference_kind": "surrogate reference"})
        md["duration_ps"] = md["n_steps"] * args.timestep_fs / 1000
        (out / "md_summary.json").write_text(json.dumps(md, indent=1))
    md = json.loads((out / "md_summary.json").read_text())
    traj = read_trajectory(md_path)
    md.update({"mean_temperature_K": float(np.nanmean(traj.temperatures_K)),
               "thermostat": "ASE Langevin, centre of mass fixed (FixCom)",
               "temperature_target_K": args.temperature_K, "friction_per_fs": args.friction_per_fs,
               **li_msd(md_path)})
    report["md"] = md
    print("md:", md, flush=True)

    # 4. MDMA and pFC ------------------------------------------------------------------------------------------------
    n_frames = traj.n_frames
    tau = round(min(1.0, 0.5 * (n_frames // 4) * traj.frame_interval_fs / 1000), 3)
    res = {}
    for conv in ("gordiz", "notebook"):
        t0 = time.perf_counter()
        r = run_mdma_command([md_path], ph_dir, out / f"mdma_{conv}", tau_max_ps=tau, n_blocks=4, convention=conv,
                             plots=True)
        res[conv] = {k: r.get(k) for k in MDMA_KEYS}
        res[conv]["wall_s"] = time.perf_counter() - t0
        print(conv, json.dumps(res[conv], default=str)[:1500], flush=True)
    report["mdma"] = res
    pfc = {"structure_directions": run_pfc_command(ph_dir)}
    try:
        pfc["hop_directions"] = run_pfc_command(ph_dir, trajectory=[md_path], hop_window=100)
    except ValueError as exc:
        pfc["hop_directions"] = {"error": str(exc)}
    for v in pfc.values():
        v.pop("spreads", None)
    report["pfc"] = pfc
    report["caveat"] = (f"{md['duration_ps']:.1f} ps of 80-atom CHGNet MD at {args.temperature_K:.0f} K: far too short "
                        "to be converged (the paper used 40 ps × several temperatures on 2×1×1 cells); the MDMA "
                        "shares and D_σ carry large statistical errors (see errors) and only demonstrate the pipeline.")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"wrote {args.results}; large outputs in {out}")


if __name__ == "__main__":
    main()
