"""``phonion validate`` (the fit-for-MD gate) and the committee SPEC, on EMT Cu/Al data and tiny MACE models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mace  # noqa: F401  (mace before e3nn)
import numpy as np
import pytest

from gate_helpers import emt_reference, train_tiny

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore")

#: keys the command contract promises (scripts rely on them)
CONTRACT = ("passed", "force_rmse_meV_A", "force_rmse_by_temperature_meV_A", "min_pair_distance_ratio",
            "rdf_first_peak_max_shift_A", "mean_temperature_ratio", "uncertainty_p99_meV_A", "checks")
#: short validation MD: 10 + 40 steps per run
SHORT = ["--steps", "40", "--equilibration-steps", "10", "--workers", "1"]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """EMT reference runs at 300 and 600 K (51 frames each) and two 1-epoch MACE models (bad on purpose)."""
    d = tmp_path_factory.mktemp("gate")
    files = emt_reference(d / "reference")
    models = [train_tiny(d / f"m{k}", files, seed=7 + k) for k in range(2)]
    return {"dir": d / "reference", "files": files, "models": models}


@pytest.fixture(scope="module")
def single(ref, tmp_path_factory):
    """``python -m phonion.cli.main validate ... --json`` on one bad model (a real process: fd-level stdout)."""
    out = tmp_path_factory.mktemp("val") / "single"
    proc = subprocess.run([sys.executable, "-m", "phonion.cli.main", "validate", "--model", f"mace:{ref['models'][0]}",
                           "--reference", str(ref["dir"]), "--temperature-K", "600", *SHORT, "-o", str(out),
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return proc, out


def test_bad_model_fails_the_gate_with_exit_1_and_json_alone_on_stdout(single):
    proc, out = single
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # nothing but the object: banners went to stderr
    assert proc.stdout.lstrip().startswith("{") and proc.stdout.rstrip().endswith("}")
    assert result["passed"] is False
    # 1 epoch on 80 frames: held-out force RMSE ~500 meV/Å, far above the 100 meV/Å limit
    assert result["force_rmse_meV_A"] > result["checks"]["force_rmse"]["limit"]
    assert "force_rmse" in result["failed_checks"] and result["checks"]["force_rmse"]["passed"] is False
    assert result["failed_checks"] == [k for k, c in result["checks"].items() if not c["passed"]]
    assert json.loads((out / "validation.json").read_text()) == result


def test_gate_json_keys_and_validation_runs_on_disk(single, ref):
    proc, out = single
    result = json.loads(proc.stdout)
    for key in CONTRACT:
        assert key in result, key
    for name, check in result["checks"].items():
        assert set(check) >= {"value", "limit", "passed"} and isinstance(check["passed"], bool), name
    assert {"force_rmse", "no_sanity_trip", "min_pair_distance_ratio", "rdf_first_peak_max_shift",
            "mean_temperature_ratio"} <= set(result["checks"])
    assert set(result["force_rmse_by_temperature_meV_A"]) == {"300", "600"}
    assert set(result["force_rmse_by_species_meV_A"]) == {"Al", "Cu"}
    # one model: no committee, no uncertainty check
    assert result["committee"] is False and result["uncertainty_p99_meV_A"] is None
    assert result["uncertainty_calibration"] is None and "uncertainty_p99" not in result["checks"]
    # the two validation runs: at the given 600 K and 1.1 × above, each with run.json and frames
    runs = {r["temperature_K"]: r for r in result["validation_runs"]}
    assert set(runs) == {600.0, 660.0}
    for r in runs.values():
        record = json.loads((Path(r["path"]) / "run.json").read_text())
        assert record["status"] in ("complete", "invalid") and record["status"] == r["status"]
        assert Path(r["path"]).parent == out / "md" and (Path(r["path"]) / "traj.h5").is_file()
        assert r["n_frames"] >= 1
    assert result["checks"]["no_sanity_trip"]["value"] == sum(r["status"] != "complete" for r in runs.values())
    # closest approaches: the ratio is the worst pair's, over the pairs of the reference
    ratios = result["min_pair_distance_ratio_by_pair"]
    assert set(ratios) == {"Al-Al", "Al-Cu", "Cu-Cu"} and result["min_pair_distance_ratio"] == min(ratios.values())
    assert result["rdf_temperatures_K"] == {"reference": 600.0, "mlip": 600.0}
    assert (out / "rdf.png").stat().st_size > 0
    # coordination numbers of the reference's bonded shells: the check's value is the largest |difference|;
    # each validation run's drift is reported beside it
    coord = result["coordination"]
    assert "coordination" in result["checks"] and result["checks"]["coordination"]["limit"] == 0.2
    changes = [abs(v) for v in coord["difference"].values()]
    assert result["coordination_max_difference"] == (max(changes) if changes else None)
    assert set(coord["drift"]) <= {r["run"] for r in result["validation_runs"]}
    assert all(sh["centre"] != sh["neighbour"] for sh in coord["shells"].values())


def test_committee_reports_uncertainty(ref, tmp_path):
    """A 2-model committee: uncertainty p99 over the validation runs and its calibration on held-out frames."""
    from phonion.workflows.validate import ValidateConfig, validate

    spec = "mace:" + ",".join(ref["models"])
    result = validate(ValidateConfig(model=spec, reference=str(ref["dir"]), output=str(tmp_path / "v"), steps=20,
                                     equilibration_steps=10, workers=1), progress=False)
    assert result["committee"] is True
    p99 = result["uncertainty_p99_meV_A"]
    assert isinstance(p99, float) and p99 > 0
    assert result["checks"]["uncertainty_p99"]["value"] == p99
    runs_u = [r["uncertainty_p99_eV_A"] for r in result["validation_runs"] if r["uncertainty_p99_eV_A"] is not None]
    assert p99 == pytest.approx(1e3 * max(runs_u))
    calib = result["uncertainty_calibration"]
    assert set(calib) >= {"spearman_frame_error_vs_spread", "held_out_spread_p99_meV_A"}
    assert calib["held_out_spread_p99_meV_A"] > 0
    json.dumps(result, allow_nan=False)  # strict JSON


def test_bad_input_exit_2_one_line_no_traceback(ref, tmp_path, capfd):
    from phonion.cli.main import main

    code = main(["validate", "--model", f"mace:{ref['models'][0]}", "--reference", str(tmp_path / "nothing"),
                 "-o", str(tmp_path / "v"), "--json"])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phonion validate: error: ") and "nothing" in lines[0]
    code = main(["validate", "--model", "mace:" + str(tmp_path / "missing.model"), "--reference", str(ref["dir"]),
                 "-o", str(tmp_path / "v"), "--json"])
    out, err = capfd.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("phonion validate: error: ")][0].endswith(
        "missing.model: no such MACE model file")


def test_output_of_another_model_is_refused(single, ref, tmp_path):
    """Finished validation MD is reused by its settings: another model (or a retrained file) must not be."""
    import shutil

    from phonion.core.calculators import parse_spec
    from phonion.workflows.validate import ValidateConfig, _check_same_model, validate

    _, out = single
    before = {p: p.stat().st_mtime_ns for p in (out / "md").rglob("*")}
    with pytest.raises(ValueError, match="holds the validation MD of another model"):
        validate(ValidateConfig(model=f"mace:{ref['models'][1]}", reference=str(ref["dir"]), output=str(out),
                                temperature_K=600, steps=40, equilibration_steps=10, workers=1), progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "md").rglob("*")} == before
    model = tmp_path / "model.model"
    shutil.copyfile(ref["models"][0], model)
    spec = parse_spec(f"mace:{model}")
    _check_same_model(tmp_path, spec)
    _check_same_model(tmp_path, spec)  # same file: fine (a resumed validation)
    shutil.copyfile(ref["models"][1], model)  # retrained into the same file
    with pytest.raises(ValueError, match="model files changed since: .*model.model"):
        _check_same_model(tmp_path, spec)


# ---- the committee SPEC ----------------------------------------------------------------------------
def _edited_copy(model_file: str, path: Path, **buffers) -> str:
    """A copy of a model with some buffers replaced (another species table, another cutoff)."""
    import torch

    model = torch.load(model_file, weights_only=False)
    for name, value in buffers.items():
        old = getattr(model, name)
        setattr(model, name, torch.tensor(value, dtype=old.dtype))
    torch.save(model, path)
    return str(path)


def test_committee_spec_refuses_members_that_disagree(ref, tmp_path):
    from phonion.core.calculators import CalculatorSpecError, resolve_calculator

    a = ref["models"][0]
    other_elements = _edited_copy(a, tmp_path / "ni.model", atomic_numbers=[13, 28])  # Al, Ni
    other_cutoff = _edited_copy(a, tmp_path / "short.model", r_max=3.5)
    with pytest.raises(CalculatorSpecError) as err:
        resolve_calculator(f"mace:{a},{other_elements}", device="cpu")
    assert a in str(err.value) and other_elements in str(err.value) and "elements" in str(err.value)
    assert "Al, Cu" in str(err.value) and "Al, Ni" in str(err.value)
    with pytest.raises(CalculatorSpecError, match="r_max") as err:
        resolve_calculator(f"mace:{a},{other_cutoff}", device="cpu")
    assert a in str(err.value) and other_cutoff in str(err.value)
    missing = str(tmp_path / "absent.model")
    with pytest.raises(CalculatorSpecError, match="absent.model"):
        resolve_calculator(f"mace:{a},{missing}", device="cpu")
    not_a_model = tmp_path / "junk.model"
    not_a_model.write_text("not a model")
    with pytest.raises(CalculatorSpecError, match="junk.model"):
        resolve_calculator(f"mace:{a},{not_a_model}", device="cpu")


def test_committee_mean_forces_and_variance(ref):
    """mace's committee calculator: mean forces = mean of the members' forces, forces_var their variance."""
    import ase.io

    from phonion.core.calculators import parse_spec, resolve_calculator

    atoms = ase.io.read(ref["dir"] / "cual.extxyz")
    atoms.rattle(0.05, rng=np.random.default_rng(0))
    spec = "mace:" + ",".join(ref["models"])
    assert parse_spec(spec).label.startswith("MACE committee (2 models")
    calc = resolve_calculator(spec, device="cpu")
    work = atoms.copy()
    work.calc = calc
    forces = work.get_forces()
    singles = []
    for m in ref["models"]:
        one = atoms.copy()
        one.calc = resolve_calculator(f"mace:{m}", device="cpu")
        singles.append(one.get_forces())
        assert "forces_var" not in one.calc.results
    np.testing.assert_allclose(forces, np.mean(singles, axis=0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(calc.results["forces_var"], np.var(singles, axis=0), rtol=0, atol=1e-10)
    assert np.abs(singles[0] - singles[1]).max() > 1e-4  # two seeds: the members really differ
