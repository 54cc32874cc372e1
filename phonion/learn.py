"""Active learning against the reference calculator (``phonion learn``; a stage of the chain).

``run_learn(cfg)`` makes a MACE potential fit for MD, round by round, in ``OUT``:

* **round 0** trains a *committee* of ``committee.size`` MACE models on the data (each with its own
  seed; ``mlip.train``), then runs the gate (:mod:`phonion.validate`) on the committee: the mean
  force drives the validation MD, the spread is the uncertainty.
* **round r ≥ 1** (while the gate fails, up to ``rounds.max_rounds``):

  1. *explore* — committee MD at the target temperatures and ``explore.hot_factor`` × the highest
     (10–15 % above), guarded by per-pair closest-approach floors learned from the training data
     (a run that trips keeps the frames it wrote: the ones before the trip are the most useful);
  2. *harvest* — frames where the committee disagrees (largest per-atom force spread over
     ``harvest.uncertainty_threshold_eV_A``) or where a species pair came closer than
     ``harvest.distance_ratio`` × its closest approach in the training data; at most
     ``harvest.max_frames``, spread over the temperatures, never two neighbouring frames;
  3. *label* — the reference calculator SPEC (CHGNet surrogate here; a user's DFT through
     ``module:function``) computes energy, forces and stress of each frame; frames are written to
     ``round_RRR/labelled_<T>K.extxyz`` one by one, with provenance (round, temperature, source
     run and frame, committee spread) in each frame's info;
  4. *continue training* — every member continues from its previous round's weights
     (``model.foundation`` = its last model, E0s kept) on the original data plus every labelled
     frame so far (``data.train_only_files``: all of them train; the held-out blocks of the
     original runs stay held out);
  5. *gate* — ``phonion validate`` on the new committee.

Every step writes its result before the next starts and is skipped when found, so a killed
``phonion learn`` continues where it stopped when run again. ``OUT/rounds.json`` (a list, one entry
per round: ``round``, ``n_added``, ``force_rmse_meV_A``, ``uncertainty_p99_meV_A``, ``gate_passed``,
``failed_checks``, held-out errors per temperature, the distribution of the committee spread over the
exploration frames, wall times) is rewritten atomically after each round. The final committee is
copied to ``OUT/committee/member_<k>.model`` and its first member to ``OUT/model.model``; the SPEC
to use it is ``OUT/committee.json["spec"]``.
"""

from __future__ import annotations

import copy
import difflib
import glob
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

#: defaults of configs/learn.yaml (every key; unknown keys are refused with the nearest one named)
DEFAULTS: dict = {
    "output": "learn",
    "reference_calculator": "chgnet",
    "device": "cpu",
    "data": {"files": []},
    "committee": {"size": 3, "workers": 2},
    "train": {"seed": 123, "dtype": "float64",
              "data": {"fractions": [0.8, 0.1, 0.1], "gap_frames": 3, "every": 1},
              "model": {"r_max": 4.5, "num_channels": 16, "max_L": 0, "max_ell": 2, "correlation": 2,
                        "num_interactions": 2, "num_radial_basis": 6, "radial_MLP": [16, 16],
                        "pair_repulsion": True},
              "trainer": {"max_epochs": 40, "batch_size": 4, "val_batch_size": 16, "patience": 0,
                          "progress_bar": False, "accelerator": "cpu"},
              "wandb": {"mode": "disabled"}},
    "finetune": {"max_epochs": 15, "lr": 0.005},
    "explore": {"temperatures_K": None, "hot_factor": 1.15, "steps": 500, "equilibration_steps": 50,
                "sample_every": 5, "timestep_fs": None, "thermostat_time_fs": 50.0,
                "pair_floor_fraction": 0.7, "workers": 2, "structure": None, "supercell": [1, 1, 1]},
    "harvest": {"max_frames": 24, "uncertainty_threshold_eV_A": 0.15, "distance_ratio": 0.9,
                "min_separation_frames": 2, "max_force_eV_A": 30.0, "weight": 4.0,
                "contact_fractions": [0.75, 0.85]},
    "validate": {"steps": 1000, "equilibration_steps": 200, "hot_factor": 1.1},
    "rounds": {"max_rounds": 3, "min_rounds": 0, "gate_every_round": False},
}

