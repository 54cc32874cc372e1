"""Bad or unusual input to phonons / mdma / pfc: one mapping of MD atoms everywhere, phonopy's DFT files
(FORCE_SETS + POSCAR + DIM, BORN with or without symmetry), one parse of a large phonopy yaml, and the output
directory checked before any force is computed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from phonion.cli.main import main
from phonion.md.io.h5md import write_h5md
from phonion.md.trajectory import Trajectory
from phonion.mdma.phonon_io import load_phonons, save_phonons
from phonion.mdma.phonons import compute_force_constants

QS = [[0, 0, 0], [0.5, 0, 0], [0.2, 0.3, 0.1]]


def _freqs(phonon, qs=QS):
    return np.array([phonon.get_frequencies(q) for q in qs])


def _cu3au() -> Atoms:
    return Atoms("AuCu3", scaled_positions=[[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]],
                 cell=[3.75] * 3, pbc=True)


@pytest.fixture(scope="module")
def cu3au(tmp_path_factory):
    """EMT phonons of Cu3Au (2×2×2), saved; an MD-like run of unit.repeat(2) whose metadata names the
    structure (as phonion md writes it), with one Au 0.7 Å off its site."""
    root = tmp_path_factory.mktemp("cu3au")
    unit = _cu3au()
    unit.write(root / "unit.vasp", format="vasp", direct=True)
    save_phonons(compute_force_constants(unit, EMT(), (2, 2, 2), progress=False), root / "phonons")
    md = unit.repeat((2, 2, 2))
    rng = np.random.default_rng(3)
    n, frames = len(md), 200
    pos = md.positions[None] + rng.normal(scale=0.03, size=(frames, n, 3))
    pos[:, 0] += [0.7, 0.0, 0.0]  # a mobile Au far from its site in the first frame (hot MD)
    vel = rng.normal(scale=0.002, size=(frames, n, 3))
    common = dict(timestep_fs=1.0, velocities=vel, masses=md.get_masses())
    meta = {"source_files": ["run.h5"], "structure": "unit.vasp", "supercell": [2, 2, 2]}
    write_h5md(root / "run.h5", Trajectory(md.get_chemical_symbols(), pos, np.array(md.cell.array),
                                           metadata=meta, **common))
    write_h5md(root / "bare.h5", Trajectory(md.get_chemical_symbols(), pos, np.array(md.cell.array),
                                            metadata={"source_files": ["bare.h5"]}, **common))
    return root


# ---- case 1: map MD atoms by index through the run's own structure; else say which option to loosen ----

def test_mdma_maps_by_the_structure_in_the_run_metadata(cu3au, tmp_path, capsys):
    rc = main(["mdma", str(cu3au / "run.h5"), "--phonons", str(cu3au / "phonons"), "--species", "Au",
               "--no-plots", "-o", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert any("by index" in note for note in result["notes"])


def test_mdma_without_structure_names_the_tolerance_option(cu3au, tmp_path, capsys):
    rc = main(["mdma", str(cu3au / "bare.h5"), "--phonons", str(cu3au / "phonons"), "--species", "Au",
               "--no-plots", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[0].startswith(f"phonion mdma: error: {cu3au / 'bare.h5'}: the trajectory (first frame) does not "
                             "match the phonons")
    assert "--site-tolerance-A" in err[0] and len(err) == 1
    assert not (tmp_path / "out" / "result.json").exists()
    assert main(["mdma", str(cu3au / "bare.h5"), "--phonons", str(cu3au / "phonons"), "--species", "Au",
                 "--site-tolerance-A", "1.0", "--no-plots", "-o", str(tmp_path / "loose")]) == 0


def test_pfc_hop_directions_use_the_same_mapping(cu3au):
    from phonion.workflows.mdma import md_sites
    from phonion.md.io import read_trajectory

    traj = read_trajectory([cu3au / "run.h5"])
    atoms, how = md_sites(traj, "Au", [cu3au / "run.h5"])
    assert how.startswith("index") and np.allclose(atoms.positions, _cu3au().repeat(2).positions)
    atoms, how = md_sites(read_trajectory([cu3au / "bare.h5"]), "Au", [cu3au / "bare.h5"])
    assert how.startswith("position")


# ---- case 2: phonopy's DFT files: FORCE_SETS + POSCAR + DIM, BORN with or without symmetry -------------

def _rocksalt_files(directory, born_all_atoms: bool):
    """FORCE_SETS, POSCAR, phonopy.conf (DIM) and a fake BORN (charges ±1, ε = 1), phonopy's own writers."""
    from phonopy.file_IO import write_FORCE_SETS

    unit = bulk("NiO", "rocksalt", a=4.17, cubic=True)  # 8 atoms, 2 independent
    phonon = compute_force_constants(unit, EMT(), (1, 1, 1), progress=False)
    directory.mkdir()
    write_FORCE_SETS(phonon.dataset, filename=directory / "FORCE_SETS")
    unit.write(directory / "POSCAR", format="vasp", direct=True)
    (directory / "phonopy.conf").write_text("# phonopy settings\nATOM_NAME = Ni O\nDIM = 1 1 1\n")
    rows = [(1 if s == "Ni" else -1) * np.eye(3) for s in unit.get_chemical_symbols()]
    symbols = unit.get_chemical_symbols()
    first = sorted({symbols.index("Ni"), symbols.index("O")})  # the symmetry-independent atoms
    rows = rows if born_all_atoms else [rows[i] for i in first]
    text = "14.400\n" + " ".join(["1.0", "0", "0", "0", "1.0", "0", "0", "0", "1.0"]) + "\n"
    text += "".join(" ".join(f"{x:.1f}" for x in r.ravel()) + "\n" for r in rows)
    (directory / "BORN").write_text(text)
    return phonon


