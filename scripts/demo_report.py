"""The fit-for-MD must-shows of a finished demo, in one JSON: stage wall times, the learning curve, the
gate, MLIP runs (status, measured / set-point temperature), RDF first-peak shifts at every temperature.

Usage: python scripts/demo_report.py DEMO_OUT [--wall "13:45"] [--note "..."] [-o scripts/results/demo_quick.json]

Reads only the demo's own outputs (chain.json, learn/rounds.json, learn/validation.json,
mlip_md/*/run.json, reference/reference.json, compare/numbers.json); ``--wall`` is the wall-clock time
measured around the command (e.g. by /usr/bin/time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def collect(out: Path) -> dict:
    chain = _load(out / "chain.json") or {}
    summary = _load(out / "summary.json") or {}
    rounds = _load(out / "learn" / "rounds.json") or []
    gate = _load(out / "learn" / "validation.json") or {}
    numbers = _load(out / "compare" / "numbers.json") or {}
    ref = _load(out / "reference" / "reference.json") or {}
    mlip_runs = []
    for rec_path in sorted((out / "mlip_md").glob("*/run.json")):
        rec = json.loads(rec_path.read_text())
        s = rec.get("settings", {})
        mlip_runs.append({"run": rec_path.parent.name, "status": rec.get("status"), "threads": rec.get("threads"),
                          "set_point_K": s.get("temperature_K"), "mean_temperature_K": rec.get("mean_temperature_K"),
                          "ratio": rec.get("temperature_ratio"), "invalid_reason": rec.get("invalid_reason")})
    shifts = numbers.get("rdf_first_peak_shifts") or {}
    return {
        "profile": chain.get("profile"), "settings": chain.get("settings"),
        "stages_wall_s": {k: v.get("wall_s") for k, v in (summary.get("stages") or {}).items()
                          if isinstance(v, dict)} or summary.get("timings_s"),
        "learn_rounds": [{k: r.get(k) for k in ("round", "n_added", "force_rmse_meV_A", "uncertainty_p99_meV_A",
                                                 "gate_passed", "failed_checks", "wall_s")} for r in rounds],
        "gate": {k: gate.get(k) for k in ("passed", "force_rmse_meV_A", "force_rmse_by_temperature_meV_A",
                                           "force_rmse_by_species_meV_A", "energy_mae_meV_atom",
                                           "min_pair_distance_ratio", "rdf_first_peak_max_shift_A",
                                           "mean_temperature_ratio", "uncertainty_p99_meV_A", "coordination_max_difference",
                                           "uncertainty_calibration", "failed_checks")},
        "reference_runs": [{k: r.get(k) for k in ("temperature_K", "mean_temperature_K", "n_frames")}
                           for r in ref.get("runs", [])],
        "mlip_runs": mlip_runs,
        "invalid_runs": numbers.get("invalid_runs"),
        "parity": {k: (numbers.get("mlip", {}).get("numbers", {}).get(k) or {}).get("value")
                   for k in ("parity_force_rmse_meV_A", "parity_energy_mae_meV_atom")},
        "rdf_first_peak_shifts": {
            "max_abs_shift_A": shifts.get("max_abs_shift_A"), "worst": shifts.get("worst"),
            "passed": shifts.get("passed"),
            "by_temperature": {t: {"shifts_A": {p: [round(x["shift_A"], 4), round(x["err_A"] or 0, 4)]
                                                for p, x in v["shifts"].items() if x["shift_A"] is not None},
                                   "not_compared": v["not_compared"], "compared_at": v.get("compared_at"),
                                   "setpoint_shifts_A": {p: None if x is None else round(x, 4)
                                                         for p, x in (v.get("setpoint_shifts_A") or {}).items()}}
                               for t, v in (shifts.get("by_temperature") or {}).items()}},
        "coordination": {k: (numbers.get("coordination") or {}).get(k)
                         for k in ("shells", "limit", "max_abs_difference", "worst", "passed", "drifting_runs")}
        | {"difference_by_temperature": {t: {p: [round(d["value"], 3), None if d["err"] is None else round(d["err"], 3)]
                                             for p, d in v["difference"].items()}
                                         for t, v in ((numbers.get("coordination") or {}).get("by_temperature")
                                                      or {}).items()}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo_out")
    ap.add_argument("--wall", default=None, help="wall-clock time of the demo command")
    ap.add_argument("--note", default=None)
    ap.add_argument("-o", "--output", default="scripts/results/demo_quick.json")
    a = ap.parse_args()
    res = collect(Path(a.demo_out))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    res = {"command": "bash scripts/setup.sh && phonion demo -o demo-out", "commit": commit,
           "demo_wall_clock": a.wall, "note": a.note, **res}
    Path(a.output).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: res[k] for k in ("demo_wall_clock", "stages_wall_s", "learn_rounds", "rdf_first_peak_shifts")},
                     indent=1, ensure_ascii=False)[:3000])


if __name__ == "__main__":
    main()
