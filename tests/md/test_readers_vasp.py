"""VASP readers (XDATCAR, OUTCAR, vasprun.xml) against the facts of tests/data/vasp/SOURCE.md."""

from __future__ import annotations

import gzip
import re
import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import read as ase_read
from ase.units import GPa

from phonion.md.io import TruncatedFileWarning, read_trajectory
from phonion.md.io.vasp_outcar import read_outcar
from phonion.md.io.vasp_vasprun import read_vasprun
from phonion.md.io.vasp_xdatcar import read_xdatcar
from phonion.md.trajectory import TrajectoryError

DATA = Path(__file__).parents[1] / "data" / "vasp"
XDAT_I = {T: DATA / "li6ps5i_aimd_xdatcar" / T / "XDATCAR.gz" for T in ("700K", "1100K")}
XDAT_CL = DATA / "li6ps5cl_aimd_xdatcar" / "example_XDATCAR.gz"
OUTCAR_I = {k: DATA / "li6ps5i_outcar" / f"OUTCAR_I_{k}.gz" for k in ("0p", "50p", "50p_3500")}
H2O_OUTCAR = DATA / "h2o_aimd_dpdata" / "OUTCAR.h2o.md.10"
H2O_VASPRUN = DATA / "h2o_aimd_dpdata" / "vasprun.h2o.md.10.xml"
TI_OUTCAR = DATA / "ti_aimd_nwrite0_dpdata" / "OUTCAR"
TI_VASPRUN = DATA / "ti_aimd_nwrite0_dpdata" / "vasprun.xml"

ARGYRODITE_COUNTS = [192, 32, 160, 32]


def _text(path: Path) -> str:
    return (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)).read()


def _msd_first_last(traj, idx) -> float:
    d = traj.positions[-1, idx] - traj.positions[0, idx]
    return float((d ** 2).sum(axis=1).mean())


# ---------------------------------------------------------------- XDATCAR -------------------------
@pytest.fixture(scope="module")
def xdat_700():
    return read_xdatcar(XDAT_I["700K"])


@pytest.mark.parametrize("temp, li_msd, framework_msd", [("700K", 4.112, 0.354), ("1100K", 14.861, 0.540)])
def test_li6ps5i_xdatcar_facts(temp, li_msd, framework_msd):
    traj = read_xdatcar(XDAT_I[temp])
    assert traj.n_atoms == 416 and traj.n_frames == 100
    assert list(traj.species_counts) == ["Li", "I", "S", "P"]
    assert list(traj.species_counts.values()) == ARGYRODITE_COUNTS
    assert traj.stride == 50 and traj.timestep_fs is None and traj.frame_interval_fs is None
    assert traj.metadata["configuration_numbers_first"] == 50
    assert traj.metadata["configuration_numbers_last"] == 5000
    assert traj.metadata["title"] == "LTO"
    assert traj.metadata["format"] == "xdatcar" and traj.metadata["stride_source"] == "file"
    np.testing.assert_allclose(traj.cells, np.broadcast_to(20.433 * np.eye(3), (100, 3, 3)), atol=1e-12)
    assert traj.forces is None and traj.energies is None and traj.velocities is None
    li = traj.indices_of("Li")
    frame = np.setdiff1d(np.arange(traj.n_atoms), li)
    assert _msd_first_last(traj, li) == pytest.approx(li_msd, abs=0.01)
    assert _msd_first_last(traj, frame) == pytest.approx(framework_msd, abs=0.005)
    assert 0.35 <= _msd_first_last(traj, frame) <= 0.545
    # unwrapped: no frame-to-frame jump near a cell length
    assert np.abs(np.diff(traj.positions, axis=0)).max() < 0.35 * 20.433


