"""Bad input and bad luck for ``phonion md`` / ``phonion reference`` / ``phonion lammps-export``:
one clear line and the right exit code, never a traceback; a failing run never takes a sweep down."""

import errno
import json

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from phonion.cli.main import main


class HotFailingEMT(EMT):
    """EMT that raises ZeroDivisionError once the kinetic temperature is above 1000 K."""

    def calculate(self, atoms=None, *args, **kwargs):
        if atoms is not None and atoms.get_temperature() > 1000.0:
            raise ZeroDivisionError("hot atoms divide by zero")
        super().calculate(atoms, *args, **kwargs)


def hot_failing_emt():
    """``test_bad_input_md:hot_failing_emt`` as a calculator SPEC."""
    return HotFailingEMT()


def no_calculator():
    return {"not": "a calculator"}


@pytest.fixture
def cu32(tmp_path) -> str:
    path = tmp_path / "cu32.xyz"
    ase.io.write(path, bulk("Cu", cubic=True).repeat((2, 2, 2)))
    return str(path)


def md(cu32, out, *extra, temps=("300",)):
    return ["md", "--structure", cu32, "--calculator", "emt", "--temperatures-K", *temps, "--steps", "10",
            "--sample-every", "5", "--checkpoint-every", "5", "--ensemble", "nvt-langevin", "--no-progress",
            "-o", str(out), *extra]


def reference(cu32, out, *extra):
    return ["reference", cu32, "--calculator", "emt", "--temperatures-K", "300", "--steps", "10",
            "--sample-every", "5", "--no-progress", "-o", str(out), *extra]


def first_err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no message on stderr"
    return err[0]


# ---- 1. settings that store (almost) no frame ----------------------------------------------
@pytest.mark.parametrize("cmd", ["md", "reference"])
def test_fewer_frames_than_two_refused(cu32, tmp_path, capsys, cmd):
    out = tmp_path / "out"
    args = (md(cu32, out) if cmd == "md" else reference(cu32, out))
    args = args + ["--sample-every", "50", "--steps", "20"] + (["--checkpoint-every", "50"] if cmd == "md" else [])
    assert main(args) == 2
    line = first_err(capsys)
    assert line.startswith(f"phonion {cmd}: error: MD settings: steps (20) must be at least sample_every (50)")
    assert "--sample-every" in line and not out.exists()


def test_equilibration_not_a_multiple_names_the_options(cu32, tmp_path, capsys):
    assert main(md(cu32, tmp_path / "o", "--equilibration-steps", "7")) == 2
    assert "(--equilibration-steps, --sample-every)" in first_err(capsys)


