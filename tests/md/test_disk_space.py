"""A disk that fills up: phonion stops before HDF5 runs out of space (which crashed with a segmentation
fault and left run.json "running"): refused before work when too little is free, a clean `failed` run with
its frames kept when space runs low during the run, the summary always written."""

import json
import shutil
from collections import namedtuple

import pytest
from ase.build import bulk

from phonion.cli.main import main
from phonion.core import paths

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def cu(tmp_path):
    path = tmp_path / "cu.cif"
    bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2).write(path)
    return str(path)


def _md(cu, out):
    return main(["md", "--calculator", "emt", "--structure", cu, "--temperatures-K", "300", "--steps", "400",
                 "--sample-every", "1", "--checkpoint-every", "50", "-o", str(out), "--no-progress"])


def test_too_little_space_is_refused_before_work(cu, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 2**20, 2**20))
    assert _md(cu, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "1.0 MB free on its filesystem, phonion needs 16.0 MB" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "T300_seed0_fixnone").exists()


def test_space_running_out_during_a_run_stops_it_cleanly(cu, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = shutil.disk_usage

    def usage(p):  # plenty at the start, then the disk fills up
        calls["n"] += 1
        return real(p) if calls["n"] < 4 else Usage(10**9, 10**9 - 2**20, paths.MIN_FREE_BYTES - 1)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    out = tmp_path / "out"
    assert _md(cu, out) == 1  # a failed run, not a crash
    rec = json.loads((out / "T300_seed0_fixnone" / "run.json").read_text())
    row = json.loads((out / "sweep_summary.json").read_text())[0]
    assert rec["status"] == "failed" and row["status"] == "failed" and "MB free on its filesystem" in row["reason"]
    monkeypatch.setattr(shutil, "disk_usage", real)  # space freed: --resume finishes with every frame
    assert main(["md", "--calculator", "emt", "--structure", cu, "--temperatures-K", "300", "--steps", "400",
                 "--sample-every", "1", "--checkpoint-every", "50", "-o", str(out), "--no-progress",
                 "--resume"]) == 0
    rec = json.loads((out / "T300_seed0_fixnone" / "run.json").read_text())
    assert rec["status"] == "complete" and rec["n_frames"] == 401
