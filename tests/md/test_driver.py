"""phonion.md.driver: energy conservation, thermostats with and without fixed atoms, guards, exact restart.

Cheap physical systems: EMT Cu (32 atoms, fcc 2×2×2) and the bundled LiGa(SeO3)2 cell (80 atoms)
on a spring network (anharmonic bonds to the reference structure: translation invariant, coupled,
ergodic enough for thermostat checks, and it puts forces on fixed atoms).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
import yaml
from ase import units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.neighborlist import neighbor_list

from phonion.md.driver import MDConfig, MDGuardError, initial_momenta, run_md
from phonion.md.io.h5md import read_h5md
from phonion.core.structures import load_structure

ROOT = Path(__file__).resolve().parents[2]


class SpringNetwork(Calculator):
    """E = Σ_bonds ½k(r − r0)² + ¼g(r − r0)⁴ over neighbours (< cutoff) of a reference (eV, Å)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, reference, cutoff_A=3.0, k=5.0, g=20.0):
        super().__init__()
        i, j, S, d = neighbor_list("ijSd", reference, cutoff_A)
        keep = i < j
        self.i, self.j, self.S, self.r0, self.k, self.g = i[keep], j[keep], S[keep], d[keep], k, g

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        vec = pos[self.j] + self.S @ self.atoms.cell.array - pos[self.i]
        r = np.linalg.norm(vec, axis=1)
        x = r - self.r0
        fij = ((self.k * x + self.g * x ** 3) / r)[:, None] * vec
        forces = np.zeros_like(pos)
        np.add.at(forces, self.i, fij)
        np.add.at(forces, self.j, -fij)
        self.results = {"energy": float(np.sum(0.5 * self.k * x ** 2 + 0.25 * self.g * x ** 4)),
                        "forces": forces}


class Failing(EMT):
    """EMT that returns NaN forces (or raises) from its ``at``-th calculation on."""

    def __init__(self, at, mode="nan"):
        super().__init__()
        self.calls, self.at, self.mode = 0, at, mode

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.calls += 1
        if self.calls >= self.at:
            if self.mode == "raise":
                raise KeyboardInterrupt("simulated kill")
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)


@pytest.fixture
def cu32(tmp_path) -> str:
    path = tmp_path / "cu32.xyz"
    ase.io.write(path, bulk("Cu", cubic=True).repeat((2, 2, 2)))
    return str(path)


def cu_cfg(structure, out, **kw) -> MDConfig:
    base = dict(structure=structure, calculator="emt", temperature_K=600.0, steps=200, timestep_fs=2.0,
                ensemble="nve", sample_every=5, checkpoint_every=50, seed=1, output=str(out))
    return MDConfig(**{**base, **kw})


def test_initial_momenta_free_atoms_at_T_with_zero_momentum():
    rng = np.random.default_rng(0)
    m = rng.uniform(1, 100, 50)
    free = np.ones(50, bool)
    free[[3, 7, 11]] = False
    ndof = 3 * 47
    p = initial_momenta(m, 500.0, free, ndof, rng)
    assert np.all(p[~free] == 0)
    np.testing.assert_allclose(p[free].sum(axis=0), 0, atol=1e-12)
    temperature = np.sum(p ** 2 / m[:, None]) / (ndof * units.kB)
    assert temperature == pytest.approx(500.0, rel=1e-12)


def test_close_pair_matches_ase_neighbor_list_on_random_triclinic_cells():
    from ase import Atoms

    from phonion.md.guards import close_pair

    rng = np.random.default_rng(7)
    for trial in range(60):
        cell = np.diag(rng.uniform(4, 8, 3)) + np.triu(rng.uniform(-2, 2, (3, 3)), 1)
        pbc = [True] * 3 if trial % 3 else list(rng.integers(0, 2, 3).astype(bool))
        atoms = Atoms(f"H{30}", positions=rng.uniform(-1, 2, (30, 3)) @ cell, cell=cell, pbc=pbc)
        d = neighbor_list("d", atoms, 1.2)
        got = close_pair(atoms.positions, cell, pbc, 1.2)
        assert (got is None) == (len(d) == 0)
        if got is not None:
            assert got[2] == pytest.approx(d.min(), abs=1e-9)