def test_li6ps5cl_pymatgen_variant():
    traj = read_xdatcar(XDAT_CL)
    assert traj.n_atoms == 416 and traj.n_frames == 140
    assert list(traj.species_counts) == ["Li", "Cl", "S", "P"]
    assert list(traj.species_counts.values()) == ARGYRODITE_COUNTS
    assert traj.metadata["title"] == "Li192 P32 S160 Cl32"  # a formula in another order: ignored
    assert traj.stride == 1 and "stride_note" in traj.metadata  # renumbered 1..140
    assert traj.metadata["configuration_numbers_first"] == 1
    assert traj.metadata["configuration_numbers_last"] == 140
    np.testing.assert_allclose(np.diag(traj.cells[0]), [20.312311, 20.312339, 20.312424])
    assert traj.cells[0, 0, 1] == pytest.approx(0.000190)
    assert _msd_first_last(traj, traj.indices_of("Li")) == pytest.approx(11.8, abs=0.05)
    # the companion frame list says the real spacing is 50 steps: the user gives it
    steps = np.array(gzip.open(XDAT_CL.parent / "frame_numbers.dat.gz", "rt").read().split(), dtype=int)
    assert len(steps) == 140 and set(np.diff(steps)) == {50}
    fixed = read_trajectory(XDAT_CL, stride=50, timestep_fs=2.0)
    assert fixed.frame_interval_fs == 100.0 and fixed.metadata["stride_source"] == "user"


def test_xdatcar_is_fast():
    t0 = time.perf_counter()
    read_xdatcar(XDAT_I["1100K"])
    assert time.perf_counter() - t0 < 1.5  # typically ~0.1 s


def test_read_trajectory_timestep(xdat_700):
    traj = read_trajectory(XDAT_I["700K"], timestep_fs=2.0)
    assert traj.timestep_fs == 2.0 and traj.stride == 50 and traj.frame_interval_fs == 100.0
    assert traj.metadata["timestep_fs_source"] == "user"
    np.testing.assert_allclose(traj.times_fs[:3], [0.0, 100.0, 200.0])
    np.testing.assert_array_equal(traj.positions, xdat_700.positions)


def _split_frames(text: str, n_atoms: int = 416):
    lines = text.splitlines(keepends=True)
    header = lines[:7]
    frames = [lines[7 + k * (n_atoms + 1): 7 + (k + 1) * (n_atoms + 1)] for k in range(100)]
    return header, frames


def _renumber(frame, number):
    return [f"Direct configuration= {number:5d}\n"] + frame[1:]


def test_concatenate_restart_pieces(tmp_path, xdat_700):
    header, frames = _split_frames(_text(XDAT_I["700K"]))
    first, second = tmp_path / "XDATCAR_1", tmp_path / "XDATCAR_2"
    first.write_text("".join(header + [l for f in frames[:50] for l in f]))
    # a restart numbers its configurations from the start again; its positions are wrapped
    second.write_text("".join(header + [l for k, f in enumerate(frames[50:]) for l in _renumber(f, 50 * (k + 1))]))
    joined = read_trajectory([first, second], timestep_fs=2.0)
    assert joined.n_frames == 100 and joined.stride == 50
    assert joined.metadata["source_files"] == [str(first), str(second)]
    np.testing.assert_allclose(joined.positions, xdat_700.positions, atol=1e-9)
    # the second piece alone starts from wrapped positions: concatenate had to shift it
    alone = read_xdatcar(second)
    assert np.abs(alone.positions[0] - xdat_700.positions[50]).max() > 10.0


@pytest.mark.parametrize("how", ["mid_line", "line_boundary", "mid_number", "gzip_stream"])
def test_xdatcar_truncated(tmp_path, how):
    text = _text(XDAT_I["700K"])
    lines = text.splitlines(keepends=True)
    keep = 7 + 99 * 417 + 1 + 200  # 99 whole frames, then 200 of 416 atoms of the last one
    if how == "mid_line":
        cut = "".join(lines[:keep]) + lines[keep][:20]
    elif how == "line_boundary":
        cut = "".join(lines[:keep])
    elif how == "mid_number":  # the very last line loses its last digits (still 3 numbers)
        cut = text.rstrip("\n")[:-4]
    else:
        cut = None
    if cut is not None:
        path = tmp_path / "XDATCAR"
        path.write_text(cut)
    else:
        raw = XDAT_I["700K"].read_bytes()
        path = tmp_path / "XDATCAR.gz"
        path.write_bytes(raw[: len(raw) - 5000])
    with pytest.warns(TruncatedFileWarning, match=re.escape(str(path)) + ".*kept the 99 complete"):
        traj = read_xdatcar(path)
    assert traj.n_frames == 99 and traj.stride == 50
    np.testing.assert_allclose(traj.positions, read_xdatcar(XDAT_I["700K"]).positions[:99], atol=1e-12)


