"""The steps of an active-learning round (``phonion.workflows.learn``): committee training, exploration,
harvest, close-contact frames, labelling with the reference calculator, and the gate."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from phonion.workflows.learn_config import data_files, member_train_dict


# ---- steps of a round ------------------------------------------------------------------------------
def _log(progress: bool, text: str) -> None:
    if progress:
        print(f"phonion learn: {text}", file=sys.stderr, flush=True)


def _train_member(train_dict: dict) -> dict:
    """Worker: train (or continue) one committee member; returns its model file and test errors."""
    import mace  # noqa: F401  (before e3nn)

    from phonion.mlip.train import config_from_dict, run

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

    from phonion.md.sweep import _worker_init

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


def committee_spec(models: list[str], device: str = "cpu", dtype: str | None = None) -> str:
    """Calculator SPEC of a committee (mace's MACECalculator over every member)."""
    return "mace:" + ",".join(str(m) for m in models) + f"?device={device}" + (f"&dtype={dtype}" if dtype else "")


def training_frames(cfg: dict, labelled: list[str], n_max: int = 200) -> list:
    """ase.Atoms of the training data (the original runs and the labelled frames), at most ~n_max."""
    from phonion.md.io import read_trajectory

    frames = []
    files = data_files(cfg) + list(labelled)
    for path in files:
        traj = read_trajectory(path)
        step = max(1, traj.n_frames * len(files) // n_max)
        frames.extend(traj.to_atoms(i) for i in range(0, traj.n_frames, step))
    return frames


def explore(cfg: dict, round_dir: Path, spec: str, floors: dict, temps: list[float], progress: bool) -> list[dict]:
    """Committee MD at ``temps`` (guarded by ``floors``); rows of ``phonion.md.sweep`` (invalid runs included)."""
    from phonion.md.md_config import MDConfig
    from phonion.md.sweep import SweepConfig, run_sweep

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
    from phonion.md.io import read_trajectory

    e = cfg["explore"]
    files = data_files(cfg)
    traj = read_trajectory(files[-1])
    meta = traj.metadata or {}
    timestep = float(e["timestep_fs"] or meta.get("timestep_fs") or traj.timestep_fs or 2.0)
    if e["structure"]:
        return str(e["structure"]), tuple(int(n) for n in e["supercell"]), timestep
    structure = meta.get("structure")
    from phonion.core.structures import BUNDLED_STRUCTURES

    if structure and (structure in BUNDLED_STRUCTURES or Path(str(structure)).is_file()):
        return str(structure), tuple(int(n) for n in meta.get("supercell", (1, 1, 1))), timestep
    path = round_dir.parent / "start.extxyz"
    if not path.is_file():
        import ase.io

        ase.io.write(path, traj.to_atoms(0), format="extxyz")
    return str(path), (1, 1, 1), timestep


def harvest(cfg: dict, rows: list[dict], train_min: dict, coordination: dict | None = None
            ) -> tuple[list[dict], dict]:
    """Frames of the exploration runs to label, and the spread distribution over all their frames.

    Returns
    -------
    picked : list of {run, path, frame, temperature_K, uncertainty_eV_A, distance_ratio, why}
    stats : committee spread percentiles (p50/p90/p99/max, meV/Å) over the exploration frames,
        frames seen, frames over the threshold, runs that tripped a guard
    """
    from phonion.md.io import read_trajectory

    from phonion.workflows.learn_coordination import coordination_outliers
    from phonion.workflows.validate import closest_approach

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
        outliers = coordination_outliers(traj, coordination or {})
        for i in range(traj.n_frames):
            dmin = closest_approach([traj.to_atoms(i)])
            ratio = min((dmin[k] / train_min[k] for k in dmin if k in train_min), default=1.0)
            why = [w for w, bad in (("uncertainty", np.isfinite(u[i]) and u[i] > thr),
                                    ("distance", ratio < ratio_lim), ("coordination", outliers[i])) if bad]
            cands.append({"run": row["run"], "path": str(path), "frame": i,
                          "temperature_K": float(row["temperature_K"]),
                          "uncertainty_eV_A": None if not np.isfinite(u[i]) else float(u[i]),
                          "distance_ratio": float(ratio), "why": why})
    flagged = [c for c in cands if c["why"]]
    pool = flagged or cands  # nothing flagged but the gate failed: the most uncertain frames
    picked = _pick(pool, int(h["max_frames"]), int(h["min_separation_frames"]))
    sp = np.asarray(spreads) * 1e3
    stats = {"n_frames_explored": len(cands), "n_flagged": len(flagged), "runs_tripped": tripped,
             "n_coordination_outliers": sum("coordination" in c["why"] for c in cands),
             "uncertainty_threshold_meV_A": 1e3 * thr,
             **({f"spread_p{q}_meV_A": float(np.percentile(sp, q)) for q in (50, 90, 99)} if sp.size else {}),
             "spread_max_meV_A": float(sp.max()) if sp.size else None,
             "picked_from": "flagged frames" if flagged else "most uncertain frames (none over the thresholds)"}
    return picked, stats


def _pick(pool: list[dict], n_max: int, separation: int) -> list[dict]:
    """Up to ``n_max`` frames, distance- or coordination-flagged first, then by spread; shared fairly between the
    temperatures; no two within ``separation`` frames of each other in one run."""
    def score(c):
        return ("distance" in c["why"] or "coordination" in c["why"], c["uncertainty_eV_A"] or 0.0, -c["distance_ratio"])

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

    from phonion.md.io import read_trajectory
    from phonion.core.calculators import resolve_calculator

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
    from phonion.workflows.validate import ValidateConfig, validate

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

    from phonion.md.guards import closest_pairs

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
    from phonion.mlip.data import temperature_from_name

    temps = cfg["explore"]["temperatures_K"]
    if not temps:
        temps = sorted({t for t in (temperature_from_name(f) for f in files) if t})
        if not temps:
            raise ValueError("explore.temperatures_K: the data files carry no temperature in their "
                             "names; give the temperatures to explore")
    temps = sorted(float(t) for t in temps)
    hot = round(max(temps) * float(cfg["explore"]["hot_factor"]), 1)
    return temps + ([hot] if hot > max(temps) else [])
