"""MLIP − reference RDF first peaks at every temperature both sides ran, compared at the same
temperature (``rdf_first_peak_shifts`` of ``compare/numbers.json``).

Positions, uncertainties and what counts as a shell are ``phonion.md.rdf.first_peaks`` /
``peak_shifts`` (one definition for compare and the fit-for-MD gate).
"""

from __future__ import annotations

import math

import numpy as np

from phonion.md.rdf import RDF_EXTRAPOLATE, RDF_SHIFT_LIMIT_A, first_peaks, mlip_peaks_at  # noqa: F401

__all__ = ["RDF_EXTRAPOLATE", "RDF_SHIFT_LIMIT_A", "coordination_by_temperature", "mlip_peaks_at",
           "rdf_peaks_by_temperature", "rdf_shifts_by_temperature",
           "coordination_findings", "coordination_warnings", "structure_comparison"]


def tkey(temperature_K: float) -> str:
    """Temperature as it appears in key names (``%g``): 900.0 → ``900K``."""
    return f"{temperature_K:g}K"


def _frames_loader(run, load):
    def frames():
        traj = load(run)
        return np.asarray(traj.positions), np.broadcast_to(np.asarray(traj.cells, float), (traj.n_frames, 3, 3))
    return frames


def rdf_peaks_by_temperature(runs, load, max_frames: int = 200) -> dict:
    """{set-point K: ``first_peaks`` of the first unconstrained run at that set-point} of one side."""
    out = {}
    for run in runs:
        if run.fixed or run.temperature_K is None or run.temperature_K in out:
            continue
        traj = load(run)
        if traj.n_frames >= 2:
            res = first_peaks(traj.positions, traj.cells, traj.symbols, max_frames)
            dt = run.frame_interval_fs
            out[run.temperature_K] = {"run": run.name, "measured_K": run.fit_temperature_K, "peaks": res["peaks"],
                                      "rdf": res, "symbols": list(traj.symbols), "dt_fs": dt,
                                      "duration_fs": None if dt is None else dt * (traj.n_frames - 1),
                                      # the coordination numbers read the run again, at full resolution over
                                      # the stretch they compare (keeping every run in memory would not scale)
                                      "frames": _frames_loader(run, load)}
    return out


def rdf_shifts_by_temperature(ref: dict, mlip: dict) -> dict:
    """MLIP − reference first peaks at every set-point both sides ran (``phonion.md.rdf.peak_shifts``):
    ``{"by_temperature": {"<T>K": {...}}, "max_abs_shift_A", "limit_A", "worst"}``; the limit is the
    fit-for-MD gate's (0.1 Å), applied to the pairs whose reference position is resolved.

    The comparison is at the same temperature: the MLIP's positions are taken at the reference run's
    *measured* mean temperature (:func:`mlip_peaks_at`); ``compared_at`` says how, and
    ``setpoint_shifts_A`` keeps the plain set-point comparison beside it.
    """
    from phonion.md.rdf import peak_shifts

    by_t, found = {}, []
    for t in sorted(set(ref) & set(mlip)):
        peaks, how, _ = mlip_peaks_at(mlip, ref[t]["measured_K"], t)
        res = peak_shifts({"peaks": ref[t]["peaks"]}, {"peaks": peaks})
        plain = peak_shifts({"peaks": ref[t]["peaks"]}, {"peaks": mlip[t]["peaks"]})["shifts"]
        by_t[tkey(t)] = {"reference_run": ref[t]["run"], "mlip_run": mlip[t]["run"],
                         "reference_measured_K": ref[t]["measured_K"], "mlip_measured_K": mlip[t]["measured_K"],
                         "compared_at": how,
                         "setpoint_shifts_A": {p: v["shift_A"] for p, v in plain.items()}, **res}
        found += [(math.inf if sh["shift_A"] is None else abs(sh["shift_A"]), tkey(t), pair)
                  for pair, sh in res["shifts"].items()]
    worst = max(found) if found else None
    return {"by_temperature": by_t, "max_abs_shift_A": None if worst is None or worst[0] == math.inf else worst[0],
            "worst": None if worst is None else {"temperature": worst[1], "pair": worst[2],
                                                 "lost_peak": worst[0] == math.inf},
            "limit_A": RDF_SHIFT_LIMIT_A,
            "passed": None if worst is None else worst[0] <= RDF_SHIFT_LIMIT_A}