def test_xdatcar_corrupt_coordinate(tmp_path):
    lines = _text(XDAT_I["700K"]).splitlines(keepends=True)
    bad_line = 7 + 10 * 417 + 1 + 5  # 0-based: atom 6 of frame 11
    lines[bad_line] = lines[bad_line].replace("0.", "O.", 1)
    path = tmp_path / "XDATCAR"
    path.write_text("".join(lines))
    with pytest.raises(TrajectoryError, match=rf"^{re.escape(str(path))}: line {bad_line + 1}:"):
        read_xdatcar(path)


def test_xdatcar_counts_disagree_with_species(tmp_path):
    lines = _text(XDAT_I["700K"]).splitlines(keepends=True)
    lines[5] = "   Li   I    S \n"
    path = tmp_path / "XDATCAR"
    path.write_text("".join(lines[:7 + 417]))
    with pytest.raises(TrajectoryError, match=rf"^{re.escape(str(path))}: line 7: species count mismatch"):
        read_xdatcar(path)


@pytest.mark.parametrize("counts", [" 192  32 160  31\n", " 192  32 160  33\n"])
def test_xdatcar_counts_do_not_add_up(tmp_path, counts):
    lines = _text(XDAT_I["700K"]).splitlines(keepends=True)
    lines[6] = counts
    path = tmp_path / "XDATCAR"
    path.write_text("".join(lines[:7 + 3 * 417]))
    with pytest.raises(TrajectoryError, match=rf"^{re.escape(str(path))}: line \d+: .*counts do not add up"):
        read_xdatcar(path)


def test_xdatcar_vasp4_has_no_species(tmp_path):
    lines = _text(XDAT_I["700K"]).splitlines(keepends=True)
    path = tmp_path / "XDATCAR"
    path.write_text("".join(lines[:5] + lines[6:7 + 2 * 417 - 1]))
    with pytest.raises(TrajectoryError, match=rf"^{re.escape(str(path))}: .*species are unknown"):
        read_xdatcar(path)


def test_xdatcar_uneven_numbers(tmp_path):
    header, frames = _split_frames(_text(XDAT_I["700K"]))
    numbers = [50, 100, 150, 250]
    path = tmp_path / "XDATCAR"
    path.write_text("".join(header + [l for n, f in zip(numbers, frames) for l in _renumber(f, n)]))
    with pytest.raises(TrajectoryError, match="not evenly spaced"):
        read_xdatcar(path)


def test_xdatcar_variable_cell_and_scale(tmp_path, xdat_700):
    header, frames = _split_frames(_text(XDAT_I["700K"]))
    out = []
    for k in range(6):
        a = 20.433 * (1 + 0.01 * k)
        # scale as a negative volume on odd frames, as 1.0 with scaled vectors on even ones
        if k % 2:
            hdr = ["LTO\n", f"  {-a ** 3:.10f}\n"] + [" ".join("1.0" if i == j else "0.0" for j in range(3)) + "\n"
                                                      for i in range(3)]
        else:
            hdr = ["LTO\n", "           1\n"] + [" ".join(f"{a:.6f}" if i == j else "0.0" for j in range(3)) + "\n"
                                                  for i in range(3)]
        out += hdr + header[5:7] + frames[k]
    path = tmp_path / "XDATCAR"
    path.write_text("".join(out))
    traj = read_xdatcar(path)
    assert traj.n_frames == 6 and traj.metadata["variable_cell"] and traj.stride == 50
    np.testing.assert_allclose(traj.cells[:, 0, 0], 20.433 * (1 + 0.01 * np.arange(6)), rtol=1e-9)
    frac = np.linalg.solve(traj.cells[0].T, traj.positions[0].T).T
    np.testing.assert_allclose(frac, xdat_700.positions[0] / 20.433, atol=1e-9)
    # cut inside the sixth header: five frames and a warning
    cut = tmp_path / "XDATCAR_cut"
    cut.write_text("".join(out[: 5 * 424 + 3]))
    with pytest.warns(TruncatedFileWarning, match="kept the 5 complete"):
        assert read_xdatcar(cut).n_frames == 5


