"""Fine-tuning study (issue 15): naive vs multihead vs freeze vs scratch, and phonion vs mace_run_train.

A small multi-element "foundation" MACE is trained on EMT-labelled MD of six fcc binary alloys
(Cu-Al, Cu-Ni, Ag-Au, Pd-Pt, Ni-Pd, Cu-Au; 300 and 900 K). It is fine-tuned on a new composition,
Ni24Al8 (the Ni-Al pair is never seen by the foundation) at 300/600/900 K, with every mode at the same
budget (epochs, batch, lr, loss), and a model is trained from scratch on the same frames. Measured:
force RMSE on the Ni-Al test split, force RMSE on the foundation's own test split (forgetting), the
same multihead fine-tuning with ``mace_run_train --multiheads_finetuning True`` on the same
data/split/replay (test RMSE and wall time), and MLIP Langevin MD with each model at 900 K (closest
approach per species pair against phonion's learned pair floors, ``phonion.md.guards``).

Run (single-threaded, ~15-20 min on one core; each stage is cached in --work):
    OMP_NUM_THREADS=1 python scripts/finetune_bench.py --work /tmp/ftbench \
        -o scripts/results/finetune_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

FOUNDATION_PAIRS = [("Cu", "Al"), ("Cu", "Ni"), ("Ag", "Au"), ("Pd", "Pt"), ("Ni", "Pd"), ("Cu", "Au")]
NEW = ("Ni", "Al")
MODEL = ["model.r_max=4.5", "model.num_channels=16", "model.max_L=0", "model.max_ell=2", "model.correlation=2",
         "model.radial_MLP=[32,32]", "model.num_radial_basis=6"]
COMMON = ["trainer.progress_bar=false", "trainer.patience=0", "trainer.num_threads=1", "wandb.mode=disabled",
          "export.parity_plots=false", "trainer.resume=false", "seed=7", "loss.kind=universal"]
FT = dict(epochs=25, batch=4, lr=0.005)


def emt_run(pair, temp, n_frames, seed, *, minority_every=2, interval=5):
    """Langevin EMT MD of a 32-atom fcc cell of ``pair`` (every ``minority_every``-th atom the second)."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.data import atomic_numbers, reference_states
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    a_lat = [reference_states[atomic_numbers[s]]["a"] for s in pair]
    frac = 1 / minority_every
    atoms = bulk(pair[0], "fcc", a=(1 - frac) * a_lat[0] + frac * a_lat[1], cubic=True).repeat((2, 2, 2))
    symbols = atoms.get_chemical_symbols()
    for i in range(0, len(atoms), minority_every):
        symbols[i] = pair[1]
    atoms.set_chemical_symbols(symbols)
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temp, rng=rng)
    # the training data: friction 0.02 per ASE time unit (≈ 0.002 fs⁻¹, a weak coupling; kept as it
    # made the data of scripts/results/finetune_bench.json)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temp, friction=0.02, rng=rng)
    dyn.run(50)
    frames = []
    for _ in range(n_frames):
        dyn.run(interval)
        snap = atoms.copy()
        snap.calc = SinglePointCalculator(snap, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                          stress=atoms.get_stress())
        frames.append(snap)
    return frames


def make_data(work: Path) -> dict:
    import ase.io

    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    found, new, replay = [], [], []
    for k, pair in enumerate(FOUNDATION_PAIRS):
        for temp in (300, 900):
            path = d / f"{pair[0]}{pair[1]}_{temp}K.extxyz"
            if not path.is_file():
                ase.io.write(path, emt_run(pair, temp, 20, 10 * k + temp))
            found.append(str(path))
    for temp in (300, 600, 900):
        path = d / f"NiAl_{temp}K.extxyz"
        if not path.is_file():
            ase.io.write(path, emt_run(NEW, temp, 24, 1000 + temp, minority_every=4))
        new.append(str(path))
    for path in found:  # replay: every 3rd frame of the first 80 % of each foundation run (its training block)
        out = d / "replay" / Path(path).name
        if not out.is_file():
            out.parent.mkdir(exist_ok=True)
            frames = ase.io.read(path, ":")
            ase.io.write(out, frames[: int(0.8 * len(frames))][::3])
        replay.append(str(out))
    return {"foundation": found, "new": new, "replay": replay}


def train(out: Path, overrides: list) -> dict:
    """``phonion train`` in a subprocess (its own wall time, single-threaded); cached in ``out``."""
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "phonion.cli.main", "train", f"output={out}", *MODEL, *COMMON, *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["process_wall_s"] = time.perf_counter() - t0
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return metrics


