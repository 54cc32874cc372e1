"""The H5MD store: round trip, streaming, windows, restart, crash safety, foreign files."""

from __future__ import annotations

import tracemalloc
import warnings

import h5py
import numpy as np
import pytest

from phonion.md.io import TruncatedFileWarning, read_trajectory
from phonion.md.io.h5md import H5MDReader, H5MDWriter, clear_consistency_flags, read_h5md, write_h5md
from phonion.md.trajectory import Trajectory, TrajectoryError

ARRAYS = ("positions", "cells", "times_fs", "velocities", "forces", "energies", "stress",
          "temperatures_K", "masses")
SYMBOLS = ("Li",) * 6 + ("P", "S", "S", "I")


def make_traj(n_frames=40, symbols=SYMBOLS, seed=0, **kw) -> Trajectory:
    rng = np.random.default_rng(seed)
    n = len(symbols)
    pos = np.cumsum(rng.normal(scale=0.3, size=(n_frames, n, 3)), axis=0) + rng.uniform(0, 8, (n, 3))
    cells = np.diag([8.0, 8.5, 9.0]) + rng.normal(scale=0.02, size=(n_frames, 3, 3))  # variable cell
    forces = rng.normal(size=(n_frames, n, 3))
    forces[[3, n_frames - 3]] = np.nan  # frames without forces (NWRITE=0 style)
    energies = rng.normal(size=n_frames)
    energies[5] = np.nan
    args = dict(symbols=symbols, positions=pos, cells=cells, timestep_fs=2.0, stride=3,
                velocities=rng.normal(size=(n_frames, n, 3)), forces=forces, energies=energies,
                stress=rng.normal(size=(n_frames, 3, 3)), temperatures_K=rng.uniform(600, 800, n_frames),
                metadata={"format": "xdatcar", "source_files": ["run1/XDATCAR.gz"], "note": "Å ok",
                          "timestep_fs_source": "user", "nested": {"a": [1, 2.5]}})
    args.update(kw)
    return Trajectory(**args)


def assert_same(a: Trajectory, b: Trajectory, names=ARRAYS):
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.symbols == b.symbols


def test_round_trip_all_fields(tmp_path):
    traj = make_traj()
    out = write_h5md(tmp_path / "out.h5", traj)
    back = read_h5md(out)
    assert_same(back, traj)
    assert (back.timestep_fs, back.stride, back.pbc) == (2.0, 3, traj.pbc)
    assert back.metadata["source_files"] == [str(out)] and back.metadata["format"] == "h5md"
    assert back.metadata["converted_from"] == {"format": "xdatcar", "source_files": ["run1/XDATCAR.gz"]}
    stored = {k: v for k, v in back.metadata.items() if k not in ("source_files", "format", "converted_from")}
    assert stored == {k: v for k, v in traj.metadata.items() if k not in ("source_files", "format")}
    with h5py.File(out) as f:  # H5MD 1.1 layout
        assert list(f["h5md"].attrs["version"]) == [1, 1]
        assert f["h5md/creator"].attrs["name"] == b"phonion"
        assert list(f["particles/all/species"][()]) == [3] * 6 + [15, 16, 16, 53]
        assert list(f["particles/all/box"].attrs["boundary"]) == [b"periodic"] * 3
        pos = f["particles/all/position/value"]
        assert pos.maxshape == (None, 10, 3) and pos.compression == "gzip"
        assert pos.attrs["unit"] == b"Angstrom" and f["particles/all/position/time"].attrs["unit"] == b"fs"
        assert list(f["particles/all/position/step"][:3]) == [0, 3, 6]
        assert f["observables/stress/value"].shape == (40, 3, 3)
    # a second round trip keeps the first provenance
    again = read_h5md(write_h5md(tmp_path / "again.h5", back))
    assert again.metadata["converted_from"]["format"] == "xdatcar"


def test_round_trip_minimal_no_timestep(tmp_path):
    traj = Trajectory(symbols=("Ti", "Ti"), positions=np.arange(30.0).reshape(5, 2, 3), cells=np.eye(3) * 4,
                      stride=10, pbc=(True, True, False))
    back = read_trajectory(write_h5md(tmp_path / "min.h5", traj))
    assert_same(back, traj)
    assert back.timestep_fs is None and back.stride == 10 and back.pbc == (True, True, False)
    assert back.velocities is None and back.energies is None


