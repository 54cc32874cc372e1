"""Coordination numbers of the bonded shells a reference keeps (phonion.md.coordination): which shells,
exact counts of a known crystal, the drift of a run that transforms, and the compare contract."""

import numpy as np
import pytest
from ase.build import bulk

from phonion.md.coordination import bonded_shells, coordination_numbers, first_minimum
from phonion.md.rdf import first_peaks


@pytest.fixture(scope="module")
def nacl_run():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 2, 2))  # Na–Cl 2.82 Å, 6 neighbours
    rng = np.random.default_rng(0)
    pos = atoms.positions + rng.normal(0.0, 0.06, (80, len(atoms), 3))
    cells = np.broadcast_to(atoms.cell.array, (80, 3, 3))
    return atoms, pos, cells


def test_the_bonded_shell_of_rock_salt_and_which_pairs_are_left_out(nacl_run):
    atoms, pos, cells = nacl_run
    sym = atoms.get_chemical_symbols()
    rdf = first_peaks(pos, cells, sym)
    shells = bonded_shells(rdf, sym)
    assert list(shells) == ["Na-Cl"]  # Na–Na / Cl–Cl: same species, never a bonded shell
    sh = shells["Na-Cl"]
    assert 2.82 < sh["cutoff_A"] < 3.99 and sh["g_min"] < 0.1  # the first minimum, between the shells
    assert first_minimum(rdf["r_A"], rdf["g"]["Na-Cl"], sh["peak_A"])[0] == pytest.approx(sh["cutoff_A"], abs=1e-3)
    # not at a bonding distance (2.82 Å > 1.0 × (1.66 + 1.02) Å), or not separated from the next shell
    assert bonded_shells(rdf, sym, {"bond_factor": 1.0}) == {}
    assert bonded_shells(rdf, sym, {"depth": 0.0}) == {}


def test_counts_of_a_known_crystal_and_the_drift_of_a_run_that_transforms(nacl_run):
    atoms, pos, cells = nacl_run
    sym = atoms.get_chemical_symbols()
    shells = bonded_shells(first_peaks(pos, cells, sym), sym)
    res = coordination_numbers(pos, cells, sym, shells)["Na-Cl"]
    assert res["cn"] == 6.0 and res["err"] == 0.0 and res["drift"] == 0.0 and res["n_frames"] == 80
    # the last quarter of the run expanded by 60 %: its first shell (4.51 Å) lies beyond the cutoff
    grown_pos, grown_cells = pos.copy(), np.array(cells)
    grown_pos[60:] *= 1.6
    grown_cells[60:] *= 1.6
    res = coordination_numbers(grown_pos, grown_cells, sym, shells)["Na-Cl"]
    assert res["drift"] == pytest.approx(-6.0) and res["cn"] == pytest.approx(6.0 * 60 / 80)
    # a subsample of at most max_frames frames, evenly spaced
    assert coordination_numbers(pos, cells, sym, shells, {"max_frames": 20})["Na-Cl"]["n_frames"] == 20


