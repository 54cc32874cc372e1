"""Physical-sanity guards of MD runs: pair floors, the temperature window, committee uncertainty,
and the ``invalid`` run status (never re-run).

Cheap systems: EMT Cu (32 atoms) and the bundled LiGa(SeO3)2 cell (80 atoms, geometry only).
"""

import itertools
import json
import pickle

import numpy as np
import pytest
import yaml
from ase import units
from ase.calculators.emt import EMT
from ase.data import atomic_numbers, covalent_radii

from phonion.md.driver import MDConfig, MDGuardError, run_md
from phonion.md.guards import closest_pairs, learn_pair_floors, pair_floor_violation
from phonion.md.io.h5md import H5MDReader, read_h5md
from phonion.md.sweep import run_one
from phonion.chain.stages import run_state
from phonion.core.structures import load_structure
from test_driver import cu32, cu_cfg  # noqa: F401  (the driver tests' Cu cell and settings; cu32 is a fixture)


class FakeCommittee(EMT):
    """EMT forces plus a committee ``forces_var``: atom 0's force std is 0.05 + 10 |Δr0| eV/Å
    (Δr0 its displacement from where the run started), every other atom's 0.01 eV/Å."""

    implemented_properties = [*EMT.implemented_properties, "forces_var"]

    def __init__(self, raise_at=None):
        super().__init__()
        self.start, self.calls, self.raise_at = None, 0, raise_at

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.raise_at is not None and self.calls >= self.raise_at:
            raise KeyboardInterrupt("simulated kill")
        pos = self.atoms.positions
        self.start = pos[0].copy() if self.start is None else self.start
        std = np.full(len(pos), 0.01)
        std[0] = 0.05 + 10.0 * np.linalg.norm(pos[0] - self.start)
        self.results["forces_var"] = np.repeat((std ** 2 / 3)[:, None], 3, axis=1)


class Heater(EMT):
    """EMT plus an anti-friction force +γ p: injects energy at the rate 2γ E_kin (a broken potential)."""

    def __init__(self, rate_per_fs):
        super().__init__()
        self.gamma = rate_per_fs / units.fs

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        super().calculate(atoms, properties, system_changes)
        self.results["forces"] = self.results["forces"] + self.gamma * self.atoms.get_momenta()