def coordination_by_temperature(ref: dict, mlip: dict) -> dict:
    """Coordination numbers of the reference's bonded shells (``phonion.md.coordination``) on both sides.

    Compared like the RDF peaks, at the reference run's measured mean temperature
    (``phonion.md.rdf.bracket``), and over the same stretch from the start of each run as the
    reference run covers (``first_frames``). Also the drift (last − first quarter) of every
    unconstrained run: a framework that transforms during a run. A drifting MLIP run fails the check
    only where the reference's run at that set-point is at least as long and does not drift;
    otherwise it is listed as not judged (the reference is too short to say).
    """
    from phonion.md.coordination import COORD, coordination_numbers, first_frames, reference_shells
    from phonion.md.rdf import bracket, bracket_text

    limit = COORD["limit"]
    if not ref or not mlip:
        return {"shells": {}, "by_temperature": {}, "drifting_runs": [], "limit": limit, "passed": None}
    shells, source = reference_shells([ref[t] for t in sorted(ref)])

    done: dict = {}

    def counts(run, duration_fs=None):  # ``frames``: (positions, cells), or a function returning them
        key = (id(run), duration_fs)  # a run bracketing several temperatures is read and counted once
        if key not in done:
            pos, cells = run["frames"]() if callable(run["frames"]) else run["frames"]
            n = first_frames(len(pos), run["dt_fs"], duration_fs)
            done[key] = coordination_numbers(pos[:n], cells[:n], run["symbols"], shells)
        return done[key]

    full = {side: {t: counts(d[t]) for t in d} for side, d in (("reference", ref), ("mlip", mlip))}
    drifting = []
    for side, d in (("reference", ref), ("mlip", mlip)):
        for t in sorted(d):
            for pair, v in full[side][t].items():
                if abs(v["drift"]) <= limit:
                    continue
                other = ref.get(t) if side == "mlip" else None
                as_long = other is not None and (other["duration_fs"] or 0) >= (d[t]["duration_fs"] or math.inf)
                ref_drifts = other is not None and abs(full["reference"][t][pair]["drift"]) > limit
                verdict = ("reference" if side == "reference" else "as the reference" if as_long and ref_drifts
                           else "fails" if as_long else "not judged")
                drifting.append({"side": side, "run": d[t]["run"], "pair": pair, "drift": v["drift"],
                                 "drift_err": v["drift_err"], "judged": verdict in ("fails", "as the reference"),
                                 "verdict": verdict, "duration_fs": d[t]["duration_fs"],
                                 "reference_drift": None if other is None else full["reference"][t][pair]["drift"],
                                 "reference_duration_fs": None if other is None else other["duration_fs"]})
    by_t, worst = {}, None
    for t in sorted(set(ref) & set(mlip)):
        k1, k2, w, how = bracket({k: v["measured_K"] for k, v in mlip.items()}, ref[t]["measured_K"])
        span = ref[t]["duration_fs"]
        near = {k: counts(mlip[k], span) for k in {k1, k2, t} if k is not None}
        at, diff = {}, {}
        for pair in shells:
            if k1 is None:
                value, err = near[t][pair]["cn"], near[t][pair]["err"]
            else:
                a, b = near[k1][pair], near[k2][pair]
                value = (1 - w) * a["cn"] + w * b["cn"]
                err = None if None in (a["err"], b["err"]) else math.hypot((1 - w) * a["err"], w * b["err"])
            at[pair] = {"cn": value, "err": err}
            r = full["reference"][t][pair]
            errs = [e for e in (err, r["err"]) if e is not None]
            diff[pair] = {"value": value - r["cn"], "err": math.hypot(*errs) if errs else None}
            if worst is None or abs(diff[pair]["value"]) > worst[0]:
                worst = (abs(diff[pair]["value"]), tkey(t), pair)
        by_t[tkey(t)] = {"reference": full["reference"][t], "mlip": full["mlip"][t], "mlip_at_reference_T": at,
                         "difference": diff, "reference_measured_K": ref[t]["measured_K"],
                         "over_fs": span,
                         "compared_at": how if k1 is None else bracket_text(
                             how, ref[t]["measured_K"], f"MLIP {mlip[k1]['run']}", f"MLIP {mlip[k2]['run']}")}
    ok = None if worst is None else worst[0] <= limit and not any(d["verdict"] == "fails" for d in drifting)
    return {"shells": shells, "shells_from": source, "limit": limit, "by_temperature": by_t,
            "max_abs_difference": None if worst is None else worst[0],
            "worst": None if worst is None else {"temperature": worst[1], "pair": worst[2]},
            "drifting_runs": drifting, "passed": ok if shells else None}