def test_streamed_blocks_equal_one_shot(tmp_path):
    traj = make_traj(n_frames=100)
    one = read_h5md(write_h5md(tmp_path / "one.h5", traj, chunk_frames=16))
    with H5MDWriter(tmp_path / "stream.h5", traj.symbols, traj.masses, timestep_fs=2.0, stride=3,
                    metadata=traj.metadata, chunk_frames=16) as w:
        a = 0
        for size in (1, 7, 16, 3, 40, 33):
            s = slice(a, a + size)
            w.append(traj.positions[s], traj.cells[s], velocities=traj.velocities[s], forces=traj.forces[s],
                     energies=traj.energies[s], stress=traj.stress[s], temperatures_K=traj.temperatures_K[s])
            a += size
        assert w.n_frames == 100
    stream = read_h5md(tmp_path / "stream.h5")
    assert_same(stream, one)
    # single frames without a frame axis; missing quantities are stored as NaN
    with H5MDWriter(tmp_path / "single.h5", SYMBOLS, timestep_fs=1.0) as w:
        w.append(traj.positions[0], traj.cells[0], energies=np.float64(-3.0))
        w.append(traj.positions[1], np.diag(traj.cells[1]), forces=traj.forces[1])
    single = read_h5md(tmp_path / "single.h5")
    assert single.n_frames == 2 and np.isnan(single.forces[0]).all() and not np.isnan(single.forces[1]).any()
    assert np.isnan(single.energies[1]) and single.energies[0] == -3.0
    np.testing.assert_array_equal(single.cells[1], np.diag(np.diag(traj.cells[1])))
    np.testing.assert_array_equal(single.times_fs, [0.0, 1.0])


def test_window_read_equals_full_slice(tmp_path):
    traj = make_traj(n_frames=60)
    path = write_h5md(tmp_path / "w.h5", traj, chunk_frames=8)
    full = read_h5md(path)
    reader = H5MDReader(path)
    assert (reader.n_frames, reader.n_atoms, reader.symbols, reader.stride) == (60, 10, SYMBOLS, 3)
    atoms = [9, 2, 7, 0]  # unsorted: h5py needs increasing indices, the reader re-orders
    for frames, ref_frames in [(slice(5, 41, 3), slice(5, 41, 3)), (slice(-10, None), slice(50, 60)),
                               (np.array([4, 6, 8, 10]), slice(4, 11, 2)), (7, slice(7, 8))]:
        win = reader.read(frames=frames, atoms=atoms)
        ref = full.select_frames(ref_frames).select_atoms(atoms)
        assert_same(win, ref)
        assert win.stride == ref.stride and win.symbols == ("I", "Li", "S", "Li")
    assert_same(reader.read(atoms=[3, 4, 5]), full.select_atoms([3, 4, 5]))
    with pytest.raises(TrajectoryError, match="w.h5"):
        reader.read(frames=[1, 2, 5])
    with pytest.raises(TrajectoryError, match="out of range"):
        reader.read(atoms=[10])


def test_window_read_does_not_load_whole_file(tmp_path):
    n_frames, n_atoms = 2000, 200
    rng = np.random.default_rng(1)
    path = tmp_path / "big.h5"
    with H5MDWriter(path, ["Li"] * n_atoms, timestep_fs=1.0, chunk_frames=64, fields=("position",),
                    observables=()) as w:
        for a in range(0, n_frames, 500):
            block = np.arange(a, a + 500)[:, None, None] + rng.random((500, n_atoms, 3))
            w.append(block, np.eye(3) * 20.0)
    full_bytes = n_frames * n_atoms * 3 * 8  # 9.6 MB of positions
    reader = H5MDReader(path)
    tracemalloc.start()
    win = reader.read(frames=slice(1000, 1010))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert win.n_frames == 10
    assert np.all(np.floor(win.positions[:, :, 0]) == np.arange(1000, 1010)[:, None])
    np.testing.assert_array_equal(win.times_fs, np.arange(1000, 1010, dtype=float))
    assert peak < full_bytes / 20, peak
    tracemalloc.start()
    total = sum(chunk.n_frames for chunk in reader.iter_chunks(100))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == n_frames and peak < full_bytes / 5, peak


