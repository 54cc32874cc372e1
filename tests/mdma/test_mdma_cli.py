"""``phonion mdma`` and ``phonion pfc``: contracts, files, mapping, and clear errors (issue 4).

Synthetic trajectories (no MD): the 32-atom LiO3 spring network's supercell with random thermal
displacements and velocities; the MDMA numbers are meaningless here, the plumbing is what is tested.
The pFC tests use the bundled LiGa(SeO3)2 with central Li–O springs, whose projections are known exactly.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from phonion.core.units import K_B_EV_K
import pytest
from ase import units
from ase.neighborlist import neighbor_list

from phonion.md.io.h5md import write_h5md
from phonion.md.trajectory import Trajectory, TrajectoryError
from phonion.cli.mdma import add_mdma_parsers
from phonion.workflows.mdma import frequency_bins
from phonion.mdma.mdma_core import AMU_A2_PER_FS2_TO_EV
from phonion.mdma.mdma_report import load_mdma
from phonion.mdma.phonon_io import save_phonons
from phonion.mdma.phonons import to_ase_atoms
from mdma_systems import K_OC, K_OE, l12_phonons, ligaseo_spring_phonons

CONTRACT = ("collective_diffusivity_cm2_s", "mdma_total_cm2_s", "sum_rule_relative_error", "harmonic_fraction",
            "anharmonic_fraction", "class_fractions", "oe_mean_frequency_THz", "equal_time_anharmonic_fraction",
            "modal_equipartition", "top_modes")
PFC_CONTRACT = ("mpfc_Oe_eV_A2", "mpfc_Oc_eV_A2", "delta_pfc_eV_A2", "bond_pfc_Oe_eV_A2", "bond_pfc_Oc_eV_A2")


def parser():
    p = argparse.ArgumentParser(prog="phonion")
    add_mdma_parsers(p.add_subparsers(dest="command"), argparse.HelpFormatter)
    return p


def run(*argv):
    args = parser().parse_args([str(a) for a in argv])
    return args.func(args)


def mdma(*argv) -> dict:
    args = parser().parse_args(["mdma", *map(str, argv)])
    assert args.func(args) == 0
    return json.loads((Path(args.output) / "result.json").read_text())


def synthetic(atoms, n_frames=400, seed=1, velocities=True, temperatures=False, dt=1.0) -> Trajectory:
    rng = np.random.default_rng(seed)
    n = len(atoms)
    m = atoms.get_masses()
    pos = atoms.positions[None] + rng.normal(scale=0.05, size=(n_frames, n, 3))
    sigma = np.sqrt(units.kB * 300.0 / (m * AMU_A2_PER_FS2_TO_EV))  # Å/fs
    vel = rng.normal(size=(n_frames, n, 3)) * sigma[None, :, None] if velocities else None
    temps = np.full(n_frames, 321.0) if temperatures else None
    return Trajectory(atoms.get_chemical_symbols(), pos, np.array(atoms.cell.array), timestep_fs=dt,
                      velocities=vel, temperatures_K=temps, masses=m, metadata={"source_files": ["synthetic"]})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    phonon = l12_phonons()
    root = tmp_path_factory.mktemp("cli")
    save_phonons(phonon, root / "phonons")
    sc = to_ase_atoms(phonon.supercell)
    traj = synthetic(sc)
    write_h5md(root / "run.h5", traj)
    return root, sc, traj


def test_json_contract_files_and_kinetic_temperature(setup, tmp_path, capsys):
    root, sc, traj = setup
    assert run("mdma", root / "run.h5", "--phonons", root / "phonons", "--tau-max-ps", 0.02, "-o", tmp_path,
               "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert printed == saved
    for key in CONTRACT:
        assert key in printed, key
    assert set(printed["class_fractions"]) == {"O_e", "O_c", "O_n"}
    assert set(printed["top_modes"][0]) >= {"frequency_THz", "class", "contribution_cm2_s"}
    assert printed["modal_equipartition"]["n_modes"] == 93
    assert printed["sum_rule_relative_error"] < 1e-10
    assert printed["convention"] == "gordiz" and printed["tau_max_ps"] == pytest.approx(0.02)
    assert printed["n_modes"] == 96 and printed["velocities_source"] == "file"
    ke = 0.5 * np.einsum("i,fia->f", traj.masses, traj.velocities ** 2) * AMU_A2_PER_FS2_TO_EV
    assert printed["temperature_source"].startswith("kinetic")
    assert printed["temperature_K"] == pytest.approx(np.mean(2 * ke / (3 * traj.n_atoms * K_B_EV_K)), rel=1e-10)
    for name in ("mdma.npz", "mdma.json", "modes.csv", "running_integral.png", "cumulative.png", "per_mode.png",
                 "heatmap.png"):
        assert (tmp_path / name).is_file(), name
    back = load_mdma(tmp_path / "mdma")
    assert back.mdma_total_cm2_s == pytest.approx(printed["mdma_total_cm2_s"], rel=1e-14)


def test_temperature_from_user_and_from_file(setup, tmp_path):
    root, sc, traj = setup
    r = mdma(root / "run.h5", "--phonons", root / "phonons", "--temperature-K", 450, "--no-plots", "-o", tmp_path / "a")
    assert r["temperature_K"] == 450 and r["temperature_source"].startswith("user")
    write_h5md(tmp_path / "t.h5", synthetic(sc, temperatures=True))
    r = mdma(tmp_path / "t.h5", "--phonons", root / "phonons", "--no-plots", "-o", tmp_path / "b")
    assert r["temperature_K"] == pytest.approx(321.0) and r["temperature_source"].startswith("file")


def test_shuffled_atom_order_is_mapped_by_position(setup, tmp_path):
    root, sc, traj = setup
    perm = np.random.default_rng(2).permutation(traj.n_atoms)
    shuffled = traj.select_atoms(perm)
    wrapped = sc.cell[0] * (np.arange(traj.n_atoms) % 2)[None, :, None]  # half the atoms one cell over
    shuffled = shuffled.replace(positions=shuffled.positions + wrapped)
    write_h5md(tmp_path / "shuffled.h5", shuffled)
    a = mdma(root / "run.h5", "--phonons", root / "phonons", "--no-plots", "-o", tmp_path / "a")
    b = mdma(tmp_path / "shuffled.h5", "--phonons", root / "phonons", "--no-plots", "-o", tmp_path / "b")
    for key in ("collective_diffusivity_cm2_s", "mdma_total_cm2_s", "harmonic_fraction",
                "equal_time_anharmonic_fraction"):
        assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-14), key
    assert b["modal_equipartition"]["mean"] == pytest.approx(a["modal_equipartition"]["mean"], rel=1e-9)


@pytest.mark.parametrize("how, match", [
    ("species", r"shuffled_species.h5: the trajectory \(first frame\) does not match the phonons .* is O but its site"),
    ("cell", r"cell.h5: the trajectory \(first frame\) does not match the phonons .* not a supercell"),
    ("count", r"count.h5: .* holds 31 atoms"),
    ("displaced", r"displaced.h5: .* from the nearest site"),
])
def test_mismatched_atoms_or_cell_is_a_clear_error(setup, tmp_path, how, match):
    root, sc, traj = setup
    if how == "species":  # same positions, Li and O labels swapped on two atoms: atom order does not match
        sym = list(traj.symbols)
        i, j = sym.index("Li"), sym.index("O")
        sym[i], sym[j] = sym[j], sym[i]
        bad = Trajectory(sym, traj.positions, traj.cells, timestep_fs=1.0, velocities=traj.velocities)
        name = "shuffled_species.h5"
    elif how == "cell":
        bad = traj.replace(positions=traj.positions * 1.02, cells=traj.cells * 1.02)
        name = "cell.h5"
    elif how == "count":
        bad = traj.select_atoms(np.arange(1, traj.n_atoms))
        name = "count.h5"
    else:
        pos = traj.positions.copy()
        pos[:, 5] += 1.2
        bad = traj.replace(positions=pos)
        name = "displaced.h5"
    write_h5md(tmp_path / name, bad)
    with pytest.raises(ValueError, match=match):
        mdma(tmp_path / name, "--phonons", root / "phonons", "--no-plots", "-o", tmp_path / "out")
    assert not (tmp_path / "out" / "result.json").exists()


def test_sampling_interval_too_coarse_is_a_clear_error(setup, tmp_path):
    root, sc, traj = setup
    write_h5md(tmp_path / "coarse.h5", synthetic(sc, dt=30.0))  # Nyquist 16.7 THz < f_max 18.4 THz
    with pytest.raises(TrajectoryError, match=r"coarse.h5: frames are 30 fs apart, which resolves only up to "
                                              r"16.67 THz, but the fastest phonon is 18.\d\d THz"):
        mdma(tmp_path / "coarse.h5", "--phonons", root / "phonons", "--no-plots", "-o", tmp_path / "out")
    # the same through --every on a fine file, and for positions-only data (central differences)
    with pytest.raises(TrajectoryError, match="resolves only up to"):
        mdma(root / "run.h5", "--phonons", root / "phonons", "--every", 30, "--no-plots", "-o", tmp_path / "out")
    with pytest.raises(TrajectoryError, match="resolves only up to"):
        mdma(root / "run.h5", "--phonons", root / "phonons", "--every", 30, "--velocities", "positions",
             "--no-plots", "-o", tmp_path / "out")


def test_central_difference_velocities_and_binned_heatmap(setup, tmp_path):
    root, sc, traj = setup
    write_h5md(tmp_path / "pos.h5", synthetic(sc, velocities=False))
    r = mdma(tmp_path / "pos.h5", "--phonons", root / "phonons", "--bins-THz", 2, "-o", tmp_path / "out")
    assert r["velocities_source"] == "central-difference"
    assert r["n_frames"] == traj.n_frames - 2
    assert any("central differences" in n for n in r["notes"])
    assert r["binned_heatmap"] is True and (tmp_path / "out" / "heatmap.png").is_file()
    res = load_mdma(tmp_path / "out" / "mdma")
    assert res.binned_matrix_cm2_s.sum() == pytest.approx(r["mdma_total_cm2_s"], rel=1e-10)  # exact block sums
    edges = frequency_bins(res.frequencies_THz, 2.0)
    np.testing.assert_allclose(res.bin_edges_THz, edges)
    assert edges[0] <= res.frequencies_THz.min() and edges[-1] > res.frequencies_THz.max()


def test_other_input_errors_name_the_problem(setup, tmp_path):
    root, sc, traj = setup
    with pytest.raises(TrajectoryError, match="nowhere.h5: no such file"):
        mdma(tmp_path / "nowhere.h5", "--phonons", root / "phonons", "-o", tmp_path / "o")
    with pytest.raises(ValueError, match="no_phonons: no such file or directory"):
        mdma(root / "run.h5", "--phonons", tmp_path / "no_phonons", "-o", tmp_path / "o")
    with pytest.raises(TrajectoryError, match=r"run.h5: no 'Na' atoms"):
        mdma(root / "run.h5", "--phonons", root / "phonons", "--species", "Na", "-o", tmp_path / "o")
    with pytest.raises(ValueError, match=r"run.h5: correlation window .* longer than one of the blocks"):
        mdma(root / "run.h5", "--phonons", root / "phonons", "--tau-max-ps", 0.2, "-o", tmp_path / "o")
    write_h5md(tmp_path / "untimed.h5", synthetic(sc, velocities=False).replace(timestep_fs=None, times_fs=None))
    with pytest.raises(TrajectoryError, match="frame interval is unknown; give --timestep-fs"):
        mdma(tmp_path / "untimed.h5", "--phonons", root / "phonons", "-o", tmp_path / "o")


# ---- pfc -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def springs(tmp_path_factory):
    """LiGa(SeO3)2 with central Li–O springs, saved as a DFT user would have it: FORCE_CONSTANTS + phonopy_disp.yaml."""
    from phonopy.file_IO import write_FORCE_CONSTANTS

    phonon, atoms, classes = ligaseo_spring_phonons()
    d = tmp_path_factory.mktemp("springs")
    phonon.save(d / "phonopy_disp.yaml", settings={"force_constants": False})
    write_FORCE_CONSTANTS(phonon.force_constants, filename=str(d / "FORCE_CONSTANTS"))
    return d, atoms, classes


def _expected(atoms, classes, directions):
    """Analytic pFC of Φ_LiO = −k b̂b̂ᵀ: bond −k, mpFC −k b̂·m̂, averaged over Li, neighbours and m̂."""
    k = {"O_e": K_OE, "O_c": K_OC}
    out = {"O_e": [], "O_c": []}
    for li, cl in classes.per_mobile.items():
        if li not in directions:
            continue
        for c in ("O_e", "O_c"):
            for o in cl[c]:
                b = atoms.get_distance(li, o, mic=True, vector=True)
                out[c].extend(-k[c] * directions[li] @ (b / np.linalg.norm(b)))
    return {c: np.mean(v) for c, v in out.items()}


def test_pfc_on_a_spring_network_gives_the_analytic_values(springs, tmp_path, capsys):
    d, atoms, classes = springs
    assert run("pfc", "--phonons", d, "--json", "-o", tmp_path) == 0
    r = json.loads(capsys.readouterr().out)
    for key in PFC_CONTRACT:
        assert isinstance(r[key], float), key
    i, j, D = neighbor_list("ijD", atoms, {("Li", "Li"): 5.0})  # first Li shell: 4 sites at 4.65 Å
    dirs = {li: D[i == li] / np.linalg.norm(D[i == li], axis=1, keepdims=True) for li in classes.per_mobile}
    exp = _expected(atoms, classes, dirs)
    assert r["bond_pfc_Oe_eV_A2"] == pytest.approx(-K_OE, abs=1e-8)
    assert r["bond_pfc_Oc_eV_A2"] == pytest.approx(-K_OC, abs=1e-8)
    assert r["spreads"]["bond_pfc_Oe_eV_A2"]["std"] == pytest.approx(0.0, abs=1e-8)
    assert r["mpfc_Oe_eV_A2"] == pytest.approx(exp["O_e"], abs=1e-8)
    assert r["mpfc_Oc_eV_A2"] == pytest.approx(exp["O_c"], abs=1e-8)
    assert r["delta_pfc_eV_A2"] == pytest.approx(exp["O_e"] - exp["O_c"], abs=1e-8)
    assert r["spreads"]["mpfc_Oe_eV_A2"]["n"] == 64 and r["n_mobile"] == 8
    assert r["directions_source"].startswith("structure")
    full = json.loads((tmp_path / "pfc.json").read_text())
    assert len(full["records"]) == 32


def test_pfc_directions_from_hops_in_a_trajectory(springs, tmp_path):
    d, atoms, classes = springs
    rng = np.random.default_rng(4)
    li0 = sorted(classes.per_mobile)[0]
    hop = np.array([1.5, -2.0, 0.5])
    pos = np.repeat(atoms.positions[None], 300, axis=0) + rng.normal(scale=0.01, size=(300, len(atoms), 3))
    pos[150:, li0] += hop
    write_h5md(tmp_path / "hop.h5", Trajectory(atoms.get_chemical_symbols(), pos, np.array(atoms.cell.array)))
    args = parser().parse_args(["pfc", "--phonons", str(d), "--trajectory", str(tmp_path / "hop.h5")])
    from phonion.cli.pfc import run_pfc_command

    r = run_pfc_command(d, trajectory=[tmp_path / "hop.h5"])
    exp = _expected(atoms, classes, {li0: (hop / np.linalg.norm(hop))[None]})
    assert r["n_hops"] == 1 and r["n_mobile_with_directions"] == 1
    assert r["mpfc_Oe_eV_A2"] == pytest.approx(exp["O_e"], abs=2e-3)  # hop vector from noisy window means
    assert r["mpfc_Oc_eV_A2"] == pytest.approx(exp["O_c"], abs=2e-3)
    assert args.func(args) == 0
    still = np.repeat(atoms.positions[None], 300, axis=0)
    write_h5md(tmp_path / "still.h5", Trajectory(atoms.get_chemical_symbols(), still, np.array(atoms.cell.array)))
    with pytest.raises(TrajectoryError, match=r"still.h5: no Li hops found"):
        run_pfc_command(d, trajectory=[tmp_path / "still.h5"])


def test_pfc_errors(springs, setup, tmp_path):
    root, sc, traj = setup
    with pytest.raises(ValueError, match=r"phonons: no O_e or O_c neighbours around Li"):
        run("pfc", "--phonons", root / "phonons")  # LiO3 spring network: no framework cations, no O classes
    d = springs[0]
    with pytest.raises(ValueError, match=r"cannot classify the O sites around Na: mobile species 'Na' is not"):
        run("pfc", "--phonons", d, "--mobile", "Na")


def test_large_cell_path_streams_modes_and_bins_automatically(setup, tmp_path, monkeypatch):
    """Above MAX_MATRIX_MODES the modes are streamed from the commensurate q-points (no 3N × 3N matrix) and
    above BIN_ABOVE_MODES the heat map is binned: same numbers as the small-cell path (thresholds lowered)."""
    from phonion.mdma import mdma as mdma_module
    from phonion.workflows import mdma as cli_module

    root, sc, traj = setup
    a = mdma(root / "run.h5", "--phonons", root / "phonons", "--no-plots", "-o", tmp_path / "a")
    monkeypatch.setattr(mdma_module, "MAX_MATRIX_MODES", 50)
    monkeypatch.setattr(cli_module, "BIN_ABOVE_MODES", 50)
    b = mdma(root / "run.h5", "--phonons", root / "phonons", "-o", tmp_path / "b")
    for key in ("collective_diffusivity_cm2_s", "mdma_total_cm2_s", "harmonic_fraction",
                "equal_time_anharmonic_fraction"):
        assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-14), key
    assert b["mode_class_counts"] == a["mode_class_counts"]
    assert b["binned_heatmap"] is True and any("binned" in n for n in b["notes"])
    res = load_mdma(tmp_path / "b" / "mdma")
    assert res.matrix_cm2_s is None
    assert res.binned_matrix_cm2_s.sum() == pytest.approx(b["mdma_total_cm2_s"], rel=1e-10)
    assert (tmp_path / "b" / "heatmap.png").is_file()
