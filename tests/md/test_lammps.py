"""phonion.md.lammps: LAMMPS inputs for the MD protocol, and LAMMPS dumps read back (hand-written files)."""

import re

import ase.io
import h5py
import numpy as np
import pytest

from phonion.md.io import TruncatedFileWarning
from phonion.md.lammps import convert_model_for_lammps, read_lammps_dump, write_lammps_inputs
from phonion.md.sweep import SweepConfig
from phonion.mdma.sites import classify_oxygens
from phonion.core.structures import load_structure

HEADER = "ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n3\nITEM: BOX BOUNDS xy xz yz pp pp pp\n" \
         "0.0 10.5 0.5\n0.0 10.0 0.0\n-1.0 9.0 0.0\nITEM: ATOMS {cols}\n"
# cell rows a=(10,0,0), b=(0.5,10,0), c=(0,0,10); origin (0, 0, -1)
FRAMES = [  # (id, type, x, y, z, ix, iy, iz, vx, vy, vz, fx, fy, fz), ids shuffled
    ["3 1 5.0 5.0 4.0 0 0 0 1.0 0.0 0.0 0.1 0.0 0.0",
     "1 1 1.0 1.0 0.0 0 0 0 -2.0 0.0 0.0 0.0 0.2 0.0",
     "2 2 8.0 2.0 2.0 0 0 0 0.0 3.0 0.0 0.0 0.0 0.3"],
    ["1 1 9.8 1.0 0.0 -1 0 0 -2.0 0.0 0.0 0.0 0.2 0.0",
     "2 2 8.5 2.0 2.0 0 0 0 0.0 3.0 0.0 0.0 0.0 0.3",
     "3 1 5.0 5.0 4.0 0 0 0 1.0 0.0 0.0 0.1 0.0 0.0"],
]
COLS = "id type x y z ix iy iz vx vy vz fx fy fz"


def write_dump(path, frames=FRAMES, cols=COLS, steps=(0, 10), drop=()):
    keep = [i for i, c in enumerate(COLS.split()) if c not in drop]
    text = ""
    for step, rows in zip(steps, frames):
        text += HEADER.format(step=step, cols=cols)
        text += "".join(" ".join(np.array(r.split())[keep]) + "\n" for r in rows)
    path.write_text(text)
    return path


def test_dump_custom_with_image_flags(tmp_path):
    traj = read_lammps_dump(write_dump(tmp_path / "d.dump"), specorder=["Li", "O"], timestep_fs=2.0)
    assert traj.symbols == ("Li", "O", "Li") and traj.n_frames == 2
    np.testing.assert_allclose(traj.cells[0], [[10, 0, 0], [0.5, 10, 0], [0, 0, 10]])
    np.testing.assert_allclose(traj.positions[0, 0], [1.0, 1.0, 1.0])   # sorted by id, minus origin
    np.testing.assert_allclose(traj.positions[1, 0], [-0.2, 1.0, 1.0])  # x + ix · a
    np.testing.assert_allclose(traj.velocities[0, 0], [-2e-3, 0, 0])    # Å/ps -> Å/fs (metal)
    np.testing.assert_allclose(traj.forces[0, 2], [0.1, 0, 0])
    assert traj.stride == 10 and traj.timestep_fs == 2.0
    np.testing.assert_allclose(traj.times_fs, [0.0, 20.0])


def test_dump_custom_unwrapped_columns_elements_and_minimum_image(tmp_path):
    unwrapped = [[r.replace("9.8 1.0 0.0 -1", "-0.2 1.0 0.0 -1") for r in f] for f in FRAMES]
    path = write_dump(tmp_path / "u.dump", unwrapped, "id type xu yu zu vx vy vz fx fy fz",
                      drop=("ix", "iy", "iz"))
    traj = read_lammps_dump(path, specorder=["Li", "O"])
    np.testing.assert_allclose(traj.positions[1, 0], [-0.2, 1.0, 1.0])
    assert traj.times_fs is None
    # no images, wrapped x: unwrapped frame to frame by the minimum image
    wrapped = write_dump(tmp_path / "w.dump", FRAMES, "id type x y z vx vy vz", drop=("ix", "iy", "iz",
                                                                                         "fx", "fy", "fz"))
    traj = read_lammps_dump(wrapped, specorder=["Li", "O"])
    np.testing.assert_allclose(traj.positions[1, 0], [-0.2, 1.0, 1.0])
    assert traj.forces is None
    elements = tmp_path / "e.dump"
    elements.write_text(write_dump(tmp_path / "x.dump").read_text().replace(
        "ITEM: ATOMS id type", "ITEM: ATOMS id element").replace("\n1 1 ", "\n1 Ga ")
        .replace("\n3 1 ", "\n3 Ga ").replace("\n2 2 ", "\n2 Se "))
    assert read_lammps_dump(elements).symbols == ("Ga", "Se", "Ga")
    with pytest.raises(ValueError, match="specorder"):
        read_lammps_dump(tmp_path / "x.dump")


