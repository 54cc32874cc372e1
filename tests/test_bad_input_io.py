"""Bad trajectory / structure input is refused with one clear line (exit code 2), never analysed.

Inputs are made here: small XDATCAR files of a synthetic run (Li random walk, O vibrating), an
H5MD file with a damaged compressed chunk, a structure written without a cell.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from ase import Atoms

from phonion.cli.main import main
from phonion.md.io import read_trajectory
from phonion.md.trajectory import Trajectory, TrajectoryError

L = 10.0
N_LI, N_O = 8, 8


def _run(n_frames=60, seed=0):
    """Unwrapped Cartesian positions (F, N, 3): Li walk 0.3 Å/frame, O vibrate 0.05 Å about sites."""
    rng = np.random.default_rng(seed)
    sites = rng.uniform(0, L, (N_LI + N_O, 3))
    steps = rng.normal(0, 0.3, (n_frames, N_LI, 3))
    steps[0] = 0
    li = sites[:N_LI] + np.cumsum(steps, axis=0)
    o = sites[N_LI:] + rng.normal(0, 0.05, (n_frames, N_O, 3))
    return np.concatenate([li, o], axis=1)


def _xdatcar(path, positions, numbers, cell=None, edit=None):
    """Write an XDATCAR (VASP 5 layout) of Cartesian ``positions`` with configuration ``numbers``."""
    cell = np.eye(3) * L if cell is None else np.asarray(cell, dtype=float)
    lines = ["synthetic", "1.0"] + [" ".join(f"{x:.6f}" for x in row) for row in cell]
    lines += ["Li O", f"{N_LI} {N_O}"]
    frac = (positions / L) % 1.0
    for k, (n, fr) in enumerate(zip(numbers, frac)):
        lines.append(f"Direct configuration= {n:5d}")
        rows = [" ".join(f"{x:.8f}" for x in atom) for atom in fr]
        if edit is not None and k == edit[0]:
            rows[edit[1]] = edit[2]
        lines += rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _first_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    return err[0]


@pytest.fixture
def pieces(tmp_path):
    """r1: frames 0–29, r2: frames 30–59 of one run, each numbered from 1 (a VASP restart)."""
    pos = _run()
    r1 = _xdatcar(tmp_path / "r1" / "XDATCAR", pos[:30], range(1, 31))
    r2 = _xdatcar(tmp_path / "r2" / "XDATCAR", pos[30:], range(1, 31))
    return pos, r1, r2


# ---- case 1: pieces of a run ---------------------------------------------------------------
def test_pieces_in_order_are_joined(pieces):
    pos, r1, r2 = pieces
    joined = read_trajectory([r1, r2], timestep_fs=1.0)
    assert joined.n_frames == 60
    np.testing.assert_allclose(joined.positions - joined.positions[0], pos - pos[0], atol=1e-5)


def test_restart_pieces_in_wrong_order(pieces, capsys):
    _, r1, r2 = pieces
    line = _first_error(capsys, ["inspect", str(r2), str(r1), "--timestep-fs", "1"])
    assert line.startswith(f"phonion inspect: error: {r1} does not continue where {r2} ends")
    assert "give the pieces in time order" in line
    line = _first_error(capsys, ["diffusion", str(r2), str(r1), "--timestep-fs", "1", "--temperature-K", "300"])
    assert line.startswith(f"phonion diffusion: error: {r1} does not continue where {r2} ends")


def test_numbered_pieces_in_wrong_order(tmp_path, capsys):
    pos = _run()
    r1 = _xdatcar(tmp_path / "r1" / "XDATCAR", pos[:30], range(1, 31))
    r2 = _xdatcar(tmp_path / "r2" / "XDATCAR", pos[30:], range(31, 61))
    read_trajectory([r1, r2], timestep_fs=1.0)  # continuous numbering: fine
    line = _first_error(capsys, ["inspect", str(r2), str(r1), "--timestep-fs", "1"])
    assert line == (f"phonion inspect: error: {r2} starts at configuration 31 but {r1}, given after it, "
                    "starts at 1: give the pieces in time order")


def test_gap_and_overlap(tmp_path, capsys):
    pos = _run()
    r1 = _xdatcar(tmp_path / "r1" / "XDATCAR", pos[:30], range(1, 31))
    r3 = _xdatcar(tmp_path / "r3" / "XDATCAR", pos[40:], range(41, 61))
    line = _first_error(capsys, ["inspect", str(r1), str(r3), "--timestep-fs", "1"])
    assert line.startswith(f"phonion inspect: error: {r1} ends at configuration 30 but {r3} starts at 41: "
                           "configurations in between are missing")
    ov = _xdatcar(tmp_path / "ov" / "XDATCAR", pos[20:], range(21, 61))
    line = _first_error(capsys, ["inspect", str(r1), str(ov), "--timestep-fs", "1"])
    assert line.startswith(f"phonion inspect: error: {ov} starts with frame 20 of {r1} (the pieces overlap")


def test_same_file_twice(pieces, tmp_path, capsys):
    _, r1, _ = pieces
    line = _first_error(capsys, ["diffusion", str(r1), str(r1), "--timestep-fs", "1", "--temperature-K", "300"])
    assert line == (f"phonion diffusion: error: {r1} is given twice (as piece 1 and 2); "
                    "give each piece of the run once")
    copy = tmp_path / "copy" / "XDATCAR"
    copy.parent.mkdir()
    shutil.copy(r1, copy)
    line = _first_error(capsys, ["inspect", str(r1), str(copy), "--timestep-fs", "1"])
    assert line.startswith(f"phonion inspect: error: {copy} holds the same frames as {r1}")


# ---- cases 2, 3: non-finite numbers, singular cell ---------------------------------------------
@pytest.mark.parametrize("bad", ["nan 0.5 0.5", "0.1 inf 0.2", "NaN NaN NaN"])
def test_non_finite_coordinate(tmp_path, capsys, bad):
    path = _xdatcar(tmp_path / "XDATCAR", _run(10), range(1, 11), edit=(4, 3, bad))
    line = _first_error(capsys, ["inspect", str(path), "--timestep-fs", "1"])
    assert line.startswith(f"phonion inspect: error: {path}: positions hold a non-finite value")
    assert "at frame 4, atom 3;" in line


def test_singular_cell(tmp_path, capsys):
    cell = [[L, 0, 0], [0, L, 0], [L, L, 0]]
    path = _xdatcar(tmp_path / "XDATCAR", _run(10), range(1, 11), cell=cell)
    line = _first_error(capsys, ["inspect", str(path), "--timestep-fs", "1"])
    assert line.startswith(f"phonion inspect: error: {path}: the periodic cell of frame 0 is singular")


def _traj(n=12, **extra):
    return Trajectory(symbols=("Li",) * N_LI + ("O",) * N_O, positions=_run(n), cells=np.eye(3) * L,
                      timestep_fs=1.0, **extra)


@pytest.mark.parametrize("field", ["forces", "velocities", "energies"])
def test_non_finite_in_h5md(tmp_path, capsys, field):
    from phonion.md.io.h5md import write_h5md

    shape = (12,) if field == "energies" else (12, N_LI + N_O, 3)
    values = np.zeros(shape)
    values[7] = np.nan  # a frame without the quantity: allowed
    values[(5, 2, 1) if field != "energies" else (5,)] = np.inf
    path = write_h5md(tmp_path / "run.h5", _traj(**{field: values}))
    line = _first_error(capsys, ["inspect", str(path)])
    assert line.startswith(f"phonion inspect: error: {path}: {field} hold a non-finite value (inf) at frame 5")
    values[5] = 0.0
    write_h5md(path, _traj(**{field: values}))
    assert main(["inspect", str(path)]) == 0  # all-NaN rows only: missing data, not damage


# ---- case 4: structure without a cell -------------------------------------------------------
def test_structure_without_cell(tmp_path, capsys):
    from phonion.core.structures import load_structure
    from phonion.mdma.sites import classify_oxygens

    atoms = load_structure("LiGa_SeO3_2")
    path = tmp_path / "molecule.xyz"
    Atoms(atoms.get_chemical_symbols(), positions=atoms.positions).write(path, format="xyz")
    line = _first_error(capsys, ["sites", str(path)])
    assert line.startswith(f"phonion sites: error: {path}: the structure has no 3-D periodic cell")
    with pytest.raises(ValueError, match="classify_oxygens: the structure has no 3-D periodic cell"):
        classify_oxygens(Atoms(atoms.get_chemical_symbols(), positions=atoms.positions))


# ---- case 5: damaged H5MD chunk ----------------------------------------------------------------
def _damaged_h5md(tmp_path):
    from phonion.md.io.h5md import write_h5md

    traj = _traj(200, temperatures_K=np.full(200, 300.0))
    path = write_h5md(tmp_path / "run.h5", traj, chunk_frames=16)
    with h5py.File(path, "r") as f:
        info = f["particles/all/position/value"].id.get_chunk_info(1)
    raw = bytearray(path.read_bytes())
    mid = info.byte_offset + info.size // 2
    raw[mid:mid + 64] = bytes(b ^ 0xFF for b in raw[mid:mid + 64])
    path.write_bytes(bytes(raw))
    return path


def test_damaged_h5md_chunk(tmp_path, capsys):
    path = _damaged_h5md(tmp_path)
    want = (f"{path}: the file is damaged (HDF5 could not read or decompress "
            "/particles/all/position/value")
    for argv in (["inspect", str(path)], ["diffusion", str(path), "--temperature-K", "300"]):
        line = _first_error(capsys, argv)
        assert line.startswith(f"phonion {argv[0]}: error: {want}"), line
        assert line.endswith("re-convert it or restore it from a copy")
    from phonion.md.io.h5md import H5MDReader

    reader = H5MDReader(path)
    reader.read(frames=slice(0, 16))  # the undamaged first chunk still reads
    with pytest.raises(TrajectoryError, match="the file is damaged"):
        list(reader.iter_chunks(32))


def test_concatenate_checks_pieces():
    from phonion.md.trajectory import concatenate

    whole = _traj(40)
    a, b = whole.select_frames(slice(0, 20)), whole.select_frames(slice(20, 40))
    assert concatenate([a, b], check=True).n_frames == 40
    with pytest.raises(TrajectoryError, match=r"^piece 2 does not continue where piece 1 ends"):
        concatenate([b, a], check=True)
    with pytest.raises(TrajectoryError, match=r"^piece 2 starts with the last frame of piece 1"):
        concatenate([a, whole.select_frames(slice(19, 40))], check=True)
    assert concatenate([b, a]).n_frames == 40  # built in code (no source files): not checked by default
    named = [p.replace(metadata={"source_files": [n]}) for p, n in ((b, "b.xyz"), (a, "a.xyz"))]
    with pytest.raises(TrajectoryError, match=r"^a.xyz does not continue where b.xyz ends"):
        concatenate(named)
