"""Active learning on the quick profile's data: learning curve and committee calibration.

    python scripts/learn_curve.py --reference demo-out/reference -o learn-curve \
        [--results scripts/results/learn_quick.json]

Starts from the committee the *old* quick profile trained (8 channels, 12 epochs, batch 4 — the
model whose 1300 K MD decomposed) and runs ``phonion learn`` for two rounds against CHGNet (the
surrogate reference), then records per round: frames added, held-out force RMSE (per temperature),
committee spread p99, gate checks, and the status of the exploratory runs (which of them left
physical reality). Calibration of the final committee: the rank correlation between committee
spread and the real force error on held-out frames, and the mean spread on training frames,
held-out frames and frames of the hottest exploration run (unseen configurations).
Resumable: run the same command again after a kill.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

WEAK_MEMBER = {"model": {"r_max": 4.5, "num_channels": 8, "max_L": 0, "max_ell": 1, "correlation": 2,
                         "num_interactions": 2, "num_radial_basis": 6, "radial_MLP": [16, 16],
                         "pair_repulsion": True},
               "data": {"fractions": [0.8, 0.1, 0.1], "gap_frames": 3, "every": 2},
               "trainer": {"max_epochs": 12, "batch_size": 4, "val_batch_size": 16, "patience": 0,
                           "progress_bar": False, "accelerator": "cpu"},
               "wandb": {"mode": "disabled"}}


def spread_of(spec: str, frames) -> np.ndarray:
    """Per-frame RMS over atoms of the committee force spread (eV/Å)."""
    from phonion.core.calculators import resolve_calculator

    calc = resolve_calculator(spec, device="cpu")
    out = []
    for atoms in frames:
        a = atoms.copy()
        a.calc = calc
        a.get_forces()
        out.append(float(np.sqrt(np.mean(np.asarray(calc.results["forces_var"]).sum(axis=1)))))
    return np.asarray(out)


def main() -> None:
    import mace  # noqa: F401  (before e3nn)

    from phonion.md.io import read_trajectory
    from phonion.workflows.learn import learn_config_from_dict, run_learn

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="reference/ of a quick demo (<T>K/traj.h5)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--results", default=None, help="write the summary JSON here too")
    args = p.parse_args()
    cfg = learn_config_from_dict({
        "output": args.output, "reference_calculator": "chgnet",
        "data": {"files": [str(Path(args.reference) / "*K" / "traj.h5")]},
        "train": WEAK_MEMBER, "committee": {"size": 3, "workers": 3},
        "finetune": {"max_epochs": 8, "lr": 0.01},
        "explore": {"steps": 400, "equilibration_steps": 50, "sample_every": 5, "workers": 2},
        "harvest": {"max_frames": 32},
        "validate": {"steps": 800, "equilibration_steps": 100, "sample_every": 5, "workers": 2},
        "rounds": {"max_rounds": args.rounds, "min_rounds": args.rounds, "gate_every_round": True}})
    t0 = time.perf_counter()
    rounds = run_learn(cfg, progress=True)
    curve = [{k: r.get(k) for k in ("round", "n_added", "n_labelled_total", "force_rmse_meV_A",
                                    "force_rmse_by_temperature_meV_A", "uncertainty_p99_meV_A",
                                    "gate_passed", "failed_checks", "wall_s")} for r in rounds]
    for r, c in zip(rounds, curve):
        c["explore_runs_next_round"] = None
        c["validation_runs"] = None
    for k, r in enumerate(rounds):  # the exploration of round k+1 ran the committee of round k
        if k + 1 < len(rounds):
            curve[k]["explore_runs_next_round"] = rounds[k + 1]["exploration"].get("explore_runs")
        val = Path(args.output) / f"round_{k:03d}" / "validation" / "validation.json"
        if val.is_file():
            v = json.loads(val.read_text())
            curve[k]["validation_runs"] = [{x: run.get(x) for x in ("run", "status", "invalid_reason",
                                                                    "mean_temperature_K")}
                                           for run in v["validation_runs"]]
            curve[k]["uncertainty_calibration"] = v.get("uncertainty_calibration")
    # calibration of the final committee: spread on training-like, held-out and unseen frames
    spec = json.loads((Path(args.output) / "committee.json").read_text())["spec"]
    train_frames, held_frames = [], []
    for path in sorted(Path(args.reference).glob("*K/traj.h5")):
        traj = read_trajectory(path)
        n = traj.n_frames
        train_frames += [traj.to_atoms(i) for i in range(0, int(0.7 * n), max(1, n // 10))]
        held_frames += [traj.to_atoms(i) for i in range(int(0.9 * n), n, 2)]
    hot = sorted(Path(args.output).glob(f"round_{len(rounds) - 1:03d}/explore/T*_fixnone/traj.h5"),
                 key=lambda p: float(p.parent.name[1:].split("_")[0]))
    unseen = []
    if hot:
        traj = read_trajectory(hot[-1])
        unseen = [traj.to_atoms(i) for i in range(0, traj.n_frames, max(1, traj.n_frames // 15))]
    spread = {name: float(spread_of(spec, fr).mean() * 1e3) if fr else None
              for name, fr in (("training_frames", train_frames), ("held_out_frames", held_frames),
                               ("unseen_hot_exploration_frames", unseen))}
    summary = {"command": f"python scripts/learn_curve.py --reference {args.reference} -o {args.output}",
               "machine": "2 CPU cores, no GPU", "wall_s": round(time.perf_counter() - t0, 1),
               "start": "committee of the old quick-profile members (8 channels, 12 epochs, batch 4)",
               "rounds": curve, "final_committee_mean_spread_meV_A": spread,
               "hot_exploration_run": str(hot[-1]) if hot else None}
    text = json.dumps(summary, indent=2, default=str)
    (Path(args.output) / "learn_curve.json").write_text(text)
    if args.results:
        Path(args.results).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
