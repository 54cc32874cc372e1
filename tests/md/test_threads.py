"""Explicit thread counts for MD workers: the free cores divided among the workers, never more threads
than cores, recorded in sweep.json and in every run.json."""

import json

import pytest
from ase.build import bulk

from phonion.cli.main import main
from phonion.core.threads import plan_threads


def test_plan_divides_free_cores_and_never_oversubscribes():
    assert plan_threads(1, cores=8, busy=0.0)["threads"] == 8
    assert plan_threads(3, cores=8, busy=0.0)["threads"] == 2
    assert plan_threads(1, cores=2, busy=1.0)["threads"] == 1  # a busy neighbour: its core is not free
    assert plan_threads(4, cores=2, busy=0.0)["threads"] == 1  # more workers than cores: 1 thread each
    assert plan_threads(2, 1, cores=2)["how"] == "requested"
    with pytest.raises(ValueError, match="2 threads × 2 worker"):
        plan_threads(2, 2, cores=2)
    with pytest.raises(ValueError, match="threads must be ≥ 1"):
        plan_threads(1, 0, cores=2)


@pytest.fixture
def cu(tmp_path):
    path = tmp_path / "cu.cif"
    bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2).write(path)
    return str(path)


def test_threads_recorded_and_oversubscription_refused(cu, tmp_path, capsys):
    base = ["md", "--calculator", "emt", "--structure", cu, "--steps", "10", "--sample-every", "5"]
    assert main(base + ["--temperatures-K", "300", "-o", str(tmp_path / "bad"), "--threads", "64"]) == 2
    assert "64 threads × 1 worker(s)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    out = tmp_path / "ok"
    assert main(base + ["--temperatures-K", "300", "500", "-o", str(out), "--workers", "2", "--threads", "1"]) == 0
    plan = json.loads((out / "sweep.json").read_text())["threads"]
    assert plan["threads"] == 1 and plan["workers"] == 2 and plan["how"] == "requested"
    for run in ("T300_seed0_fixnone", "T500_seed0_fixnone"):
        assert json.loads((out / run / "run.json").read_text())["threads"] == 1
