"""phonion's Lightning trainer vs mace's own ``mace_run_train``: same data, model, epochs.

Data: EMT MD of a 32-atom Cu/Al cell at two temperatures (ASE velocity Verlet), split by
phonion's time-block rule; the train/validation/test frames are written as extxyz so that
``mace_run_train`` trains on exactly the same frames (``--train_file/--valid_file/--test_file``,
same E0s given with ``--E0s``). Settings matched on both sides: ScaleShiftMACE, r_max, channels,
max_L, max_ell, correlation, interactions, radial MLP, batch sizes, Adam(amsgrad) lr and weight
decay, ReduceLROnPlateau, gradient clipping 10, EMA 0.99, energy/forces weights 1/100
(``weighted`` loss), float64, seed, CPU threads. Each trainer runs as its own process (import,
training, export, its final evaluation); wall time is that process's. Both exported models are
then evaluated by the same code (``phonion.mlip.evaluate``, MACECalculator) on the validation frames.

Pass criteria (from the issue): validation force RMSE ≤ 1.05 × mace's, wall time ≤ 1.2 × mace's.

    python scripts/bench_train.py [--epochs 30] [--threads 1] [--work /tmp/bench_train]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")


def emt_run(temperature_K: float, n_frames: int, seed: int):
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.verlet import VelocityVerlet

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    symbols = atoms.get_chemical_symbols()
    for i in range(0, len(atoms), 4):
        symbols[i] = "Al"
    atoms.set_chemical_symbols(symbols)
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3))
                      * np.sqrt(atoms.get_masses()[:, None] * units.kB * 2 * temperature_K))
    frames = []

    def grab():
        snap = atoms.copy()
        snap.calc = SinglePointCalculator(snap, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        frames.append(snap)

    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    dyn.attach(grab, interval=3)
    dyn.run(3 * (n_frames - 1))
    return frames


def write_mace_split(atoms_list, path: Path) -> None:
    import ase.io

    out = []
    for a in atoms_list:
        b = a.copy()
        b.info = {"REF_energy": a.info["REF_energy"]}
        b.arrays["REF_forces"] = a.arrays["REF_forces"]
        out.append(b)
    ase.io.write(path, out, format="extxyz")


def timed(cmd, log: Path, env) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed (exit {proc.returncode}); see {log}")
    return wall


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/bench_train")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--frames", type=int, default=100, help="frames per temperature")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--max-L", type=int, default=1)
    p.add_argument("--reuse-mace", action="store_true",
                   help="keep a finished mace_run_train run in WORK (same settings) and rerun phonion only")
    p.add_argument("--results", default=str(ROOT / "scripts" / "results" / "train_bench.json"))
    args = p.parse_args(argv)
    work = Path(args.work)
    reuse = args.reuse_mace and (work / "mace" / "bench.model").is_file() and (work / "mace_wall_s.txt").is_file()
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(work / "phonion", ignore_errors=True)
    (work / "data").mkdir(parents=True, exist_ok=True)

    from phonion.mlip.data import DataConfig, build_dataset
    from phonion.mlip.evaluate import evaluate_model

    files = []
    for k, temp in enumerate((400.0, 1000.0)):
        import ase.io

        path = work / "data" / f"cual_{temp:g}K.extxyz"
        ase.io.write(path, emt_run(temp, args.frames, k), format="extxyz")
        files.append(str(path))
    ds = build_dataset(DataConfig(files=files, gap_frames=3))
    for split in ("train", "val", "test"):
        write_mace_split(ds.split(split), work / "data" / f"{split}.xyz")
    e0s = {int(z): float(e) for z, e in ds.e0s.items()}

    m = dict(r_max=4.5, num_channels=args.channels, max_L=args.max_L, max_ell=2, correlation=3,
             num_interactions=2, batch_size=8, valid_batch_size=16, lr=0.01, weight_decay=5e-7,
             ema_decay=0.99, energy_weight=1.0, forces_weight=100.0, seed=123, radial_MLP="[32, 32]")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    mace_cmd = ["mace_run_train", "--name", "bench", "--work_dir", str(work / "mace"),
                "--train_file", str(work / "data" / "train.xyz"), "--valid_file", str(work / "data" / "val.xyz"),
                "--test_file", str(work / "data" / "test.xyz"), "--E0s", repr(e0s),
                "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--model", "ScaleShiftMACE",
                "--r_max", str(m["r_max"]), "--num_channels", str(m["num_channels"]), "--max_L", str(m["max_L"]),
                "--max_ell", str(m["max_ell"]), "--correlation", str(m["correlation"]),
                "--num_interactions", str(m["num_interactions"]), "--radial_MLP", m["radial_MLP"],
                "--batch_size", str(m["batch_size"]), "--valid_batch_size", str(m["valid_batch_size"]),
                "--lr", str(m["lr"]), "--weight_decay", str(m["weight_decay"]), "--max_num_epochs",
                str(args.epochs), "--patience", "100000", "--ema", "--ema_decay", str(m["ema_decay"]),
                "--energy_weight", "1.0", "--forces_weight", "100.0", "--loss", "weighted",
                "--default_dtype", "float64", "--device", "cpu", "--seed", str(m["seed"]), "--clip_grad", "10",
                "--scheduler", "ReduceLROnPlateau", "--plot", "False", "--error_table", "PerAtomRMSE"]
    ph_cmd = [sys.executable, "-m", "phonion.cli.mlip", "train", f"output={work / 'phonion'}",
              f"data.files={json.dumps(files)}", "data.gap_frames=3", f"data.e0s={json.dumps({str(k): v for k, v in e0s.items()})}",
              "model.type=ScaleShiftMACE", f"model.r_max={m['r_max']}", f"model.num_channels={m['num_channels']}",
              f"model.max_L={m['max_L']}", f"model.max_ell={m['max_ell']}", f"model.correlation={m['correlation']}",
              f"model.num_interactions={m['num_interactions']}", f"model.radial_MLP={m['radial_MLP']}",
              f"trainer.batch_size={m['batch_size']}", f"trainer.val_batch_size={m['valid_batch_size']}",
              f"optim.lr={m['lr']}", f"optim.weight_decay={m['weight_decay']}", f"optim.ema_decay={m['ema_decay']}",
              "loss.kind=weighted", "loss.energy_weight=1.0", "loss.forces_weight=100.0", "dtype=float64",
              f"seed={m['seed']}", f"trainer.max_epochs={args.epochs}", "trainer.patience=0",
              "trainer.accelerator=cpu", "trainer.progress_bar=false", "trainer.resume=false",
              f"trainer.num_threads={args.threads}", "wandb.mode=offline"]
    if reuse:
        wall_mace = float((work / "mace_wall_s.txt").read_text())
    else:
        wall_mace = timed(mace_cmd, work / "mace.log", env)
        (work / "mace_wall_s.txt").write_text(f"{wall_mace}")
    wall_ph = timed(ph_cmd, work / "phonion.log", env)
    rmse = {}
    for name, model in (("phonion", work / "phonion" / "model.model"), ("mace", work / "mace" / "bench.model")):
        metrics, _ = evaluate_model(model, ds.val)
        test, _ = evaluate_model(model, ds.test)
        rmse[name] = {"val_force_rmse_meV_A": metrics["force_rmse_meV_A"],
                      "val_energy_mae_meV_atom": metrics["energy_mae_meV_atom"],
                      "test_force_rmse_meV_A": test["force_rmse_meV_A"]}
    ratio_rmse = rmse["phonion"]["val_force_rmse_meV_A"] / rmse["mace"]["val_force_rmse_meV_A"]
    result = {
        "data": {"system": "EMT Cu24Al8, 400 K and 1000 K, velocity Verlet 2 fs, every 3rd step",
                 "n_frames": {s: len(ds.split(s)) for s in ("train", "val", "test")}},
        "settings": {**m, "epochs": args.epochs, "dtype": "float64", "model": "ScaleShiftMACE",
                     "scheduler": "ReduceLROnPlateau", "threads": args.threads, "device": "cpu"},
        "phonion": {**rmse["phonion"], "wall_s": wall_ph}, "mace_run_train": {**rmse["mace"], "wall_s": wall_mace},
        "val_force_rmse_ratio": ratio_rmse, "wall_time_ratio": wall_ph / wall_mace,
        "pass_rmse_le_1.05": ratio_rmse <= 1.05, "pass_wall_le_1.2": wall_ph / wall_mace <= 1.2,
        "note": "wall = whole process (imports, data, training, export, final evaluation) on a shared CPU",
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