def test_compare_at_the_reference_runs_measured_temperature():
    """The MLIP's count is taken at the reference run's measured T (linear between its runs), the
    difference fails beyond the limit, and a drifting MLIP run fails the check on its own."""
    from phonion.compare.rdf_shifts import coordination_by_temperature, coordination_warnings

    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 2, 2))
    sym = atoms.get_chemical_symbols()
    rng = np.random.default_rng(1)

    def run(name, measured, scale_tail=1.0, n=40):
        pos = atoms.positions + rng.normal(0.0, 0.06, (n, len(atoms), 3))
        cells = np.array(np.broadcast_to(atoms.cell.array, (n, 3, 3)))
        pos[30:] *= scale_tail
        cells[30:] *= scale_tail
        rdf = first_peaks(pos, cells, sym)
        return {"run": name, "measured_K": measured, "peaks": rdf["peaks"], "symbols": sym, "rdf": rdf,
                "frames": (pos, cells), "dt_fs": 10.0, "duration_fs": 10.0 * (n - 1)}

    ref = {900.0: run("r900", 900.0), 1000.0: run("r1000", 950.0)}
    same = coordination_by_temperature(ref, {900.0: run("m900", 900.0), 1000.0: run("m1000", 1000.0)})
    assert same["passed"] and same["max_abs_difference"] == 0.0 and same["drifting_runs"] == []
    assert same["by_temperature"]["1000K"]["compared_at"].startswith("interpolated to the reference's measured 950.0 K")
    assert coordination_warnings(same) == []
    bad = coordination_by_temperature(ref, {900.0: run("m900", 900.0), 1000.0: run("m1000", 1000.0, 1.6)})
    d = bad["by_temperature"]["1000K"]["difference"]["Na-Cl"]["value"]  # 1/4 of the run lost all 6: −1.5 at 1000 K
    assert d == pytest.approx(0.5 * -1.5, abs=0.01) and not bad["passed"]
    assert [r["run"] for r in bad["drifting_runs"]] == ["m1000"]
    lines = coordination_warnings(bad)
    assert any("fewer Cl neighbours" in x and "1000K" in x for x in lines) and any("m1000" in x for x in lines)
    assert bad["drifting_runs"][0]["judged"] and "a failure" in " ".join(lines)
    # a reference half as long: the MLIP is compared over the reference's 20 frames (before it changed)
    # and its drift is listed but not judged: the reference is too short to say
    short = {900.0: run("r900", 900.0, n=20), 1000.0: run("r1000", 950.0, n=20)}
    res = coordination_by_temperature(short, {900.0: run("m900", 900.0), 1000.0: run("m1000", 1000.0, 1.6)})
    assert res["max_abs_difference"] < 0.01 and res["by_temperature"]["1000K"]["over_fs"] == 190.0
    assert res["passed"] and [d["judged"] for d in res["drifting_runs"]] == [False]
    assert any("not judged" in x for x in coordination_warnings(res))
    # a reference as long that changes the same way: the MLIP does what the reference does, no failure
    same_change = {900.0: run("r900", 900.0), 1000.0: run("r1000", 1000.0, 1.6)}
    res = coordination_by_temperature(same_change, {900.0: run("m900", 900.0), 1000.0: run("m1000", 1000.0, 1.6)})
    mlip_drift = [d for d in res["drifting_runs"] if d["side"] == "mlip"]
    assert [d["verdict"] for d in mlip_drift] == ["as the reference"] and res["passed"]
    # nothing to compare (no common set-point): no verdict rather than a failure
    apart = coordination_by_temperature({900.0: run("r900", 900.0)}, {1200.0: run("m1200", 1200.0)})
    assert apart["passed"] is None and apart["by_temperature"] == {}


def test_active_learning_flags_frames_a_whole_bond_outside_the_training_counts(nacl_run):
    """harvest's coordination criterion: a frame where one Na lost a Cl is outside the training data
    (every training frame has all 6), thermal noise inside the range is not."""
    from types import SimpleNamespace

    from phonion.md.coordination import coordination_series
    from phonion.workflows.learn_coordination import coordination_outliers

    atoms, pos, cells = nacl_run
    sym = atoms.get_chemical_symbols()
    shells = bonded_shells(first_peaks(pos, cells, sym), sym)
    train = coordination_series(pos, cells, sym, shells)["Na-Cl"]
    bounds = {"Na-Cl": {"shell": shells["Na-Cl"], "lo": float(train.min()), "hi": float(train.max())}}
    explored = pos[:6].copy()
    cl = sym.index("Cl")
    explored[2, cl] = atoms.positions[cl] + 5.64 / 4  # to the tetrahedral interstitial: 4 Na at 2.44 Å, not 6
    traj = SimpleNamespace(positions=explored, cells=cells[:6], symbols=sym, n_frames=6)
    flags = coordination_outliers(traj, bounds)
    # two Na–Cl bonds fewer (1/16 per Na) than any training frame: that frame, not the thermal ones
    assert flags.tolist() == [False, False, True, False, False, False]
    assert not coordination_outliers(SimpleNamespace(positions=pos, cells=cells, symbols=sym, n_frames=80), bounds).any()
    assert not coordination_outliers(traj, {}).any()