def test_config_checks_and_yaml_round_trip(tmp_path):
    with pytest.raises(ValueError, match="ensemble"):
        MDConfig(ensemble="npt")
    with pytest.raises(ValueError, match="multiple of sample_every"):
        MDConfig(sample_every=10, checkpoint_every=25)
    with pytest.raises(ValueError, match="unknown key"):
        MDConfig.from_dict({"temperature": 300})
    cfg = MDConfig(supercell=(2, 1, 1), temperature_K=900, fix="O_c")
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert MDConfig.from_yaml(path) == cfg
    assert MDConfig.from_yaml(path, steps=7).steps == 7


def test_nve_conserves_energy(cu32, tmp_path):
    """EMT Cu 32 atoms, 1 fs, 0.4 ps at 300 K: total energy drift per atom per ps."""
    res = run_md(cu_cfg(cu32, tmp_path / "nve", temperature_K=300.0, timestep_fs=1.0, steps=400,
                        sample_every=10, checkpoint_every=200), progress=False)
    traj = read_h5md(res.trajectory)
    kinetic = 0.5 * np.einsum("fni,n->f", traj.velocities ** 2, traj.masses) / (units.fs ** 2)
    total = traj.energies + kinetic
    t_ps = traj.times_fs / 1000
    drift = np.polyfit(t_ps, total, 1)[0] / traj.n_atoms
    spread = (total.max() - total.min()) / traj.n_atoms
    print(f"NVE EMT Cu32 dt=1 fs: drift {drift:.2e} eV/atom/ps, spread {spread:.2e} eV/atom")
    assert abs(drift) < 2e-5 and spread < 2e-4
    assert traj.n_frames == 41 and np.array_equal(np.diff(traj.times_fs), np.full(40, 10.0))
    p = np.einsum("fni,n->fi", traj.velocities, traj.masses)
    np.testing.assert_allclose(p, 0, atol=1e-9)  # FixCom: zero total momentum throughout


@pytest.mark.parametrize("ensemble,fix", [
    ("nvt-bussi", "O_e"), ("nvt-langevin", "O_e"), ("nvt-nhc", "O_e"), ("nvt-nhc", "none"),
    pytest.param("nvt-bussi", "none", marks=pytest.mark.slow),
    pytest.param("nvt-langevin", "none", marks=pytest.mark.slow),
    pytest.param("nvt-bussi", "O_c", marks=pytest.mark.slow)])