ROUNDS_NAME = "rounds.json"


# ---- configuration -----------------------------------------------------------------------------------
def _merge(base: dict, new: dict, where: str, free: tuple = ("train", "validate")) -> dict:
    """``new`` over ``base``; keys unknown to ``base`` are refused (nearest known key suggested),
    except below the sections in ``free`` (checked later by their own config classes)."""
    out = copy.deepcopy(base)
    for key, value in (new or {}).items():
        if key not in base and where.split(".")[0] not in free:
            near = difflib.get_close_matches(str(key), list(base), n=1)
            raise ValueError(f"learn config: unknown key {where + '.' if where else ''}{key}"
                             + (f" (did you mean {near[0]!r}?)" if near else f"; known: {sorted(base)}"))
        name = f"{where}.{key}" if where else key
        if isinstance(base.get(key), dict) and value is None:  # an empty section in YAML
            value = {}
        if isinstance(base.get(key), dict) and not isinstance(value, dict):
            raise ValueError(f"learn config: {name} is a section (keys {sorted(base[key])}), got {value!r}")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, name, free)
        else:
            out[key] = value
    return out


def load_learn_config(path=None, overrides=(), **given) -> dict:
    """configs/learn.yaml (or the defaults) + ``key.sub=value`` overrides + the command's options.

    Validated before any work: unknown keys, bad numbers, an empty data list, a SPEC that does not
    parse and the train section (through ``mlip.train.config_from_dict``) give one ValueError.
    """
    import yaml

    from mlip.train import apply_overrides

    data = {}
    if path is not None:
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must hold a mapping of sections")
    data = apply_overrides(data, overrides)
    if given.get("data") is not None:
        data.setdefault("data", {})["files"] = list(given.pop("data"))
    data.update({k: v for k, v in given.items() if v is not None})
    cfg = _merge(DEFAULTS, data, "")
    _validate_config(cfg)
    return cfg


def learn_config_from_dict(data: dict) -> dict:
    """The full, validated learn settings from a (partial) nested mapping (the chain's profile)."""
    cfg = _merge(DEFAULTS, data, "")
    _validate_config(cfg)
    return cfg


