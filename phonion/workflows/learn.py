"""Active learning against the reference calculator (``phonion learn``; a stage of the chain).

``run_learn(cfg)`` makes a MACE potential fit for MD, round by round, in ``OUT``:

* **round 0** trains a *committee* of ``committee.size`` MACE models on the data (each with its own
  seed; ``phonion.mlip.train``), then runs the gate (:mod:`phonion.workflows.validate`) on the committee: the mean
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

import json
import shutil
import time
from pathlib import Path

from phonion.workflows.learn_config import (DEFAULTS, ROUNDS_NAME, data_files, learn_config_from_dict,
                                  load_learn_config, member_train_dict)
from phonion.workflows.learn_coordination import coordination_bounds
from phonion.workflows.learn_steps import (_explore_temperatures, _frames_in, _log, _write_json, committee_spec,
                                 contact_candidates, explore, gate, gate_rows, harvest, label,
                                 train_committee, training_frames)

__all__ = ["DEFAULTS", "committee_spec", "contact_candidates", "explore", "gate", "gate_rows", "harvest",
           "label", "learn_config_from_dict", "load_learn_config", "member_train_dict", "run_learn",
           "train_committee", "training_frames"]


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
    from phonion.md.guards import learn_pair_floors

    from phonion.workflows.validate import closest_approach

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
            spec = committee_spec(previous, cfg["device"], cfg.get("md_dtype"))
            train_frames = training_frames(cfg, labelled)
            floors = learn_pair_floors(train_frames, fraction=float(cfg["explore"]["pair_floor_fraction"]))
            temps = _explore_temperatures(cfg, files)
            rows = explore(cfg, round_dir, spec, floors, temps, progress)
            # the previous gate's validation runs are long committee MD at and above the top
            # temperature: a rare collision the short exploration misses shows up there first
            rows = rows + gate_rows(out / f"round_{rnd - 1:03d}")
            train_min = closest_approach(train_frames)
            picked, stats = harvest(cfg, rows, train_min, coordination_bounds(cfg, train_frames))
            contacts = contact_candidates(cfg, round_dir, train_frames, train_min, temps, rnd)
            stats["n_contact_frames"] = len(contacts)
            picked = picked + contacts
            stats["explore_runs"] = [{k: r.get(k) for k in ("run", "status", "frames", "mean_T_K")} for r in rows]
            _write_json(round_dir / "picked.json", picked)
            new = label(cfg, round_dir, picked, rnd, progress)
            labelled = sorted(set(labelled) | set(new))
        members = train_committee(cfg, round_dir, labelled, previous, progress)
        check = rnd >= min_rounds or rnd == max_rounds or bool(cfg["rounds"].get("gate_every_round"))
        spec = committee_spec([m["model"] for m in members], cfg["device"], cfg.get("md_dtype"))
        val = gate(cfg, round_dir, spec, progress) \
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


#: settings that do not change the results: a rerun may change them
_NEUTRAL = ("workers", "device", "accelerator", "num_threads", "progress_bar")


def _check_same(out: Path, cfg: dict) -> None:
    """OUT/learn.json records the settings; a rerun with other settings is refused (not mixed)."""
    path = out / "learn.json"
    record = json.loads(json.dumps(cfg, default=str))
    if path.is_file():
        old = json.loads(path.read_text())
        keep = ("rounds", "output")  # more rounds may be asked for when continuing
        diff = [d for d in _differences({k: v for k, v in old.items() if k not in keep},
                                        {k: v for k, v in record.items() if k not in keep})
                if not d.split(".")[-1] in _NEUTRAL]  # how it runs, not what it computes
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