def test_truncated_dump_keeps_complete_frames(tmp_path):
    path = write_dump(tmp_path / "t.dump")
    path.write_text(path.read_text()[:-40])
    with pytest.warns(TruncatedFileWarning, match="frame 1 is incomplete"):
        traj = read_lammps_dump(path, specorder=["Li", "O"])
    assert traj.n_frames == 1


def test_dump_h5md_lammps_style(tmp_path):
    """LAMMPS dump h5md: integer types as species, no unit attributes (metal: ps, Å/ps)."""
    path = tmp_path / "traj.h5"
    pos = np.array([[[1.0, 1, 1], [8, 2, 3], [5, 5, 5]], [[9.8, 1, 1], [8.5, 2, 3], [5, 5, 5]]])
    img = np.array([[[0, 0, 0]] * 3, [[-1, 0, 0], [0, 0, 0], [0, 0, 0]]])
    with h5py.File(path, "w") as f:
        f.create_group("h5md").attrs["version"] = [1, 0]
        g = f.create_group("particles/all")
        box = g.create_group("box")
        box.attrs["dimension"], box.attrs["boundary"] = 3, [b"periodic"] * 3
        box.create_dataset("edges", data=np.array([10.0, 10.0, 10.0]))
        for name, value in (("position", pos), ("image", img), ("velocity", np.ones_like(pos)),
                            ("force", np.ones_like(pos)), ("species", np.array([[1, 2, 1]] * 2))):
            e = g.create_group(name)
            e.create_dataset("value", data=value)
            e.create_dataset("step", data=np.array([0, 10]))
            e.create_dataset("time", data=np.array([0.0, 0.02]))  # ps
    traj = read_lammps_dump(path, specorder=["Li", "O"])
    assert traj.symbols == ("Li", "O", "Li")
    np.testing.assert_allclose(traj.positions[1, 0], [-0.2, 1, 1])
    np.testing.assert_allclose(traj.velocities, 1e-3)
    np.testing.assert_allclose(traj.times_fs, [0.0, 20.0])
    assert traj.timestep_fs == pytest.approx(2.0)