def _ps(fs) -> str:
    return "?" if fs is None else f"{fs / 1e3:.1f} ps"


def coordination_findings(res: dict) -> list[tuple[str, str]]:
    """(kind, text) per coordination number outside the limit (kind ``difference``) and per drifting run (kind:
    its ``verdict``: ``fails``, ``not judged``, ``as the reference``, ``reference``)."""
    out = []
    for t, v in res.get("by_temperature", {}).items():
        for pair, d in v["difference"].items():
            if abs(d["value"]) > res["limit"]:
                sh = res["shells"][pair]
                err = "" if d["err"] is None else f" ± {d['err']:.2f}"
                more = "more" if d["value"] > 0 else "fewer"
                out.append(("difference", f"coordination: {sh['centre']} has {abs(d['value']):.2f}{err} {more} {sh['neighbour']} neighbours "
                           f"(within {sh['cutoff_A']:.2f} Å) in the MLIP vs the reference at {t} "
                           f"({v['mlip_at_reference_T'][pair]['cn']:.2f} vs {v['reference'][pair]['cn']:.2f}; limit "
                           f"± {res['limit']:g}): the MLIP's framework is not the reference's there"))
    for d in res.get("drifting_runs", []):
        err = "" if d["drift_err"] is None else f" ± {d['drift_err']:.2f}"
        if d["verdict"] == "reference":
            verdict = "the reference's own framework changes there"
        elif d["verdict"] == "fails":
            verdict = f"the reference's run at that set-point, as long, does not ({d['reference_drift']:+.2f}): a failure"
        elif d["verdict"] == "as the reference":
            verdict = f"as the reference's run there, as long, does ({d['reference_drift']:+.2f})"
        elif d["reference_drift"] is None:
            verdict = "not judged: no reference run at that set-point"
        else:
            verdict = (f"not judged: the reference's run there covers only {_ps(d['reference_duration_fs'])} of its "
                       f"{_ps(d['duration_fs'])} ({d['reference_drift']:+.2f} in it; a reference run as long would say "
                       "whether the reference does the same)")
        out.append((d["verdict"], f"coordination: {d['side']} run {d['run']}: {d['pair']} changed by {d['drift']:+.2f}{err} "
                   f"neighbours per centre atom from its first to its last quarter; {verdict}"))
    return out


def coordination_warnings(res: dict) -> list[str]:
    """The ``warnings`` lines of :func:`coordination_findings`."""
    return [text for _, text in coordination_findings(res)]


def structure_comparison(sides: dict, mlip_runs: list, caught: list) -> tuple[dict, dict]:
    """(``rdf_first_peak_shifts``, ``coordination``) of numbers.json from both sides' runs by set-point
    (``sides[s]["info"]["_rdf_by_T"]``, removed); the coordination warnings go to ``caught`` and the MLIP
    numbers of a run whose framework changed are marked not converged."""
    from phonion.compare.checks import mark_structure_changed

    ref, mlip = (sides[s]["info"].pop("_rdf_by_T", {}) for s in ("reference", "mlip"))
    shifts, coordination = rdf_shifts_by_temperature(ref, mlip), coordination_by_temperature(ref, mlip)
    caught += coordination_warnings(coordination)
    mark_structure_changed(sides["mlip"]["numbers"], mlip_runs, coordination)
    return shifts, coordination
