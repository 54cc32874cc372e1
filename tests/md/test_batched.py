"""phonion.md.batched (``phonion md --engine batched``): same physics and files as the ASE engine, per-system
temperatures, fixed atoms that stay fixed, committee uncertainty, guards per system, refusals, OOM splitting.

The model is an untrained tiny MACE over Li, O, Ga, Se (built here, ~1 s), on the bundled 80-atom
LiGa(SeO3)2 cell: the batched engine draws the same initial momenta and Bussi noise from the same
seeded generator as ASE's Bussi, so for a few steps the two engines must give the same trajectory
to round-off (a real check of the integrator, the thermostat, the DOF and the constraints)."""

import json

import numpy as np
import pytest

from phonion.md.io.h5md import read_h5md
from phonion.md.sweep import SweepConfig, run_sweep

ELEMENTS = [3, 8, 31, 34]  # Li O Ga Se


def tiny_mace(seed: int):
    import mace.modules  # mace before e3nn (torch 2.13 weights-only unpickling)
    import torch
    from e3nn import o3

    torch.manual_seed(seed)
    block = mace.modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return mace.modules.MACE(
        r_max=4.0, num_bessel=4, num_polynomial_cutoff=3, max_ell=1, interaction_cls=block,
        interaction_cls_first=block, num_interactions=1, num_elements=4, hidden_irreps=o3.Irreps("8x0e + 8x1o"),
        MLP_irreps=o3.Irreps("8x0e"), gate=torch.nn.functional.silu, atomic_energies=np.array([-2.0, -5.0, -3.0, -4.0]),
        avg_num_neighbors=20.0, atomic_numbers=ELEMENTS, correlation=2, radial_type="bessel",
        pair_repulsion=True).double()  # ZBL repulsion: the untrained model keeps atoms apart


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[str]:
    import torch

    d = tmp_path_factory.mktemp("models")
    paths = []
    for seed in (0, 1):
        path = d / f"m{seed}.model"
        torch.save(tiny_mace(seed), path)
        paths.append(str(path))
    return paths


def sweep(model: str, out, **kw) -> SweepConfig:
    flat = dict(structure="LiGa_SeO3_2", calculator=f"mace:{model}", temperatures_K=[400, 900], seeds=[3],
                fix=["none"], steps=10, timestep_fs=1.0, ensemble="nvt-bussi", sample_every=5,
                checkpoint_every=5, thermostat_time_fs=20.0, max_force_eV_A=1e4, output=str(out))
    return SweepConfig.from_dict({**flat, **kw})


def test_batched_engine_follows_the_ase_engine_to_round_off(models, tmp_path):
    """Two temperatures in one batch = two ASE Bussi runs, frame by frame, and the same files."""
    rows_b = run_sweep(sweep(models[0], tmp_path / "b"), engine="batched", progress=False)
    rows_a = run_sweep(sweep(models[0], tmp_path / "a"), progress=False)
    assert [r["status"] for r in rows_b] == ["complete", "complete"]
    for rb, ra in zip(rows_b, rows_a):
        b, a = read_h5md(rb["path"]), read_h5md(ra["path"])
        np.testing.assert_array_equal(b.times_fs, a.times_fs)
        assert np.abs(b.positions - a.positions).max() < 1e-9
        assert np.abs(b.forces - a.forces).max() < 1e-8
        np.testing.assert_allclose(b.temperatures_K, a.temperatures_K, rtol=1e-9)
        rec_b = json.loads((tmp_path / "b" / rb["run"] / "run.json").read_text())
        rec_a = json.loads((tmp_path / "a" / ra["run"] / "run.json").read_text())
        assert rec_b["engine"] == "batched" and rec_b["batch_size"] == 2 and rec_b["status"] == "complete"
        today = {"status", "settings", "settings_key", "n_atoms", "fixed_indices", "n_degrees_of_freedom",
                 "restarts", "exact_restart", "trajectory", "steps_done", "n_frames", "wall_s", "production_steps",
                 "mean_temperature_K", "std_temperature_K", "temperature_ratio"}
        assert today <= set(rec_a) and today <= set(rec_b)  # the keys scripts read from an ASE run.json
        assert rec_b["n_degrees_of_freedom"] == rec_a["n_degrees_of_freedom"] == 3 * 80 - 3
        assert rb["mean_T_K"] == pytest.approx(ra["mean_T_K"], rel=1e-9)


def test_fixed_atoms_stay_put_and_dof_count_them(models, tmp_path):
    """fix O_e: the O_e atoms move 0.000 Å (bit for bit), ndof = 3(N − k), T reported with that ndof."""
    from ase import units

    rows = run_sweep(sweep(models[0], tmp_path / "b", fix=["none", "O_e"], temperatures_K=[900]),
                     engine="batched", progress=False)
    rec = json.loads((tmp_path / "b" / rows[1]["run"] / "run.json").read_text())
    fixed = np.array(rec["fixed_indices"])
    assert fixed.size > 0 and rec["n_degrees_of_freedom"] == 3 * (80 - fixed.size)
    traj = read_h5md(rows[1]["path"])
    assert np.all(traj.positions[:, fixed] == traj.positions[0, fixed])
    assert np.all(traj.velocities[:, fixed] == 0.0)
    free = np.setdiff1d(np.arange(80), fixed)
    assert np.abs(traj.positions[-1, free] - traj.positions[0, free]).max() > 1e-3
    v = traj.velocities[-1] / units.fs  # Å/fs -> ASE units
    kin = 0.5 * np.sum(traj.masses[:, None] * v ** 2)
    assert 2 * kin / (rec["n_degrees_of_freedom"] * units.kB) == pytest.approx(traj.temperatures_K[-1], rel=1e-9)
    a = run_sweep(sweep(models[0], tmp_path / "a", fix=["O_e"], temperatures_K=[900]), progress=False)
    assert np.abs(read_h5md(a[0]["path"]).positions - traj.positions).max() < 1e-9  # same as ASE's FixAtoms


