"""The stage workflows (``run_<stage>(config) -> Result``) against their commands.

For each workflow: ``run_x(cfg).to_dict()`` is exactly what ``phonion x --json`` prints for the same input
(the contract), ``save(dir)`` writes the files the command writes, and a bad config value raises ValueError
naming the option when the config is built, before any file is read (the inputs below do not exist).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from phonion.cli.main import main
from phonion.md.trajectory import Trajectory

DATA = Path(__file__).parent / "data"
XDATCAR_700K = DATA / "vasp" / "li6ps5i_aimd_xdatcar" / "700K" / "XDATCAR.gz"
K_B_EV_K = 8.617333262e-5


def _cli_json(capsys, argv) -> dict:
    assert main([*map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def _walk_h5(tmp_path, temperatures=True) -> Path:
    """A random walk of 12 Li in a 12 Å box, 600 frames of 10 fs, as H5MD (read a few atoms at a time)."""
    from phonion.md.io.h5md import write_h5md

    rng = np.random.default_rng(1)
    pos = np.cumsum(rng.normal(scale=0.03, size=(600, 12, 3)), axis=0) + rng.random((1, 12, 3)) * 10
    traj = Trajectory(symbols=["Li"] * 12, positions=pos, cells=np.eye(3) * 12, timestep_fs=2.0, stride=5,
                      temperatures_K=np.full(600, 500.0) if temperatures else None)
    return write_h5md(tmp_path / "walk.h5", traj)


def _vibrating_h5(tmp_path, name, li_THz) -> Path:
    """LiGa(SeO3)2 (80 atoms) with every atom on its own harmonic oscillator, exact velocities, as H5MD."""
    from phonion.core.structures import load_structure
    from phonion.md.io.h5md import write_h5md

    atoms = load_structure("LiGa_SeO3_2")
    rng = np.random.default_rng(3)
    freqs = np.array([{"Li": li_THz, "Ga": 6.0, "Se": 20.0, "O": 12.0}[s] for s in atoms.get_chemical_symbols()])
    t = np.arange(300)[:, None, None] * 2.0
    w = 2 * np.pi * freqs[None, :, None] * 1e-3
    phase = rng.uniform(0, 2 * np.pi, size=(1, len(atoms), 3))
    traj = Trajectory(symbols=atoms.get_chemical_symbols(), cells=atoms.cell.array, timestep_fs=2.0,
                      positions=atoms.positions[None] + 0.02 * np.sin(w * t + phase),
                      velocities=0.02 * w * np.cos(w * t + phase))
    return write_h5md(tmp_path / name, traj)


def _without(d: dict, *keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


# ---- diffusion, arrhenius, conductivity ------------------------------------------------------------
def test_diffusion_workflow_is_the_command(tmp_path, capsys):
    from phonion.workflows.transport import DiffusionConfig, DiffusionRun, run_diffusion

    path = _walk_h5(tmp_path)
    cfg = DiffusionConfig(files=(str(path),), n_blocks=4, estimator="gls")
    run = run_diffusion(cfg)
    assert isinstance(run, DiffusionRun) and not list(tmp_path.glob("*/"))  # nothing written
    assert run.to_dict() == _cli_json(capsys, ["diffusion", path, "--n-blocks", "4", "--estimator", "gls"])
    assert run.result.tracer.times_fs.size == 600  # the in-memory result (MSD curves) is there
    cli_out = _cli_json(capsys, ["diffusion", path, "--n-blocks", "4", "--estimator", "gls", "-o", tmp_path / "cli"])
    files = run.save(tmp_path / "py")
    assert _files(tmp_path / "py") == _files(tmp_path / "cli") == {"result.json", "msd.png"}
    assert set(files) == {"msd_png", "result_json"}
    saved = json.loads((tmp_path / "py" / "result.json").read_text())
    assert saved == run.to_dict() and saved["figures"] == [str(tmp_path / "py" / "msd.png")]
    assert _without(saved, "figures") == _without(cli_out, "figures")


def test_diffusion_workflow_reads_other_formats(capsys):
    from phonion.workflows.transport import DiffusionConfig, run_diffusion

    cfg = DiffusionConfig(files=XDATCAR_700K, timestep_fs=2.0, temperature_K=700.0)
    assert cfg.files == (str(XDATCAR_700K),)
    with pytest.warns(UserWarning):  # a short AIMD: the MSD never becomes linear
        out = run_diffusion(cfg).to_dict()
    with pytest.warns(UserWarning):
        assert out == _cli_json(capsys, ["diffusion", XDATCAR_700K, "--timestep-fs", "2", "--temperature-K", "700"])


def _diffusion_results(tmp_path) -> list[Path]:
    paths = []
    for t in (600.0, 900.0, 1200.0):
        d = 1e-3 * np.exp(-0.25 / (K_B_EV_K * t))
        p = tmp_path / f"{int(t)}.json"
        p.write_text(json.dumps({"temperature_K": t, "carrier_density_cm3": 1.5e22, "tracer_diffusivity_cm2_s": d,
                                 "tracer_diffusivity_err_cm2_s": 0.05 * d, "charge": 1.0}))
        paths.append(p)
    return paths


def test_arrhenius_workflow_is_the_command(tmp_path, capsys):
    from phonion.workflows.transport import ArrheniusConfig, run_arrhenius

    paths = _diffusion_results(tmp_path)
    run = run_arrhenius(ArrheniusConfig(results=tuple(paths)))
    assert run.to_dict() == _cli_json(capsys, ["arrhenius", *paths])
    assert run.fit.activation_energy_eV == pytest.approx(0.25, rel=1e-9)
    cli_out = _cli_json(capsys, ["arrhenius", *paths, "-o", tmp_path / "cli"])
    run.save(tmp_path / "py")
    assert _files(tmp_path / "py") == _files(tmp_path / "cli") == {"arrhenius.json", "arrhenius.png"}
    saved = json.loads((tmp_path / "py" / "arrhenius.json").read_text())
    assert saved == run.to_dict() and _without(saved, "figures") == _without(cli_out, "figures")


def test_conductivity_workflow_is_the_command(tmp_path, capsys):
    from phonion.core.structures import bundled_structure_path
    from phonion.workflows.transport import ConductivityConfig, run_conductivity

    cif = bundled_structure_path("LiGa_SeO3_2")
    run = run_conductivity(ConductivityConfig(structure=str(cif), diffusivity_cm2_s=3.14e-9, temperature_K=300.0,
                                              diffusivity_err_cm2_s=1e-10))
    assert run.to_dict() == _cli_json(capsys, ["conductivity", "--structure", cif, "--diffusivity-cm2-s", "3.14e-9",
                                               "--temperature-K", "300", "--diffusivity-err-cm2-s", "1e-10"])
    assert run.to_dict()["conductivity_mS_cm"] == pytest.approx(0.135, rel=0.01)
    assert run.save(tmp_path)["conductivity_json"].is_file()


# ---- vdos ------------------------------------------------------------------------------------------
def test_vdos_workflow_is_the_command(tmp_path, capsys):
    from phonion.workflows.vdos import VDOSConfig, run_vdos

    a, b = _vibrating_h5(tmp_path, "coupled.h5", 4.0), _vibrating_h5(tmp_path, "decoupled.h5", 7.0)
    cfg = VDOSConfig(files=(str(a),), by="oclass", reference=(str(b),), window_fs=200.0)
    run = run_vdos(cfg)
    assert not (tmp_path / "py").exists()
    assert run.columns == ["Li", "O_e", "O_c", "O_n", "total"]
    assert run.to_dict()["mobile_ion_shift"]["centroid_shift_THz"] < 0
    cli_out = _cli_json(capsys, ["vdos", a, "--by", "oclass", "--reference", b, "--window-fs", "200",
                                 "-o", tmp_path / "cli"])
    run.save(tmp_path / "py")
    assert _files(tmp_path / "py") == _files(tmp_path / "cli") == {"vdos.json", "vdos.csv", "vdos.png"}
    out = run.to_dict()
    assert out["files"] == [str(tmp_path / "py" / "vdos.json"), str(tmp_path / "py" / "vdos.csv")]
    assert _without(out, "figures", "files") == _without(cli_out, "figures", "files")
    assert json.loads((tmp_path / "py" / "vdos.json").read_text()) == out
    assert (tmp_path / "py" / "vdos.csv").read_text() == (tmp_path / "cli" / "vdos.csv").read_text()
    run.save(tmp_path / "cli")  # same directory: the very JSON the command printed
    assert run.to_dict() == cli_out


# ---- phonons ---------------------------------------------------------------------------------------
def test_phonons_workflow_is_the_command(tmp_path, capsys):
    from ase.build import bulk

    from phonion.workflows.phonons import PhononsConfig, PhononsRun, run_phonons

    structure = tmp_path / "Cu.cif"
    bulk("Cu", "fcc", a=3.6).write(structure)
    cfg = PhononsConfig(structure=str(structure), calculator="emt", supercell=[2, 2, 2], mesh=(4, 4, 4), plots=False)
    assert cfg.supercell == (2, 2, 2)
    run = run_phonons(cfg, progress=False)
    assert isinstance(run, PhononsRun) and not (tmp_path / "py").exists()
    assert run.phonon.force_constants.shape == (8, 8, 3, 3)  # the phonopy object, in memory
    cli_out = _cli_json(capsys, ["phonons", structure, "--calculator", "emt", "--supercell", "2", "2", "2",
                                 "--mesh", "4", "4", "4", "--no-plots", "-o", tmp_path / "cli"])
    files = run.save(tmp_path / "py")
    assert _files(tmp_path / "py") == _files(tmp_path / "cli")
    assert {Path(p).name for p in cli_out["files"].values()} == {p.name for p in files.values()}
    out = run.to_dict()
    assert set(out["files"]) == set(cli_out["files"])
    assert _without(out, "files", "force_constants_wall_s") == _without(cli_out, "files", "force_constants_wall_s")
    summary = json.loads((tmp_path / "py" / "summary.json").read_text())
    assert summary["n_imaginary"] == 0 and summary["li_band_centre_THz"] is None


def test_phonons_old_function_name_still_works(tmp_path):
    from ase.build import bulk

    from phonion.cli.phonons import run_phonons

    structure = tmp_path / "Cu.cif"
    bulk("Cu", "fcc", a=3.6).write(structure)
    out = run_phonons(structure, "emt", tmp_path / "out", supercell=(2, 2, 2), mesh=(3, 3, 3), plots=False,
                      progress=False)
    assert out["structure"] == str(structure) and (tmp_path / "out" / "FORCE_CONSTANTS").is_file()
    assert Path(out["files"]["summary"]).is_file()


# ---- inspect, convert, sites -----------------------------------------------------------------------
def test_inspect_workflow_is_the_command(tmp_path, capsys):
    from phonion.workflows.trajectory import InspectConfig, run_inspect

    run = run_inspect(InspectConfig(files=(str(XDATCAR_700K),), timestep_fs=2.0))
    assert run.to_dict() == _cli_json(capsys, ["inspect", XDATCAR_700K, "--timestep-fs", "2"])
    assert run.trajectory.n_atoms == 416
    assert json.loads(run.save(tmp_path)["inspect_json"].read_text()) == run.to_dict()


def test_convert_workflow_is_the_command(tmp_path, capsys):
    from phonion.md.io import read_trajectory
    from phonion.workflows.trajectory import ConvertConfig, run_convert

    assert main(["convert", str(XDATCAR_700K), "--timestep-fs", "2", "--stride", "4", "-o",
                 str(tmp_path / "cli.h5")]) == 0
    err = capsys.readouterr().err
    run = run_convert(ConvertConfig(files=(str(XDATCAR_700K),), output=str(tmp_path / "py.h5"), timestep_fs=2.0,
                                    stride=4))
    assert not (tmp_path / "py.h5").exists()
    assert run.save() == {"h5md": tmp_path / "py.h5"}
    assert err == f"wrote {tmp_path / 'cli.h5'}: 25 frames × 416 atoms (frame interval 400.0 fs)\n"
    a, b = read_trajectory(tmp_path / "cli.h5"), read_trajectory(tmp_path / "py.h5")
    assert (a.n_frames, a.n_atoms, a.frame_interval_fs) == (b.n_frames, b.n_atoms, b.frame_interval_fs) == (
        25, 416, 400.0)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert run.to_dict()["files"] == {"h5md": str(tmp_path / "py.h5")}
    # an existing output is refused before anything is read (the input does not exist)
    with pytest.raises(FileExistsError, match="exists; pass --force"):
        run_convert(ConvertConfig(files=(str(tmp_path / "missing.xyz"),), output=str(tmp_path / "py.h5")))
    with pytest.raises(FileExistsError, match="exists; pass --force"):
        run.save()
    run.force = True
    run.save()


def test_sites_workflow_is_the_command(tmp_path, capsys):
    from phonion.workflows.sites import SitesConfig, run_sites

    run = run_sites(SitesConfig())
    assert run.to_dict() == _cli_json(capsys, ["sites"])
    assert [run.to_dict()[f"n_{c}"] for c in ("O_e", "O_c", "O_n")] == [16, 16, 16]
    run = run_sites(SitesConfig(framework=["Ga", "Se"], bond_tolerance=0.3))
    assert run.to_dict() == _cli_json(capsys, ["sites", "--framework", "Ga", "Se", "--bond-tolerance", "0.3"])
    assert json.loads(run.save(tmp_path)["sites_json"].read_text()) == run.to_dict()


# ---- configs: checked whole, before any work -------------------------------------------------------
def _configs():
    from phonion.workflows import phonons, sites, trajectory, transport, vdos

    missing = ("/nonexistent/run.h5",)
    return [
        (transport.DiffusionConfig, dict(files=missing, temperature_K=0.0), "--temperature-K must be > 0"),
        (transport.DiffusionConfig, dict(files=missing, n_blocks=1), "n_blocks must be ≥ 2"),
        (transport.DiffusionConfig, dict(files=missing, fit_fraction=1.5), r"fit_fraction must be in \(0, 1\]"),
        (transport.DiffusionConfig, dict(files=missing, fit_range_ps=(2, 1)), "--fit-range-ps needs 0 ≤ A < B"),
        (transport.DiffusionConfig, dict(files=missing, gk_window_ps=(1,)), "--gk-window-ps takes 2 values"),
        (transport.DiffusionConfig, dict(files=missing, estimator="ols"), "estimator must be 'wls' or 'gls'"),
        (transport.DiffusionConfig, dict(files=missing, timestep_fs=-1.0), "--timestep-fs must be > 0"),
        (transport.DiffusionConfig, dict(files=missing, file_stride=0), "--file-stride must be ≥ 1"),
        (transport.DiffusionConfig, dict(files=missing, fmt="pdb"), "unknown format 'pdb'"),
        (transport.DiffusionConfig, dict(files=()), "no input files given"),
        (transport.ArrheniusConfig, dict(results=missing, quantity="both"), "quantity must be tracer or collective"),
        (transport.ConductivityConfig, dict(structure="/nonexistent.cif", diffusivity_cm2_s=1e-9, temperature_K=-1),
         "--temperature-K must be > 0"),
        (transport.ConductivityConfig, dict(structure="/nonexistent.cif", diffusivity_cm2_s=-1e-9, temperature_K=300),
         "--diffusivity-cm2-s must be ≥ 0"),
        (vdos.VDOSConfig, dict(files=missing, by="element"), "by must be species or oclass"),
        (vdos.VDOSConfig, dict(files=missing, taper="gauss"), "taper must be 'hann' or 'none'"),
        (vdos.VDOSConfig, dict(files=missing, window_fs=0.0), "--window-fs must be > 0"),
        (phonons.PhononsConfig, dict(structure="/nonexistent.cif", calculator="emt", supercell=(0, 1, 1)),
         "--supercell and --mesh need positive integers"),
        (phonons.PhononsConfig, dict(structure="/nonexistent.cif", calculator="emt", mesh=(4, 4)),
         "--mesh takes 3 integers"),
        (phonons.PhononsConfig, dict(structure="/nonexistent.cif", calculator="emt", displacement_A=0),
         "displacement_A must be > 0"),
        (phonons.PhononsConfig, dict(structure="/nonexistent.cif", calculator="emt", symprec=0), "--symprec must be > 0"),
        (phonons.PhononsConfig, dict(structure="/nonexistent.cif", calculator="nonsense"),
         "'nonsense' is not a calculator SPEC"),
        (trajectory.InspectConfig, dict(files=missing, fmt="pdb"), "unknown format"),
        (trajectory.ConvertConfig, dict(files=missing, output="out.h5", stride=0), "--stride/every must be ≥ 1"),
        (trajectory.ConvertConfig, dict(files=missing), "output: give the H5MD file"),
        (sites.SitesConfig, dict(structure="/nonexistent.cif", bond_tolerance=-0.1), "tolerance must be >= 0"),
    ]


@pytest.mark.parametrize("case", range(len(_configs())))
def test_bad_config_value_raises_before_any_reading(case):
    cls, kwargs, message = _configs()[case]
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_configs_are_frozen():
    import dataclasses

    from phonion.workflows.transport import DiffusionConfig

    cfg = DiffusionConfig(files="run.h5")
    assert cfg.files == ("run.h5",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_blocks = 3