# ---------------------------------------------------------------- OUTCAR --------------------------
@pytest.mark.parametrize("key, toten, fmax, stress_kb", [
    ("0p", -1762.10048447, 0.039, [-12.48086, -8.85784, -11.19002, 0.19272, -0.06985, 0.05993]),
    ("50p", -1757.21077598, 0.026, None),
    ("50p_3500", -1756.01956669, 0.039, None),
])
def test_li6ps5i_outcar_facts(key, toten, fmax, stress_kb):
    path = OUTCAR_I[key]
    traj = read_outcar(path)
    assert "POSCAR: Li192 P32 S160 I32" in _text(path)  # the misleading title
    assert list(traj.species_counts) == ["Li", "I", "S", "P"]  # from POTCAR/VRHFIN
    assert list(traj.species_counts.values()) == ARGYRODITE_COUNTS
    assert traj.n_frames == 1 and traj.n_atoms == 416
    assert traj.energies[0] == pytest.approx(toten, abs=1e-8)
    assert np.abs(traj.forces).max() == pytest.approx(fmax, abs=0.0006)  # largest component
    assert traj.frames_with("forces").all() and traj.frames_with("stress").all()
    assert traj.timestep_fs is None  # IBRION=2: a relaxation, not MD
    assert traj.metadata["ibrion"] == 2 and traj.metadata["potim"] == 0.5
    assert traj.metadata["temperature_K_setting"] == 0.0
    np.testing.assert_allclose(traj.cells[0], 20.433 * np.eye(3))
    assert traj.masses[0] == pytest.approx(7.01) and traj.masses[192] == pytest.approx(126.90)
    if stress_kb:
        xx, yy, zz, xy, yz, zx = stress_kb
        expected = -0.1 * GPa * np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])
        np.testing.assert_allclose(traj.stress[0], expected, rtol=1e-12)
        assert traj.stress[0, 0, 0] > 0  # VASP negative (tensile) kB → ASE positive


def test_li6ps5i_outcar_matches_xdatcar_cell_and_species():
    out = read_outcar(OUTCAR_I["0p"])
    xdat = read_xdatcar(XDAT_I["700K"])
    assert out.symbols == xdat.symbols
    np.testing.assert_allclose(out.cells[0], xdat.cells[0])


def test_h2o_outcar_facts():
    traj = read_outcar(H2O_OUTCAR)
    text = _text(H2O_OUTCAR)
    assert text.count("free  energy   TOTEN") == 10 and text.count("TOTAL-FORCE") == 10
    assert text.count("in kB") == 10
    assert traj.n_frames == 10 and traj.n_atoms == 6
    assert list(traj.species_counts.items()) == [("O", 2), ("H", 4)]
    assert traj.frames_with("forces").all() and traj.frames_with("energies").all()
    assert traj.frames_with("stress").all()
    assert traj.timestep_fs == 1.0 and traj.stride == 1 and traj.frame_interval_fs == 1.0
    assert traj.metadata["temperature_K_setting"] == 0.0
    assert traj.energies[0] == pytest.approx(-28.38622624) and traj.energies[-1] == pytest.approx(-28.39848822)
    assert traj.temperatures_K.shape == (10,) and np.isfinite(traj.temperatures_K).all()


def test_ti_outcar_nwrite0_default_frames():
    traj = read_outcar(TI_OUTCAR)
    # positions exist only in the 2 POSITION tables: frames = ionic steps 1 and 10
    assert traj.n_frames == 2 and traj.metadata["ionic_steps"] == [1, 10]
    assert traj.metadata["n_ionic_steps"] == 10 and traj.metadata["n_force_blocks"] == 2
    assert traj.stride == 9 and traj.timestep_fs == 2.0 and traj.frame_interval_fs == 18.0
    assert traj.frames_with("forces").all() and traj.frames_with("energies").all()
    np.testing.assert_allclose(traj.energies, [-253.15557734, -252.38626263])
    assert traj.metadata["temperature_K_setting"] == 500.0
    assert list(traj.species_counts.items()) == [("Ti", 32)]
    np.testing.assert_allclose(np.diag(traj.cells[0]), [5.872, 10.166, 9.295], atol=1e-3)


