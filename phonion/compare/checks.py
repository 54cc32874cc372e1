"""What makes a number of ``phonion compare`` trustworthy: limits, invalid runs, the MLIP validation gate.

* :func:`apply_limits` enforces :data:`phonion.compare.analyses.LIMITS` on one side's numbers (physically
  possible values, a relative uncertainty below the limit, an MLIP RDF first peak not inside the
  reference's closest approach, a parity force RMSE below the limit): a number that fails any is
  ``converged = false`` and its note says which criterion failed.
* :func:`load_validation` reads the JSON of ``phonion validate`` (or takes a dict); when it did not pass,
  :func:`mark_untrustworthy` makes every MLIP-side number ``converged = false`` with the failed checks.
* :func:`note_missing` gives a side that lost runs as invalid a null number, with a note, for each key the
  other side has and it lacks (never a number computed from invalid data).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from phonion.compare.analyses import LIMITS, number
from phonion.md.coordination import COORD

__all__ = ["apply_limits", "reference_rdf_bounds", "limit_lines", "load_validation", "failed_checks",
           "mark_untrustworthy", "note_missing", "VALIDATION_FILE"]

VALIDATION_FILE = "validation.json"
_TRANSPORT = ("D_tracer_", "D_sigma_", "haven_ratio_", "sigma_", "D_fixed_", "mdma_D_sigma")
_TRANSPORT_KEYS = ("E_a_meV", "D0_cm2_s", "D_300K_cm2_s")


def limit_lines() -> list[str]:
    """The limits of :data:`LIMITS` in words (the report's "why not converged")."""
    lo, hi = LIMITS["share_range"]
    h_lo, h_hi = LIMITS["haven_ratio_range"]
    return [f"transport numbers (D*, D_σ, σ, Haven ratio, E_a, D0, D(300 K), σ(300 K), fixed-O ratios, MDMA D_σ): "
            f"relative uncertainty σ/|value| ≤ {LIMITS['transport_relative_uncertainty']:g} when there is one",
            f"MDMA shares within [{lo:g}, {hi:g}]",
            f"Haven ratio within ({h_lo:g}, {h_hi:g}]",
            f"diffusivities and conductivities > {LIMITS['diffusivity_min_cm2_s']:g}",
            f"MLIP RDF first peak ≥ {LIMITS['rdf_peak_min_fraction']:g} × the reference's first peak of the same "
            "pair, and not inside the reference's closest approach of that pair",
            f"parity force RMSE ≤ {LIMITS['parity_force_rmse_max_meV_A']:g} meV/Å (above: not OK)",
            "every MLIP number: the MLIP passed `phonion validate` (when a validation is given)",
            "no number uses a run whose run.json is not complete (invalid, failed, interrupted, running)",
            "no MLIP number rests on a run whose bonded-shell coordination changed by more than "
            f"{COORD['limit']:g} per centre atom during the run, unless the reference's run as long changes the same way"]


def _transport(key: str) -> bool:
    return key.startswith(_TRANSPORT) or key in _TRANSPORT_KEYS


def _range_failures(key: str, v: float, unit: str) -> list[str]:
    why = []
    if key.startswith("mdma_") and "_share" in key:
        lo, hi = LIMITS["share_range"]
        if not lo <= v <= hi:
            why.append(f"share {v:.3g} outside the physical range [{lo:g}, {hi:g}]")
    if key.startswith("haven_ratio_"):
        lo, hi = LIMITS["haven_ratio_range"]
        if not lo < v <= hi:
            why.append(f"Haven ratio {v:.3g} outside the physical range ({lo:g}, {hi:g}]")
    if unit in ("cm²/s", "mS/cm") and v <= LIMITS["diffusivity_min_cm2_s"]:
        why.append(f"{'diffusivity' if unit == 'cm²/s' else 'conductivity'} {v:.3g} {unit} ≤ 0 (unphysical)")
    if key.startswith("parity_force_rmse") and v > LIMITS["parity_force_rmse_max_meV_A"]:
        why.append(f"force RMSE {v:.4g} meV/Å above the limit {LIMITS['parity_force_rmse_max_meV_A']:g} meV/Å: "
                   "not OK for MD")
    return why


def _failures(key: str, n: dict, rdf_bounds: dict | None) -> list[str]:
    v, u = n.get("value"), n.get("uncertainty")
    if v is None:
        return []
    why = _range_failures(key, v, n.get("unit", ""))
    limit = LIMITS["transport_relative_uncertainty"]
    if _transport(key) and u is not None and (v == 0 or u / abs(v) > limit):
        rel = "∞" if v == 0 else f"{100 * u / abs(v):.0f} %"
        why.append(f"relative uncertainty {rel} above the limit {100 * limit:g} %")
    if rdf_bounds and key in rdf_bounds:
        peak, closest = rdf_bounds[key]
        frac = LIMITS["rdf_peak_min_fraction"]
        if peak is not None and v < frac * peak:
            why.append(f"first peak {v:.3g} Å closer than {frac:g} × the reference's {peak:.3g} Å")
        if closest is not None and v < closest:
            why.append(f"first peak {v:.3g} Å inside the reference's closest approach {closest:.3g} Å")
    return why


def apply_limits(numbers: dict, rdf_bounds: dict | None = None) -> None:
    """Make every number of one side that fails a limit not converged; the note says which (in place).

    ``rdf_bounds``: :func:`reference_rdf_bounds` of the reference side (for the MLIP side), or None.
    """
    for key, n in numbers.items():
        why = _failures(key, n, rdf_bounds)
        if why:
            n["converged"] = False
            head = "" if "not converged" in (n.get("note") or "") else "not converged: "
            n["note"] = "; ".join(x for x in (n.get("note"), head + "; ".join(why)) if x)


def reference_rdf_bounds(ref_numbers: dict, ref_rdf: dict | None) -> dict:
    """{``rdf_first_peak_<A>_<B>_A``: (reference first peak or None, reference closest approach or None)}.

    The closest approach is the lower edge of the first histogram bin with any pair of that kind.
    """
    if not ref_rdf:
        return {}
    r = np.asarray(ref_rdf["r_A"], float)
    half = 0.5 * (r[1] - r[0]) if r.size > 1 else 0.0
    out = {}
    for pair, g in ref_rdf["g"].items():
        a, b = pair.split("-")
        key = f"rdf_first_peak_{a}_{b}_A"
        hit = np.flatnonzero(np.asarray(g) > 0)
        closest = float(r[hit[0]] - half) if hit.size else None
        peak = (ref_numbers.get(key) or {}).get("value")
        out[key] = out[f"rdf_first_peak_{b}_{a}_A"] = (peak, closest)
    return out


# ---- the MLIP validation gate -----------------------------------------------------------------------------
def load_validation(validation) -> dict | None:
    """The ``phonion validate`` JSON: a dict, a path to the JSON, or a directory holding ``validation.json``."""
    from phonion.compare.runs import CompareError

    if validation is None:
        return None
    if isinstance(validation, dict):
        data = dict(validation)
    else:
        p = Path(validation).expanduser()
        if p.is_dir():
            p = p / VALIDATION_FILE
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise CompareError(f"--validation {p}: not a readable validation JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("passed"), bool):
        raise CompareError(f"--validation {validation}: no boolean 'passed' (not the JSON of `phonion validate`)")
    return data


def failed_checks(validation: dict) -> list[str]:
    """The failed checks of a validation, as "name (value vs limit)"; ["passed = false"] if none is named."""
    out = []
    for name, c in (validation.get("checks") or {}).items():
        if isinstance(c, dict) and c.get("passed") is False:
            out.append(f"{name} ({c.get('value')} vs limit {c.get('limit')})")
    return out or (["passed = false"] if not validation.get("passed") else [])


def mark_untrustworthy(numbers: dict, validation: dict | None) -> None:
    """Every MLIP number not converged when the validation failed (note first says why; in place)."""
    if validation is None or validation.get("passed"):
        return
    why = f"MLIP failed validation: {', '.join(failed_checks(validation))}"
    for n in numbers.values():
        n["converged"] = False
        n["note"] = why + (f"; {n['note']}" if n.get("note") else "")


def mark_structure_changed(numbers: dict, runs: list, coordination: dict) -> None:
    """MLIP numbers from a run whose framework changed during the run (``coordination["drifting_runs"]``)
    not converged, the note first saying which run and shell (in place). ``runs``: the MLIP side's
    :class:`phonion.compare.runs.Run` objects; a number belongs to a run whose file is in its source."""
    for d in (coordination or {}).get("drifting_runs") or []:
        if d["side"] != "mlip" or d.get("verdict") not in ("fails", "not judged"):
            continue  # a drift the reference's run as long shows too is the reference's behaviour
        files = {str(f) for r in runs if r.name == d["run"] for f in r.files}
        why = (f"rests on run {d['run']}, whose {d['pair']} coordination changed by {d['drift']:+.2f} per centre "
               "atom during the run (" + ("the reference's run as long does not" if d["verdict"] == "fails" else
                                          "no reference run as long shows whether the reference does the same") + ")")
        for n in numbers.values():
            src = n.get("source")
            paths = set(map(str, src)) if isinstance(src, (list, tuple)) else set(str(src or "").split(", "))
            if files & paths and why not in (n.get("note") or ""):
                n["converged"] = False
                n["note"] = why + (f"; {n['note']}" if n.get("note") else "")


def note_missing(numbers: dict, other: dict, side: str, invalid: list) -> None:
    """Null numbers with a note for the keys the other side has that this side, which lost ``invalid``
    runs (:class:`phonion.compare.runs.Run`), lacks (in place)."""
    if not invalid:
        return
    names = ", ".join(f"{r.name} ({r.status})" for r in invalid)
    src = [f for r in invalid for f in r.files]
    for key, n in other.items():
        if key in numbers or (side == "reference" and key.startswith("parity_")):
            continue
        numbers[key] = number(None, n["unit"], side, src, converged=False,
                              note=f"not computed: this side's runs it needs are invalid and excluded ({names})")