def force_rmse(model_path, files) -> float:
    from phonion.mlip.evaluate import evaluate_model, frames_from_files

    metrics, _ = evaluate_model(model_path, frames_from_files(files))
    return metrics["force_rmse_meV_A"]


def finetune_all(work: Path, data: dict, found_model: Path) -> dict:
    new_files = json.dumps(data["new"])
    base = [f"data.files={new_files}", "data.fractions=[0.5,0.25,0.25]", "data.gap_frames=0",
            f"trainer.max_epochs={FT['epochs']}", f"trainer.batch_size={FT['batch']}", f"optim.lr={FT['lr']}",
            f"finetune.replay.files={json.dumps(data['replay'])}"]
    runs = {}
    for mode in ("naive", "multihead", "freeze"):
        runs[mode] = train(work / mode, base + [f"model.foundation={found_model}", f"finetune.mode={mode}"])
    runs["scratch"] = train(work / "scratch", base)
    return runs


def mace_run_train(work: Path, data: dict, found_model: Path, phonion_run: Path) -> dict:
    """The same multihead fine-tuning with mace_run_train: phonion's train/val/test split of the Ni-Al
    data and the same replay frames (phonion's held-out replay frames as mace's pt validation file)."""
    import ase.io

    from phonion.mlip.data import build_dataset
    from phonion.mlip.finetune import prepare
    from phonion.mlip.train import load_config

    d = work / "mace_mh"
    if (d / "result.json").is_file():
        return json.loads((d / "result.json").read_text())
    d.mkdir(parents=True, exist_ok=True)
    cfg = load_config(phonion_run / "config.yaml")
    dataset = build_dataset(cfg.data)
    setup = prepare(cfg, dataset)
    for name, frames in (("train", dataset.train), ("valid", dataset.val), ("test", dataset.test),
                         ("pt_train", setup.replay_train), ("pt_valid", setup.replay_test)):
        for a in frames:
            a.info.pop("config_weight", None)
        ase.io.write(d / f"{name}.xyz", frames, format="extxyz")
    args = ["mace_run_train", "--name", "mh", "--foundation_model", str(found_model), "--multiheads_finetuning",
            "True", "--force_mh_ft_lr", "True", "--train_file", "train.xyz", "--valid_file", "valid.xyz",
            "--test_file", "test.xyz", "--pt_train_file", "pt_train.xyz", "--pt_valid_file", "pt_valid.xyz",
            "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--stress_key", "REF_stress",
            "--E0s", "estimated", "--lr", str(FT["lr"]), "--batch_size", str(FT["batch"]), "--valid_batch_size", "16",
            "--max_num_epochs", str(FT["epochs"]), "--ema", "--ema_decay", "0.99", "--scheduler_patience", "50",
            "--patience", "1000", "--default_dtype", "float64", "--device", "cpu", "--seed", "7",
            "--weight_pt_head", "1.0", "--save_cpu", "--error_table", "PerAtomRMSEstressvirials"]
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=d, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode:
        return {"error": proc.stderr[-2000:], "wall_s": wall}
    from mace.tools.scripts_utils import remove_pt_head
    import torch

    model = torch.load(d / "mh.model", map_location="cpu", weights_only=False)
    torch.save(remove_pt_head(model, "Default").double(), d / "mh_default.model")
    result = {"wall_s": wall, "model": str(d / "mh_default.model"), "command": " ".join(args)}
    (d / "result.json").write_text(json.dumps(result, indent=2))
    return result