def _validate_config(cfg: dict) -> None:
    from mlip.calculators import parse_spec
    from mlip.train import config_from_dict

    def need(ok, msg):
        if not ok:
            raise ValueError(f"learn config: {msg}")

    need(cfg["data"]["files"], "data.files is empty: give the reference trajectories (--data)")
    parse_spec(cfg["reference_calculator"])
    need(int(cfg["committee"]["size"]) >= 2, "committee.size must be ≥ 2 (3 or more recommended)")
    need(int(cfg["rounds"]["max_rounds"]) >= 0, "rounds.max_rounds must be ≥ 0")
    need(int(cfg["harvest"]["max_frames"]) >= 1, "harvest.max_frames must be ≥ 1")
    need(float(cfg["harvest"]["uncertainty_threshold_eV_A"]) > 0, "harvest.uncertainty_threshold_eV_A must be > 0")
    need(float(cfg["explore"]["hot_factor"]) >= 1.0, "explore.hot_factor must be ≥ 1")
    need(int(cfg["explore"]["steps"]) >= int(cfg["explore"]["sample_every"]), "explore.steps < sample_every")
    need(int(cfg["finetune"]["max_epochs"]) >= 1, "finetune.max_epochs must be ≥ 1")
    config_from_dict({**member_train_dict(cfg, 0, "/nonexistent", []), "output": "x"})
    import dataclasses

    from phonion.validate import ValidateConfig

    known = {f.name for f in dataclasses.fields(ValidateConfig)} - {"model", "reference", "output"}
    for key in cfg["validate"]:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            raise ValueError(f"learn config: unknown key validate.{key}"
                             + (f" (did you mean {near[0]!r}?)" if near else f"; known: {sorted(known)}"))
    try:  # the values too (e.g. equilibration_steps a multiple of sample_every), before any training
        ValidateConfig(model="mace:check", reference=[], **cfg["validate"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"learn config: validate section: {exc}") from None


def data_files(cfg: dict) -> list[str]:
    """The reference trajectories of ``data.files`` (globs expanded; a glob without match is an error)."""
    out = []
    for entry in cfg["data"]["files"]:
        matches = sorted(glob.glob(entry)) if glob.has_magic(entry) else [entry]
        if not matches or not all(Path(m).is_file() for m in matches):
            raise ValueError(f"data.files: {entry!r} matches no file")
        out.extend(matches)
    return out


def member_train_dict(cfg: dict, k: int, output: str, labelled: list[str], foundation: str | None = None) -> dict:
    """The ``mlip.train`` config of committee member ``k`` (fine-tuning ``foundation`` when given)."""
    d = copy.deepcopy(cfg["train"])
    d["output"] = output
    d["seed"] = int(d.get("seed", 123)) + 1000 * k
    d.setdefault("data", {})["files"] = list(cfg["data"]["files"])
    d["data"]["train_only_files"] = list(labelled)
    d["data"]["train_only_weight"] = float(cfg["harvest"]["weight"])
    trainer = d.setdefault("trainer", {})
    trainer["num_threads"] = 1
    trainer["resume"] = True
    trainer.setdefault("progress_bar", False)
    if foundation is not None:
        d.setdefault("model", {}).update(foundation=str(foundation), foundation_e0s="foundation")
        trainer["max_epochs"] = int(cfg["finetune"]["max_epochs"])
        d.setdefault("optim", {})["lr"] = float(cfg["finetune"]["lr"])
    d.setdefault("export", {})["parity_plots"] = k == 0
    return d


# ---- steps of a round ------------------------------------------------------------------------------
def _log(progress: bool, text: str) -> None:
    if progress:
        print(f"phonion learn: {text}", file=sys.stderr, flush=True)


def _train_member(train_dict: dict) -> dict:
    """Worker: train (or continue) one committee member; returns its model file and test errors."""
    import mace  # noqa: F401  (before e3nn)

    from mlip.train import config_from_dict, run

    out = Path(train_dict["output"])
    if (out / "model.model").is_file() and (out / "metrics.json").is_file():
        metrics = json.loads((out / "metrics.json").read_text())
    else:
        metrics = run(config_from_dict(train_dict))
    return {"model": str(out / "model.model"), "test": metrics.get("test"), "val": metrics.get("val"),
            "epochs": (metrics.get("training") or {}).get("epochs_completed"),
            "fit_wall_s": (metrics.get("training") or {}).get("fit_wall_s")}


def _pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from md.sweep import _worker_init

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(1, os.getpid()))


def train_committee(cfg: dict, round_dir: Path, labelled: list[str], previous: list[str] | None,
                    progress: bool) -> list[dict]:
    """Train the members of one round (continuing ``previous`` models when given), in processes."""
    size = int(cfg["committee"]["size"])
    dicts = [member_train_dict(cfg, k, str(round_dir / f"member_{k}"), labelled,
                               None if previous is None else previous[k]) for k in range(size)]
    todo = [d for d in dicts if not (Path(d["output"]) / "metrics.json").is_file()]
    _log(progress, f"{round_dir.name}: training {len(todo)} of {size} committee members "
                   f"({'continuing the previous round' if previous else 'from scratch'})")
    workers = max(1, min(int(cfg["committee"]["workers"]), len(todo)))
    if todo and workers > 1:
        with _pool(workers) as pool:
            for d, res in zip(todo, pool.map(_train_member, todo)):
                _log(progress, f"{round_dir.name}: {Path(d['output']).name} done "
                               f"(test force RMSE {((res['test'] or {}).get('force_rmse_meV_A') or float('nan')):.1f} meV/Å)")
    return [_train_member(d) for d in dicts]  # finished members only read their metrics


def committee_spec(models: list[str], device: str = "cpu") -> str:
    """Calculator SPEC of a committee (mace's MACECalculator over every member)."""
    return "mace:" + ",".join(str(m) for m in models) + f"?device={device}"


