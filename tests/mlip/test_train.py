"""Training: a tiny run end to end, export for MACECalculator, resume, fine-tuning."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from test_data import emt_frames, write  # noqa: E402 (tests/mlip is on sys.path)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore")

#: a model small enough for 2 CPU cores (r_max 4 Å: 18 neighbours in fcc Cu)
TINY = ["model.r_max=4.0", "model.num_channels=8", "model.max_L=0", "model.max_ell=1", "model.correlation=2",
        "model.radial_MLP=[16,16]", "model.num_radial_basis=6", "trainer.batch_size=8",
        "trainer.progress_bar=false", "trainer.patience=0", "data.gap_frames=2", "seed=7",
        "trainer.num_threads=1"]


@pytest.fixture(scope="module")
def emt_files(tmp_path_factory):
    """Two EMT Cu/Al runs (300 K, 900 K), 50 frames of 32 atoms each, as extxyz."""
    d = tmp_path_factory.mktemp("emt")
    return [write(d / "cual_300K.extxyz", emt_frames(300, 50, 0)),
            write(d / "cual_900K.extxyz", emt_frames(900, 50, 1))]


def cli(*argv) -> tuple[int, str]:
    from phonion.cli.mlip import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(list(argv))
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def trained(emt_files, tmp_path_factory):
    """``phonion train --config configs/train_tiny.yaml`` on the EMT runs, 3 epochs, wandb offline."""
    out = tmp_path_factory.mktemp("train") / "run"
    code, text = cli("train", "--config", str(ROOT / "configs" / "train_tiny.yaml"), f"output={out}",
                     f"data.files={json.dumps(emt_files)}", "trainer.max_epochs=3", "trainer.batch_size=8",
                     "wandb.mode=offline", "trainer.num_threads=1", "--json")
    assert code == 0
    return out, json.loads(text)


def test_tiny_run_exports_a_model_mace_loads(trained):
    from mace.calculators import MACECalculator

    out, metrics = trained
    for name in ("model.model", "metrics.json", "parity_energy.png", "parity_forces.png", "config.yaml",
                 "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    assert list((out / "logs" / "wandb").glob("offline-run-*")), "wandb must run offline"
    csv = next((out / "logs" / "csv").glob("version_*/metrics.csv")).read_text().splitlines()[0]
    for column in ("val_force_rmse_meV_A", "val_force_mae_meV_A", "val_energy_mae_meV_atom", "train_loss"):
        assert column in csv
    calc = MACECalculator(model_paths=str(out / "model.model"), device="cpu", default_dtype="float64")
    atoms = emt_frames(300, 1, 3)[0]
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_forces().shape == (32, 3)
    assert metrics["training"]["epochs_completed"] == 3 and metrics["model"]["n_parameters"] > 0
    assert json.loads((out / "metrics.json").read_text())["test"] == metrics["test"]


def test_evaluate_reproduces_metrics_json(trained):
    """phonion evaluate on the written test split gives metrics.json's test numbers."""
    out, metrics = trained
    files = sorted(str(p) for p in (out / "splits").glob("test_*.extxyz"))
    assert len(files) == 2
    code, text = cli("evaluate", "--model", str(out / "model.model"), *files, "--threads", "1", "--json")
    assert code == 0
    got, want = json.loads(text), metrics["test"]
    assert got["n_frames"] == want["n_frames"] == 6
    for key in ("energy_mae_meV_atom", "force_rmse_meV_A", "force_mae_meV_A", "stress_rmse_GPa"):
        if want[key] is None:  # no stress in these frames (pytest ≥ 9.2 refuses approx(None))
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(want[key], rel=1e-6), key
    for el, value in want["per_element_force_rmse_meV_A"].items():
        assert got["per_element_force_rmse_meV_A"][el] == pytest.approx(value, rel=1e-6)
    assert set(got["per_temperature"]) == {"300", "900"}
    assert got["per_temperature"]["900"]["force_rmse_meV_A"] == pytest.approx(
        want["per_temperature"]["900"]["force_rmse_meV_A"], rel=1e-6)


def test_resume_continues_like_an_uninterrupted_run(emt_files, tmp_path):
    """2 epochs, then the same run to 4 epochs from last.ckpt == 4 epochs in one go (bitwise on CPU)."""
    import torch

    from phonion.mlip.train import load_config, run

    def cfg(out, epochs):
        return load_config(None, TINY + [f"output={out}", f"data.files={json.dumps(emt_files[:1])}",
                                         f"trainer.max_epochs={epochs}", "wandb.mode=disabled",
                                         "export.parity_plots=false"])

    run(cfg(tmp_path / "a", 2))
    resumed = run(cfg(tmp_path / "a", 4))
    assert resumed["training"]["resumed_from"].endswith("last.ckpt")
    assert resumed["training"]["epochs_completed"] == 4
    straight = run(cfg(tmp_path / "b", 4))
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"] == 4 * 5
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"]):
        assert torch.equal(x, y)
    assert resumed["test"]["force_rmse_meV_A"] == pytest.approx(straight["test"]["force_rmse_meV_A"], rel=1e-10)


