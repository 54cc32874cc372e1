"""phonion.md.sweep and the ``md`` command: runs fan out through real executors and give the same files."""

import json

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk

from phonion.md.io.h5md import read_h5md
from phonion.cli.md import main as md_main
from phonion.md.sweep import SweepConfig, format_summary, run_sweep


@pytest.fixture
def cu32(tmp_path) -> str:
    path = tmp_path / "cu32.xyz"
    ase.io.write(path, bulk("Cu", cubic=True).repeat((2, 2, 2)))
    return str(path)


def sweep(cu32, out, **kw) -> SweepConfig:
    flat = dict(structure=cu32, calculator="emt", temperatures_K=[500, 700], seeds=[0, 1], fix=["none"],
                steps=60, timestep_fs=2.0, ensemble="nvt-langevin", sample_every=5, checkpoint_every=20,
                output=str(out))
    return SweepConfig.from_dict({**flat, **kw})


def arrays(path):
    t = read_h5md(path)
    return t.positions, t.velocities, t.forces, t.energies, t.temperatures_K


def assert_same_files(rows_a, rows_b):
    assert [r["run"] for r in rows_a] == [r["run"] for r in rows_b]
    for a, b in zip(rows_a, rows_b):
        for x, y in zip(arrays(a["path"]), arrays(b["path"])):
            assert np.array_equal(x, y)


def test_sweep_config_runs_and_checks(tmp_path):
    cfg = SweepConfig.from_dict({"temperatures_K": [600, 900.5], "seeds": [1, 2], "fix": ["none", "O_e", "O_c"],
                                 "steps": 10, "output": str(tmp_path), "supercell": [2, 1, 1]})
    runs = cfg.runs()
    assert len(runs) == 12 and runs[0].supercell == (2, 1, 1) and runs[0].steps == 10
    assert runs[1].output == str(tmp_path / "T600_seed1_fixO_e")
    assert runs[-1].output.endswith("T900.5_seed2_fixO_c") and runs[-1].temperature_K == 900.5
    assert SweepConfig.from_dict({"temperature_K": 300, "seed": 4}).runs()[0].seed == 4
    with pytest.raises(ValueError, match="repeated"):
        SweepConfig.from_dict({"seeds": [1, 1]})
    with pytest.raises(ValueError, match="fix must be"):
        SweepConfig.from_dict({"fix": ["O_x"]})
    with pytest.raises(ValueError, match="temperature_K must be > 0"):
        SweepConfig.from_dict({"temperatures_K": [300, -5]})


def test_shipped_config_parses():
    import argparse
    from pathlib import Path

    from phonion.cli.md import add_md_parsers, sweep_config_from_args

    parser = argparse.ArgumentParser()
    add_md_parsers(parser.add_subparsers(dest="command"), argparse.HelpFormatter)
    config = Path(__file__).resolve().parents[2] / "configs" / "md.yaml"
    cfg = sweep_config_from_args(parser.parse_args(["md", "--config", str(config), "--seeds", "1", "2"]))
    assert cfg.run.calculator == "chgnet" and cfg.run.surrogate_reference and cfg.seeds == (1, 2)
    assert [r.output for r in cfg.runs()] == ["md-runs/T900_seed1_fixnone", "md-runs/T900_seed2_fixnone"]


def test_local_process_pool_matches_in_process_and_skips_finished(cu32, tmp_path):
    pool = run_sweep(sweep(cu32, tmp_path / "pool"), executor="local", workers=2)
    assert [r["status"] for r in pool] == ["complete"] * 4
    assert all(r["frames"] == 13 and r["steps"] == 60 for r in pool)
    assert [r["run"] for r in pool] == ["T500_seed0_fixnone", "T500_seed1_fixnone",
                                        "T700_seed0_fixnone", "T700_seed1_fixnone"]
    inline = run_sweep(sweep(cu32, tmp_path / "inline"), executor="local", workers=1, progress=False)
    assert_same_files(pool, inline)
    assert not np.array_equal(arrays(pool[0]["path"])[0], arrays(pool[1]["path"])[0])  # seeds differ
    mtimes = [(tmp_path / "pool" / r["run"] / "traj.h5").stat().st_mtime_ns for r in pool]
    again = run_sweep(sweep(cu32, tmp_path / "pool"), executor="local", workers=1)
    assert [r["status"] for r in again] == ["already complete"] * 4
    assert mtimes == [(tmp_path / "pool" / r["run"] / "traj.h5").stat().st_mtime_ns for r in pool]
    summary = json.loads((tmp_path / "pool" / "sweep_summary.json").read_text())
    assert len(summary) == 4 and "T700_seed1_fixnone" in format_summary(summary)


def test_dask_local_cluster_gives_the_same_files(cu32, tmp_path):
    """~10 s on 2 shared cores, most of it starting the LocalCluster's worker processes."""
    pytest.importorskip("distributed")
    local = run_sweep(sweep(cu32, tmp_path / "local"), executor="local", workers=1, progress=False)
    dask = run_sweep(sweep(cu32, tmp_path / "dask"), executor="dask", workers=2)
    assert [r["status"] for r in dask] == ["complete"] * 4
    assert_same_files(local, dask)


def test_failed_run_is_reported_and_others_go_on(cu32, tmp_path):
    rows = run_sweep(sweep(cu32, tmp_path / "s", temperatures_K=[400], seeds=[0], steps=20,
                           max_temperature_factor=0.5), workers=1, progress=False)
    assert rows[0]["status"] == "invalid" and "step 0" in rows[0]["invalid_reason"]
    assert rows[0]["invalid_step"] == 0 and "invalid" in format_summary(rows)


def test_md_command_config_and_overrides(cu32, tmp_path, capsys):
    config = tmp_path / "md.yaml"
    config.write_text(yaml.safe_dump({"structure": cu32, "calculator": "emt", "temperatures_K": [300, 900],
                                      "seeds": [5], "steps": 1000, "timestep_fs": 2.0, "sample_every": 5,
                                      "checkpoint_every": 10, "ensemble": "nve", "output": "ignored"}))
    out = tmp_path / "cli"
    code = md_main(["md", "--config", str(config), "--temperatures-K", "450", "--steps", "20",
                    "--no-progress", "-o", str(out)])
    assert code == 0
    assert "T450_seed5_fixnone" in capsys.readouterr().out
    run = json.loads((out / "T450_seed5_fixnone" / "run.json").read_text())
    assert run["settings"]["ensemble"] == "nve" and run["settings"]["steps"] == 20
    assert run["status"] == "complete" and not (out / "T300_seed5_fixnone").exists()
    with pytest.raises(SystemExit):  # argparse rejects before running
        md_main(["md", "--config", str(config), "--ensemble", "npt", "-o", str(out)])
    config.write_text(yaml.safe_dump({"structure": cu32, "calculator": "emt", "timestep_fs": -1}))
    assert md_main(["md", "--config", str(config), "-o", str(out)]) == 2
    assert "phonion md: error: MD settings: timestep_fs must be > 0" in capsys.readouterr().err