def test_iter_chunks_matches_full_read(tmp_path):
    traj = make_traj(n_frames=45)
    path = write_h5md(tmp_path / "c.h5", traj)
    chunks = list(H5MDReader(path).iter_chunks(10, atoms=[8, 1]))
    assert [c.n_frames for c in chunks] == [10, 10, 10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([c.positions for c in chunks]), traj.positions[:, [8, 1]])
    np.testing.assert_array_equal(np.concatenate([c.times_fs for c in chunks]), traj.times_fs)


def test_append_resume_and_truncate(tmp_path):
    traj = make_traj(n_frames=20)
    path = tmp_path / "run.h5"
    kw = dict(timestep_fs=2.0, stride=3)
    with H5MDWriter(path, SYMBOLS, append=True, **kw) as w:  # append to a missing file creates it
        w.append(traj.positions[:10], traj.cells[:10], velocities=traj.velocities[:10])
    with H5MDWriter(path, SYMBOLS, append=True, **kw) as w:  # a restart from the checkpoint at frame 6
        assert w.n_frames == 10
        w.truncate(6)
        w.append(traj.positions[6:20], traj.cells[6:20], velocities=traj.velocities[6:20],
                 forces=traj.forces[6:20])
    back = read_h5md(path)
    assert back.n_frames == 20
    assert_same(back, traj, names=("positions", "cells", "velocities", "times_fs"))
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["particles/all/position/step"][()], np.arange(20) * 3)
    assert np.isnan(back.forces[:6]).all()
    np.testing.assert_array_equal(back.forces[6:], traj.forces[6:])
    with pytest.raises(TrajectoryError, match="run.h5.*cannot append"):
        H5MDWriter(path, ("Li",) * 10, append=True)
    with pytest.raises(TrajectoryError, match="run.h5.*timestep"):
        H5MDWriter(path, SYMBOLS, append=True, timestep_fs=1.0)
    with H5MDWriter(path, SYMBOLS, append=True) as w:
        with pytest.raises(TrajectoryError, match="steps"):
            w.append(traj.positions[0], traj.cells[0], steps=[3])
        with pytest.raises(TrajectoryError, match="cannot truncate"):
            w.truncate(25)


