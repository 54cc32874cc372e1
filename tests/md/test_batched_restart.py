"""kill -9 during a batched sweep, then --resume: every run has each frame once, bit-identical to a
sweep that was never interrupted (same batch, so the same model arithmetic; see phonion.md.batched_run)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from test_batched import tiny_mace

from phonion.md.io.h5md import read_h5md
from phonion.md.sweep import SweepConfig, run_sweep

SETTINGS = dict(structure="LiGa_SeO3_2", temperatures_K=[300, 600], fix=["none", "O_e"], steps=160,
                timestep_fs=1.0, sample_every=5, checkpoint_every=20, thermostat_time_fs=20.0, seeds=[7],
                max_force_eV_A=1e4)


def test_kill_minus_9_then_resume_no_missing_or_duplicate_frame(tmp_path):
    import torch

    model = tmp_path / "tiny.model"
    torch.save(tiny_mace(0), model)
    config = tmp_path / "md.yaml"
    config.write_text(yaml.safe_dump({**SETTINGS, "calculator": f"mace:{model}"}))
    ref = run_sweep(SweepConfig.from_yaml(config, output=str(tmp_path / "ref")), engine="batched", threads=1,
                    progress=False)
    cmd = [sys.executable, "-m", "phonion.cli.md", "md", "--config", str(config), "--engine", "batched",
           "--threads", "1", "--no-progress", "-o", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    record = tmp_path / "run" / "T600_seed7_fixO_e" / "run.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(record.read_text()).get("steps_done", 0) >= 40:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps_at_kill = [json.loads((tmp_path / "run" / r["run"] / "run.json").read_text())["steps_done"] for r in ref]
    assert all(0 < s < 160 for s in steps_at_kill)
    rows = run_sweep(SweepConfig.from_yaml(config, output=str(tmp_path / "run")), engine="batched", threads=1,
                     resume=True, progress=False)
    assert [r["status"] for r in rows] == ["complete"] * 4
    for r, rr in zip(rows, ref):
        got, want = read_h5md(r["path"]), read_h5md(rr["path"])
        steps = np.rint(got.times_fs / 1.0).astype(int)
        np.testing.assert_array_equal(steps, np.arange(0, 161, 5))  # no frame missing, none twice
        np.testing.assert_array_equal(got.positions, want.positions)  # bit-identical to the uninterrupted run
        np.testing.assert_array_equal(got.velocities, want.velocities)
        rec = json.loads((tmp_path / "run" / r["run"] / "run.json").read_text())
        assert rec["restarts"] and rec["restarts"][-1]["from_step"] in steps_at_kill and rec["engine"] == "batched"
    fixed = json.loads((tmp_path / "run" / "T600_seed7_fixO_e" / "run.json").read_text())["fixed_indices"]
    traj = read_h5md(tmp_path / "run" / "T600_seed7_fixO_e" / "traj.h5")
    assert np.all(traj.positions[:, fixed] == traj.positions[0, fixed])


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
