"""Surrogate-reference LiGa(SeO3)2 data (CHGNet MD at several temperatures) → a trained MACE model.

Stage ``data`` runs ``phonion reference`` (``phonion.mlip.reference.run_reference``, i.e. the phonion MD
driver with CHGNet, labelled "surrogate reference") at each temperature into OUT/reference/;
stage ``train`` trains MACE on it with ``phonion.mlip.train.run`` (time-block splits per run: the held-out
validation and test frames are the last 10 % + 10 % of each temperature's run, after a gap) and
reports the test force RMSE, the model size and the times in ``scripts/results/surrogate_train.json``.
Both stages resume when rerun (MD checkpoints, Lightning last.ckpt).

    python scripts/make_surrogate_data.py --stage data  --out surrogate   # MD only
    python scripts/make_surrogate_data.py --stage train --out surrogate   # MACE on it
    python scripts/make_surrogate_data.py --stage all   --out surrogate

Target: test force RMSE ≤ 30 meV/Å. What a 2-core CPU can reach in reasonable time is written to
the results file with the settings used; more epochs / channels (``--epochs``, ``--channels``,
``--max-L``) or a GPU (``--accelerator gpu``) are what it takes beyond that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")


def make_data(args) -> dict:
    from phonion.mlip.reference import ReferenceConfig, run_reference

    cfg = ReferenceConfig(structure="LiGa_SeO3_2", calculator=args.calculator,
                          temperatures_K=tuple(args.temperatures_K), steps=args.steps,
                          timestep_fs=args.timestep_fs, equilibration_steps=args.equilibration_steps,
                          sample_every=args.sample_every, ensemble="nvt-bussi", seed=args.seed,
                          output=str(Path(args.out) / "reference"))
    t0 = time.perf_counter()
    summary = run_reference(cfg, progress=not args.no_progress)
    summary["wall_s_this_session"] = time.perf_counter() - t0
    return summary


def train(args) -> dict:
    from phonion.mlip.train import load_config, run

    out = Path(args.out)
    files = sorted(str(p) for p in (out / "reference").glob("*K/traj.h5"))
    if not files:
        raise SystemExit(f"no reference data under {out / 'reference'}: run --stage data first")
    overrides = [f"output={out / args.run_name}", f"data.files={json.dumps(files)}",
                 f"model.num_channels={args.channels}", f"model.max_L={args.max_L}",
                 f"model.r_max={args.r_max}", f"model.correlation={args.correlation}",
                 f"model.max_ell={args.max_ell}", f"dtype={args.dtype}",
                 f"trainer.max_epochs={args.epochs}", f"trainer.batch_size={args.batch_size}",
                 f"trainer.accelerator={args.accelerator}", f"trainer.progress_bar={not args.no_progress}",
                 f"optim.lr={args.lr}", f"optim.scheduler={args.scheduler}", "trainer.patience=0",
                 f"data.gap_frames={args.gap_frames}", "wandb.mode=offline"] + ([f"trainer.num_threads={args.threads}"] if args.threads else [])
    cfg = load_config(ROOT / "configs" / "train.yaml", overrides)
    metrics = run(cfg)
    test = metrics["test"]
    return {"test_force_rmse_meV_A": test["force_rmse_meV_A"], "test_force_mae_meV_A": test["force_mae_meV_A"],
            "test_energy_mae_meV_atom": test["energy_mae_meV_atom"], "test_stress_rmse_GPa": test["stress_rmse_GPa"],
            "test_per_temperature_force_rmse_meV_A": {t: m["force_rmse_meV_A"]
                                                      for t, m in test["per_temperature"].items()},
            "val_force_rmse_meV_A": metrics["val"]["force_rmse_meV_A"],
            "n_frames": metrics["data"]["n_frames"], "n_parameters": metrics["model"]["n_parameters"],
            "hidden_irreps": metrics["model"]["hidden_irreps"], "r_max_A": metrics["model"]["r_max_A"],
            "epochs": metrics["training"]["epochs_completed"], "fit_wall_s": metrics["training"]["fit_wall_s"],
            "total_wall_s": metrics["training"]["total_wall_s"], "model_file": metrics["model_file"],
            "target_force_rmse_meV_A": 30.0, "met_target": test["force_rmse_meV_A"] <= 30.0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=["data", "train", "all"], default="all")
    p.add_argument("--out", default="surrogate")
    p.add_argument("--calculator", default="chgnet")
    p.add_argument("--temperatures-K", type=float, nargs="+", default=[600.0, 900.0, 1200.0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--equilibration-steps", type=int, default=40)
    p.add_argument("--sample-every", type=int, default=2)
    p.add_argument("--timestep-fs", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--max-L", type=int, default=1)
    p.add_argument("--r-max", type=float, default=5.0)
    p.add_argument("--correlation", type=int, default=3)
    p.add_argument("--max-ell", type=int, default=3)
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--scheduler", default="plateau")
    p.add_argument("--gap-frames", type=int, default=5)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--run-name", default="mace", help="training output OUT/RUN_NAME (resumes if present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--results", default=str(ROOT / "scripts" / "results" / "surrogate_train.json"))
    args = p.parse_args(argv)
    results_path = Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if args.stage in ("data", "all"):
        results["data"] = make_data(args)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2))
    if args.stage in ("train", "all"):
        results[f"train_{args.run_name}"] = {**train(args), "settings": {k: v for k, v in vars(args).items()
                                                        if k not in ("results", "no_progress")}}
        results_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
