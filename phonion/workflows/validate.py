"""Is a machine-learned potential fit for MD? The gate before any long MLIP MD (``phonion validate``).

A low force RMSE is not enough: MACE users report potentials with a good test error whose MD
explodes. ``validate(ValidateConfig(model=SPEC, reference=DIR, output=OUT))`` measures, against the
reference runs in DIR (``<T>K/traj.h5`` as ``phonion reference`` writes them, or any trajectory
files with energies and forces):

==================================  ================================================================
check                               passes when
==================================  ================================================================
``force_rmse``                      held-out force RMSE ≤ ``max_force_rmse_meV_A``; held-out = the
                                    last ``held_out_fraction`` of every reference run (the test
                                    block of ``phonion train``'s time-block split with the same
                                    fraction). Also reported per temperature and per species
``no_sanity_trip``                  both validation MD runs end ``complete``: none came closer than
                                    the per-pair floors learned from the reference frames
                                    (``phonion.md.guards.learn_pair_floors``), and none lost temperature
                                    control (see ``phonion.md.guards``)
``min_pair_distance_ratio``         over every species pair, (closest approach in the validation
                                    runs) / (closest approach in the reference frames) ≥ limit
``rdf_first_peak_max_shift_A``      partial-RDF first peaks of the validation run at the hottest
                                    reference temperature vs the reference run at that temperature
``mean_temperature_ratio``          mean kinetic T / set-point of each validation run (the ratio
                                    furthest from 1 is reported) within ± ``max_temperature_deviation``
``coordination``                    coordination numbers of the reference's bonded shells
                                    (``phonion.md.coordination``: Ga–O, Se–O in LiGa(SeO3)2): the MLIP's
                                    at the reference run's measured T, over the stretch the reference run
                                    covers, within ``max_coordination_difference`` neighbours per centre
                                    atom of the reference's (each run's drift is reported beside it)
``uncertainty_p99``                 (committee SPECs only) the 99th percentile of the per-atom
                                    committee force spread over the validation frames ≤ limit
==================================  ================================================================

Two validation runs are made (in parallel processes): one at the hottest reference temperature
T_max (for the like-for-like RDF) and one at ``hot_factor`` × T_max (default 1.1: a potential used up
to T_max must survive above it). Their directories are kept in ``OUT/md`` and resume after a kill.

Output: ``OUT/validation.json`` (also returned), ``OUT/rdf.png``. ``passed`` is true only when
every check passes; a failing check keeps its value and names its limit.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from phonion.core.jsonutil import clean, default
from phonion.md.rdf import mlip_peaks_at

from phonion.workflows.validate_parts import (_SPREAD_KEYS, RDF_BIN_A, RDF_MIN_PEAK, RDF_SMOOTH_A,
                                    _check, _frame_max_spread, _plot_rdf, _spearman, closest_approach,
                                    coordination_check,
                                    load_reference, predict_with_spread, rdf_peaks, rdf_shifts,
                                    reference_files)

__all__ = ["DEFAULT_LIMITS", "RDF_BIN_A", "RDF_MIN_PEAK", "RDF_SMOOTH_A", "ValidateConfig",
           "closest_approach", "load_reference", "predict_with_spread", "rdf_peaks", "rdf_shifts",
           "reference_files", "run_validation_md", "validate"]

#: default limits of the gate (every one can be changed in ValidateConfig)
DEFAULT_LIMITS = {"max_force_rmse_meV_A": 100.0, "min_pair_distance_ratio": 0.8,
                  "max_rdf_shift_A": 0.1, "max_temperature_deviation": 0.05,
                  "uncertainty_factor": 4.0, "max_uncertainty_p99_meV_A": None, "max_coordination_difference": 0.2}


@dataclass(frozen=True)
class ValidateConfig:
    """Settings of ``phonion validate`` (units in the names).

    model : calculator SPEC of the MLIP, e.g. ``mace:train/model.model`` or a committee
        ``mace:m0/model.model,m1/model.model,m2/model.model`` (the mean force drives the MD)
    reference : directory of reference runs (``*K/traj.h5``), or a list of trajectory files
    output : directory for validation.json, the validation MD runs and the RDF figure
    temperature_K : temperature of the RDF run; default the hottest reference temperature
    hot_factor : the stability run is at hot_factor × temperature_K
    steps, equilibration_steps, sample_every, timestep_fs, thermostat_time_fs : validation MD
        (timestep default: the reference's)
    structure, supercell : starting structure of the validation MD; default: the reference's
        own (its metadata), else its first frame
    held_out_fraction : last fraction of every reference run used as held-out frames
    pair_floor_fraction : sanity floors = this × the reference's closest approach of each pair
    workers : processes for the two validation runs (1 torch thread each)
    device : torch device of the MLIP (cpu / cuda)
    """

    model: str
    reference: object
    output: str = "validation"
    temperature_K: float | None = None
    hot_factor: float = 1.1
    steps: int = 1000
    equilibration_steps: int = 200
    sample_every: int = 5
    timestep_fs: float | None = None
    thermostat_time_fs: float = 50.0
    structure: str | None = None
    supercell: tuple = (1, 1, 1)
    held_out_fraction: float = 0.1
    pair_floor_fraction: float = 0.7
    seed: int = 0
    workers: int = 2
    device: str = "cpu"
    max_force_rmse_meV_A: float = DEFAULT_LIMITS["max_force_rmse_meV_A"]
    min_pair_distance_ratio: float = DEFAULT_LIMITS["min_pair_distance_ratio"]
    max_rdf_shift_A: float = DEFAULT_LIMITS["max_rdf_shift_A"]
    max_temperature_deviation: float = DEFAULT_LIMITS["max_temperature_deviation"]
    uncertainty_factor: float = DEFAULT_LIMITS["uncertainty_factor"]
    max_uncertainty_p99_meV_A: float | None = DEFAULT_LIMITS["max_uncertainty_p99_meV_A"]
    max_coordination_difference: float = DEFAULT_LIMITS["max_coordination_difference"]

    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ValueError(f"validate settings: {msg}")

        need(isinstance(self.model, str) and self.model.strip(), "model SPEC must be given")
        need(self.temperature_K is None or self.temperature_K > 0, "temperature_K must be > 0")
        need(self.hot_factor >= 1.0, f"hot_factor must be ≥ 1, got {self.hot_factor}")
        need(0 < self.held_out_fraction < 1, f"held_out_fraction must be in (0, 1), got {self.held_out_fraction}")
        need(0 < self.pair_floor_fraction <= 1, "pair_floor_fraction must be in (0, 1]")
        for name in ("steps", "sample_every", "workers"):
            need(int(getattr(self, name)) >= 1, f"{name} must be ≥ 1")
        need(self.equilibration_steps % self.sample_every == 0,
             "equilibration_steps must be a multiple of sample_every")
        object.__setattr__(self, "supercell", tuple(int(n) for n in self.supercell))


# ---- validation MD ---------------------------------------------------------------------------------
def _md_start(cfg: ValidateConfig, ref: dict) -> tuple[str, tuple, float]:
    """(structure SPEC, supercell, timestep) of the validation MD, from cfg or the reference."""
    hot = ref["runs"][-1]["traj"]
    meta = hot.metadata or {}
    timestep = cfg.timestep_fs or meta.get("timestep_fs") or hot.timestep_fs or 2.0
    if cfg.structure:
        return cfg.structure, cfg.supercell, float(timestep)
    structure = meta.get("structure")
    if structure:
        from phonion.core.structures import BUNDLED_STRUCTURES

        if structure in BUNDLED_STRUCTURES or Path(str(structure)).is_file():
            return str(structure), tuple(int(n) for n in meta.get("supercell", (1, 1, 1))), float(timestep)
    path = Path(cfg.output) / "start.extxyz"
    if not path.is_file():
        import ase.io

        ase.io.write(path, hot.to_atoms(0), format="extxyz")
    return str(path), (1, 1, 1), float(timestep)


def _check_same_model(out: Path, spec) -> None:
    """OUT/md/model.json: the SPEC and the SHA-256 of every model file whose MD is in OUT/md.

    The MD runs resume (and a finished one is reused) by their settings, in which the model is
    only its SPEC; a model retrained into the same file would be judged by the old model's MD.
    Refused with a ValueError naming what changed.
    """
    import hashlib

    from phonion.core.calculators import committee_files

    files = committee_files(spec.target) if spec.kind == "mace" else (
        [spec.target] if spec.kind == "chgnet" and spec.target else [])
    want = {"model": spec.text, "sha256": {str(Path(f).resolve()): hashlib.sha256(Path(f).read_bytes()).hexdigest()
                                           for f in files if Path(f).is_file()}}
    path = out / "md" / "model.json"
    if path.is_file():
        have = json.loads(path.read_text())
        changed = [f for f in set(have.get("sha256", {})) | set(want["sha256"])
                   if have.get("sha256", {}).get(f) != want["sha256"].get(f)]
        if changed or have.get("model") != want["model"]:
            what = f"model files changed since: {', '.join(sorted(changed))}" if changed else \
                f"model {have.get('model')!r}"
            raise ValueError(f"{out}: holds the validation MD of another model ({what}); remove {out} "
                             "or choose another output directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(want, indent=2))


def run_validation_md(cfg: ValidateConfig, ref: dict, floors: dict, t_rdf: float, progress: bool) -> list[dict]:
    """The two validation runs (T_rdf and hot_factor × T_rdf) through ``phonion.md.sweep``; their rows."""
    from phonion.md.md_config import MDConfig
    from phonion.md.sweep import SweepConfig, run_sweep

    structure, supercell, timestep = _md_start(cfg, ref)
    spec = cfg.model if "device=" in cfg.model else (
        cfg.model + ("&" if "?" in cfg.model else "?") + f"device={cfg.device}")
    run = MDConfig(structure=structure, calculator=spec, temperature_K=t_rdf, steps=int(cfg.steps),
                   timestep_fs=timestep, equilibration_steps=int(cfg.equilibration_steps),
                   ensemble="nvt-bussi", sample_every=int(cfg.sample_every), seed=int(cfg.seed),
                   supercell=supercell, thermostat_time_fs=float(cfg.thermostat_time_fs),
                   checkpoint_every=max(int(cfg.sample_every), int(cfg.steps) // 4 // int(cfg.sample_every)
                                        * int(cfg.sample_every)),
                   pair_floors_A=dict(floors), distance_check_every=int(cfg.sample_every),
                   uncertainty_every=int(cfg.sample_every), output="-")
    temps = (round(t_rdf, 3), round(t_rdf * cfg.hot_factor, 3))
    sweep = SweepConfig(temperatures_K=temps, seeds=(int(cfg.seed),), fix=("none",),
                        output=str(Path(cfg.output) / "md"), run=run)
    return run_sweep(sweep, workers=min(int(cfg.workers), 2), resume=True, progress=progress)


def _validation_runs(rows: list[dict]) -> list[dict]:
    """Per validation run: status, mean T, trajectory (None when nothing was written), reason."""
    from phonion.md.io import read_trajectory

    out = []
    for row in rows:
        path = Path(row["path"]).parent  # row["path"] is the run's traj.h5
        rec = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
        traj = None
        if (path / "traj.h5").is_file():
            try:
                traj = read_trajectory(path / "traj.h5")
            except Exception:  # noqa: BLE001 - an empty file of a run that tripped at once
                traj = None
        temps = None if traj is None or traj.temperatures_K is None else traj.temperatures_K
        out.append({"run": row["run"], "path": str(path), "temperature_K": float(row["temperature_K"]),
                    "status": rec.get("status", "failed"),
                    "invalid_reason": rec.get("invalid_reason") or rec.get("message"),
                    "invalid_step": rec.get("invalid_step"),
                    "n_frames": 0 if traj is None else int(traj.n_frames),
                    "mean_temperature_K": None if temps is None or not len(temps) else float(np.mean(temps)),
                    "uncertainty_p99_eV_A": rec.get("uncertainty_p99_eV_A"),
                    "uncertainty_max_eV_A": rec.get("uncertainty_max_eV_A"),
                    "traj": traj})
    return out


# ---- the gate -----------------------------------------------------------------------------------------
def validate(cfg: ValidateConfig, progress: bool = True) -> dict:
    """Run the gate (module docstring); returns and writes ``OUT/validation.json``.

    Raises ValueError for bad settings or unreadable reference data (before any MD runs) and
    ``phonion.core.calculators.CalculatorSpecError`` for a model SPEC that cannot be loaded.
    """
    from phonion.md.guards import learn_pair_floors
    from phonion.core.calculators import committee_files, parse_spec, resolve_calculator
    from phonion.mlip.evaluate import error_metrics, metrics_with_temperatures

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    ref = load_reference(reference_files(cfg.reference), cfg.held_out_fraction)
    spec = parse_spec(cfg.model)
    is_committee = spec.kind == "mace" and len(committee_files(spec.target)) > 1
    calc = resolve_calculator(spec, device=cfg.device)  # one clear error for a bad model, before MD
    pred = predict_with_spread(calc, ref["held_out"])
    del calc
    # per-atom / per-frame spread arrays are not predict()'s: keep them out of the per-T selection
    metrics = metrics_with_temperatures({k: v for k, v in pred.items() if k not in _SPREAD_KEYS})
    ref_trajs = [r["traj"] for r in ref["runs"]]
    frames = [t.to_atoms(f) for t in ref_trajs for f in range(0, t.n_frames, max(1, t.n_frames // 50))]
    floors = learn_pair_floors(frames, fraction=cfg.pair_floor_fraction)
    ref_min = closest_approach(frames)
    temps = [r["temperature_K"] for r in ref["runs"] if r["temperature_K"] is not None]
    t_rdf = float(cfg.temperature_K or (max(temps) if temps else 0.0))
    if t_rdf <= 0:
        raise ValueError(f"{cfg.reference}: the reference runs carry no temperature; give --temperature-K")
    _check_same_model(out, spec)
    rows = run_validation_md(cfg, ref, floors, t_rdf, progress)
    failed = [r for r in rows if str(r["status"]).startswith("failed")]
    if failed:  # e.g. OUT/md holds runs of other settings: never judge a model by another one's MD
        reason = failed[0].get("reason") or failed[0].get("message") or ""
        raise RuntimeError(f"validation MD run {failed[0]['run']} {failed[0]['status']}"
                           + (f": {reason}" if reason else ""))
    runs = _validation_runs(rows)
    result = _verdict(cfg, metrics, pred, runs, ref, ref_min, floors, t_rdf, is_committee, error_metrics)
    _plot_rdf(result.pop("_rdf"), out / "rdf.png")
    result["rdf_plot"] = str(out / "rdf.png")
    tmp = out / "validation.json.tmp"
    tmp.write_text(json.dumps(clean(result), indent=2, default=partial(default, fallback=str), allow_nan=False))
    tmp.replace(out / "validation.json")
    return json.loads((out / "validation.json").read_text())


def _nearest_ref_run(ref: dict, t: float):
    runs = [r for r in ref["runs"] if r["temperature_K"] is not None]
    return min(runs, key=lambda r: abs(r["temperature_K"] - t)) if runs else ref["runs"][-1]


def _rdf_at_reference_t(runs: list[dict], rdf_run: dict, ref_run: dict) -> tuple[dict, list, dict]:
    """(shifts, pairs not compared, RDF data for the figure and JSON) of the validation run(s) vs the reference run:
    the MLIP's peaks at the reference run's measured mean T, from the complete validation runs
    (``phonion.md.rdf.mlip_peaks_at``); the set-point run alone otherwise."""
    if rdf_run["traj"] is None or rdf_run["traj"].n_frames < 2:
        return {}, [], {"reference": None, "mlip": None}
    a, b = rdf_peaks(ref_run["traj"]), rdf_peaks(rdf_run["traj"])
    rdf = {"reference": a, "mlip": b, "t_ref": ref_run["temperature_K"], "t_mlip": rdf_run["temperature_K"]}
    by_t = {r["temperature_K"]: {"run": r["run"], "measured_K": r["mean_temperature_K"],
                                 "peaks": b["peaks"] if r is rdf_run else rdf_peaks(r["traj"])["peaks"]}
            for r in runs if r is rdf_run or (r["status"] == "complete" and r["traj"] is not None
                                              and r["traj"].n_frames >= 2)}
    t_ref = ref_run["traj"].temperatures_K
    t_ref = None if t_ref is None or not len(t_ref) else float(np.mean(t_ref))
    peaks, rdf["compared_at"], _ = mlip_peaks_at(by_t, t_ref, rdf_run["temperature_K"])
    rdf["mlip_compared"] = {k: None if v is None else round(v["r_A"], 3) for k, v in peaks.items()}
    shifts, skipped = rdf_shifts(a, {**b, "peaks": peaks})
    return shifts, skipped, rdf


def _verdict(cfg, metrics, pred, runs, ref, ref_min, floors, t_rdf, is_committee, error_metrics) -> dict:
    """All checks and the JSON object of the command contract."""
    checks = {}
    rmse = metrics["force_rmse_meV_A"]
    checks["force_rmse"] = _check(rmse, cfg.max_force_rmse_meV_A, rmse <= cfg.max_force_rmse_meV_A)
    invalid = [r for r in runs if r["status"] != "complete"]
    checks["no_sanity_trip"] = _check(len(invalid), 0, not invalid)
    trajs = [r["traj"] for r in runs if r["traj"] is not None and r["traj"].n_frames]
    mlip_min = closest_approach(trajs) if trajs else {}
    ratios = {k: mlip_min[k] / ref_min[k] for k in ref_min if k in mlip_min}
    worst = min(ratios.values()) if ratios else None
    checks["min_pair_distance_ratio"] = _check(worst, cfg.min_pair_distance_ratio,
                                               worst is not None and worst >= cfg.min_pair_distance_ratio)
    rdf_run = next((r for r in runs if abs(r["temperature_K"] - t_rdf) < 1e-6), runs[0])
    ref_run = _nearest_ref_run(ref, t_rdf)
    shifts, skipped, rdf = _rdf_at_reference_t(runs, rdf_run, ref_run)
    known = [v for v in shifts.values() if v is not None]
    lost = [k for k, v in shifts.items() if v is None]
    max_shift = None if not shifts or lost else max(known)
    checks["rdf_first_peak_max_shift"] = _check(max_shift, cfg.max_rdf_shift_A,
                                                max_shift is not None and max_shift <= cfg.max_rdf_shift_A)
    coord, lim = coordination_check(ref, ref_run, runs, t_rdf), cfg.max_coordination_difference
    checks["coordination"] = _check(coord["value"], lim,  # no bonded shell: nothing to count, nothing fails
                                    not coord["shells"] or (coord["value"] is not None and coord["value"] <= lim))
    t_ratios = {r["run"]: (r["mean_temperature_K"] / r["temperature_K"]) if r["mean_temperature_K"] else None
                for r in runs}
    finite = [v for v in t_ratios.values() if v is not None]
    t_worst = max(finite, key=lambda v: abs(v - 1.0)) if finite else None
    checks["mean_temperature_ratio"] = _check(
        t_worst, [1 - cfg.max_temperature_deviation, 1 + cfg.max_temperature_deviation],
        t_worst is not None and abs(t_worst - 1.0) <= cfg.max_temperature_deviation and len(finite) == len(runs))
    p99 = None
    if is_committee:
        # limit: uncertainty_factor × the same statistic on the held-out reference frames (the
        # largest per-atom spread of a frame, its 99th percentile): MD may be a little less sure
        # than in-distribution data, not many times less (that is extrapolation); an absolute cap
        # max_uncertainty_p99_meV_A applies on top when given
        vals = [r["uncertainty_p99_eV_A"] for r in runs if r["uncertainty_p99_eV_A"] is not None]
        p99 = 1e3 * max(vals) if vals else None
        held = _frame_max_spread(pred)
        limit = cfg.uncertainty_factor * 1e3 * float(np.nanpercentile(held, 99)) if held.size else None
        if cfg.max_uncertainty_p99_meV_A is not None:
            limit = cfg.max_uncertainty_p99_meV_A if limit is None else min(limit, cfg.max_uncertainty_p99_meV_A)
        checks["uncertainty_p99"] = _check(p99, limit, p99 is not None and limit is not None and p99 <= limit)
    by_t = {k: v["force_rmse_meV_A"] for k, v in metrics.get("per_temperature", {}).items()}
    calib = None
    if is_committee:
        calib = {"spearman_frame_error_vs_spread": _spearman(pred["frame_force_error"], pred["frame_force_std"]),
                 "spearman_atom_error_vs_spread": _spearman(
                     np.linalg.norm(pred["forces_pred"] - pred["forces_ref"], axis=1), pred["force_std"]),
                 "held_out_spread_p99_meV_A": 1e3 * float(np.nanpercentile(pred["force_std"], 99)),
                 "held_out_frame_max_spread_p99_meV_A": 1e3 * float(np.nanpercentile(_frame_max_spread(pred), 99)),
                 "held_out_spread_mean_meV_A": 1e3 * float(np.nanmean(pred["force_std"]))}
    failed = [k for k, c in checks.items() if not c["passed"]]
    return {
        "passed": not failed, "failed_checks": failed, "model": cfg.model, "committee": is_committee,
        "reference": [r["file"] for r in ref["runs"]],
        "force_rmse_meV_A": rmse, "force_rmse_by_temperature_meV_A": by_t,
        "force_rmse_by_species_meV_A": metrics["per_element_force_rmse_meV_A"],
        "energy_mae_meV_atom": metrics["energy_mae_meV_atom"], "n_held_out_frames": metrics["n_frames"],
        "held_out": f"last {cfg.held_out_fraction:g} of every reference run",
        "min_pair_distance_ratio": worst, "min_pair_distance_ratio_by_pair": ratios,
        "reference_closest_approach_A": ref_min, "mlip_closest_approach_A": mlip_min, "pair_floors_A": floors,
        "rdf_first_peak_max_shift_A": max_shift, "rdf_first_peak_shift_by_pair_A": shifts,
        "rdf_pairs_without_mlip_peak": lost, "rdf_pairs_not_compared": skipped,
        "rdf_first_peaks_A": {side: {k: None if v is None else round(v["r_A"], 3) for k, v in rdf[side]["peaks"].items()}
                              for side in ("reference", "mlip") if rdf.get(side)},
        "rdf_first_peak_uncertainty_A": {side: {k: None if v is None or v["err_A"] is None else round(v["err_A"], 3)
                                                for k, v in rdf[side]["peaks"].items()}
                                         for side in ("reference", "mlip") if rdf.get(side)},
        "rdf_temperatures_K": {"reference": rdf.get("t_ref"), "mlip": rdf.get("t_mlip")},
        "rdf_compared_at": rdf.get("compared_at"), "rdf_first_peaks_mlip_compared_A": rdf.get("mlip_compared"),
        "mean_temperature_ratio": t_worst, "mean_temperature_ratio_by_run": t_ratios,
        "coordination_max_difference": coord["value"], "coordination": coord,
        "uncertainty_p99_meV_A": p99, "uncertainty_calibration": calib,
        "validation_runs": [{k: v for k, v in r.items() if k != "traj"} for r in runs],
        "checks": checks, "limits": {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                                     if f.name.startswith(("max_", "min_"))},
        "_rdf": rdf,
    }
