"""Thread counts of an MD worker, with and without another CPU-bound process: why phonion caps threads.

Usage: python scripts/bench_threads.py MODEL [--steps 60] [--repeats 3] [-o scripts/results/threads.json]

Runs MACE force calls on the bundled 80-atom LiGa(SeO3)2 cell (the demo's model, float64, what one
MD step costs) in a child process with 1 and with all cores' worth of torch threads, first on an idle
machine, then next to one busy process (a pure-Python loop); interleaved repetitions, min and median
ms per call. Also records what ``phonion.core.threads.plan_threads`` picks in each situation.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
import mace  # noqa: F401
import numpy as np
from phonion.core.calculators import resolve_calculator
from phonion.core.structures import load_structure
a = load_structure("LiGa_SeO3_2"); a.calc = resolve_calculator("mace:" + sys.argv[1], device="cpu", dtype="float64")
rng = np.random.default_rng(0)
for _ in range(3):
    a.positions += rng.normal(0, 0.005, a.positions.shape); a.get_forces()
t = time.perf_counter()
for _ in range(int(sys.argv[3])):
    a.positions += rng.normal(0, 0.005, a.positions.shape); a.get_forces()
print(1e3 * (time.perf_counter() - t) / int(sys.argv[3]))
"""


def _busy(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _time(model, threads, steps) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(threads), str(steps)], capture_output=True,
                         text=True, check=True, env=env).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-o", "--output", default="scripts/results/threads.json")
    a = ap.parse_args()
    from phonion.core.threads import available_cores, plan_threads

    cores = available_cores()
    res = {"model": a.model, "cores": cores, "steps": a.steps, "ms_per_call": {}, "plan": {}}
    for busy in (False, True):
        stop = mp.Event()
        proc = None
        if busy:
            proc = mp.Process(target=_busy, args=(stop,), daemon=True)
            proc.start()
            time.sleep(1.0)
        res["plan"]["busy" if busy else "idle"] = plan_threads(1)
        times = {1: [], cores: []}
        for _ in range(a.repeats):
            for n in times:
                times[n].append(_time(a.model, n, a.steps))
        if proc is not None:
            stop.set()
            proc.join(5)
        for n, v in times.items():
            res["ms_per_call"][f"{'busy' if busy else 'idle'}_{n}_threads"] = {"min": min(v), "median": statistics.median(v)}
        print(busy, {n: (round(min(v), 1), round(statistics.median(v), 1)) for n, v in times.items()}, flush=True)
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
