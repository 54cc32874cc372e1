"""Bad input to the CLI: one line ``phonion <cmd>: error: ...`` and exit code 2, before any work; ``--json``
stdout carries the JSON alone (issue "No silent wrong answers, no tracebacks")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phonion.cli.main import main

ROOT = Path(__file__).resolve().parents[1]

BANNER_MODULE = '''
import os


def make():
    print("BANNER v0.3.0 initialized (Python print to stdout)")
    os.write(1, b"C-LEVEL BANNER cuequivariance not available\\n")
    from ase.calculators.emt import EMT
    return EMT()
'''

JSON_PRINTING_HANDLER = '''
import json, os, sys
from phonion.cli.common import json_stdout

with json_stdout():
    print("a banner from a library")
    os.write(1, b"a C-level banner\\n")
    print(json.dumps({"answer": 42}, indent=2))   # a handler that prints its JSON itself (chain demo/series)
    print("{not json: a dict repr}")
'''


def _run(args, tmp_path, **env):
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), **env}
    return subprocess.run([sys.executable, "-m", "phonion.cli.main", *args], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=600)


def _error(capsys, argv, command):
    """main(argv) exits 2 with one line ``phonion <command>: error: ...`` on stderr; returns that line."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith(f"phonion {command}: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in "\n".join(err)
    return lines[0]


def _cu_cif(tmp_path) -> Path:
    from ase.build import bulk

    path = tmp_path / "cu.cif"
    bulk("Cu", "fcc", a=3.6).write(path)
    return path


def _random_walk(path, n_frames=120, seed=0) -> Path:
    """Li random walkers with vibrating O atoms in a 10 Å box (extxyz)."""
    import ase.io
    from ase import Atoms

    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 10, size=(16, 3))
    phase = rng.uniform(0, 6.3, size=(16, 3))
    disp, frames = np.zeros((8, 3)), []
    for i in range(n_frames):
        disp += rng.normal(scale=0.1, size=(8, 3))
        pos = base.copy()
        pos[:8] += disp
        pos += 0.05 * np.sin(2 * np.pi * 0.05 * i + phase)
        frames.append(Atoms(["Li"] * 8 + ["O"] * 8, positions=pos, cell=[10, 10, 10], pbc=True))
    ase.io.write(path, frames)
    return Path(path)