# ---- 2. a rerun with other settings writes nothing -----------------------------------------
def test_rerun_with_other_timestep_refused_before_writing(cu32, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(md(cu32, out)) == 0
    before = {p.name: p.read_bytes() for p in (out / "sweep.json", out / "sweep_summary.json")}
    capsys.readouterr()
    assert main(md(cu32, out, "--timestep-fs", "1")) == 2
    line = first_err(capsys)
    assert line.startswith("phonion md: error: ") and "run.json: the run there has other settings (timestep_fs" in line
    assert {p: (out / p).read_bytes() for p in before} == before
    assert json.loads((out / "T300_seed0_fixnone" / "run.json").read_text())["status"] == "complete"


# ---- 3. reference: equilibrated by default, measured temperature recorded --------------------
def test_reference_equilibrates_and_records_mean_temperature(cu32, tmp_path, capsys):
    from phonion.mlip.reference import ReferenceConfig

    assert ReferenceConfig(temperatures_K=(600, 900), steps=100).equilibration == 250  # 5 × 100 fs / 2 fs
    assert ReferenceConfig(sample_every=7).equilibration == 252
    assert ReferenceConfig(ensemble="nve").equilibration == 0
    out = tmp_path / "ref"
    with pytest.warns(UserWarning, match=r"mean temperature of the stored frames \d+ K is -\d+ % off the set-point 600 K"):
        assert main(reference(cu32, out, "--timestep-fs", "5", "--equilibration-steps", "0", "--ensemble",
                              "nve", "--temperatures-K", "600")) == 0
    err = capsys.readouterr().err
    assert "600 K: mean temperature of the 3 stored frames" in err
    run = json.loads((out / "reference.json").read_text())["runs"][0]
    assert run["equilibration_steps"] == 0 and run["mean_temperature_K"] < 540
    record = json.loads((out / "600K" / "run.json").read_text())
    assert record["mean_temperature_K"] == pytest.approx(run["mean_temperature_K"])


def test_reference_help_names_the_default_equilibration(capsys):
    with pytest.raises(SystemExit):
        main(["reference", "--help"])
    assert "5 thermostat times" in " ".join(capsys.readouterr().out.split())


# ---- 4. unreadable checkpoints -------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_checkpoint_fails_that_run_only(cu32, tmp_path, capsys, damage):
    out = tmp_path / "s"
    assert main(md(cu32, out, temps=("300", "400"))) == 0
    run = out / "T300_seed0_fixnone"
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": "running"}))
    ckpt = run / "checkpoint.npz"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"garbage" * 10)
    capsys.readouterr()
    assert main(md(cu32, out, "--resume", temps=("300", "400"))) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("phonion md: error")]
    assert len(lines) == 1 and str(ckpt) in lines[0] and "delete it to restart" in lines[0]
    rows = json.loads((out / "sweep_summary.json").read_text())
    assert [r["status"] for r in rows] == ["failed", "already complete"]
    assert json.loads((run / "run.json").read_text())["status"] == "failed"


# ---- 5. module:function that is no calculator ---------------------------------------------
@pytest.mark.parametrize("spec, says", [("math:sqrt", "'math:sqrt': calling sqrt() failed"),
                                        ("test_bad_input_md:no_calculator", "returned dict, not an ASE calculator")])
def test_module_function_not_a_calculator(cu32, tmp_path, capsys, spec, says):
    out = tmp_path / "s"
    assert main(md(cu32, out, "--calculator", spec)) == 2
    line = first_err(capsys)
    assert line.startswith("phonion md: error: ") and says in line and not out.exists()
    assert main(reference(cu32, tmp_path / "r", "--calculator", spec)) == 2
    assert says in first_err(capsys) and not (tmp_path / "r").exists()


# ---- 6. one run raising never takes the sweep down -----------------------------------------
@pytest.mark.parametrize("workers", ["1", "2"])
def test_calculator_exception_fails_one_run_and_sweep_goes_on(cu32, tmp_path, capsys, workers):
    out = tmp_path / "s"
    args = md(cu32, out, "--calculator", "test_bad_input_md:hot_failing_emt", "--workers", workers,
              temps=("3000", "300"))
    assert main(args) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("phonion md: error")]
    assert lines == ["phonion md: error: T3000_seed0_fixnone: ZeroDivisionError: hot atoms divide by zero"]
    rows = json.loads((out / "sweep_summary.json").read_text())
    assert [r["status"] for r in rows] == ["failed", "complete"]
    assert rows[0]["reason"] == "ZeroDivisionError: hot atoms divide by zero"


# ---- 7. Ctrl-C -------------------------------------------------------------------------------
def test_ctrl_c_one_line_and_130(cu32, tmp_path, capsys, monkeypatch):
    import phonion.md.driver as driver

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "run_md", interrupt)
    out = tmp_path / "s"
    assert main(md(cu32, out)) == 130
    assert first_err(capsys) == "phonion md: interrupted; rerun the same command with --resume to continue"
    assert json.loads((out / "sweep_summary.json").read_text())[0]["status"] == "interrupted"
    assert main(reference(cu32, tmp_path / "r")) == 130
    assert first_err(capsys).startswith("phonion reference: interrupted; rerun the same command")


