"""scripts/bench_md_engines.py's GPU table (ns/day against atoms and batch size, float32/float64) runs where
no GPU is lent: ``--gpu-device cpu`` runs the same code small, so the branch a GPU session relies on is
known to work (it is otherwise only run when a device is lent)."""

import importlib.util
import json
from pathlib import Path

import pytest
from test_batched import tiny_mace

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_md_engines.py"


def test_gpu_table_code_runs_on_the_cpu(tmp_path):
    import torch

    model = tmp_path / "tiny.model"
    torch.save(tiny_mace(0), model)
    spec = importlib.util.spec_from_file_location("bench_md_engines", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    assert bench.main(["--model", str(model), "--skip-throughput", "--gpu-device", "cpu", "--gpu-max-atoms", "320",
                       "--gpu-calls", "3", "--gpu-no-compile", "--json", str(out)]) == 0
    table = json.loads(out.read_text())["gpu"]
    assert table["device"] == "cpu"
    rows = table["rows"]
    assert {(r["dtype"], r["atoms"], r["batch"]) for r in rows} == {
        (d, n, b) for d in ("float32", "float64") for n, b in ((80, 1), (80, 4), (160, 1), (320, 1))}
    for r in rows:  # ns/day = 86400 s/day × 1 fs / (s per step), in ns
        assert r["ns_per_day_each"] == pytest.approx(86400 / r["s_per_step"] * 1e-6)
        assert r["ns_per_day_total"] == pytest.approx(r["batch"] * r["ns_per_day_each"])
        # one graph built at the warm-up, kept through 3 MD-like moves of 0.01 Å rms (< skin / 2)
        assert r["s_per_step"] > 0 and r["graph_builds"] == 1 and r["peak_memory_GiB"] is None
