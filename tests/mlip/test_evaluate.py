"""Evaluation: metric definitions on known arrays, and the evaluate command on a saved mace model."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest

from phonion.mlip.evaluate import EV_A3_TO_GPA, error_metrics, metrics_with_temperatures

pytestmark = pytest.mark.filterwarnings("ignore")


def arrays(n_frames=4, n_atoms=3, rng=None):
    rng = rng or np.random.default_rng(0)
    f_ref = rng.normal(size=(n_frames * n_atoms, 3))
    return {"energy_ref": rng.normal(size=n_frames), "energy_pred": None, "n_atoms": np.full(n_frames, float(n_atoms)),
            "forces_ref": f_ref, "forces_pred": None, "symbols": np.array(["Li", "O", "O"] * n_frames),
            "stress_ref": np.zeros((n_frames, 3, 3)), "stress_pred": None,
            "temperature_K": np.array([300.0, 300.0, 600.0, np.nan])[:n_frames]}


def test_metrics_on_known_errors():
    pred = arrays()
    pred["energy_pred"] = pred["energy_ref"] + np.array([0.003, -0.003, 0.006, -0.006])  # 1, 1, 2, 2 meV/atom
    pred["forces_pred"] = pred["forces_ref"].copy()
    pred["forces_pred"][pred["symbols"] == "Li"] += 0.02     # Li: every component off by 20 meV/Å
    pred["stress_pred"] = pred["stress_ref"] + 0.001            # 1e-3 eV/Å³ on all 9 components
    m = error_metrics(pred)
    assert m["energy_mae_meV_atom"] == pytest.approx(1.5)
    assert m["energy_rmse_meV_atom"] == pytest.approx(np.sqrt(2.5))
    assert m["per_element_force_rmse_meV_A"] == pytest.approx({"Li": 20.0, "O": 0.0})
    assert m["force_rmse_meV_A"] == pytest.approx(20.0 / np.sqrt(3))   # 1 of 3 atoms off
    assert m["force_mae_meV_A"] == pytest.approx(20.0 / 3)
    assert m["stress_rmse_GPa"] == pytest.approx(1e-3 * EV_A3_TO_GPA)
    assert m["n_frames"] == 4 and m["n_atoms"] == 12


def test_per_temperature_groups_frames():
    pred = arrays()
    pred["energy_pred"] = pred["energy_ref"] + np.array([0.0, 0.0, 0.03, 0.0])
    pred["forces_pred"], pred["stress_pred"] = pred["forces_ref"], np.full((4, 3, 3), np.nan)
    m = metrics_with_temperatures(pred)
    assert list(m["per_temperature"]) == ["300", "600", "unknown"]
    assert m["per_temperature"]["300"]["n_frames"] == 2 and m["per_temperature"]["600"]["energy_mae_meV_atom"] == \
        pytest.approx(10.0)
    assert m["stress_rmse_GPa"] is None


def test_evaluate_command_matches_direct_calculation(tmp_path):
    """An (untrained) mace model saved with torch.save: the command's numbers equal a direct calculation."""
    import mace  # noqa: F401
    import torch
    from mace.calculators import MACECalculator
    from mace.tools import set_default_dtype

    dtype = torch.get_default_dtype()
    set_default_dtype("float64")
    torch.manual_seed(0)
    try:
        _check_evaluate_command(tmp_path, torch, MACECalculator)
    finally:
        torch.set_default_dtype(dtype)


def _check_evaluate_command(tmp_path, torch, MACECalculator):
    from test_data import emt_frames, write

    from phonion.mlip.data import DataConfig, build_dataset, to_atomic_data
    from phonion.cli.mlip import main
    from phonion.mlip.model import ModelConfig, build_model

    path = write(tmp_path / "cual_600K.extxyz", emt_frames(600, 6, 0))
    ds = build_dataset(DataConfig(files=[path], gap_frames=0, fractions=(0.5, 0.5, 0.0)))
    from mace.tools import torch_geometric

    loader = torch_geometric.dataloader.DataLoader(to_atomic_data(ds.train, ds.zs, 4.0), batch_size=3)
    model, info = build_model(ModelConfig(r_max=4.0, num_channels=8, max_L=0, max_ell=1, correlation=2,
                                          radial_MLP=(8,)), ds, loader)
    assert info["e0s_eV"].keys() == {"Al", "Cu"}
    torch.save(model, tmp_path / "m.model")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["evaluate", "--model", str(tmp_path / "m.model"), path, "--threads", "1", "--json"]) == 0
    got = json.loads(buf.getvalue())
    calc = MACECalculator(model_paths=str(tmp_path / "m.model"), device="cpu", default_dtype="float64")
    import ase.io

    de, df = [], []
    for atoms in ase.io.read(path, ":"):
        e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = calc
        de.append((atoms.get_potential_energy() - e_ref) / len(atoms))
        df.append(atoms.get_forces() - f_ref)
    assert got["n_frames"] == 6 and list(got["per_temperature"]) == ["600"]
    assert got["energy_mae_meV_atom"] == pytest.approx(1e3 * np.mean(np.abs(de)), rel=1e-6)
    assert got["force_rmse_meV_A"] == pytest.approx(1e3 * np.sqrt(np.mean(np.square(df))), rel=1e-6)
    assert got["stress_rmse_GPa"] is None  # the file has no stress


def test_evaluate_refuses_frames_without_forces(tmp_path):
    from test_data import emt_frames, write

    from phonion.mlip.evaluate import frames_from_files

    path = write(tmp_path / "partial.extxyz", emt_frames(300, 4, 0), drop_forces=(1,))
    with pytest.raises(ValueError, match="partial.extxyz: 1 of 4 frames lack energy or forces"):
        frames_from_files([path])
    assert len(frames_from_files([path], skip_incomplete=True)) == 3
