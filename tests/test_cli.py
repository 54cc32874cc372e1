"""The command contracts of the foundation issue, run the way a script outside phonion runs them."""

import json
import subprocess
import sys
from pathlib import Path


from phonion.cli.main import main

VASP = Path(__file__).parent / "data" / "vasp"
XDATCAR_700K = VASP / "li6ps5i_aimd_xdatcar" / "700K" / "XDATCAR.gz"
INSPECT_KEYS = {"n_atoms", "n_frames", "species", "timestep_fs", "has_energy", "has_forces",
                "has_stress", "has_velocities"}


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_contract_xdatcar(capsys):
    out = _json(capsys, ["inspect", str(XDATCAR_700K), "--timestep-fs", "2", "--json"])
    assert INSPECT_KEYS <= out.keys()
    assert out["n_atoms"] == 416 and out["n_frames"] == 100
    assert out["species"] == {"Li": 192, "I": 32, "S": 160, "P": 32}
    assert out["timestep_fs"] == 2.0 and out["frame_interval_fs"] == 100.0
    assert (out["has_energy"], out["has_forces"], out["has_stress"], out["has_velocities"]) == (
        False, False, False, False)


def test_inspect_without_timestep_reports_null(capsys):
    out = _json(capsys, ["inspect", str(XDATCAR_700K), "--json"])
    assert out["timestep_fs"] is None


def test_inspect_outcar_species_from_potcar_and_nwrite0(capsys):
    out = _json(capsys, ["inspect", str(VASP / "li6ps5i_outcar" / "OUTCAR_I_0p.gz"), "--json"])
    assert list(out["species"]) == ["Li", "I", "S", "P"]
    assert out["has_forces"] and out["has_stress"] and out["has_energy"]
    ti = _json(capsys, ["inspect", str(VASP / "ti_aimd_nwrite0_dpdata" / "OUTCAR"), "--json"])
    # NWRITE=0: 10 ionic steps, positions and forces printed only at steps 1 and 10
    assert ti["n_ionic_steps_in_file"] == 10 and ti["n_frames"] == 2
    assert ti["n_frames_with_forces"] == 2 and ti["timestep_fs"] == 2.0 and ti["stride"] == 9


def test_convert_then_inspect_round_trip(tmp_path, capsys):
    out = tmp_path / "run.h5"
    assert main(["convert", str(VASP / "h2o_aimd_dpdata" / "vasprun.h2o.md.10.xml"), "-o", str(out)]) == 0
    capsys.readouterr()
    info = _json(capsys, ["inspect", str(out), "--json"])
    assert info["n_atoms"] == 6 and info["n_frames"] == 10 and info["timestep_fs"] == 1.0
    assert info["has_forces"] and info["has_energy"] and info["has_stress"]


def test_convert_stride_keeps_every_nth_frame(tmp_path, capsys):
    out = tmp_path / "sub.h5"
    assert main(["convert", str(XDATCAR_700K), "--timestep-fs", "2", "--stride", "4", "-o", str(out)]) == 0
    capsys.readouterr()
    info = _json(capsys, ["inspect", str(out), "--json"])
    assert info["n_frames"] == 25 and info["stride"] == 200 and info["frame_interval_fs"] == 400.0


def test_convert_bad_input_leaves_no_file(tmp_path, capsys):
    bad = tmp_path / "XDATCAR"
    text = XDATCAR_700K.read_bytes()
    import gzip

    lines = gzip.decompress(text).decode().splitlines()
    lines[20] = lines[20].replace(".", "x", 1)  # corrupt a coordinate in the first frame
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "bad.h5"
    assert main(["convert", str(bad), "--timestep-fs", "2", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "error" in err
    assert list(tmp_path.iterdir()) == [bad]  # nothing half-written


def test_sites_contract(capsys):
    out = _json(capsys, ["sites", "--json"])
    for key in ("O_e", "O_c", "O_n"):
        assert len(out[key]) == 16
    assert set(out["O_e"]).isdisjoint(out["O_c"]) and set(out["O_c"]).isdisjoint(out["O_n"])
    assert all(48 > i - 32 >= 0 for i in out["O_e"] + out["O_c"] + out["O_n"])  # O are atoms 32..79
    assert out["n_O_e"] == out["n_O_c"] == out["n_O_n"] == 16


def test_console_script_help_teaches():
    res = subprocess.run([sys.executable, "-m", "phonion.cli.main", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for word in ("inspect", "convert", "sites", "demo", "SPEC", "chgnet", "mace:"):
        assert word in res.stdout