@pytest.mark.parametrize("born_all_atoms", [False, True])
def test_force_sets_with_poscar_dim_and_born(tmp_path, born_all_atoms):
    directory = tmp_path / "dft"
    ref = _rocksalt_files(directory, born_all_atoms)
    back = load_phonons(directory)
    np.testing.assert_allclose(back.force_constants, ref.force_constants, atol=1e-8)
    assert back.nac_params is not None
    for born, symbol in zip(back.nac_params["born"], back.primitive.symbols):
        np.testing.assert_allclose(born, (1 if symbol == "Ni" else -1) * np.eye(3), atol=1e-12)
    f_nac = _freqs(back, [[0.5, 0, 0]])
    (directory / "BORN").unlink()
    np.testing.assert_allclose(_freqs(load_phonons(directory / "FORCE_SETS"), [[0.5, 0, 0]]),
                               _freqs(ref, [[0.5, 0, 0]]), rtol=1e-4)  # phonopy's vs ASE's masses
    assert not np.allclose(f_nac, _freqs(ref, [[0.5, 0, 0]]), atol=1e-3)  # the correction was applied


def test_force_sets_without_supercell_matrix_says_how_to_give_it(tmp_path, capsys):
    directory = tmp_path / "dft"
    _rocksalt_files(directory, False)
    (directory / "phonopy.conf").unlink()
    with pytest.raises(ValueError, match="supercell matrix is unknown.*--supercell"):
        load_phonons(directory)
    assert load_phonons(directory, supercell_matrix=(1, 1, 1)).force_constants.shape == (8, 8, 3, 3)
    (directory / "BORN").write_text("14.4\n1 0 0 0 1 0 0 0 1\n1 0 0 0 1 0 0 0 1\n")  # too few atoms
    with pytest.raises(ValueError, match="BORN: cannot read as a BORN file"):
        load_phonons(directory, supercell_matrix=(1, 1, 1))
    rc = main(["pfc", "--phonons", str(directory), "--mobile", "Ni", "--anion", "O"])
    assert rc == 2
    assert capsys.readouterr().err.splitlines()[0].startswith(
        f"phonion pfc: error: {directory / 'FORCE_SETS'}: the supercell matrix is unknown")


def test_bad_supercell_setting_is_refused():
    from phonion.workflows.mdma import MDMAConfig
    from phonion.workflows.pfc import PFCConfig

    with pytest.raises(ValueError, match="supercell .* takes 3 integers"):
        MDMAConfig(supercell=(2, 2))
    with pytest.raises(ValueError, match="supercell .* takes 3 integers"):
        PFCConfig(supercell=(2, 0, 2))
    assert PFCConfig(supercell=[2, 2, 2]).supercell == (2, 2, 2)


# ---- case 3: a large phonopy yaml is parsed once --------------------------------------------------------

def test_large_phonopy_yaml_is_parsed_once(tmp_path, monkeypatch):
    import yaml

    unit = bulk("Cu", "fcc", a=3.6, cubic=True)
    phonon = compute_force_constants(unit, EMT(), (3, 3, 3), progress=False)  # 108 atoms
    (tmp_path / "p").mkdir()
    phonon.save(tmp_path / "p" / "phonopy_params.yaml", settings={"force_constants": True})
    assert (tmp_path / "p" / "phonopy_params.yaml").stat().st_size > 1_000_000
    calls = []
    real = yaml.load

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(yaml, "load", counting)
    t0 = time.perf_counter()
    back = load_phonons(tmp_path / "p")
    elapsed = time.perf_counter() - t0
    assert len(calls) == 1, f"{len(calls)} yaml parses"
    np.testing.assert_allclose(back.force_constants, phonon.force_constants, atol=1e-6)
    print(f"load_phonons: {elapsed:.2f} s, {len(calls)} parse")


# ---- case 4: the output directory is checked before any force is computed ------------------------------

class CountingEMT(EMT):
    calls = 0

    def calculate(self, *args, **kwargs):
        CountingEMT.calls += 1
        super().calculate(*args, **kwargs)


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_phonons_output_checked_before_forces(tmp_path, capsys, monkeypatch, where):
    from phonion.workflows.phonons import PhononsConfig, run_phonons

    structure = tmp_path / "Cu.cif"
    bulk("Cu", "fcc", a=3.6).write(structure)
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    out = afile if where == "file" else afile / "sub"
    CountingEMT.calls = 0
    monkeypatch.setattr("phonion.core.calculators.resolve_calculator", lambda *a, **k: CountingEMT())
    rc = main(["phonons", str(structure), "--calculator", "emt", "--supercell", "2", "2", "2",
               "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"phonion phonons: error: -o {out}:")
    assert CountingEMT.calls == 0 and afile.read_text() == "keep me\n"
    with pytest.raises(ValueError, match=f"{out}"):
        run_phonons(PhononsConfig(structure=str(structure), calculator="emt", output=str(out)))
    assert CountingEMT.calls == 0
    cfg = PhononsConfig(structure=str(structure), calculator="emt", output=str(tmp_path / "fine"))
    afile2 = tmp_path / "fine"
    afile2.write_text("now a file\n")  # made a file after the config was checked: still refused in time
    with pytest.raises(ValueError, match="exists and is not a directory"):
        run_phonons(cfg)
    assert CountingEMT.calls == 0