def test_killed_mid_append_reads_shortest(tmp_path):
    traj = make_traj(n_frames=30)
    path = write_h5md(tmp_path / "killed.h5", traj)
    with h5py.File(path, "r+") as f:  # a kill between two dataset resizes
        f["particles/all/force/value"].resize(26, axis=0)
    with pytest.warns(TruncatedFileWarning, match="killed.h5"):
        back = read_h5md(path)
    assert back.n_frames == 26
    assert_same(back, traj.select_frames(slice(0, 26)))
    with pytest.warns(TruncatedFileWarning):  # resuming cuts the others back before appending
        with H5MDWriter(path, SYMBOLS, append=True) as w:
            assert w.n_frames == 26
            w.append(traj.positions[26:], traj.cells[26:], forces=traj.forces[26:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = read_h5md(path)
    np.testing.assert_array_equal(again.positions, traj.positions)


def _foreign(path, *, image=True, species="int", fixed_time=False, edges="fixed"):
    """An H5MD file as another tool writes it: nm, ps, wrapped positions, atomic-number species."""
    rng = np.random.default_rng(5)
    n_frames, n = 25, 6
    box_nm = np.array([1.0, 1.2, 1.1])
    true_A = np.cumsum(rng.normal(scale=0.6, size=(n_frames, n, 3)), axis=0) + rng.uniform(0, 10, (n, 3))
    img = np.floor(true_A / (10 * box_nm))
    wrapped_nm = (true_A - img * 10 * box_nm) / 10
    steps = 100 + 10 * np.arange(n_frames)
    with h5py.File(path, "w") as f:
        f.create_group("h5md").attrs["version"] = [1, 1]
        f["h5md"].create_group("creator").attrs.update({"name": "othertool", "version": "2.0"})
        g = f.create_group("particles/atoms")

        def element(parent, name, value, unit=None, steps_=steps):
            eg = parent.create_group(name)
            if fixed_time:
                eg["step"], eg["time"] = 10, 0.01
                eg["step"].attrs["offset"], eg["time"].attrs["offset"] = 100, 0.1
            else:
                eg["step"], eg["time"] = steps_, steps_ * 0.001
            eg["time"].attrs["unit"] = "ps"
            eg["value"] = value
            if unit:
                eg["value"].attrs["unit"] = unit

        element(g, "position", wrapped_nm, "nm")
        if image:
            element(g, "image", img.astype(np.int32))
        element(g, "velocity", np.full((n_frames, n, 3), 2.0), "nm ps-1")
        element(g, "force", np.full((n_frames, n, 3), 964.85332), "kJ mol-1 nm-1")
        if species == "int":
            g["species"] = np.array([3, 3, 3, 16, 16, 15], dtype=np.int32)
        elif species == "bytes":
            g["species"] = np.array([b"Li", b"Li", b"Li", b"S", b"S", b"P"])
        box = g.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = np.array([b"periodic"] * 3)
        if edges == "fixed":
            box["edges"] = box_nm
            box["edges"].attrs["unit"] = "nm"
        else:
            element(box, "edges", np.broadcast_to(np.diag(box_nm), (n_frames, 3, 3)).copy(), "nm")
        if not fixed_time:  # energies at every other position step: matched by step
            element(f.create_group("observables"), "potential_energy", np.arange(13.0) * 96.485332, "kJ mol-1",
                    steps_=steps[::2])
    return true_A


def test_foreign_h5md_units_image_species(tmp_path):
    path = tmp_path / "lammps_like.h5"
    true_A = _foreign(path)
    traj = read_trajectory(path)
    np.testing.assert_allclose(traj.positions, true_A, atol=1e-12)
    assert traj.symbols == ("Li", "Li", "Li", "S", "S", "P") and traj.pbc == (True, True, True)
    np.testing.assert_allclose(traj.cells[0], np.diag([10.0, 12.0, 11.0]))
    np.testing.assert_allclose(traj.velocities, 0.02)
    np.testing.assert_allclose(traj.forces, 1.0, rtol=1e-6)  # 964.85 kJ/mol/nm = 1 eV/Å
    np.testing.assert_allclose(traj.energies[::2], np.arange(13.0), rtol=1e-6)
    assert np.isnan(traj.energies[1::2]).all()
    np.testing.assert_allclose(traj.times_fs, 100.0 + 10 * np.arange(25))
    assert traj.stride == 10 and traj.timestep_fs == pytest.approx(1.0)
    assert traj.metadata["creator"] == "othertool 2.0"
    win = H5MDReader(path).read(frames=slice(3, 20, 4), atoms=[5, 0])
    np.testing.assert_allclose(win.positions, true_A[3:20:4][:, [5, 0]], atol=1e-12)
    np.testing.assert_allclose(win.energies, traj.energies[3:20:4])


@pytest.mark.parametrize("edges", ["fixed", "time-dependent"])
def test_foreign_wrapped_without_image_is_unwrapped(tmp_path, edges):
    path = tmp_path / "mdanalysis_like.h5"
    true_A = _foreign(path, image=False, species="bytes", fixed_time=True, edges=edges)
    reader = H5MDReader(path)
    full = reader.read()
    np.testing.assert_allclose(full.positions - full.positions[0], true_A - true_A[0], atol=1e-9)
    np.testing.assert_allclose(full.times_fs, 100.0 + 10 * np.arange(25))
    assert full.stride == 10 and full.timestep_fs == pytest.approx(1.0)
    # windows and chunks continue the same unwrapped path as the full read
    np.testing.assert_allclose(reader.read(frames=slice(7, 25, 3), atoms=[4, 1]).positions,
                               full.positions[7:25:3][:, [4, 1]], atol=1e-9)
    chunks = np.concatenate([c.positions for c in reader.iter_chunks(4)])
    np.testing.assert_allclose(chunks, full.positions, atol=1e-9)


def test_foreign_without_species_names_the_file(tmp_path):
    path = tmp_path / "nospecies.h5"
    _foreign(path, species=None)
    with pytest.raises(TrajectoryError, match=r"nospecies\.h5.*no species record"):
        read_h5md(path)


def test_foreign_unknown_unit_warns(tmp_path):
    path = tmp_path / "odd.h5"
    _foreign(path)
    with h5py.File(path, "r+") as f:
        f["particles/atoms/velocity/value"].attrs["unit"] = "furlong fortnight-1"
    with pytest.warns(UserWarning, match="unknown velocity unit 'furlong fortnight-1'"):
        traj = read_h5md(path)
    np.testing.assert_allclose(traj.velocities, 2.0)


def test_particle_group_choice(tmp_path):
    path = tmp_path / "groups.h5"
    _foreign(path)
    with h5py.File(path, "r+") as f:
        f.copy("particles/atoms", "particles/solvent")
    with pytest.raises(TrajectoryError, match=r"groups\.h5.*\['atoms', 'solvent'\]"):
        H5MDReader(path)
    assert H5MDReader(path, particles_group="solvent").n_atoms == 6
    with pytest.raises(TrajectoryError, match="no particle group 'x'"):
        H5MDReader(path, particles_group="x")


class _Broken:
    """Looks like a Trajectory until its positions are read."""

    def __init__(self, traj):
        self._t = traj

    def __getattr__(self, name):
        return getattr(self._t, name)

    @property
    def positions(self):
        raise RuntimeError("disk full")


def test_write_h5md_is_atomic(tmp_path, monkeypatch):
    traj = make_traj(n_frames=10)
    out = tmp_path / "OUT.h5"
    with pytest.raises(RuntimeError, match="disk full"):
        write_h5md(out, _Broken(traj))
    assert list(tmp_path.iterdir()) == []
    write_h5md(out, traj)
    before = out.read_bytes()
    calls = []

    def failing_append(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("simulated HDF5 failure")
        return original(self, *args, **kwargs)

    original = H5MDWriter.append
    monkeypatch.setattr(H5MDWriter, "append", failing_append)
    with pytest.raises(OSError, match="simulated"):
        write_h5md(out, make_traj(n_frames=30), block_frames=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT.h5"]  # no OUT.h5.part left
    assert out.read_bytes() == before  # the old file is untouched


def test_buffered_frames_reach_disk_on_flush(tmp_path):
    traj = make_traj(n_frames=10)
    with H5MDWriter(tmp_path / "buf.h5", SYMBOLS, timestep_fs=2.0, stride=3, buffer_frames=4) as w:
        reused = np.empty((10, 3))  # an MD driver refills one array every step
        for i in range(6):
            reused[:] = traj.positions[i]
            w.append(reused, traj.cells[i])
        assert w.n_frames == 6 and w._file["particles/all/position/value"].shape[0] == 4
        w.flush()
        assert w._file["particles/all/position/value"].shape[0] == 6
        w.append(traj.positions[6:], traj.cells[6:])
    assert_same(read_h5md(tmp_path / "buf.h5"), traj, names=("positions", "cells", "times_fs"))


_KILLED_WRITER = """
import sys, numpy as np
from phonion.md.io.h5md import H5MDWriter
x = np.random.default_rng(0).normal(size=(8, 3))
with H5MDWriter(sys.argv[1], ["Li"] * 8, timestep_fs=1.0, buffer_frames=1, append=True) as w:
    while True:
        w.append(x, np.eye(3) * 5, forces=x, energies=[1.0])
        print(w.n_frames, flush=True)
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="needs SIGKILL")
def test_sigkilled_writer_leaves_readable_file_and_resumes(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "killed_md.h5"
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):  # kill, then resume the same file and kill again
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], cwd=root,
                                stdout=subprocess.PIPE, text=True)
        start = int(proc.stdout.readline())
        while int(proc.stdout.readline()) < start + 40:
            pass
        proc.kill()
        proc.wait()
        traj = read_h5md(path)
        assert traj.n_frames >= start + 40
        np.testing.assert_array_equal(traj.energies, 1.0)
        np.testing.assert_array_equal(traj.times_fs, np.arange(traj.n_frames, dtype=float))
    clear_consistency_flags(path)  # = h5clear -s: now tools that do not open SWMR-read can too
    with h5py.File(path, "r") as f:
        assert f["particles/all/position/value"].shape[0] == traj.n_frames
