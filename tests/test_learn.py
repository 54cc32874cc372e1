"""``phonion learn`` (committee + active learning) and ``data.train_only_files``, on EMT Cu/Al data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mace  # noqa: F401  (mace before e3nn)
import numpy as np
import pytest

import gate_helpers
from gate_helpers import TINY_MODEL, emt_reference

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore")

#: the smallest active learning that does every step: 3 members × 1 epoch, 20-step MD, 1 round
TINY_LEARN = {
    "committee": {"size": 3, "workers": 1},
    "train": {"seed": 5, "data": {"gap_frames": 2}, "model": TINY_MODEL,
              "trainer": {"max_epochs": 1, "batch_size": 8}, "export": {"parity_plots": False}},
    "finetune": {"max_epochs": 1},
    "explore": {"steps": 20, "equilibration_steps": 5, "sample_every": 5, "workers": 1},
    "harvest": {"max_frames": 4, "min_separation_frames": 1},
    "validate": {"steps": 20, "equilibration_steps": 10, "workers": 1},
    "rounds": {"max_rounds": 1, "min_rounds": 1},
}


@pytest.fixture(scope="module")
def ref_files(tmp_path_factory):
    return emt_reference(tmp_path_factory.mktemp("learn") / "reference")


def _cfg(files, out, reference_calculator, **sections):
    from phonion.workflows.learn import learn_config_from_dict

    data = json.loads(json.dumps(TINY_LEARN))
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return learn_config_from_dict({**data, "data": {"files": list(files)}, "output": str(out),
                                   "reference_calculator": reference_calculator})


@pytest.fixture(scope="module")
def learned(ref_files, tmp_path_factory):
    """Active learning whose reference calculator fails on the 3rd frame, then the same call after the fix.

    Returns what happened: the error, the frames kept after it, the configurations the fixed
    calculator computed on the rerun, and the final rounds.
    """
    from phonion.workflows.learn import run_learn

    d = tmp_path_factory.mktemp("al")
    marker = d / "scf_fails"
    marker.write_text("the 3rd frame does not converge")
    cfg = _cfg(ref_files, d / "out", f"gate_helpers:flaky_emt?marker={marker}&fail_on_frame=3")
    with pytest.raises(RuntimeError) as err:
        run_learn(cfg, progress=False)
    kept = _labelled(d / "out")
    marker.unlink()  # "fix the calculator"
    gate_helpers.FRAMES.clear()
    rounds = run_learn(cfg, progress=False)
    return {"cfg": cfg, "out": d / "out", "error": str(err.value), "kept": kept,
            "relabelled": list(gate_helpers.FRAMES), "rounds": rounds}


def _labelled(out: Path) -> list:
    import ase.io

    return [a for f in sorted((out / "round_001").glob("labelled_*K.extxyz")) for a in ase.io.read(f, index=":")]


def test_learn_one_round_end_to_end(learned):
    out, rounds = learned["out"], learned["rounds"]
    assert json.loads((out / "rounds.json").read_text()) == rounds
    assert [r["round"] for r in rounds] == [0, 1]
    for r in rounds:
        assert {"round", "n_added", "force_rmse_meV_A", "uncertainty_p99_meV_A", "gate_passed"} <= set(r)
    assert rounds[0]["n_added"] == 0 and rounds[0]["gate_checked"] is False  # gate from min_rounds on
    assert rounds[1]["n_added"] >= 1 and rounds[1]["gate_checked"] is True
    assert rounds[1]["force_rmse_meV_A"] > 0 and rounds[1]["uncertainty_p99_meV_A"] > 0
    assert rounds[1]["gate_passed"] is False  # 1 epoch: far from fit for MD
    frames = _labelled(out)
    assert len(frames) == rounds[1]["n_added"] == len(json.loads((out / "round_001" / "picked.json").read_text()))
    temps = set()
    for a in frames:
        info = a.info
        assert info["round"] == 1 and info["labelled_by"] == learned["cfg"]["reference_calculator"]
        if info["source_run"].startswith("contact_"):  # a pair pushed to its repulsive wall
            assert info["why"] == "contact" and (out / "round_001" / "contacts_input.extxyz").is_file()
        else:  # a frame of an exploration run, with the committee spread that picked it
            assert (out / "round_001" / "explore" / info["source_run"] / "traj.h5").is_file()
            assert np.isfinite(info["committee_spread_eV_A"])
        assert info["source_frame"] >= 0
        temps.add(info["temperature_K"])
        # the labels are the reference calculator's (EMT) on these positions
        from ase.calculators.emt import EMT

        check = a.copy()
        check.calc = EMT()
        np.testing.assert_allclose(a.get_forces(), check.get_forces(), atol=1e-5)  # extxyz: 8 digits
    assert temps <= {300.0, 600.0, 690.0}  # the data's temperatures and 1.15 × the highest
    for f in rounds[1]["labelled_files"]:
        assert Path(f).parent == out / "round_001" and Path(f).name.startswith("labelled_")
    # round 1 continued every member on the original data plus the labelled frames
    member = json.loads((out / "round_001" / "member_0" / "metrics.json").read_text())
    assert member["data"]["n_frames"]["train"] > json.loads(
        (out / "round_000" / "member_0" / "metrics.json").read_text())["data"]["n_frames"]["train"]
    # the final committee
    committee = json.loads((out / "committee.json").read_text())
    assert committee["members"] == [str(out / "committee" / f"member_{k}.model") for k in range(3)]
    assert all(Path(m).is_file() for m in committee["members"]) and (out / "model.model").is_file()
    assert committee["spec"] == "mace:" + ",".join(committee["members"]) and committee["round"] == 1


def test_learn_rerun_does_no_work_and_other_settings_are_refused(learned):
    from phonion.workflows.learn import run_learn

    out = learned["out"]
    before = (out / "rounds.json").read_bytes()
    models = {p: p.stat().st_mtime_ns for p in out.glob("round_*/member_*/model.model")}
    t0 = time.perf_counter()
    rounds = run_learn(learned["cfg"], progress=False)
    assert time.perf_counter() - t0 < 5.0
    assert rounds == learned["rounds"] and (out / "rounds.json").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in out.glob("round_*/member_*/model.model")} == models
    other = json.loads(json.dumps(learned["cfg"]))
    other["harvest"]["max_frames"] = 8
    other["finetune"]["lr"] = 0.01
    with pytest.raises(ValueError, match=r"other settings \(finetune.lr, harvest.max_frames\)"):
        run_learn(other, progress=False)
    more = json.loads(json.dumps(learned["cfg"]))  # more rounds may be asked for when continuing: allowed
    more["rounds"]["min_rounds"] = 0
    assert run_learn(more, progress=False) == learned["rounds"]


def test_failing_reference_calculator_keeps_frames_and_resumes(learned):
    err = learned["error"]
    assert "round 1, run T" in err and ", frame " in err and "SCF did not converge" in err
    assert "2 frames labelled so far are kept" in err
    kept, final = learned["kept"], _labelled(learned["out"])
    assert len(kept) == 2
    # the rerun labelled only the frames still missing, and kept the first two as they were
    assert len(learned["relabelled"]) == len(final) - 2
    done = {(a.info["source_run"], a.info["source_frame"]): a.get_potential_energy() for a in final}
    for a in kept:
        assert done[(a.info["source_run"], a.info["source_frame"])] == a.get_potential_energy()


def test_config_errors_before_any_work(ref_files, tmp_path):
    from phonion.workflows.learn import load_learn_config, run_learn

    def config(*overrides, data=ref_files):
        return load_learn_config(ROOT / "configs" / "learn.yaml", list(overrides), output=str(tmp_path / "o"),
                                 data=data, reference_calculator="emt")

    assert config()["committee"]["size"] == 3  # the shipped configs/learn.yaml loads
    with pytest.raises(ValueError, match="unknown key harvest.max_frame .*did you mean 'max_frames'"):
        config("harvest.max_frame=3")
    with pytest.raises(ValueError, match=r"committee.size must be ≥ 2"):
        config("committee.size=1")
    with pytest.raises(ValueError, match="data.files is empty"):
        config(data=[])
    with pytest.raises(ValueError, match="validate.*did you mean 'steps'"):
        config("validate.step=10")
    with pytest.raises(ValueError, match="multiple of sample_every"):
        config("validate.equilibration_steps=7")
    with pytest.raises(ValueError, match="committee is a section"):
        config("committee=3")
    cfg = config(data=[str(tmp_path / "none" / "*K" / "traj.h5")])
    with pytest.raises(ValueError, match="matches no file"):
        run_learn(cfg, progress=False)
    assert not (tmp_path / "o").exists()  # nothing written, so a corrected rerun is not refused


def test_cli_learn_errors_are_one_line(ref_files, tmp_path, capfd):
    from phonion.cli.main import main

    code = main(["learn", "--reference-calculator", "emt", "--data", *ref_files, "harvest.max_frame=3",
                 "-o", str(tmp_path / "o")])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "phonion learn: error: learn config: unknown key harvest.max_frame (did you mean 'max_frames'?)"]


# ---- data.train_only_files ----------------------------------------------------------------------------
def _independent_configurations(path: Path, n: int = 12) -> str:
    """n EMT-labelled rattles of the Cu/Al cell, each from its own seed: not a time series."""
    import ase.io
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    base = ase.io.read(gate_helpers.cual_structure(path.with_name("base.extxyz")))
    frames = []
    for k in range(n):
        atoms = base.copy()
        atoms.rattle(0.04 + 0.01 * (k % 4), rng=np.random.default_rng(100 + k))
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def test_train_only_files_all_train_and_no_time_series_check(ref_files, tmp_path, monkeypatch):
    import phonion.mlip.data
    from phonion.mlip.data import DataConfig, build_dataset

    extra = _independent_configurations(tmp_path / "labelled_650K.extxyz")
    calls = []
    real = phonion.mlip.data.work_slope

    def spy(r0, *args):
        calls.append(len(r0))
        return real(r0, *args)

    monkeypatch.setattr(phonion.mlip.data, "work_slope", spy)
    ds = build_dataset(DataConfig(files=ref_files, train_only_files=[extra], gap_frames=2))
    source = {s: [a.info["source"] for a in ds.split(s)] for s in ("train", "val", "test")}
    assert source["train"].count(extra) == 12  # every frame, no gap dropped
    assert extra not in source["val"] and extra not in source["test"]
    assert all(source[s] for s in ("val", "test"))  # the time-series runs are still split
    assert len(calls) == 2  # the work check ran on the two MD runs only, not on the 11 pairs of extra
    run = next(r for r in ds.summary()["runs"] if r["files"] == [extra])
    assert run["train_frames"] == [0, 11] and run["val_frames"] == [] and run["test_frames"] == []
    # the same file as an ordinary run would be cut into blocks and checked as a time series
    calls.clear()
    plain = build_dataset(DataConfig(files=[*ref_files, extra], gap_frames=0))
    assert len(calls) == 3 and [a.info["source"] for a in plain.train].count(extra) < 12


@pytest.mark.slow
def test_cli_learn_with_worker_processes(ref_files, tmp_path):
    """``phonion learn`` as a command with 2 worker processes (spawn): the files of the contract (~1.5 min)."""
    out = tmp_path / "cli"
    cfg = tmp_path / "learn.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({**TINY_LEARN, "committee": {"size": 3, "workers": 2},
                                   "explore": {**TINY_LEARN["explore"], "workers": 2},
                                   "validate": {**TINY_LEARN["validate"], "workers": 2}}))
    proc = subprocess.run([sys.executable, "-m", "phonion.cli.main", "learn", "--reference-calculator", "emt",
                           "--data", *ref_files, "rounds.min_rounds=0", "--config", str(cfg), "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    rounds = json.loads((out / "rounds.json").read_text())
    assert rounds[0]["gate_checked"] and all(r["force_rmse_meV_A"] > 0 for r in rounds)
    assert (out / "model.model").is_file() and (out / "committee.json").is_file()
    assert sorted(p.name for p in (out / "committee").iterdir()) == [f"member_{k}.model" for k in range(3)]
    assert proc.stdout.startswith("round 0: +0 frames")


def test_contact_candidates_put_each_pair_at_the_asked_distance(tmp_path):
    """Close-contact frames: the chosen pair sits at f × the data's closest approach, nothing else moves."""
    import ase.io
    from ase.build import bulk

    from phonion.workflows.learn import DEFAULTS, contact_candidates
    from phonion.workflows.validate import closest_approach

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.symbols[[0, 5, 9]] = "Al"
    atoms.rattle(0.05, seed=1)
    train_min = closest_approach([atoms])
    cands = contact_candidates(DEFAULTS, tmp_path, [atoms], train_min, [900.0, 1000.0], 1)
    made = ase.io.read(tmp_path / "contacts_input.extxyz", index=":")
    fractions = DEFAULTS["harvest"]["contact_fractions"]
    assert len(cands) == len(made) == len(train_min) * len(fractions)
    for c, frame in zip(cands, made):
        pair = c["run"].removeprefix("contact_")
        assert c["why"] == ["contact"] and c["temperature_K"] == 1000.0
        assert closest_approach([frame], cutoff_A=6.0)[pair] == pytest.approx(c["distance_ratio"] * train_min[pair], abs=1e-6)  # extxyz digits
        moved = np.flatnonzero(np.linalg.norm(frame.positions - atoms.positions, axis=1) > 1e-6)  # extxyz digits
        assert moved.size == 1  # one atom pushed along one bond