def training_frames(cfg: dict, labelled: list[str], n_max: int = 200) -> list:
    """ase.Atoms of the training data (the original runs and the labelled frames), at most ~n_max."""
    from md.io import read_trajectory

    frames = []
    files = data_files(cfg) + list(labelled)
    for path in files:
        traj = read_trajectory(path)
        step = max(1, traj.n_frames * len(files) // n_max)
        frames.extend(traj.to_atoms(i) for i in range(0, traj.n_frames, step))
    return frames


def explore(cfg: dict, round_dir: Path, spec: str, floors: dict, temps: list[float], progress: bool) -> list[dict]:
    """Committee MD at ``temps`` (guarded by ``floors``); rows of ``md.sweep`` (invalid runs included)."""
    from md.md_config import MDConfig
    from md.sweep import SweepConfig, run_sweep

    e = cfg["explore"]
    structure, supercell, timestep = _start(cfg, round_dir)
    every = int(e["sample_every"])
    run = MDConfig(structure=structure, calculator=spec, temperature_K=float(temps[0]), steps=int(e["steps"]),
                   timestep_fs=timestep, equilibration_steps=int(e["equilibration_steps"]) // every * every,
                   ensemble="nvt-bussi", sample_every=every, seed=int(cfg["train"].get("seed", 0)),
                   supercell=supercell, thermostat_time_fs=float(e["thermostat_time_fs"]),
                   checkpoint_every=max(every, int(e["steps"]) // 4 // every * every),
                   pair_floors_A=dict(floors), uncertainty_every=every, distance_check_every=every,
                   output="-")
    sweep = SweepConfig(temperatures_K=tuple(round(float(t), 3) for t in temps), seeds=(run.seed,),
                        fix=("none",), output=str(round_dir / "explore"), run=run)
    _log(progress, f"{round_dir.name}: exploring at {', '.join(f'{t:g}' for t in sweep.temperatures_K)} K "
                   f"({e['steps']} steps each, committee MD)")
    return run_sweep(sweep, workers=max(1, int(e["workers"])), resume=True, progress=False)


def _start(cfg: dict, round_dir: Path) -> tuple[str, tuple, float]:
    """(structure, supercell, timestep) of exploratory MD: the config's, else the reference's own."""
    from md.io import read_trajectory

    e = cfg["explore"]
    files = data_files(cfg)
    traj = read_trajectory(files[-1])
    meta = traj.metadata or {}
    timestep = float(e["timestep_fs"] or meta.get("timestep_fs") or traj.timestep_fs or 2.0)
    if e["structure"]:
        return str(e["structure"]), tuple(int(n) for n in e["supercell"]), timestep
    structure = meta.get("structure")
    from phonion.structures import BUNDLED_STRUCTURES

    if structure and (structure in BUNDLED_STRUCTURES or Path(str(structure)).is_file()):
        return str(structure), tuple(int(n) for n in meta.get("supercell", (1, 1, 1))), timestep
    path = round_dir.parent / "start.extxyz"
    if not path.is_file():
        import ase.io

        ase.io.write(path, traj.to_atoms(0), format="extxyz")
    return str(path), (1, 1, 1), timestep


def harvest(cfg: dict, rows: list[dict], train_min: dict) -> tuple[list[dict], dict]:
    """Frames of the exploration runs to label, and the spread distribution over all their frames.

    Returns
    -------
    picked : list of {run, path, frame, temperature_K, uncertainty_eV_A, distance_ratio, why}
    stats : committee spread percentiles (p50/p90/p99/max, meV/Å) over the exploration frames,
        frames seen, frames over the threshold, runs that tripped a guard
    """
    from md.io import read_trajectory

    from phonion.validate import closest_approach

    h = cfg["harvest"]
    thr, ratio_lim = float(h["uncertainty_threshold_eV_A"]), float(h["distance_ratio"])
    cands, spreads, tripped = [], [], []
    for row in rows:
        path = Path(row["path"])  # the run's traj.h5
        if str(row.get("status", "")).startswith("invalid") or "invalid" in str(row.get("status", "")):
            tripped.append(row["run"])
        if not path.is_file():
            continue
        try:
            traj = read_trajectory(path)
        except Exception:  # noqa: BLE001 - a run that tripped before its first frame
            continue
        u = traj.force_uncertainty_max_eV_A
        u = np.full(traj.n_frames, np.nan) if u is None else np.asarray(u, float)
        spreads.extend(u[np.isfinite(u)].tolist())
        for i in range(traj.n_frames):
            dmin = closest_approach([traj.to_atoms(i)])
            ratio = min((dmin[k] / train_min[k] for k in dmin if k in train_min), default=1.0)
            why = [w for w, bad in (("uncertainty", np.isfinite(u[i]) and u[i] > thr),
                                    ("distance", ratio < ratio_lim)) if bad]
            cands.append({"run": row["run"], "path": str(path), "frame": i,
                          "temperature_K": float(row["temperature_K"]),
                          "uncertainty_eV_A": None if not np.isfinite(u[i]) else float(u[i]),
                          "distance_ratio": float(ratio), "why": why})
    flagged = [c for c in cands if c["why"]]
    pool = flagged or cands  # nothing flagged but the gate failed: the most uncertain frames
    picked = _pick(pool, int(h["max_frames"]), int(h["min_separation_frames"]))
    sp = np.asarray(spreads) * 1e3
    stats = {"n_frames_explored": len(cands), "n_flagged": len(flagged), "runs_tripped": tripped,
             "uncertainty_threshold_meV_A": 1e3 * thr,
             **({f"spread_p{q}_meV_A": float(np.percentile(sp, q)) for q in (50, 90, 99)} if sp.size else {}),
             "spread_max_meV_A": float(sp.max()) if sp.size else None,
             "picked_from": "flagged frames" if flagged else "most uncertain frames (none over the thresholds)"}
    return picked, stats


def _pick(pool: list[dict], n_max: int, separation: int) -> list[dict]:
    """Up to ``n_max`` frames, distance-flagged first, then by spread; shared fairly between the
    temperatures; no two within ``separation`` frames of each other in one run."""
    def score(c):
        return ("distance" in c["why"], c["uncertainty_eV_A"] or 0.0, -c["distance_ratio"])

    by_run: dict[str, list] = {}
    for c in sorted(pool, key=score, reverse=True):
        by_run.setdefault(c["run"], []).append(c)
    picked, taken = [], {r: [] for r in by_run}
    while len(picked) < n_max and any(by_run.values()):
        for run in list(by_run):  # round robin over the runs (temperatures)
            while by_run[run]:
                c = by_run[run].pop(0)
                if all(abs(c["frame"] - f) > separation for f in taken[run]):
                    picked.append(c)
                    taken[run].append(c["frame"])
                    break
            if len(picked) >= n_max:
                break
    return picked


def label(cfg: dict, round_dir: Path, picked: list[dict], rnd: int, progress: bool) -> list[str]:
    """Label the picked frames with the reference calculator → ``labelled_<T>K.extxyz`` per temperature.

    Each file is rewritten atomically after every frame, so a kill loses at most the frame being
    computed; a rerun skips frames already there. A calculator that fails or returns non-finite
    values stops with one error naming the round, run and frame (labelled frames are kept).
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from md.io import read_trajectory
    from mlip.calculators import resolve_calculator

    spec = cfg["reference_calculator"]
    groups: dict[float, list] = {}
    for c in picked:
        groups.setdefault(c["temperature_K"], []).append(c)
    files, calc, n_kept = [], None, 0
    skipped_path = round_dir / "skipped.json"
    skipped = json.loads(skipped_path.read_text()) if skipped_path.is_file() else []
    gone = {(c["run"], c["frame"]) for c in skipped}
    for temp, items in sorted(groups.items()):
        path = round_dir / f"labelled_{temp:g}K.extxyz"
        done = ase.io.read(path, index=":") if path.is_file() else []
        have = {(a.info.get("source_run"), int(a.info.get("source_frame", -1))) for a in done}
        n_kept += len(done)
        for c in items:
            if (c["run"], c["frame"]) in have or (c["run"], c["frame"]) in gone:
                continue
            if calc is None:
                _log(progress, f"{round_dir.name}: labelling {len(picked)} frames with {spec}")
                calc = resolve_calculator(spec, device=cfg["device"])
            atoms = read_trajectory(c["path"]).to_atoms(c["frame"])
            atoms.wrap()
            atoms.calc = calc
            where = f"round {rnd}, run {c['run']}, frame {c['frame']}"
            try:
                energy, forces = float(atoms.get_potential_energy()), np.array(atoms.get_forces())
                stress = np.array(atoms.get_stress()) if "stress" in getattr(calc, "implemented_properties", ()) else None
            except Exception as exc:  # noqa: BLE001 - a user's DFT setup can fail in any way
                raise RuntimeError(f"reference calculator {spec!r} failed on {where}: {type(exc).__name__}: "
                                   f"{exc}; the {n_kept} frames labelled so far are kept in "
                                   f"{round_dir}/labelled_*K.extxyz; fix the calculator and run the same "
                                   "command again") from exc
            if not (np.isfinite(energy) and np.isfinite(forces).all()):
                raise RuntimeError(f"reference calculator {spec!r} returned non-finite energy/forces on "
                                   f"{where}; the {n_kept} frames labelled so far are kept in "
                                   f"{round_dir}/labelled_*K.extxyz")
            fmax = float(np.linalg.norm(forces, axis=1).max())
            if fmax > float(cfg["harvest"]["max_force_eV_A"]):  # a collision no MD needs to describe
                skipped.append({**c, "reference_max_force_eV_A": fmax})
                _write_json(skipped_path, skipped)
                continue
            out = atoms.copy()
            out.info = {"source_run": c["run"], "source_frame": int(c["frame"]), "round": int(rnd),
                        "temperature_K": float(temp),
                        # NaN, not None: extxyz writes a None value as a bare flag (read back as True)
                        "committee_spread_eV_A": (float("nan") if c["uncertainty_eV_A"] is None
                                                  else float(c["uncertainty_eV_A"])),
                        "distance_ratio": c["distance_ratio"], "why": ",".join(c["why"]) or "most uncertain",
                        "labelled_by": spec}
            out.calc = SinglePointCalculator(out, energy=energy, forces=forces,
                                             **({"stress": stress} if stress is not None else {}))
            done.append(out)
            n_kept += 1
            tmp = path.with_suffix(".extxyz.tmp")
            ase.io.write(tmp, done, format="extxyz")
            tmp.replace(path)
        if path.is_file():
            files.append(str(path))
    return files


def gate(cfg: dict, round_dir: Path, spec: str, progress: bool) -> dict:
    """``phonion validate`` of the round's committee (resumes; the result is kept in the round)."""
    from phonion.validate import ValidateConfig, validate

    path = round_dir / "validation" / "validation.json"
    if path.is_file():
        return json.loads(path.read_text())
    _log(progress, f"{round_dir.name}: gate (phonion validate) on the committee")
    # the validate section may set any ValidateConfig field, workers / device / seed included
    v = {"workers": int(cfg["explore"]["workers"]), "device": cfg["device"],
         "seed": int(cfg["train"].get("seed", 0)), **cfg["validate"]}
    vc = ValidateConfig(model=spec, reference=data_files(cfg), output=str(round_dir / "validation"), **v)
    return validate(vc, progress=False)


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def _record(rnd: int, n_added: int, n_labelled: int, members: list[dict], val: dict | None, stats: dict,
            wall: float) -> dict:
    tests = [(m.get("test") or {}).get("force_rmse_meV_A") for m in members]
    return {"round": rnd, "n_added": n_added, "n_labelled_total": n_labelled,
            "force_rmse_meV_A": None if val is None else val["force_rmse_meV_A"],
            "force_rmse_by_temperature_meV_A": None if val is None else val["force_rmse_by_temperature_meV_A"],
            "force_rmse_by_species_meV_A": None if val is None else val["force_rmse_by_species_meV_A"],
            "member_test_force_rmse_meV_A": tests,
            "uncertainty_p99_meV_A": None if val is None else val["uncertainty_p99_meV_A"],
            "uncertainty_calibration": None if val is None else val.get("uncertainty_calibration"),
            "gate_passed": bool(val and val["passed"]), "gate_checked": val is not None,
            "failed_checks": None if val is None else val["failed_checks"],
            "checks": None if val is None else val["checks"],
            "exploration": stats, "models": [m["model"] for m in members], "wall_s": round(wall, 1)}


def run_learn(cfg: dict, progress: bool = True) -> list[dict]:
    """Run (or continue) active learning (module docstring); returns the rounds (``rounds.json``)."""
    from md.guards import learn_pair_floors

    from phonion.validate import closest_approach

    files = data_files(cfg)  # a data glob without match fails before OUT and learn.json exist
    out = Path(cfg["output"]).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    _check_same(out, cfg)
    rounds_path = out / ROUNDS_NAME
    rounds = json.loads(rounds_path.read_text()) if rounds_path.is_file() else []
    labelled: list[str] = sorted({f for r in rounds for f in r.get("labelled_files", [])})
    min_rounds = int(cfg["rounds"].get("min_rounds", 0))
    max_rounds = int(cfg["rounds"]["max_rounds"])
    members, previous = None, None
    for rnd in range(max_rounds + 1):
        round_dir = out / f"round_{rnd:03d}"
        round_dir.mkdir(exist_ok=True)
        if rnd < len(rounds):  # finished earlier
            previous = rounds[rnd]["models"]
            if rounds[rnd]["gate_passed"] and rnd >= min_rounds:
                break
            continue
        t0 = time.perf_counter()
        stats, new = {}, []
        if rnd > 0:
            spec = committee_spec(previous, cfg["device"])
            train_frames = training_frames(cfg, labelled)
            floors = learn_pair_floors(train_frames, fraction=float(cfg["explore"]["pair_floor_fraction"]))
            temps = _explore_temperatures(cfg, files)
            rows = explore(cfg, round_dir, spec, floors, temps, progress)
            # the previous gate's validation runs are long committee MD at and above the top
            # temperature: a rare collision the short exploration misses shows up there first
            rows = rows + gate_rows(out / f"round_{rnd - 1:03d}")
            train_min = closest_approach(train_frames)
            picked, stats = harvest(cfg, rows, train_min)
            contacts = contact_candidates(cfg, round_dir, train_frames, train_min, temps, rnd)
            stats["n_contact_frames"] = len(contacts)
            picked = picked + contacts
            stats["explore_runs"] = [{k: r.get(k) for k in ("run", "status", "frames", "mean_T_K")} for r in rows]
            _write_json(round_dir / "picked.json", picked)
            new = label(cfg, round_dir, picked, rnd, progress)
            labelled = sorted(set(labelled) | set(new))
        members = train_committee(cfg, round_dir, labelled, previous, progress)
        check = rnd >= min_rounds or rnd == max_rounds or bool(cfg["rounds"].get("gate_every_round"))
        val = gate(cfg, round_dir, committee_spec([m["model"] for m in members], cfg["device"]), progress) \
            if check else None
        n_added = sum(len(_frames_in(f)) for f in new)
        rec = _record(rnd, n_added, sum(len(_frames_in(f)) for f in labelled), members, val, stats,
                      time.perf_counter() - t0)
        rec["labelled_files"] = new
        rounds.append(rec)
        _write_json(rounds_path, rounds)
        _log(progress, f"round {rnd}: +{n_added} frames; held-out force RMSE "
                       f"{rec['force_rmse_meV_A'] if rec['force_rmse_meV_A'] is None else round(rec['force_rmse_meV_A'], 1)}"
                       f" meV/Å; gate {'passed' if rec['gate_passed'] else ('failed: ' + ', '.join(rec['failed_checks'] or [])) if check else 'not run'}")
        previous = rec["models"]
        if rec["gate_passed"] and rnd >= min_rounds:
            break
    _export(out, rounds)
    return rounds


def contact_candidates(cfg: dict, round_dir: Path, frames: list, train_min: dict, temps: list[float],
                       rnd: int) -> list[dict]:
    """Close-contact configurations for the labeller: the repulsive wall of every species pair.

    MD rarely brings two atoms closer than the data ever had them until the potential is already
    wrong there (a Li–Li pair at 1.5 Å in a hot run, where the reference's closest was 2.15 Å). For
    each species pair and each fraction f of ``harvest.contact_fractions`` a training frame is
    taken, and the second atom of its closest pair of that species is moved along the bond until
    the pair is f × the closest approach in the data. Written to ``contacts_input.extxyz`` (no
    labels) and returned as harvest candidates (labelled like the others, ``why: contact``).
    """
    import ase.io

    from md.guards import closest_pairs

    fractions = [float(f) for f in (cfg["harvest"].get("contact_fractions") or [])]
    if not fractions or not frames:
        return []
    path = round_dir / "contacts_input.extxyz"
    rng = np.random.default_rng(1000 + rnd)
    made, cands = [], []
    for pair, dmin in sorted(train_min.items()):
        frame = frames[int(rng.integers(len(frames)))]
        found = closest_pairs(frame, [pair], cutoff=dmin + 1.5).get(pair)
        if found is None:
            continue
        d, i, j = found
        if i == j:  # an atom and its own image: moving it cannot shorten the pair
            continue
        bond = frame.get_distance(i, j, mic=True, vector=True)
        for f in fractions:
            new = frame.copy()
            new.positions[j] -= bond / np.linalg.norm(bond) * (d - f * dmin)
            cands.append({"run": f"contact_{pair}", "path": str(path), "frame": len(made),
                          "temperature_K": float(max(temps)), "uncertainty_eV_A": None,
                          "distance_ratio": f, "why": ["contact"]})
            made.append(new)
    if made and not path.is_file():
        ase.io.write(path, made, format="extxyz")
    return cands


def gate_rows(round_dir: Path) -> list[dict]:
    """The validation runs of a round's gate as harvest rows (run, path, temperature, status)."""
    path = round_dir / "validation" / "validation.json"
    if not path.is_file():
        return []
    runs = json.loads(path.read_text()).get("validation_runs") or []
    return [{"run": f"gate{round_dir.name[-3:]}_{r['run']}", "path": str(Path(r["path"]) / "traj.h5"),
             "temperature_K": r["temperature_K"], "status": r["status"]}
            for r in runs if (Path(r["path"]) / "traj.h5").is_file()]


def _frames_in(path: str) -> list:
    import ase.io

    return ase.io.read(path, index=":") if Path(path).is_file() else []


def _explore_temperatures(cfg: dict, files: list[str]) -> list[float]:
    from mlip.data import temperature_from_name

    temps = cfg["explore"]["temperatures_K"]
    if not temps:
        temps = sorted({t for t in (temperature_from_name(f) for f in files) if t})
        if not temps:
            raise ValueError("explore.temperatures_K: the data files carry no temperature in their "
                             "names; give the temperatures to explore")
    temps = sorted(float(t) for t in temps)
    hot = round(max(temps) * float(cfg["explore"]["hot_factor"]), 1)
    return temps + ([hot] if hot > max(temps) else [])


def _check_same(out: Path, cfg: dict) -> None:
    """OUT/learn.json records the settings; a rerun with other settings is refused (not mixed)."""
    path = out / "learn.json"
    record = json.loads(json.dumps(cfg, default=str))
    if path.is_file():
        old = json.loads(path.read_text())
        keep = ("rounds", "output")  # more rounds may be asked for when continuing
        diff = _differences({k: v for k, v in old.items() if k not in keep},
                            {k: v for k, v in record.items() if k not in keep})
        if diff:
            raise ValueError(f"{path}: the active learning in {out} was made with other settings "
                             f"({', '.join(diff)}); rerun with the same settings or choose another output")
    _write_json(path, record)


def _differences(a, b, where: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings (sorted)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [where or "settings"]
    out = []
    for key in sorted(set(a) | set(b), key=str):
        name = f"{where}.{key}" if where else str(key)
        if key not in a or key not in b:
            out.append(name)
        else:
            out.extend(_differences(a[key], b[key], name))
    return out


def _export(out: Path, rounds: list[dict]) -> None:
    """The last round's committee → OUT/committee/member_<k>.model, OUT/model.model, committee.json."""
    if not rounds:
        return
    last = rounds[-1]
    cdir = out / "committee"
    cdir.mkdir(exist_ok=True)
    files = []
    for k, m in enumerate(last["models"]):
        target = cdir / f"member_{k}.model"
        shutil.copyfile(m, target)
        files.append(str(target))
    shutil.copyfile(files[0], out / "model.model")
    val = out / f"round_{last['round']:03d}" / "validation" / "validation.json"
    if val.is_file():
        shutil.copyfile(val, out / "validation.json")
    _write_json(out / "committee.json", {"members": files, "spec": "mace:" + ",".join(files),
                                         "round": last["round"], "gate_passed": last["gate_passed"]})