def test_thermostat_reaches_and_holds_target(ensemble, fix, tmp_path):
    """<T> with 3(N − k) (fixed) or 3N − 3 dof within 4 block-SEM + 1 % of the target, std canonical."""
    cfg = MDConfig(structure="LiGa_SeO3_2", calculator="springs", temperature_K=600.0, steps=1000,
                   equilibration_steps=100, timestep_fs=2.0, ensemble=ensemble, sample_every=4,
                   checkpoint_every=1000, seed=3, fix=fix, thermostat_time_fs=50.0,
                   friction_per_fs=0.02, output=str(tmp_path / "run"))
    res = run_md(cfg, calculator=SpringNetwork(load_structure("LiGa_SeO3_2")), progress=False)
    traj = read_h5md(res.trajectory)
    meta = traj.metadata
    n, k = traj.n_atoms, len(meta["fixed_indices"])
    assert meta["n_degrees_of_freedom"] == (3 * (n - k) if fix != "none" else 3 * n - 3)
    assert k == (0 if fix == "none" else 16)
    if k:  # fixed atoms never move, free ones do
        fixed = meta["fixed_indices"]
        assert np.array_equal(traj.positions[:, fixed], np.broadcast_to(traj.positions[0, fixed],
                                                                        traj.positions[:, fixed].shape))
        assert np.all(traj.velocities[:, fixed] == 0)
    # temperature with ndof from the stored velocities, independently of the driver
    kinetic = 0.5 * np.einsum("fni,n->f", traj.velocities ** 2, traj.masses) / units.fs ** 2
    temps = 2 * kinetic / (meta["n_degrees_of_freedom"] * units.kB)
    np.testing.assert_allclose(temps, traj.temperatures_K, rtol=1e-10)
    blocks = temps[: len(temps) // 10 * 10].reshape(10, -1).mean(axis=1)
    sem = blocks.std(ddof=1) / np.sqrt(10)
    rel_std, expected = temps.std() / temps.mean(), np.sqrt(2 / meta["n_degrees_of_freedom"])
    print(f"{ensemble} fix {fix}: <T> = {temps.mean():.1f} ± {sem:.1f} K, std/T {rel_std:.3f} "
          f"(canonical {expected:.3f})")
    assert abs(temps.mean() - 600.0) < 4 * sem + 0.01 * 600.0
    assert 0.7 * expected < rel_std < 1.35 * expected


def test_guard_nan_forces_names_step_and_keeps_frames(cu32, tmp_path):
    cfg = cu_cfg(cu32, tmp_path / "nan", sample_every=1, checkpoint_every=1000, steps=50)
    with pytest.raises(MDGuardError, match=r"integrator step 7 .*non-finite forces"):
        run_md(cfg, calculator=Failing(at=8), progress=False)  # call 1 is step 0
    traj = read_h5md(tmp_path / "nan" / "traj.h5")
    assert traj.n_frames == 7 and np.all(np.isfinite(traj.forces))
    record = json.loads((tmp_path / "nan" / "run.json").read_text())
    assert record["status"] == "invalid" and "step 7" in record["invalid_reason"]
    assert record["invalid_step"] == 7 and record["invalid_guard"] == "non_finite"
    assert "step 7" in (tmp_path / "nan" / "run.log").read_text()


def test_guard_atoms_too_close_and_runaway(cu32, tmp_path):
    atoms = ase.io.read(cu32)
    atoms.positions[5] = atoms.positions[9] + [0.3, 0.0, 0.0]
    close = tmp_path / "close.xyz"
    ase.io.write(close, atoms)
    cfg = cu_cfg(str(close), tmp_path / "close", max_force_eV_A=1e9)
    with pytest.raises(MDGuardError, match=r"step 0 .*atoms 5 and 9 are 0.300 Å apart"):
        run_md(cfg, progress=False)
    with pytest.raises(MDGuardError, match=r"step 0 .*force .* exceeds max_force_eV_A"):
        run_md(cu_cfg(str(close), tmp_path / "force"), progress=False)
    with pytest.raises(MDGuardError, match=r"step 0 .*temperature 600.0 K exceeds"):
        run_md(cu_cfg(cu32, tmp_path / "hot", max_temperature_factor=0.5), progress=False)
    assert read_h5md(tmp_path / "close" / "traj.h5").n_frames == 0


def test_finished_run_is_not_rerun_and_other_settings_refused(cu32, tmp_path):
    cfg = cu_cfg(cu32, tmp_path / "done", steps=50)
    first = run_md(cfg, progress=False)
    mtime = first.trajectory.stat().st_mtime_ns
    again = run_md(cfg, progress=False)
    assert (first.status, again.status) == ("complete", "already complete")
    assert again.trajectory.stat().st_mtime_ns == mtime and again.n_frames == 11
    with pytest.raises(ValueError, match="other settings.*temperature_K"):
        run_md(cu_cfg(cu32, tmp_path / "done", steps=50, temperature_K=700.0), progress=False)
    with pytest.raises(ValueError, match="resume"):
        run_md(cu_cfg(cu32, tmp_path / "done", steps=100), progress=False)


@pytest.mark.parametrize("ensemble", ["nve", "nvt-langevin", "nvt-bussi", "nvt-nhc"])
def test_interrupted_and_extended_runs_continue_exactly(ensemble, cu32, tmp_path):
    """Crash at step ~73 (checkpoint at 50, frames beyond it on disk), resume to 100, extend to 200."""
    def cfg(out, steps):
        return cu_cfg(cu32, tmp_path / out, ensemble=ensemble, steps=steps, equilibration_steps=10)

    ref = run_md(cfg("ref", 190), progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_md(cfg("run", 90), calculator=Failing(at=75, mode="raise"), progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed" and "KeyboardInterrupt" in record["message"]
    assert record["n_frames_on_disk"] > record["n_frames"] == 9
    assert run_md(cfg("run", 90), resume=True, progress=False).n_frames == 19
    res = run_md(cfg("run", 190), resume=True, progress=False)  # extend a finished run
    a, b = read_h5md(ref.trajectory), read_h5md(res.trajectory)
    with h5py.File(res.trajectory) as f:
        steps = f["particles/all/position/step"][:]
    assert b.n_frames == a.n_frames == 39 and np.array_equal(steps, np.arange(0, 191, 5))
    assert np.array_equal(np.diff(b.times_fs), np.full(38, 10.0))
    if ensemble != "nvt-nhc":
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.velocities, b.velocities)
    else:  # chain variables restart at zero: same ensemble, not the same trajectory
        assert np.array_equal(a.positions[:9], b.positions[:9])


def _started(out: Path, since: float) -> bool:
    """True once the run has written its record in this session (setup done, integrating)."""
    record = out / "run.json"
    return record.exists() and record.stat().st_mtime > since


def _kill_resume_loop(config: Path, out: Path, rng, n_kills: int, step_s: float, total: int) -> list:
    """Launch ``python -m phonion.md.driver --resume`` until it finishes; SIGKILL the first ``n_kills``.

    The first kill lands at a random moment of start-up (imports, setup); the others at a
    random moment of the remaining integration (``step_s`` seconds per step measured on this
    machine), so they hit appends, checkpoints and the integration in between.
    """
    import time

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "phonion.md.driver", "--config", str(config), "--resume", "--no-progress"]
    kills = []
    for attempt in range(n_kills + 1):
        launched = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        if attempt == n_kills:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err.decode()[-2000:]
            return kills
        done = json.loads((out / "run.json").read_text())["steps_done"] if (out / "run.json").exists() else 0
        delay = rng.uniform(0.05, 0.6) if attempt == 0 else rng.uniform(0.0, 0.8) * (total - done) * step_s
        while attempt and not _started(out, launched) and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
            return kills
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        record = out / "run.json"
        kills.append(json.loads(record.read_text())["steps_done"] if record.exists() else None)


@pytest.mark.parametrize("ensemble", ["nve", pytest.param("nvt-langevin", marks=pytest.mark.slow),
                                      pytest.param("nvt-bussi", marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_then_resume(ensemble, cu32, tmp_path):
    """kill -9 at seeded random moments (import, setup, mid-append, mid-checkpoint), resume each time."""
    settings = dict(structure=cu32, calculator="emt", temperature_K=800.0, steps=300, timestep_fs=2.0,
                    equilibration_steps=20, ensemble=ensemble, sample_every=5, checkpoint_every=20, seed=11)
    ref = run_md(MDConfig(**settings, output=str(tmp_path / "ref")), progress=False)
    step_s = ref.wall_s / 320
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**settings, "output": str(tmp_path / "run")}))
    kills = _kill_resume_loop(config, tmp_path / "run", np.random.default_rng(2024), n_kills=4,
                              step_s=step_s, total=320)
    print(f"{ensemble}: killed after checkpointed steps {kills}")
    a, b = read_h5md(ref.trajectory), read_h5md(tmp_path / "run" / "traj.h5")
    with h5py.File(tmp_path / "run" / "traj.h5") as f:
        steps, times = f["particles/all/position/step"][:], f["particles/all/position/time"][:]
    assert b.n_frames == a.n_frames == 61
    assert np.array_equal(steps, np.arange(0, 301, 5)) and np.array_equal(np.diff(times), np.full(60, 10.0))
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.forces, b.forces)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "complete" and record["n_frames"] == 61


def test_complete_run_writes_measured_temperature_into_the_h5md_metadata(cu32, tmp_path):
    """The trajectory alone says what temperature its frames had (run.json's numbers, same values)."""
    import json

    from phonion.md.driver import MDConfig, run_md
    from phonion.md.io import read_trajectory

    cfg = cu_cfg(cu32, tmp_path / "r", steps=20, sample_every=5)
    run_md(cfg, progress=False)
    rec = json.loads((tmp_path / "r" / "run.json").read_text())
    meta = read_trajectory(tmp_path / "r" / "traj.h5").metadata
    assert meta["mean_temperature_K"] == rec["mean_temperature_K"] and meta["status"] == "complete"
    assert meta["std_temperature_K"] == rec["std_temperature_K"]