# ---- pair floors: pure functions ----------------------------------------------------------
def _brute_force_minima(atoms, reach=2) -> dict:
    """Closest approach of every species pair over all images within ±reach cells (numpy, O(N² images))."""
    pos, cell, sym = atoms.positions, atoms.cell.array, np.array(atoms.get_chemical_symbols())
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3))) @ cell
    d = np.linalg.norm(pos[:, None, None, :] + shifts[None, None] - pos[None, :, None, :], axis=-1)
    d[np.arange(len(pos)), np.arange(len(pos)), len(shifts) // 2] = np.inf  # an atom and itself
    dmin = d.min(axis=2)
    out = {}
    for a, b in itertools.combinations_with_replacement(sorted(set(sym)), 2):
        out[f"{a}-{b}"] = float(dmin[np.ix_(sym == a, sym == b)].min())
    return out


def test_learn_pair_floors_match_brute_force_on_liga_seo3():
    atoms = load_structure("LiGa_SeO3_2")
    rattled = atoms.copy()
    rattled.rattle(0.15, seed=3)
    rattled.positions += 11.0  # unwrapped positions, as MD leaves them
    brute = [_brute_force_minima(a) for a in (atoms, rattled)]
    floors = learn_pair_floors([atoms, rattled], fraction=0.75)
    assert sorted(floors) == ['Ga-Ga', 'Ga-Li', 'Ga-O', 'Ga-Se', 'Li-Li', 'Li-O', 'Li-Se', 'O-O',
                              'O-Se', 'Se-Se']
    for key, value in floors.items():
        assert value == pytest.approx(0.75 * min(b[key] for b in brute), abs=1e-9), key
    print("LiGa(SeO3)2 floors (Å):", {k: round(v, 3) for k, v in floors.items()})
    # closest_pairs: the distance and the two atoms (their species in key order)
    got = closest_pairs(atoms, ["O-Li", ("Se", "O")], cutoff=6.0)
    assert sorted(got) == ["Li-O", "O-Se"]
    for key, (d, i, j) in got.items():
        assert d == pytest.approx(brute[0][key], abs=1e-9)
        assert [atoms[i].symbol, atoms[j].symbol] == key.split("-")
        assert atoms.get_distance(i, j, mic=True) == pytest.approx(d, abs=1e-9)
    # a pair never within the cutoff: unseen_fraction × (covalent radii sum)
    short = learn_pair_floors([atoms], fraction=0.5, unseen_fraction=0.6, cutoff_A=2.0)
    r = {s: covalent_radii[atomic_numbers[s]] for s in ("Li", "Ga")}
    assert short["Li-Li"] == pytest.approx(0.6 * 2 * r["Li"]) and short["Ga-Li"] == pytest.approx(0.6 * (r["Li"] + r["Ga"]))
    assert short["O-Se"] == pytest.approx(0.5 * brute[0]["O-Se"])  # Se-O bonds ~1.7 Å: seen


def test_pair_floor_violation_names_pair_atoms_distance_and_floor():
    atoms = load_structure("LiGa_SeO3_2")
    floors = learn_pair_floors([atoms])
    assert pair_floor_violation(atoms, floors) is None
    li = [a.index for a in atoms if a.symbol == "Li"]
    squeezed = atoms.copy()
    squeezed.positions[li[1]] = squeezed.positions[li[0]] + [1.2, 0.0, 0.0]
    why = pair_floor_violation(squeezed, floors)
    lo, hi = sorted(li[:2])
    assert why.startswith(f"Li-Li pair: atoms {lo} (Li) and {hi} (Li) are 1.200 Å apart")
    assert f"pair floor {floors['Li-Li']:.3f} Å" in why
    same = pair_floor_violation(squeezed.positions, floors, cell=squeezed.cell.array, pbc=squeezed.pbc,
                                symbols=squeezed.get_chemical_symbols())
    assert same == why
    assert pair_floor_violation(squeezed, {"O-Se": 0.5}) is None  # only the pairs given are checked


def test_config_pair_floors_and_guard_settings(tmp_path):
    cfg = MDConfig(pair_floors_A={"O-Li": 1.5, "Li-Li": 2}, uncertainty_threshold_eV_A=1,
                   uncertainty_action="stop")
    assert cfg.pair_floors_A == {"Li-Li": 2.0, "Li-O": 1.5}
    assert isinstance(cfg.uncertainty_threshold_eV_A, float) and hash(cfg) == hash(MDConfig(**cfg.__dict__))
    assert "pair_floors_A" not in cfg.settings_key() and cfg.settings_key() == MDConfig().settings_key()
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert MDConfig.from_yaml(path) == cfg
    assert MDConfig.from_dict({"pair_floors_A": "Li-Li=2.1, Se-O=1.2"}).pair_floors_A == {"Li-Li": 2.1,
                                                                                         "O-Se": 1.2}
    assert MDConfig.from_dict({"pair_floors_A": '{"O-Li": 1.7}'}).pair_floors_A == {"Li-O": 1.7}
    for bad, match in (({"Li-Xx": 1.0}, "'Li-Xx'"), ({"LiO": 1.0}, "'LiO'"), ({"Li-O": 0}, r"\['Li-O'\]"),
                       ({"Li-O": 1.0, "O-Li": 1.1}, "given twice")):
        with pytest.raises(ValueError, match=match):
            MDConfig(pair_floors_A=bad)
    with pytest.raises(ValueError, match="uncertainty_action"):
        MDConfig(uncertainty_action="warn")
    with pytest.raises(ValueError, match="uncertainty_threshold_eV_A"):
        MDConfig(uncertainty_threshold_eV_A=-1.0)
    err = pickle.loads(pickle.dumps(MDGuardError("x", 7, "pair_floor")))
    assert (str(err), err.step, err.guard) == ("x", 7, "pair_floor")


# ---- runs ---------------------------------------------------------------------------------
def test_pair_floor_trips_run_invalid_frames_kept_never_rerun(cu32, tmp_path):
    """Cu–Cu nearest neighbours are 2.553 Å: a 2.6 Å floor trips at step 0, 2.5 Å after some motion."""
    with pytest.raises(MDGuardError, match=r"step 0 .*Cu-Cu pair: atoms \d+ \(Cu\) and \d+ \(Cu\) "
                                           r"are 2.553 Å apart \(< pair floor 2.600 Å\)"):
        run_md(cu_cfg(cu32, tmp_path / "now", pair_floors_A={"Cu-Cu": 2.6}), progress=False)
    out = tmp_path / "later"
    cfg = cu_cfg(cu32, out, pair_floors_A={"Cu-Cu": 2.5}, distance_check_every=5)
    with pytest.raises(MDGuardError, match="Cu-Cu pair") as first:
        run_md(cfg, progress=False)
    step = first.value.step
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "invalid" and record["invalid_guard"] == "pair_floor"
    assert record["invalid_step"] == step > 0 and record["invalid_reason"] == str(first.value)
    assert "pair floor 2.500 Å" in record["invalid_reason"]
    traj = read_h5md(out / "traj.h5")
    assert traj.n_frames == record["n_frames_on_disk"] == step // 5  # frames 0, 5, ... before the step
    mtime = (out / "traj.h5").stat().st_mtime_ns
    for resume in (True, False):  # the verdict stands: the same error, nothing re-run
        with pytest.raises(MDGuardError) as again:
            run_md(cfg, resume=resume, progress=False)
        assert (str(again.value), again.value.step) == (str(first.value), step)
    assert (out / "traj.h5").stat().st_mtime_ns == mtime
    assert run_state(cfg) == "invalid"
    row = run_one(cfg.to_dict(), resume=True)
    assert (row["status"], row["invalid_step"], row["invalid_reason"]) == ("invalid", step, str(first.value))


def test_temperature_window_catches_energy_injection(cu32, tmp_path):
    """Bussi at 600 K with a potential that pumps energy in: instant T stays < 10 × target, the
    running mean leaves ±15 %. The same thermostat with plain EMT completes (mean/target recorded)."""
    kw = dict(ensemble="nvt-bussi", steps=800, thermostat_time_fs=100.0, max_temperature_factor=10.0,
              checkpoint_every=100)  # default window: 500 steps, ±15 %
    with pytest.raises(MDGuardError, match=r"mean temperature .* over the last 500 steps is \+.* off the "
                                           r"set-point 600 K .*temperature out of control") as exc:
        run_md(cu_cfg(cu32, tmp_path / "hot", **kw), calculator=Heater(0.003), progress=False)
    record = json.loads((tmp_path / "hot" / "run.json").read_text())
    assert record["status"] == "invalid" and record["invalid_guard"] == "temperature_window"
    assert exc.value.step >= 250 + 499  # window fed after 5 thermostat times (250 steps), then full
    res = run_md(cu_cfg(cu32, tmp_path / "ok", **kw), progress=False)
    record = json.loads((tmp_path / "ok" / "run.json").read_text())
    assert res.status == "complete" and record["temperature_ratio"] == pytest.approx(
        record["mean_temperature_K"] / 600.0)
    assert 0.85 < record["temperature_ratio"] < 1.15


def test_committee_uncertainty_observable_flag_and_stop(cu32, tmp_path):
    kw = dict(steps=100, sample_every=5, uncertainty_every=5, checkpoint_every=50)
    plain = run_md(cu_cfg(cu32, tmp_path / "plain", **kw), progress=False)
    assert read_h5md(plain.trajectory).force_uncertainty_max_eV_A is None
    assert "uncertainty_max_eV_A" not in json.loads(plain.settings.read_text())

    res = run_md(cu_cfg(cu32, tmp_path / "flag", uncertainty_threshold_eV_A=0.5, **kw),
                 calculator=FakeCommittee(), progress=False)
    traj = H5MDReader(res.trajectory).read()
    u = traj.force_uncertainty_max_eV_A
    expected = 0.05 + 10.0 * np.linalg.norm(traj.positions[:, 0] - traj.positions[0, 0], axis=1)
    np.testing.assert_allclose(u, expected, rtol=1e-12)  # evaluations on the frame grid
    record = json.loads(res.settings.read_text())
    over = np.flatnonzero(u > 0.5)
    assert res.status == "complete" and over.size and record["uncertainty_evaluations"] == u.size == 21
    assert record["uncertainty_max_eV_A"] == pytest.approx(u.max())
    assert record["uncertainty_p99_eV_A"] == pytest.approx(np.percentile(u, 99))
    assert record["uncertainty_flags"] == {"count": int(over.size), "first_step": int(5 * over[0]),
                                           "max_eV_A": pytest.approx(u.max()), "threshold_eV_A": 0.5}

    # uncertainty_every 10, frames every 5: each frame holds the latest evaluation
    res = run_md(cu_cfg(cu32, tmp_path / "sparse", **{**kw, "uncertainty_every": 10}),
                 calculator=FakeCommittee(), progress=False)
    traj = read_h5md(res.trajectory)
    np.testing.assert_array_equal(traj.force_uncertainty_max_eV_A[1::2], traj.force_uncertainty_max_eV_A[0:-1:2])
    assert "uncertainty_flags" not in json.loads(res.settings.read_text())

    stop = cu_cfg(cu32, tmp_path / "stop", uncertainty_threshold_eV_A=0.5, uncertainty_action="stop", **kw)
    with pytest.raises(MDGuardError, match=r"committee force uncertainty .* exceeds "
                                           r"uncertainty_threshold_eV_A = 0.5") as exc:
        run_md(stop, calculator=FakeCommittee(), progress=False)
    assert exc.value.step == 5 * over[0] and exc.value.guard == "uncertainty"
    record = json.loads((tmp_path / "stop" / "run.json").read_text())
    assert record["status"] == "invalid" and record["uncertainty_flags"]["count"] == 1
    kept = read_h5md(tmp_path / "stop" / "traj.h5")
    assert kept.n_frames == over[0] and np.all(kept.force_uncertainty_max_eV_A <= 0.5)


def test_uncertainty_record_survives_a_restart(cu32, tmp_path):
    """Killed mid-run (checkpoint at 50), resumed: the statistics cover the whole run, as without the kill."""
    kw = dict(steps=100, uncertainty_every=5, checkpoint_every=50, uncertainty_threshold_eV_A=0.5)
    ref = json.loads(run_md(cu_cfg(cu32, tmp_path / "ref", **kw), calculator=FakeCommittee(),
                            progress=False).settings.read_text())
    with pytest.raises(KeyboardInterrupt):
        run_md(cu_cfg(cu32, tmp_path / "run", **kw), calculator=FakeCommittee(raise_at=80), progress=False)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"
    calc = FakeCommittee()
    calc.start = read_h5md(tmp_path / "ref" / "traj.h5").positions[0, 0]  # same origin of Δr0
    got = json.loads(run_md(cu_cfg(cu32, tmp_path / "run", **kw), calculator=calc, resume=True,
                            progress=False).settings.read_text())
    assert got["restarts"][0]["from_step"] == 50
    for key in ("uncertainty_max_eV_A", "uncertainty_p99_eV_A", "uncertainty_evaluations", "uncertainty_flags"):
        assert got[key] == ref[key], key
    np.testing.assert_array_equal(read_h5md(tmp_path / "run" / "traj.h5").force_uncertainty_max_eV_A,
                                  read_h5md(tmp_path / "ref" / "traj.h5").force_uncertainty_max_eV_A)


def test_real_mace_committee_of_two_untrained_models(cu32, tmp_path):
    """mace's MACECalculator(models=[m1, m2]) reports forces_var; the driver records it (~10 s)."""
    import mace.modules  # mace before e3nn (torch 2.13 weights-only unpickling)
    import torch
    from e3nn import o3
    from mace.calculators import MACECalculator

    def tiny(seed):
        torch.manual_seed(seed)
        return mace.modules.MACE(
            r_max=4.0, num_bessel=4, num_polynomial_cutoff=3, max_ell=1,
            interaction_cls=mace.modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=mace.modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=1, num_elements=1, hidden_irreps=o3.Irreps("8x0e + 8x1o"),
            MLP_irreps=o3.Irreps("8x0e"), gate=torch.nn.functional.silu,
            atomic_energies=np.array([-3.0]), avg_num_neighbors=12.0, atomic_numbers=[29],
            correlation=2, radial_type="bessel").double()

    calc = MACECalculator(models=[tiny(0), tiny(1)], device="cpu", default_dtype="float64")
    res = run_md(cu_cfg(cu32, tmp_path / "mace", temperature_K=300.0, steps=10, sample_every=5,
                        uncertainty_every=5, checkpoint_every=10, timestep_fs=1.0, max_force_eV_A=1e6),
                 calculator=calc, progress=False)
    u = read_h5md(res.trajectory).force_uncertainty_max_eV_A
    last = read_h5md(res.trajectory).to_atoms(-1)
    last.calc = calc
    last.get_forces()
    comm = calc.results["forces_comm"]  # (members, N, 3)
    direct = np.sqrt(comm.var(axis=0).sum(axis=1).max())  # the last frame: step 10
    assert u.shape == (3,) and np.all(np.isfinite(u) & (u > 0)) and u[-1] == pytest.approx(direct, rel=1e-8)
    record = json.loads(res.settings.read_text())
    assert record["uncertainty_evaluations"] == 3 and record["uncertainty_max_eV_A"] == pytest.approx(u.max())


def test_force_uncertainty_observable_round_trip(tmp_path):
    """Trajectory.force_uncertainty_max_eV_A ↔ /observables/force_uncertainty_max (eV Angstrom-1)."""
    import h5py

    from phonion.md.io.h5md import write_h5md
    from phonion.md.trajectory import Trajectory, concatenate

    rng = np.random.default_rng(0)
    u = rng.uniform(0.0, 1.0, 6)
    traj = Trajectory(symbols=("Cu", "Cu"), positions=rng.normal(size=(6, 2, 3)), cells=np.eye(3) * 5.0,
                      timestep_fs=1.0, force_uncertainty_max_eV_A=u)
    path = write_h5md(tmp_path / "u.h5", traj)
    with h5py.File(path) as f:
        assert f["observables/force_uncertainty_max/value"].attrs["unit"] == b"eV Angstrom-1"
    back = H5MDReader(path).read(frames=slice(1, 6, 2))
    np.testing.assert_array_equal(back.force_uncertainty_max_eV_A, u[1::2])
    np.testing.assert_array_equal(traj.select_frames(slice(0, 3)).force_uncertainty_max_eV_A, u[:3])
    both = concatenate([traj, traj.replace(force_uncertainty_max_eV_A=None)])
    assert np.array_equal(both.force_uncertainty_max_eV_A[:6], u) and np.isnan(both.force_uncertainty_max_eV_A[6:]).all()


def test_md_command_pair_floors_option_reports_invalid_runs(cu32, tmp_path, capsys):
    from phonion.cli.md import main as md_main

    code = md_main(["md", "--structure", cu32, "--calculator", "emt", "--temperatures-K", "300", "--steps", "20",
                    "--sample-every", "5", "--checkpoint-every", "10", "--pair-floors", "Cu-Cu=2.6",
                    "--no-progress", "-o", str(tmp_path / "cli")])
    captured = capsys.readouterr()
    assert code == 1 and "invalid" in captured.out
    assert "phonion md: invalid: T300_seed0_fixnone: MD stopped at integrator step 0" in captured.err
    assert "Cu-Cu pair" in captured.err
    summary = json.loads((tmp_path / "cli" / "sweep_summary.json").read_text())
    assert summary[0]["status"] == "invalid" and summary[0]["invalid_step"] == 0