def test_write_lammps_inputs_protocol(tmp_path):
    cfg = SweepConfig.from_dict({"temperatures_K": [600, 900], "seeds": [0], "fix": ["none", "O_e"],
                                 "ensemble": "nvt-nhc", "timestep_fs": 2.0, "steps": 5000,
                                 "equilibration_steps": 500, "sample_every": 10, "thermostat_time_fs": 100,
                                 "output": str(tmp_path / "out")})
    written = write_lammps_inputs(cfg, "run/model.model", tmp_path / "lmp")
    assert written["specorder"] == ["Li", "O", "Ga", "Se"] and len(written["inputs"]) == 4
    data = ase.io.read(written["data"], format="lammps-data", atom_style="atomic")
    ref = load_structure("LiGa_SeO3_2")
    assert len(data) == 80 and sorted(data.get_chemical_symbols()) == sorted(ref.get_chemical_symbols())
    fixed = (tmp_path / "lmp" / "T900_seed0_fixO_e" / "in.lammps").read_text()
    free = (tmp_path / "lmp" / "T600_seed0_fixnone" / "in.lammps").read_text()
    for text in (fixed, free):
        assert "pair_style      mace no_domain_decomposition" in text
        assert "pair_coeff      * * run/model.model-lammps.pt Li O Ga Se" in text
        assert "# pair_style    mliap unified run/model.model-mliap_lammps.pt 0" in text
        assert "timestep        0.002" in text and "run             500\nreset_timestep  0" in text
        assert "dump            traj all h5md 10 traj.h5 position image velocity force species" in text
        assert "# dump          traj all custom 10 traj.dump id type element xu yu zu" in text
    ids = [int(i) - 1 for i in re.search(r"group           fixed id ([\d ]+)", fixed).group(1).split()]
    assert ids == classify_oxygens(ref).O_e.tolist()
    assert "fix             freeze fixed setforce 0.0 0.0 0.0" in fixed
    assert "velocity        fixed set 0.0 0.0 0.0" in fixed
    assert "velocity        mobile create ${T} ${seed} temp Tmobile mom yes rot no" in fixed
    assert "fix             md mobile nvt temp ${T} ${T} 0.1" in fixed and "variable        T equal 900" in fixed
    assert "compute_modify  Tmobile extra/dof 0" in fixed and "fix_modify      md temp Tmobile" in fixed
    assert "velocity        all create ${T} ${seed} mom yes rot no" in free and "group" not in free
    bussi = write_lammps_inputs(SweepConfig.from_dict({"ensemble": "nvt-bussi", "output": "x"}),
                                "m.model-lammps.pt", tmp_path / "b")["inputs"][0].read_text()
    assert "fix             csvr all temp/csvr ${T} ${T} 0.1 2" in bussi and "m.model-lammps.pt Li" in bussi


@pytest.mark.slow
def test_convert_tiny_mace_model_with_maces_converter(tmp_path):
    """mace's own create_lammps_model on a tiny untrained MACE (libtorch format)."""
    import mace  # noqa: F401  (before e3nn)
    import torch
    from e3nn import o3
    from mace import modules

    z = [3, 8, 31, 34]
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # restored below: nothing leaks into other tests
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    try:
        model = _tiny_mace(modules, block, o3, torch, z)
    finally:
        torch.set_default_dtype(dtype)
    torch.save(model, tmp_path / "tiny.model")
    out = convert_model_for_lammps(tmp_path / "tiny.model")
    assert out.name == "tiny.model-lammps.pt" and out.stat().st_size > 0
    assert torch.jit.load(str(out)).r_max.item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="no such MACE model"):
        convert_model_for_lammps(tmp_path / "missing.model")


@pytest.mark.slow
def test_md_with_a_mace_model_spec(tmp_path):
    """The mlip -> md chain: ``mace:<model>`` SPEC through run_md, fixed O_c, H5MD labelled."""
    import mace  # noqa: F401  (before e3nn)
    import torch
    from e3nn import o3
    from mace import modules

    from phonion.md.driver import MDConfig, run_md
    from phonion.md.io.h5md import read_h5md

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = _tiny_mace(modules, modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
                           o3, torch, [3, 8, 31, 34])
    finally:
        torch.set_default_dtype(dtype)
    torch.save(model, tmp_path / "tiny.model")
    cfg = MDConfig(calculator=f"mace:{tmp_path / 'tiny.model'}?device=cpu", temperature_K=300.0, steps=6,
                   sample_every=2, checkpoint_every=2, fix="O_c", output=str(tmp_path / "run"))
    traj = read_h5md(run_md(cfg, progress=False).trajectory)
    assert traj.n_frames == 4 and traj.metadata["calculator"].startswith("MACE")
    assert traj.metadata["fix"] == "O_c" and len(traj.metadata["fixed_indices"]) == 16


def _tiny_mace(modules, block, o3, torch, z):
    return modules.ScaleShiftMACE(
        r_max=4.0, num_bessel=4, num_polynomial_cutoff=3, max_ell=1, interaction_cls=block,
        interaction_cls_first=block, num_interactions=1, num_elements=4, hidden_irreps=o3.Irreps("8x0e"),
        MLP_irreps=o3.Irreps("4x0e"), atomic_energies=np.zeros(4), avg_num_neighbors=10.0,
        atomic_numbers=z, correlation=2, gate=torch.nn.functional.silu, atomic_inter_scale=1.0,
        atomic_inter_shift=0.0)