# ---- 1: --json stdout is the JSON alone ------------------------------------------------------------
def test_phonons_json_stdout_is_json_despite_calculator_banners(tmp_path):
    (tmp_path / "banner_calc.py").write_text(BANNER_MODULE)
    cif = _cu_cif(tmp_path)
    proc = _run(["phonons", str(cif), "--calculator", "banner_calc:make", "--supercell", "2", "2", "2",
                 "--mesh", "4", "4", "4", "--no-plots", "-o", str(tmp_path / "D"), "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "n_atoms" in json.loads(proc.stdout)
    assert "BANNER v0.3.0" in proc.stderr and "C-LEVEL BANNER" in proc.stderr


def test_json_printed_by_a_handler_itself_reaches_stdout_alone(tmp_path):
    """Handlers outside phonion.cli (chain demo, series) print their JSON with print(json.dumps(...))."""
    (tmp_path / "handler.py").write_text(JSON_PRINTING_HANDLER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(tmp_path / "handler.py")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"answer": 42}
    assert "a banner from a library" in proc.stderr and "a C-level banner" in proc.stderr
    assert "{not json" in proc.stderr


@pytest.mark.parametrize("argv, target", [
    (["conductivity", "--structure", "CIF", "--species", "Cu", "--diffusivity-cm2-s", "1e-9",
      "--temperature-K", "300", "--json"], "phonion.core.structures.load_structure"),
    (["sites", "CIF", "--mobile", "Cu", "--anion", "Cu", "--json"], "phonion.workflows.sites.run_sites"),
])
def test_other_commands_json_stdout_with_banners(tmp_path, capfd, monkeypatch, argv, target):
    """In-process (main()): banners printed while a command runs — Python and C level — go to stderr."""
    import importlib

    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original = getattr(module, name)

    def noisy(*args, **kwargs):
        print("BANNER v0.3.0 initialized")
        os.write(1, b"C-LEVEL BANNER\n")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, noisy)
    cif = str(_cu_cif(tmp_path))
    code = main([cif if a == "CIF" else a for a in argv])
    out, err = capfd.readouterr()
    assert "BANNER v0.3.0" in err and "C-LEVEL BANNER" in err
    assert code == 0 or "error" in err
    if code == 0:
        assert isinstance(json.loads(out), dict)


# ---- 2: negative uncertainties -----------------------------------------------------------------------
@pytest.mark.parametrize("extra, first", [
    (["--diffusivity-err-cm2-s", "-1"], "--diffusivity-err-cm2-s is an uncertainty: it must be a finite number ≥ 0"),
    (["--diffusivity-err-cm2-s", "nan"], "--diffusivity-err-cm2-s is an uncertainty"),
    (["--charge", "0"], "--charge must be a finite non-zero number"),
])
def test_conductivity_refuses_negative_uncertainty(tmp_path, capsys, extra, first):
    line = _error(capsys, ["conductivity", "--structure", _cu_cif(tmp_path), "--species", "Cu",
                           "--diffusivity-cm2-s", "1e-9", "--temperature-K", "300", *extra], "conductivity")
    assert line.startswith(f"phonion conductivity: error: {first}")


def test_conductivity_error_bar_with_zero_diffusivity_is_finite(tmp_path, capsys):
    assert main(["conductivity", "--structure", str(_cu_cif(tmp_path)), "--species", "Cu", "--diffusivity-cm2-s",
                 "0", "--diffusivity-err-cm2-s", "1e-9", "--temperature-K", "300", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["conductivity_err_mS_cm"] > 0


def _diffusion_result(path, **changes) -> Path:
    data = {"temperature_K": 600.0, "carrier_density_cm3": 1e22, "tracer_diffusivity_cm2_s": 1e-6,
            "tracer_diffusivity_err_cm2_s": 1e-7, "charge": 1.0, **changes}
    path.write_text(json.dumps(data))
    return path


def test_arrhenius_refuses_negative_uncertainty_in_a_result(tmp_path, capsys):
    a = _diffusion_result(tmp_path / "a.json")
    b = _diffusion_result(tmp_path / "b.json", temperature_K=800.0, tracer_diffusivity_err_cm2_s=-1e-7)
    line = _error(capsys, ["arrhenius", a, b], "arrhenius")
    assert line.startswith(f"phonion arrhenius: error: {b}: tracer_diffusivity_err_cm2_s is an uncertainty")


# ---- 3: trainer / optim settings -------------------------------------------------------------------
@pytest.mark.parametrize("override, first", [
    ("trainer.max_epochs=-1", "trainer.max_epochs must be ≥ 1, got -1"),
    ("trainer.batch_size=0", "trainer.batch_size must be ≥ 1, got 0"),
    ("trainer.val_batch_size=0", "trainer.val_batch_size must be ≥ 1"),
    ("trainer.patience=-3", "trainer.patience must be ≥ 0"),
    ("optim.lr=0", "optim.lr must be > 0, got 0"),
    ("optim.lr=-0.01", "optim.lr must be > 0"),
    ("optim.weight_decay=-1", "optim.weight_decay must be ≥ 0"),
    ("loss.forces_weight=-1", "loss.forces_weight must be ≥ 0"),
    ("trainer.max_epochs=2.5", "trainer.max_epochs must be an integer"),
    ("data.fractions=[0.5,0.5,0.5]", "data.fractions must be three numbers ≥ 0 summing to 1"),
])
def test_train_refuses_bad_trainer_and_optim_settings(tmp_path, capsys, override, first):
    line = _error(capsys, ["train", f"output={tmp_path / 'run'}", override], "train")
    assert line.startswith(f"phonion train: error: {first}")
    assert not (tmp_path / "run").exists()


# ---- 4: arrhenius inputs that are not diffusion results ---------------------------------------------
def test_arrhenius_refuses_json_list_other_json_and_directory(tmp_path, capsys):
    good = _diffusion_result(tmp_path / "good.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text('{"a": 1}')
    (tmp_path / "folder").mkdir()
    for name, first in (("list.json", "not a `phonion diffusion` result (a JSON list, not an object)"),
                        ("other.json", "not a `phonion diffusion` result (missing temperature_K"),
                        ("folder", "is a directory")):
        line = _error(capsys, ["arrhenius", good, tmp_path / name], "arrhenius")
        assert line.startswith(f"phonion arrhenius: error: {tmp_path / name}: {first}")


def test_arrhenius_collective_on_results_without_it(tmp_path, capsys):
    a = _diffusion_result(tmp_path / "a.json")
    b = _diffusion_result(tmp_path / "b.json", temperature_K=800.0)
    line = _error(capsys, ["arrhenius", a, b, "--quantity", "collective"], "arrhenius")
    assert line.startswith(f"phonion arrhenius: error: {a}: no collective_diffusivity_cm2_s in this result")


# ---- 5: output paths ---------------------------------------------------------------------------------
def test_output_paths_refused_before_any_work(tmp_path, capsys):
    traj = _random_walk(tmp_path / "rw.extxyz", n_frames=20)
    cif = _cu_cif(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("data")
    (tmp_path / "a_dir").mkdir()
    long = tmp_path / ("x" * 300)
    cases = [
        (["convert", traj, "-o", tmp_path / "a_dir"], "convert", f"-o {tmp_path / 'a_dir'}: is a directory"),
        (["convert", traj, "-o", a_file / "out.h5"], "convert", f"-o {a_file / 'out.h5'}: {a_file} is a file"),
        (["convert", traj, "-o", f"{long}.h5"], "convert", f"-o {long}.h5: the name"),
        (["diffusion", traj, "--timestep-fs", "10", "-o", a_file], "diffusion", f"-o {a_file}: exists and is not"),
        (["diffusion", traj, "--timestep-fs", "10", "-o", a_file / "sub"], "diffusion", f"-o {a_file / 'sub'}: "),
        (["vdos", traj, "--timestep-fs", "10", "-o", long], "vdos", f"-o {long}: the name"),
        (["phonons", cif, "--calculator", "emt", "-o", a_file], "phonons", f"-o {a_file}: exists and is not"),
        (["mdma", traj, "--phonons", tmp_path / "nope", "-o", a_file / "m"], "mdma", f"-o {a_file / 'm'}: "),
        (["pfc", "--phonons", tmp_path / "nope", "-o", a_file], "pfc", f"-o {a_file}: exists and is not"),
        (["train", f"output={a_file}"], "train", f"output {a_file}: exists and is not"),
        (["evaluate", "--model", tmp_path / "m.model", traj, "--plots", a_file / "p"], "evaluate",
         f"--plots {a_file / 'p'}_energy.png: {a_file} is a file"),
    ]
    for argv, command, first in cases:
        line = _error(capsys, argv, command)
        assert line.startswith(f"phonion {command}: error: {first}"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["rw.extxyz", "cu.cif", "a_file", "a_dir"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_output_in_read_only_directory_refused(tmp_path, capsys):
    traj = _random_walk(tmp_path / "rw.extxyz", n_frames=20)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        line = _error(capsys, ["diffusion", traj, "--timestep-fs", "10", "-o", ro / "out"], "diffusion")
        assert line.startswith(f"phonion diffusion: error: -o {ro / 'out'}: {ro} is not writable")
    finally:
        ro.chmod(0o755)


def test_convert_to_a_legal_253_character_name(tmp_path):
    traj = _random_walk(tmp_path / "rw.extxyz", n_frames=10)
    out = tmp_path / ("y" * 250 + ".h5")
    assert main(["convert", str(traj), "--timestep-fs", "10", "-o", str(out)]) == 0
    assert out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["rw.extxyz", out.name])


# ---- 7: malformed YAML --------------------------------------------------------------------------------
def test_train_malformed_yaml_is_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epochs: [1\n")
    line = _error(capsys, ["train", "--config", bad], "train")
    assert line.startswith(f"phonion train: error: {bad}: not valid YAML")


# ---- 8: plain output of the transport commands -------------------------------------------------------
def test_transport_commands_print_a_summary_without_json(tmp_path, capsys):
    traj = _random_walk(tmp_path / "rw.extxyz")
    for temperature in (600, 800):
        assert main(["diffusion", str(traj), "--timestep-fs", "10", "--temperature-K", str(temperature),
                     "-o", str(tmp_path / f"r{temperature}")]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"Li at T = {temperature} K (user)")
        for label in ("D* (tracer):", "D_σ (collective):", "Haven ratio:", "σ:", "±", "mS/cm"):
            assert label in out
    assert main(["arrhenius", str(tmp_path / "r600" / "result.json"), str(tmp_path / "r800" / "result.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tracer diffusivity, 2 temperatures") and "E_a:" in out and "σ(300 K):" in out
    assert main(["vdos", str(traj), "--timestep-fs", "10", "-o", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert "Li: 8 atoms, centroid" in out and "vdos.csv" in out


def test_output_in_read_only_directory_refused_any_user(tmp_path, capsys, monkeypatch):
    """The same check where root would write anyway: ``os.access`` reports the folder read-only."""
    import phonion.workflows.common as common

    traj = _random_walk(tmp_path / "rw.extxyz", n_frames=20)
    monkeypatch.setattr(common.os, "access", lambda path, mode: False)
    line = _error(capsys, ["diffusion", traj, "--timestep-fs", "10", "-o", tmp_path / "out"], "diffusion")
    assert line.startswith(f"phonion diffusion: error: -o {tmp_path / 'out'}: {tmp_path} is not writable")


# ---- 6: evaluate on elements the model lacks --------------------------------------------------------------
def _emt_file(path, symbols_every, n_frames=4, seed=0):
    """Rattled fcc frames with EMT energies and forces; ``symbols_every``: {symbol: every k-th atom}."""
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        symbols = atoms.get_chemical_symbols()
        for symbol, every in symbols_every.items():
            symbols[::every] = [symbol] * len(symbols[::every])
        atoms.set_chemical_symbols(symbols)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.calc = EMT()
        snap = atoms.copy()
        snap.calc = SinglePointCalculator(snap, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        frames.append(snap)
    ase.io.write(path, frames, format="extxyz")
    return path


def test_evaluate_on_elements_the_model_lacks(tmp_path, capsys):
    pytest.importorskip("mace")
    import torch
    from mace.tools import set_default_dtype, torch_geometric

    from phonion.mlip.data import DataConfig, build_dataset, to_atomic_data
    from phonion.mlip.model import ModelConfig, build_model

    dtype = torch.get_default_dtype()
    set_default_dtype("float64")
    try:
        train = _emt_file(tmp_path / "cual_600K.extxyz", {"Al": 4})
        ds = build_dataset(DataConfig(files=[str(train)], gap_frames=0, fractions=(0.5, 0.5, 0.0)))
        loader = torch_geometric.dataloader.DataLoader(to_atomic_data(ds.train, ds.zs, 4.0), batch_size=2)
        model, _ = build_model(ModelConfig(r_max=4.0, num_channels=8, max_L=0, max_ell=1, correlation=2,
                                           radial_MLP=(8,)), ds, loader)
        torch.save(model, tmp_path / "m.model")
    finally:
        torch.set_default_dtype(dtype)
    other = _emt_file(tmp_path / "cuni.extxyz", {"Ni": 3})
    line = _error(capsys, ["evaluate", "--model", tmp_path / "m.model", other, "--threads", "1", "--json"],
                  "evaluate")
    assert line.startswith(f"phonion evaluate: error: model {tmp_path / 'm.model'} has no Ni (in {other}); "
                           "it knows Al, Cu"), line


def test_ctrl_c_and_os_errors_in_any_command_are_one_line(monkeypatch, capsys):
    """Ctrl-C in any command: one line, exit 130; an OSError met while working (full disk): one line, exit 2."""
    import errno
    import importlib

    from phonion.cli.main import main

    cli_main = importlib.import_module("phonion.cli.main")  # the module (phonion.cli exports main, the function)

    def interrupted(args):
        raise KeyboardInterrupt

    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "out/run.h5")

    for handler, code, first in ((interrupted, 130, "phonion sites: interrupted;"),
                                 (disk_full, 2, "phonion sites: error: [Errno 28] No space left on device")):
        monkeypatch.setattr(cli_main, "_cmd_sites", handler)
        assert main(["sites"]) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(first), err
