"""Where one MACE force call of MD goes: full call, mace's graph build, and the stress pass.

    python scripts/bench_mace_call.py demo-out/learn/model.model [-o scripts/results/mace_call_profile.json]

One torch thread, the bundled 80-atom LiGa(SeO3)2 cell displaced by 0.05 Å each call (new positions,
as in MD), 200 calls after 20 warm-up calls, for eager float64 and compiled float32
(``mace:M?dtype=float32&compile_mode=default``). "graph build" is ``MACECalculator._atoms_to_batch``
(config, AtomicData with its neighbour list, Batch); "without stress" is the same call with
mace's stress pass off (it runs for every model_type MACE, also when NVT MD never reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def profile(model: str, mode: str, calls: int = 200) -> dict:
    import mace  # noqa: F401  (before e3nn)
    import numpy as np
    import torch

    from phonion.core.calculators import parse_spec, resolve_calculator
    from phonion.core.structures import load_structure

    torch.set_num_threads(1)
    opts = {"eager float64": "?dtype=float64", "compiled float32": "?dtype=float32&compile_mode=default"}[mode]
    calc = resolve_calculator(parse_spec("mace:" + model + opts), device="cpu")
    atoms = load_structure("LiGa_SeO3_2")
    atoms.calc = calc
    rng = np.random.default_rng(0)
    base = atoms.positions.copy()

    def call():
        atoms.positions = base + rng.normal(0, 0.05, base.shape)
        atoms.get_forces()

    t = time.perf_counter()
    call()
    first = time.perf_counter() - t
    for _ in range(20):
        call()

    def per_call(fn) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls * 1e3

    full = per_call(call)
    build = per_call(lambda: calc._atoms_to_batch(atoms))
    calc.model_type = "MACE (stress off for this measurement)"  # compute_stress is tied to model_type
    for _ in range(10):
        call()
    no_stress = per_call(call)
    return {"first_call_s": round(first, 2), "full_ms": round(full, 2), "graph_build_ms": round(build, 2),
            "without_stress_ms": round(no_stress, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("-o", "--output", default=None)
    a = ap.parse_args()
    res = {mode: profile(a.model, mode) for mode in ("eager float64", "compiled float32")}
    print(json.dumps(res, indent=1))
    if a.output:
        Path(a.output).write_text(json.dumps({"command": f"python scripts/bench_mace_call.py {a.model}",
                                              "results": res}, indent=1) + "\n")


if __name__ == "__main__":
    main()