# ---- 8. full disk ----------------------------------------------------------------------------
def test_full_disk_while_writing_frames_fails_the_run(cu32, tmp_path, capsys, monkeypatch):
    from phonion.md.io.h5md import H5MDWriter

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(H5MDWriter, "append", full)
    out = tmp_path / "s"
    assert main(md(cu32, out)) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("phonion md: error")]
    assert len(lines) == 1 and "No space left on device" in lines[0]
    rows = json.loads((out / "sweep_summary.json").read_text())
    assert rows[0]["status"] == "failed" and "No space left" in rows[0]["reason"]
    assert json.loads((out / "T300_seed0_fixnone" / "run.json").read_text())["status"] == "failed"
    capsys.readouterr()
    assert main(reference(cu32, tmp_path / "r")) == 2
    assert first_err(capsys).startswith("phonion reference: error: ") 


def test_full_disk_while_writing_the_summary(cu32, tmp_path, capsys, monkeypatch):
    import phonion.md.restart as restart

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(restart, "write_json_atomic", full)
    out = tmp_path / "s"
    assert main(md(cu32, out)) == 2
    line = first_err(capsys)
    assert line == f"phonion md: error: {out / 'sweep.json'}: cannot write (No space left on device); " \
                   "free space or choose another output directory (-o)"
    assert not (out / "sweep.json").exists()


def test_json_writes_are_atomic(tmp_path, monkeypatch):
    import phonion.md.restart as restart

    path = tmp_path / "run.json"
    restart.write_json_atomic(path, {"status": "complete"})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(OSError):
        restart.write_json_atomic(path, {"status": "running"})
    assert json.loads(path.read_text()) == {"status": "complete"} and len(list(tmp_path.iterdir())) == 1


# ---- 9. output paths -------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", ["md", "reference"])
@pytest.mark.parametrize("kind", ["file", "under-file", "too-long", "read-only"])
def test_bad_output_path(cu32, tmp_path, capsys, monkeypatch, cmd, kind):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {"file": afile, "under-file": afile / "sub", "too-long": tmp_path / ("x" * 300),
           "read-only": tmp_path / "ro"}[kind]
    if kind == "read-only":
        def readonly(*a, **k):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr("tempfile.mkstemp", readonly)
    called = []
    import phonion.md.driver as driver
    monkeypatch.setattr(driver._Run, "execute", lambda *a: called.append(1))
    assert main(md(cu32, out) if cmd == "md" else reference(cu32, out)) == 2
    line = first_err(capsys)
    assert line.startswith(f"phonion {cmd}: error: {out}") and "-o/--output" in line and not called
    assert afile.read_text() == "x"


# ---- 10. lammps-export ----------------------------------------------------------------------
def test_lammps_export_missing_model(cu32, tmp_path, capsys):
    model = tmp_path / "missing.model"
    assert main(["lammps-export", "--structure", cu32, "--model", str(model), "-o", str(tmp_path / "l")]) == 2
    assert first_err(capsys).startswith(f"phonion lammps-export: error: {model}: no such MACE model file")
    assert not (tmp_path / "l").exists()


def test_sweep_summary_reason_is_none_for_good_runs(cu32, tmp_path):
    from phonion.md.sweep import SweepConfig, run_sweep

    cfg = SweepConfig.from_dict(dict(structure=cu32, calculator="emt", temperatures_K=[300], steps=10,
                                     sample_every=5, checkpoint_every=5, output=str(tmp_path / "s")))
    rows = run_sweep(cfg, progress=False)
    assert rows[0]["status"] == "complete" and rows[0]["reason"] is None and np.isfinite(rows[0]["mean_T_K"])


def test_run_lock_is_exclusive_and_leaves_no_file(tmp_path):
    """The MD run lock: a second holder waits (then gives up with one clear error); no .lock file remains."""
    from phonion.md.restart import LOCK_NAME, RunLock

    with RunLock(tmp_path, timeout_s=0.3):
        assert (tmp_path / LOCK_NAME).exists()
        with pytest.raises(ValueError, match="another process is running this MD run"):
            with RunLock(tmp_path, timeout_s=0.3):
                pass
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path, timeout_s=0.3):  # taken again after release
        pass
    assert list(tmp_path.iterdir()) == []
