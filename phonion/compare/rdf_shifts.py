"""MLIP − reference RDF first peaks at every temperature both sides ran, compared at the same
temperature (``rdf_first_peak_shifts`` of ``compare/numbers.json``).

Positions, uncertainties and what counts as a shell are ``phonion.md.rdf.first_peaks`` /
``peak_shifts`` (one definition for compare and the fit-for-MD gate).
"""

from __future__ import annotations

import math

from phonion.md.rdf import RDF_EXTRAPOLATE, RDF_SHIFT_LIMIT_A, first_peaks, mlip_peaks_at  # noqa: F401

__all__ = ["RDF_EXTRAPOLATE", "RDF_SHIFT_LIMIT_A", "mlip_peaks_at", "rdf_peaks_by_temperature",
           "rdf_shifts_by_temperature"]


def tkey(temperature_K: float) -> str:
    """Temperature as it appears in key names (``%g``): 900.0 → ``900K``."""
    return f"{temperature_K:g}K"


def rdf_peaks_by_temperature(runs, load, max_frames: int = 200) -> dict:
    """{set-point K: ``first_peaks`` of the first unconstrained run at that set-point} of one side."""
    out = {}
    for run in runs:
        if run.fixed or run.temperature_K is None or run.temperature_K in out:
            continue
        traj = load(run)
        if traj.n_frames >= 2:
            res = first_peaks(traj.positions, traj.cells, traj.symbols, max_frames)
            out[run.temperature_K] = {"run": run.name, "measured_K": run.fit_temperature_K, "peaks": res["peaks"]}
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
            "passed": worst is not None and worst[0] <= RDF_SHIFT_LIMIT_A}