def test_ti_outcar_nwrite0_all_steps():
    text = _text(TI_OUTCAR)
    assert text.count("free  energy   TOTEN") == 10 and text.count("in kB") == 10
    assert text.count("TOTAL-FORCE") == 2
    traj = read_outcar(TI_OUTCAR, frames="all")
    assert traj.n_frames == 10
    assert traj.frames_with("energies").sum() == 10 and traj.frames_with("stress").sum() == 10
    np.testing.assert_array_equal(np.flatnonzero(traj.frames_with("forces")), [0, 9])
    np.testing.assert_array_equal(np.flatnonzero(traj.frames_with("positions")), [0, 9])
    assert traj.stride == 1 and traj.timestep_fs == 2.0
    assert np.isfinite(traj.cells).all()  # ISIF=2: the cell is fixed, carried to every step
    assert traj.summary()["n_frames_with_forces"] == 2


def _assert_same_run(a, b, frames=slice(None)):
    np.testing.assert_allclose(a.positions[frames], b.positions[frames], atol=1e-5)  # OUTCAR: 5 decimals
    np.testing.assert_allclose(a.forces[frames], b.forces[frames], atol=1e-6)
    np.testing.assert_allclose(a.cells[frames], b.cells[frames], atol=1e-6)
    np.testing.assert_allclose(a.energies[frames], b.energies[frames], atol=1e-8)
    # vasprun's 3x3 stress is slightly asymmetric (YZ 0.54355 vs ZY 0.54354 kB); like ASE the
    # reader takes the upper triangle, so allow a few 1e-5 kB beyond the OUTCAR's 5 decimals
    np.testing.assert_allclose(a.stress[frames], b.stress[frames], atol=5e-5 * 0.1 * GPa)
    np.testing.assert_allclose(a.masses, b.masses)
    assert a.symbols == b.symbols and a.timestep_fs == b.timestep_fs


def test_h2o_outcar_matches_vasprun():
    _assert_same_run(read_outcar(H2O_OUTCAR), read_vasprun(H2O_VASPRUN))


def test_ti_outcar_matches_vasprun():
    out, xml = read_outcar(TI_OUTCAR, frames="all"), read_vasprun(TI_VASPRUN)
    np.testing.assert_allclose(out.energies, xml.energies, atol=1e-8)
    np.testing.assert_allclose(out.stress, xml.stress, atol=5e-5 * 0.1 * GPa)
    _assert_same_run(out, xml, frames=[0, 9])


def _cut_in_force_table(text: str, step: int) -> str:
    """Text up to the middle of the force table of ionic step ``step`` (1-based)."""
    pos = -1
    for _ in range(step):
        pos = text.index("TOTAL-FORCE", pos + 1)
    return text[: text.index("\n", pos) + 300]


def test_outcar_truncated(tmp_path):
    path = tmp_path / "OUTCAR"
    path.write_text(_cut_in_force_table(_text(H2O_OUTCAR), 7))
    with pytest.warns(TruncatedFileWarning, match=re.escape(str(path)) + ".*kept the 6 complete"):
        traj = read_outcar(path)
    assert traj.n_frames == 6
    _assert_same_run(traj, read_outcar(H2O_OUTCAR), frames=slice(0, 6))


def test_outcar_truncated_gzip(tmp_path):
    raw = gzip.compress(H2O_OUTCAR.read_bytes())
    path = tmp_path / "OUTCAR.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.warns(TruncatedFileWarning, match=re.escape(str(path))):
        traj = read_outcar(path)
    assert 1 <= traj.n_frames < 10
    np.testing.assert_allclose(traj.energies, read_outcar(H2O_OUTCAR).energies[: traj.n_frames])


def test_outcar_corrupt_force(tmp_path):
    lines = _text(H2O_OUTCAR).splitlines(keepends=True)
    table = [i for i, l in enumerate(lines) if "TOTAL-FORCE" in l][2]
    lines[table + 4] = lines[table + 4].replace("0", "x", 1)
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines))
    with pytest.raises(TrajectoryError, match=rf"^{re.escape(str(path))}: line {table + 5}:"):
        read_outcar(path)