def md_check(model_path, floors: dict, temp: float, steps: int, seed: int) -> dict:
    """Langevin MD (2 fs) of Ni24Al8 with the model; closest approach per pair every 20 steps."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from phonion.core.calculators import resolve_calculator
    from phonion.md.guards import closest_pairs

    atoms = emt_run(NEW, 300, 1, seed, minority_every=4)[0]
    atoms.calc = resolve_calculator(f"mace:{model_path}", device="cpu", dtype="float64")
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temp, rng=rng)
    # friction 0.02 fs⁻¹ (ASE's Langevin takes it in inverse ASE time units: hence / units.fs)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temp, friction=0.02 / units.fs, rng=rng)
    closest, temps, t0, failed = {}, [], time.perf_counter(), None
    for k in range(steps // 20):
        try:
            dyn.run(20)
        except Exception as exc:  # noqa: BLE001 - a blown-up model: record, stop
            failed = f"step {20 * k}: {type(exc).__name__}: {exc}"
            break
        temps.append(atoms.get_temperature())
        for key, (dist, _, _) in closest_pairs(atoms).items():
            closest[key] = min(dist, closest.get(key, np.inf))
        if not np.isfinite(atoms.positions).all() or temps[-1] > 5 * temp:
            failed = f"step {20 * (k + 1)}: T = {temps[-1]:.0f} K"
            break
    below = {p: d for p, d in closest.items() if d < floors.get(p, 0.0)}
    return {"ps": 2e-3 * 20 * len(temps), "closest_A": closest, "floors_A": {p: floors[p] for p in closest},
            "below_floor": below, "mean_T_K": float(np.mean(temps)) if temps else None, "failed": failed,
            "physical": failed is None and not below, "wall_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/ftbench")
    p.add_argument("-o", "--output", default="scripts/results/finetune_bench.json")
    p.add_argument("--md-steps", type=int, default=1500)
    p.add_argument("--redo", nargs="*", default=[], choices=["naive", "multihead", "freeze", "scratch", "mace_mh"],
                   help="stages to run again (e.g. to time phonion and mace_run_train back to back)")
    args = p.parse_args(argv)
    import shutil

    import torch

    torch.set_num_threads(1)
    work = Path(args.work)
    for stage in args.redo:
        shutil.rmtree(work / stage, ignore_errors=True)
    t0 = time.perf_counter()
    data = make_data(work)
    found = train(work / "foundation", [f"data.files={json.dumps(data['foundation'])}", "data.gap_frames=1",
                                        "trainer.max_epochs=40", "trainer.batch_size=8", "optim.lr=0.01"])
    found_model = work / "foundation" / "model.model"
    found_test = sorted(str(f) for f in (work / "foundation" / "splits").glob("test_*.extxyz"))
    runs = finetune_all(work, data, found_model)
    new_test = sorted(str(f) for f in (work / "multihead" / "splits").glob("test_*.extxyz"))
    table = {"foundation": {"new_test_force_rmse_meV_A": force_rmse(found_model, new_test),
                            "foundation_test_force_rmse_meV_A": found["test"]["force_rmse_meV_A"]}}
    for name, m in runs.items():
        row = {"new_test_force_rmse_meV_A": m["test"]["force_rmse_meV_A"], "fit_wall_s": m["training"]["fit_wall_s"],
               "process_wall_s": m.get("process_wall_s")}
        if name != "scratch":
            row["foundation_test_force_rmse_meV_A"] = force_rmse(m["model_file"], found_test)
            row["forgetting_factor"] = (row["foundation_test_force_rmse_meV_A"]
                                        / table["foundation"]["foundation_test_force_rmse_meV_A"])
            row["replay_block"] = {k: m["replay"][k] for k in ("n_train", "n_test", "force_rmse_ratio")}
        table[name] = row
    mace_mh = mace_run_train(work, data, found_model, work / "multihead")
    if "model" in mace_mh:
        mace_mh["new_test_force_rmse_meV_A"] = force_rmse(mace_mh["model"], new_test)
        mace_mh["foundation_test_force_rmse_meV_A"] = force_rmse(mace_mh["model"], found_test)
        mace_mh["test_rmse_ratio_phonion_over_mace"] = (table["multihead"]["new_test_force_rmse_meV_A"]
                                                        / mace_mh["new_test_force_rmse_meV_A"])
        mace_mh["wall_ratio_phonion_over_mace"] = runs["multihead"]["process_wall_s"] / mace_mh["wall_s"]
    from phonion.mlip.evaluate import frames_from_files
    from phonion.md.guards import learn_pair_floors

    floors = learn_pair_floors(frames_from_files(data["new"]))
    md = {}
    for name in ("naive", "multihead", "freeze", "scratch"):
        cache = work / name / f"md_900K_{args.md_steps}.json"
        if not cache.is_file():
            cache.write_text(json.dumps(md_check(work / name / "model.model", floors, 900.0, args.md_steps, 5),
                                        default=float))
        md[name] = json.loads(cache.read_text())
    result = {"table": table, "mace_run_train_multihead": mace_mh, "md_900K": md, "budget": FT,
              "data": {k: len(v) for k, v in data.items()}, "total_wall_s": time.perf_counter() - t0,
              "torch_threads": 1,
              "command": "OMP_NUM_THREADS=1 python scripts/finetune_bench.py " + " ".join(argv or sys.argv[1:])}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps({"table": table, "mace": {k: v for k, v in mace_mh.items() if k != "command"},
                      "md": {k: (v["physical"], v["closest_A"], v["failed"]) for k, v in md.items()}},
                     indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