def test_config_overrides_and_errors():
    from phonion.mlip.train import load_config

    cfg = load_config(ROOT / "configs" / "train.yaml", ["model.num_channels=32", "trainer.max_epochs=5",
                                                        "data.fractions=[0.7,0.2,0.1]"])
    assert cfg.model.num_channels == 32 and cfg.trainer.max_epochs == 5 and cfg.data.fractions == (0.7, 0.2, 0.1)
    assert cfg.wandb.mode == "offline"
    with pytest.raises(Exception):
        cfg.model = None  # frozen
    with pytest.raises(ValueError, match=r"model: unknown key 'num_chanels' \(did you mean 'num_channels'\?\)"):
        load_config(None, ["model.num_chanels=3"])
    with pytest.raises(ValueError, match="expected key=value"):
        load_config(None, ["trainer.max_epochs"])
    with pytest.raises(ValueError, match="wandb.mode"):
        load_config(None, ["wandb.mode=sometimes"])
    assert cli("train", "--config", "no/such.yaml")[0] == 2


@pytest.mark.slow
def test_sigkill_then_rerun_resumes(emt_files, tmp_path):
    """A real kill -9 of `phonion train` mid-run; the same command then resumes from last.ckpt."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "phonion.cli.mlip", "train", *TINY, f"output={out}",
           f"data.files={json.dumps(emt_files)}", "trainer.max_epochs=6", "wandb.mode=offline"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 600
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    done = subprocess.run(cmd + ["--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(done.stdout)
    assert metrics["training"]["resumed_from"].endswith("last.ckpt")
    assert metrics["training"]["epochs_completed"] == 6
    # the same run without the kill reaches the same quality (per-epoch seeded shuffling, restored
    # optimiser / scheduler / EMA state): test force RMSE within 5 %
    whole = tmp_path / "whole"
    ref_cmd = [c if not c.startswith("output=") else f"output={whole}" for c in cmd]
    ref = subprocess.run(ref_cmd + ["--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stderr[-2000:]
    uninterrupted = json.loads(ref.stdout)
    print("resumed", metrics["test"]["force_rmse_meV_A"], "uninterrupted", uninterrupted["test"]["force_rmse_meV_A"])
    assert metrics["test"]["force_rmse_meV_A"] == pytest.approx(uninterrupted["test"]["force_rmse_meV_A"], rel=0.05)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(emt_files, tmp_path):
    """Lightning DDP (gloo, 2 CPU processes): each rank sees half the batches; one report, one model."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "phonion.cli.mlip", "train", *TINY, f"output={out}", f"data.files={json.dumps(emt_files)}",
           "trainer.max_epochs=2", "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
           "trainer.drop_last=false", "wandb.mode=disabled", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(done.stdout)  # exactly one JSON document: only rank 0 prints
    assert metrics["training"]["world_size"] == 2 and metrics["training"]["strategy"] == "DDPStrategy"
    n_train, batch = metrics["data"]["n_frames"]["train"], 8
    per_rank = -(-n_train // 2)  # DistributedSampler pads to equal shards
    assert metrics["training"]["global_steps"] == 2 * -(-per_rank // batch)
    assert (out / "model.model").stat().st_size > 0


@pytest.mark.slow
def test_fine_tuning_beats_scratch_on_small_data(emt_files, tmp_path):
    """Foundation: the two EMT Cu24Al8 runs; fine-tune on 8 frames of Cu16Al16 at 700 K.

    Same small data, model and epochs: starting from the foundation gives lower test errors.
    """
    from phonion.mlip.train import load_config, run

    small = write(tmp_path / "small_700K.extxyz", emt_frames(700, 16, 30, al_every=2))
    base = TINY + ["wandb.mode=disabled", "export.parity_plots=false"]
    found = run(load_config(None, base + [f"output={tmp_path / 'found'}", f"data.files={json.dumps(emt_files)}",
                                          "trainer.max_epochs=12"]))
    small_cfg = base + [f"data.files={json.dumps([small])}", "trainer.max_epochs=8", "trainer.batch_size=4",
                        "data.fractions=[0.5,0.25,0.25]", "data.gap_frames=0"]
    tuned = run(load_config(None, small_cfg + [f"output={tmp_path / 'tuned'}", "optim.lr=0.002",
                                               f"model.foundation={tmp_path / 'found' / 'model.model'}"]))
    scratch = run(load_config(None, small_cfg + [f"output={tmp_path / 'scratch'}"]))
    print("foundation", found["test"]["force_rmse_meV_A"], "fine-tuned", tuned["test"]["force_rmse_meV_A"],
          "scratch", scratch["test"]["force_rmse_meV_A"])
    assert tuned["model"]["foundation"] and tuned["model"]["e0s_source"].startswith("estimated")
    import torch

    model = torch.load(tmp_path / "tuned" / "model.model", weights_only=False)  # the estimated E0s are kept
    e0 = dict(zip(model.atomic_numbers.tolist(), model.atomic_energies_fn.atomic_energies.reshape(-1).tolist()))
    assert e0 == pytest.approx({13: tuned["model"]["e0s_eV"]["Al"], 29: tuned["model"]["e0s_eV"]["Cu"]})
    assert tuned["test"]["force_rmse_meV_A"] < scratch["test"]["force_rmse_meV_A"]
    assert tuned["test"]["energy_mae_meV_atom"] < scratch["test"]["energy_mae_meV_atom"]


@pytest.mark.slow
def test_lammps_export_through_mace(trained):
    from phonion.mlip.train import export_lammps

    out, _ = trained
    result = export_lammps(out / "model.model")
    assert "lammps_model" in result, result
    assert Path(result["lammps_model"]).stat().st_size > 0