def test_committee_uncertainty_and_a_tripped_system_leaves_the_batch(models, tmp_path):
    """Committee: mean force drives, force_uncertainty_max is written; a run whose guard trips is
    invalid (frames before it kept) while the other runs of the batch complete."""
    from phonion.md.batched_forces import BatchedMACE

    cfg = sweep(",".join(models), tmp_path / "c", temperatures_K=[400, 700, 900], uncertainty_every=5,
                max_force_eV_A=50.0)
    engine = BatchedMACE(cfg.run.calculator)
    real = engine.compute
    calls = {"n": 0}

    def compute(atoms_list):  # the 700 K run gets a 1000 eV/Å force from its 3rd evaluation on
        calls["n"] += 1
        calls.setdefault("target", atoms_list[1])  # the 700 K run's Atoms (the batch shrinks after it trips)
        out = real(atoms_list)
        if calls["n"] >= 3:
            out = [(e, f * (1e6 if a is calls["target"] else 1.0), v) for (e, f, v), a in zip(out, atoms_list)]
        return out

    engine.compute = compute
    from phonion.md.batched import run_batched

    rows = run_batched(cfg, forces=engine, progress=False)
    assert [r["status"] for r in rows] == ["complete", "invalid", "complete"]
    assert rows[1]["invalid_step"] == 2 and "force" in rows[1]["invalid_reason"]
    bad = json.loads((tmp_path / "c" / rows[1]["run"] / "run.json").read_text())
    assert bad["status"] == "invalid" and bad["invalid_guard"] == "max_force"
    assert read_h5md(rows[1]["path"]).n_frames == 1  # frame 0 kept
    good = read_h5md(rows[2]["path"])
    u = good.force_uncertainty_max_eV_A
    assert good.n_frames == 3 and np.all(np.isfinite(u) & (u > 0))
    rec = json.loads((tmp_path / "c" / rows[2]["run"] / "run.json").read_text())
    assert rec["uncertainty_evaluations"] == 3 and rec["uncertainty_max_eV_A"] == pytest.approx(u.max())


def test_batched_forces_equal_mace_calculator_and_oom_splits_the_batch(models):
    """Forces of a batch = MACECalculator's per system; a simulated out-of-memory halves the batch
    and gives the same numbers; one system that does not fit is a clear error."""
    from phonion.core.calculators import resolve_calculator
    from phonion.core.structures import load_structure
    from phonion.md.batched_forces import BatchedMACE

    spec = f"mace:{models[0]},{models[1]}"
    engine = BatchedMACE(spec)
    base = load_structure("LiGa_SeO3_2")
    systems = []
    for k in range(3):
        a = base.copy()
        a.rattle(0.05, seed=k)
        systems.append(a)
    whole = engine.compute(systems)
    calc = resolve_calculator(spec, device="cpu")
    for a, (e, f, var) in zip(systems, whole):
        calc.calculate(a.copy())
        assert np.abs(f - calc.results["forces"]).max() < 1e-12
        assert np.abs(var - calc.results["forces_var"]).max() < 1e-12 and e == pytest.approx(calc.results["energy"])
    real = engine._forward
    seen = []

    def forward(chunk, first=0):
        seen.append(len(chunk))
        if len(chunk) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(chunk, first)

    engine._forward = forward
    split = engine.compute(systems)
    assert engine.max_batch == 1 and seen[:3] == [3, 1, 1]
    for (e1, f1, v1), (e2, f2, v2) in zip(whole, split):
        assert np.abs(f1 - f2).max() < 1e-12 and e1 == pytest.approx(e2)
    engine._forward = lambda chunk, first: (_ for _ in ()).throw(RuntimeError("CUDA out of memory"))
    with pytest.raises(ValueError, match="out of memory evaluating one system of 80 atoms"):
        engine.compute(systems[:1])
    engine._forward = lambda chunk, first: (_ for _ in ()).throw(RuntimeError("some other bug"))
    with pytest.raises(RuntimeError, match="other bug"):  # not an OOM: not swallowed
        engine.compute(systems)


def test_refusals_before_any_work(models, tmp_path):
    from phonion.cli.md import main as md_main
    from phonion.md.batched import check_same_size

    with pytest.raises(ValueError, match="batches MACE models only.*--engine ase"):
        run_sweep(sweep(models[0], tmp_path / "x", calculator="emt"), engine="batched", progress=False)
    with pytest.raises(ValueError, match="nvt-bussi and nve only; use --engine ase for nvt-nhc"):
        run_sweep(sweep(models[0], tmp_path / "x", ensemble="nvt-nhc"), engine="batched", progress=False)
    with pytest.raises(ValueError, match="one process.*--workers 2"):
        run_sweep(sweep(models[0], tmp_path / "x"), engine="batched", workers=2, progress=False)
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        run_sweep(sweep(models[0], tmp_path / "x"), engine="batched", batch_size=0, progress=False)
    assert not (tmp_path / "x").exists()  # nothing written

    class Fake:
        def __init__(self, n, name):
            from ase import Atoms

            self.atoms, self.cfg = Atoms("H" * n), type("C", (), {"output": str(tmp_path / name)})()

    with pytest.raises(ValueError, match="same number of atoms.*a: 2, b: 3"):
        check_same_size([Fake(2, "a"), Fake(3, "b")])
    code = md_main(["md", "--engine", "batched", "--calculator", "emt", "--steps", "10", "-o",
                    str(tmp_path / "y"), "--no-progress"])
    assert code == 2