def test_the_report_opens_with_what_the_coordination_check_found():
    """A failed comparison: red box; an MLIP run that changed beyond the reference's stretch: amber; a drift
    the reference's run as long shows too, or the reference's own: nothing."""
    from phonion.compare.report import _structure_box

    shell = {"centre": "Ga", "neighbour": "O", "cutoff_A": 2.97}

    def coordination(diff, drifting):
        return {"shells": {"Ga-O": shell}, "limit": 0.2, "passed": abs(diff) <= 0.2,
                "by_temperature": {"1150K": {"difference": {"Ga-O": {"value": diff, "err": 0.05}},
                                             "mlip_at_reference_T": {"Ga-O": {"cn": 6.0 + diff}},
                                             "reference": {"Ga-O": {"cn": 6.0}}}},
                "drifting_runs": [{"side": side, "run": run, "pair": "Ga-O", "drift": -0.47, "drift_err": 0.06,
                                   "verdict": verdict, "reference_drift": -0.07, "duration_fs": 1600.0,
                                   "reference_duration_fs": 600.0} for side, run, verdict in drifting]}

    ok = {"rdf_first_peak_shifts": {"passed": True},
          "coordination": coordination(0.0, [("reference", "1300K", "reference"),
                                             ("mlip", "T1300", "as the reference")])}
    assert _structure_box(ok) == ""
    bad = {**ok, "coordination": coordination(-0.3, [])}
    assert "class=invalid" in _structure_box(bad) and "0.30 ± 0.05 fewer O neighbours" in _structure_box(bad)
    box = _structure_box({**ok, "coordination": coordination(0.0, [("mlip", "T1150", "not judged")])})
    assert "class=invalid" not in box and "class=surrogate" in box and "T1150" in box and "0.6 ps of its 1.6 ps" in box


def test_numbers_from_a_run_whose_framework_changed_are_not_trustworthy():
    """compare marks every MLIP number whose source holds a drifting run's file, and only those."""
    from types import SimpleNamespace

    from phonion.compare.checks import mark_structure_changed

    def num(src):
        return {"value": 1.0, "converged": True, "note": "ok", "source": src}

    numbers = {"D_1150": num("/x/T1150/traj.h5"), "E_a": num("/x/T1000/traj.h5, /x/T1150/traj.h5"),
               "D_1000": num("/x/T1000/traj.h5")}
    runs = [SimpleNamespace(name="T1150", files=["/x/T1150/traj.h5"]),
            SimpleNamespace(name="T1000", files=["/x/T1000/traj.h5"])]
    coordination = {"drifting_runs": [
        {"side": "mlip", "run": "T1150", "pair": "Ga-O", "drift": -0.47, "judged": False, "verdict": "not judged"},
        {"side": "mlip", "run": "T1000", "pair": "Ga-O", "drift": -0.3, "judged": True, "verdict": "as the reference"},
        {"side": "reference", "run": "T1000", "pair": "Ga-O", "drift": -0.3, "judged": False, "verdict": "reference"}]}
    mark_structure_changed(numbers, runs, coordination)
    assert not numbers["D_1150"]["converged"] and not numbers["E_a"]["converged"]
    assert numbers["E_a"]["note"].startswith("rests on run T1150, whose Ga-O coordination changed by -0.47")
    # a drift the reference's run as long shows too, and the reference's own, are the reference's behaviour
    assert numbers["D_1000"]["converged"] and numbers["D_1000"]["note"] == "ok"
    mark_structure_changed(numbers, runs, coordination)  # twice: one note
    assert numbers["D_1150"]["note"].count("rests on run") == 1