# ---------------------------------------------------------------- vasprun -------------------------
def test_h2o_vasprun_facts():
    traj = read_vasprun(H2O_VASPRUN)
    assert traj.n_frames == 10 and list(traj.species_counts.items()) == [("O", 2), ("H", 4)]
    assert traj.frames_with("forces").all() and traj.frames_with("stress").all()
    assert traj.timestep_fs == 1.0 and traj.stride == 1
    assert traj.metadata["temperature_K_setting"] == pytest.approx(0.0001)
    np.testing.assert_allclose(traj.masses, [16, 16, 1, 1, 1, 1])  # POMASS from <atomtypes>
    # the calculation's own energy, not an scstep's (the first scstep says 191.04653371)
    assert traj.energies[0] == pytest.approx(-28.38622624)


def test_ti_vasprun_facts():
    traj = read_vasprun(TI_VASPRUN)
    assert traj.n_frames == 10 and list(traj.species_counts.items()) == [("Ti", 32)]
    assert traj.frames_with("forces").all() and traj.frames_with("energies").all()
    assert traj.frames_with("stress").all()
    assert traj.timestep_fs == 2.0 and traj.frame_interval_fs == 2.0
    assert traj.metadata["temperature_K_setting"] == 500.0


@pytest.mark.parametrize("path", [H2O_VASPRUN, TI_VASPRUN])
def test_vasprun_matches_ase(path):
    traj = read_vasprun(path)
    frames = ase_read(path, index=":", format="vasp-xml")
    assert len(frames) == traj.n_frames
    for k, atoms in enumerate(frames):
        assert traj.energies[k] == pytest.approx(atoms.get_potential_energy(force_consistent=True), abs=1e-10)
        np.testing.assert_allclose(traj.forces[k], atoms.get_forces(), atol=1e-12)
        np.testing.assert_allclose(traj.stress[k], atoms.get_stress(voigt=False), atol=1e-14)
        np.testing.assert_allclose(traj.cells[k], atoms.cell[:], atol=1e-12)


def test_vasprun_gzipped(tmp_path):
    path = tmp_path / "vasprun.xml.gz"
    path.write_bytes(gzip.compress(TI_VASPRUN.read_bytes()))
    np.testing.assert_array_equal(read_vasprun(path).positions, read_vasprun(TI_VASPRUN).positions)
    assert read_trajectory(path).n_frames == 10


@pytest.mark.parametrize("gz", [False, True])
def test_vasprun_truncated(tmp_path, gz):
    text = _text(H2O_VASPRUN)
    starts = [m.start() for m in re.finditer("<calculation>", text)]
    cut = text[: text.index('<varray name="forces"', starts[5]) + 120]  # inside step 6's forces
    if gz:
        path = tmp_path / "vasprun.xml.gz"
        raw = gzip.compress(text.encode("latin-1"))
        path.write_bytes(raw[: len(raw) * len(cut) // len(text)])
    else:
        path = tmp_path / "vasprun.xml"
        path.write_text(cut, encoding="latin-1")
    with pytest.warns(TruncatedFileWarning, match=re.escape(str(path))):
        traj = read_vasprun(path)
    whole = read_vasprun(H2O_VASPRUN)
    assert 1 <= traj.n_frames <= 6 and (gz or traj.n_frames == 5)
    np.testing.assert_array_equal(traj.forces, whole.forces[: traj.n_frames])


@pytest.mark.parametrize("damage", ["number", "tag"])
def test_vasprun_corrupt(tmp_path, damage):
    text = _text(H2O_VASPRUN)
    at = text.index('<varray name="forces"', text.index("<calculation>"))
    if damage == "number":
        v = text.index("<v>", at) + 5
        text = text[:v] + "x" + text[v + 1:]
    else:
        text = text[:at] + "<oops>" + text[at:]
    path = tmp_path / "vasprun.xml"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(TrajectoryError, match=rf"^{re.escape(str(path))}"):
        read_vasprun(path)


def test_dispatcher_reads_every_vasp_file():
    assert read_trajectory(TI_OUTCAR).metadata["format"] == "outcar"
    assert read_trajectory(TI_VASPRUN).metadata["format"] == "vasprun"
    assert read_trajectory(OUTCAR_I["0p"]).metadata["format"] == "outcar"
    assert read_trajectory(H2O_VASPRUN).metadata["timestep_fs_source"] == "file"
    with pytest.raises(TrajectoryError, match="says the timestep is 1"):
        read_trajectory(H2O_VASPRUN, timestep_fs=2.0)
