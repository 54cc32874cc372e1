"""``phonion compare``: the same analyses on reference (DFT or surrogate) and MLIP trajectories, side by side.

``run_compare(CompareConfig(reference=DIR, mlip=DIR, output=OUT))`` finds the runs of each side
(:mod:`phonion.compare.runs`), runs every analysis with the same code on both (:mod:`phonion.compare.analyses`:
RDF, VDOS, diffusion, Arrhenius, fixed-anion runs; :mod:`phonion.compare.modal`: phonons, MDMA, pFC, parity),
and writes ``OUT/numbers.json``, ``OUT/report.html`` (:mod:`phonion.compare.report`) and ``OUT/figures/*.png``
(:mod:`phonion.compare.plots`). Intermediate results: ``OUT/phonons/<side>/`` (cached force constants),
``OUT/mdma/<side>/<run>/``, ``OUT/pfc/<side>/``.

Rules that keep the comparison from adding error:
* every number is a deterministic function of the files (no random seeds); the two sides go through the
  same functions, and when both sides need phonons from the same calculator on the same structure they
  share one computation, so identical inputs give identical numbers and zero differences;
* velocities: when every run of both sides stores velocities they are used; when any run of either side
  has none (AIMD files), *both* sides' velocities are derived from positions by central differences
  (DESIGN.md, like-for-like), recorded under ``velocities``;
* like temperatures: RDF, VDOS and the MDMA headline use the highest temperature that both sides ran
  without fixed atoms (each side's highest if they share none, with a warning);
* invalid runs (a ``run.json`` whose status is not ``complete``) are left out of every analysis on both
  sides and listed under ``invalid_runs``; the MLIP verdict of ``phonion validate`` (``--validation``) is
  recorded as ``mlip_validation`` and, when it failed, makes every MLIP number not converged; the limits
  of :data:`phonion.compare.analyses.LIMITS` apply to every number (:mod:`phonion.compare.checks`).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from phonion.compare.warn import ours
from phonion.compare.runs import CompareError, check_species, discover_runs, first_frame, load_run

__all__ = ["CompareConfig", "run_compare", "CompareError", "SIDES"]

SIDES = ("reference", "mlip")
_VASP = {"vasprun": "vasprun.xml", "outcar": "OUTCAR", "xdatcar": "XDATCAR"}


@dataclass(frozen=True)
class CompareConfig:
    """Settings of one comparison (see ``phonion compare --help``; units in the names).

    reference, mlip : directories (searched recursively) or single trajectory files
    output : output directory
    model : MLIP model for force/energy parity on the reference frames (a MACE ``.model`` file or any
        calculator SPEC); default the ``mace:PATH`` in the MLIP runs' metadata
    reference_calculator, mlip_calculator : SPECs for each side's phonons / MDMA / pFC; defaults: the
        reference runs' ``calculator_spec`` when they are surrogate reference, the MLIP runs' one
    reference_phonons, mlip_phonons : phonon files instead (phonopy yaml, FORCE_CONSTANTS, FORCE_SETS, or a
        ``phonion phonons`` directory)
    structure : structure for sites and phonons (file or bundled name); default the ``structure`` recorded
        in a side's run metadata, else the first frame of the first reference run
    timestep_fs : MD timestep for files that do not record it (XDATCAR)
    tau_max_ps : MDMA correlation window (default: half a block)
    validation : the JSON written by ``phonion validate`` (path, directory holding ``validation.json``, or
        the dict itself); None: the MLIP is reported as not validated
    """

    reference: str
    mlip: str
    output: str
    model: str | None = None
    reference_calculator: str | None = None
    mlip_calculator: str | None = None
    reference_phonons: str | None = None
    mlip_phonons: str | None = None
    structure: str | None = None
    mobile: str = "Li"
    anion: str = "O"
    timestep_fs: float | None = None
    tau_max_ps: float | None = None
    device: str | None = None
    parity_max_frames: int = 200
    rdf_max_frames: int = 200
    validation: str | dict | None = None


class _Clock:
    def __init__(self, progress: bool):
        self.progress, self.timings = progress, {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        if self.progress:
            print(f"compare: {name} ...", file=sys.stderr, flush=True)
        yield
        dt = time.perf_counter() - t0
        self.timings[name] = round(self.timings.get(name, 0.0) + dt, 3)
        if self.progress:
            print(f"compare: {name} done ({dt:.1f} s)", file=sys.stderr, flush=True)


def _label(side: str, runs) -> str:
    kinds = {r.metadata.get("reference_kind") for r in runs}
    specs = sorted({r.metadata["calculator_spec"] for r in runs if r.metadata.get("calculator_spec")})
    if "surrogate reference" in kinds:
        return f"surrogate reference ({', '.join(specs) or 'reference calculator'})"
    if side == "mlip":
        from phonion.core.calculators import short_label

        return f"MLIP ({', '.join(short_label(x) for x in specs)})" if specs else "MLIP"
    vasp = [v for k, v in _VASP.items() if any(r.fmt == k for r in runs)]
    if vasp:
        return f"DFT ({', '.join(vasp)})"
    if specs:
        return f"reference MD ({', '.join(specs)}; not DFT)"
    return f"reference ({', '.join(sorted({r.fmt for r in runs}))})"


def _velocity_policy(runs: dict) -> dict:
    missing = {s: [r.name for r in runs[s] if not r.has_velocities] for s in SIDES}
    if not any(missing.values()):
        return {"policy": "file", "note": "every run of both sides stores velocities; they are used as stored"}
    who = "; ".join(f"{s}: {', '.join(n)}" for s, n in missing.items() if n)
    return {"policy": "positions",
            "note": f"runs without stored velocities ({who}): both sides' velocities are derived from positions "
                    "by central differences, like for like (DESIGN.md)"}


def _headline(runs: dict, caught: list) -> dict:
    temps = {s: {r.temperature_K for r in runs[s] if not r.fixed} for s in SIDES}
    common = temps["reference"] & temps["mlip"]
    if common:
        return {s: max(common) for s in SIDES}
    if all(temps.values()):
        caught.append("the two sides share no temperature without fixed atoms; RDF, VDOS and the MDMA headline "
                      "use each side's highest temperature")
    for s in SIDES:
        if not temps[s]:
            caught.append(f"{s}: no run without fixed atoms; no RDF, VDOS, MDMA or Arrhenius on this side")
    return {s: (max(temps[s]) if temps[s] else None) for s in SIDES}


def _structure(cfg, runs, fallback, caught, side):
    from phonion.core.structures import load_structure

    if cfg.structure is not None:
        return load_structure(cfg.structure), f"given: {cfg.structure}"
    name = runs[0].metadata.get("structure")
    if name:
        try:
            return load_structure(name), f"metadata structure {name!r} of {runs[0].name}"
        except ValueError:
            pass
    caught.append(f"{side}: sites and phonons use the first frame of the first reference run (a thermal "
                  "snapshot, not a relaxed structure); give --structure for an equilibrium structure")
    return fallback, "first frame of the first reference run"


def _site_groups(unit, md_atoms, ideal, traj, mobile, anion, caught, side) -> dict:
    """Species and O-class index groups of the MD cell, classes found on the ideal sites in MD order.

    ``ideal``: :func:`phonion.compare.modal.ideal_sites` of ``md_atoms`` (None: map by position instead).
    """
    from ase import Atoms

    from phonion.compare.modal import SITE_TOLERANCE_A
    from phonion.mdma.modes import map_to_primitive
    from phonion.mdma.sites import classify_oxygens

    groups = {s: traj.indices_of(s) for s in traj.species_counts}
    try:
        if ideal is None:
            A = np.asarray(unit.cell.array)
            f = unit.get_scaled_positions(wrap=False)
            kappa, lattice, _ = map_to_primitive(A, f, unit.get_chemical_symbols(), md_atoms, SITE_TOLERANCE_A)
            ideal = Atoms(md_atoms.get_chemical_symbols(), positions=(lattice + f[kappa]) @ A,
                          cell=md_atoms.cell, pbc=True)
        classes = classify_oxygens(ideal, mobile=mobile, anion=anion)
    except ValueError as exc:
        caught.append(f"{side}: no O classes for the VDOS ({exc})")
        return groups
    groups.update({c: np.asarray(getattr(classes, c), int) for c in ("O_e", "O_c", "O_n")})
    return groups


def _analyse_side(side, runs, cfg, ctx) -> dict:
    from phonion.compare.analyses import diffusion_numbers, rdf_numbers, rdf_peaks_by_temperature, vdos_numbers
    from phonion.compare.modal import (MDMASettings, ideal_sites, mdma_numbers, pfc_numbers, phonon_dos_numbers,
                                       side_phonons)

    clock, caught, out, policy = ctx["clock"], ctx["caught"], ctx["out"], ctx["velocities"]["policy"]
    load = lambda r: load_run(r, timestep_fs=cfg.timestep_fs, velocities=policy)[0]  # noqa: E731
    numbers, plots, info = {}, {}, {}
    with clock.stage(f"{side}: diffusion"):
        n, plots["diffusion"] = diffusion_numbers(((load(r), r) for r in runs), side, cfg.mobile, caught)
        numbers.update(n)
    with clock.stage(f"{side}: RDF by temperature"):
        info["_rdf_by_T"] = rdf_peaks_by_temperature(runs, load, cfg.rdf_max_frames)
    head_t = ctx["headline"][side]
    head = next((r for r in runs if not r.fixed and r.temperature_K == head_t), None)
    if head is None:
        return {"numbers": numbers, "plots": plots, "info": info}
    traj = load(head)
    md_atoms = traj.to_atoms(0)
    info["headline_run"] = head.name
    with clock.stage(f"{side}: RDF"):
        n, plots["rdf"] = rdf_numbers(traj, side, ", ".join(head.files), cfg.rdf_max_frames)
        numbers.update(n)
    unit, info["structure"] = _structure(cfg, runs, ctx["fallback"], caught, side)
    with clock.stage(f"{side}: VDOS"):
        sites = ideal_sites(unit, md_atoms, cfg.mobile)  # MD order vouched for: map atoms by index
        groups = _site_groups(unit, md_atoms, sites, traj, cfg.mobile, cfg.anion, caught, side)
        try:
            n, plots["vdos"] = vdos_numbers(traj, groups, side, ", ".join(head.files), list(traj.species_counts),
                                            window_fs=ctx["vdos_window_fs"])
            numbers.update(n)
        except ValueError as exc:
            caught.append(f"{side} {head.name}: no VDOS: {exc}")
    del traj
    spec = ctx["calculators"][side]
    with clock.stage(f"{side}: phonons"):
        try:
            source, info["phonons"] = side_phonons(
                side, spec, getattr(cfg, f"{side}_phonons"), unit, md_atoms, out / "phonons" / side,
                ctx["computed"], device=cfg.device, progress=ctx["progress"] and sys.stderr.isatty())
        except ValueError as exc:
            source, info["phonons"] = None, {"source": None, "error": str(exc)}
            caught.append(f"{side}: no phonons: {exc}")
    if source is None:
        if "error" not in info["phonons"]:
            caught.append(f"{side}: no phonons, MDMA or pFC: no calculator or phonon file for this side (give "
                          f"--{side}-calculator SPEC or --{side}-phonons FILE; DFT data need DFT force constants)")
        return {"numbers": numbers, "plots": plots, "info": info}
    from phonion.mdma.phonon_io import load_phonons

    # read once from the side's phonon cache (the same numbers whether computed now or in an earlier run)
    phonon = load_phonons(source)
    with clock.stage(f"{side}: phonon DOS"):
        try:
            n, plots["phonons"] = phonon_dos_numbers(source, md_atoms if sites is None else sites, side,
                                                     cfg.mobile, cfg.anion, caught, phonon=phonon)
            numbers.update(n)
        except ValueError as exc:
            caught.append(f"{side}: no phonon DOS: {exc}")
    with clock.stage(f"{side}: MDMA"):
        settings = MDMASettings(mobile=cfg.mobile, anion=cfg.anion, velocities=policy, headline_K=head_t,
                                tau_max_ps=cfg.tau_max_ps, timestep_fs=cfg.timestep_fs)
        n, plots["mdma"] = mdma_numbers([r for r in runs if not r.fixed], source, out / "mdma" / side, side,
                                        settings, caught=caught, unit=unit, phonon=phonon)
        numbers.update(n)
    with clock.stage(f"{side}: anharmonicity"):  # σ_A and linewidths: phonion.compare.anharmonicity
        from phonion.compare.anharmonicity import side_numbers
        numbers.update(side_numbers(head, source, out, side, cfg, policy, unit=unit, phonon=phonon, caught=caught))
    with clock.stage(f"{side}: pFC"):
        try:
            numbers.update(pfc_numbers(source, out / "pfc" / side, side, cfg.mobile, cfg.anion, phonon=phonon))
        except ValueError as exc:
            caught.append(f"{side}: no pFC: {exc}")
    return {"numbers": numbers, "plots": plots, "info": info}


def _differences(ref: dict, mlip: dict) -> dict:
    out = {}
    for key, a in ref.items():
        b = mlip.get(key)
        if b is None or a["value"] is None or b["value"] is None:
            continue
        ua, ub = a["uncertainty"], b["uncertainty"]
        unc = math.hypot(ua, ub) if ua is not None and ub is not None else None
        out[key] = {"value": b["value"] - a["value"], "uncertainty": unc, "unit": a["unit"],
                    "converged": a["converged"] and b["converged"], "note": "mlip − reference"}
    return out


def _calculators(cfg, runs) -> dict:
    ref = cfg.reference_calculator
    if ref is None and any(r.metadata.get("reference_kind") == "surrogate reference" for r in runs["reference"]):
        ref = next((r.metadata.get("calculator_spec") for r in runs["reference"] if r.metadata.get("calculator_spec")),
                   None)
    mlip = cfg.mlip_calculator
    if mlip is None:
        mlip = next((r.metadata.get("calculator_spec") for r in runs["mlip"] if r.metadata.get("calculator_spec")),
                    None)
    return {"reference": ref, "mlip": mlip}


def _find_runs(cfg: CompareConfig, out: Path, caught: list):
    """(valid runs per side, invalid runs per side, fallback structure) with warnings collected."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        found = {s: discover_runs(getattr(cfg, s), s, timestep_fs=cfg.timestep_fs, exclude=out) for s in SIDES}
        check_species(cfg.reference, found["reference"], cfg.mlip, found["mlip"], cfg.mobile, cfg.anion)
        invalid = {s: [r for r in found[s] if not r.valid] for s in SIDES}
        runs = {s: [r if r.temperature_K is not None else load_run(r, timestep_fs=cfg.timestep_fs)[1]
                    for r in found[s] if r.valid] for s in SIDES}
        first = next(iter(runs["reference"] + runs["mlip"]), None)
        fallback = None if first is None else first_frame(first, cfg.timestep_fs)
    caught += ours(w)
    for s in SIDES:
        if invalid[s]:
            caught.append(f"{s}: {len(invalid[s])} invalid run(s) left out of every analysis: "
                          + "; ".join(f"{r.name} ({r.status}: {r.status_reason})" for r in invalid[s]))
    return runs, invalid, fallback, found


def _parity(cfg, runs, out, clock, caught):
    """(model SPEC or None, parity numbers, parity figures) of the MLIP model on the valid reference frames."""
    from phonion.compare.modal import model_spec, parity_numbers

    model = cfg.model or next((r.metadata["calculator_spec"] for r in runs["mlip"]
                               if str(r.metadata.get("calculator_spec", "")).startswith("mace:")), None)
    if model is None:
        caught.append("no MLIP model known (--model, or mace:PATH in the MLIP runs' metadata): no force/energy parity")
        return None, {}, []
    with clock.stage("parity"):
        try:
            n, figs = parity_numbers(model_spec(model), runs["reference"], out / "figures" / "parity",
                                     max_frames=cfg.parity_max_frames, timestep_fs=cfg.timestep_fs,
                                     device=cfg.device, caught=caught)
            return model_spec(model), n, figs
        except ValueError as exc:
            caught.append(f"parity: {exc}")
    return model_spec(model), {}, []


def _truth(sides: dict, invalid: dict, validation) -> None:
    """Limits on both sides, the validation verdict on the MLIP side, notes for numbers lost to invalid runs."""
    from phonion.compare.checks import apply_limits, mark_untrustworthy, note_missing, reference_rdf_bounds

    ref = sides["reference"]
    bounds = reference_rdf_bounds(ref["numbers"], ref["plots"].get("rdf"))
    apply_limits(ref["numbers"])
    apply_limits(sides["mlip"]["numbers"], bounds)
    for s, o in (("reference", "mlip"), ("mlip", "reference")):
        note_missing(sides[s]["numbers"], sides[o]["numbers"], s, invalid[s])
    mark_untrustworthy(sides["mlip"]["numbers"], validation)


def run_compare(cfg: CompareConfig, progress: bool = True) -> dict:
    """Run the comparison; write ``numbers.json``, ``report.html``, ``figures/``; return the numbers dict.
    Paths inside the directory that holds OUT (the runs, the model, OUT itself) are written relative to OUT."""
    import phonion
    from phonion.compare.analyses import common_vdos_window_fs
    from phonion.compare.checks import load_validation
    from phonion.compare.rdf_shifts import structure_comparison
    from phonion.compare.report import make_figures, write_report
    from phonion.core.jsonutil import clean as _clean
    from phonion.core.paths import relative_paths

    t0 = time.perf_counter()
    validation = load_validation(cfg.validation)
    out = Path(cfg.output).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    clock, caught = _Clock(progress), []
    with clock.stage("finding runs"):
        runs, invalid, fallback, found = _find_runs(cfg, out, caught)
    ctx = {"clock": clock, "caught": caught, "out": out, "velocities": _velocity_policy(runs),
           "headline": _headline(runs, caught), "calculators": _calculators(cfg, runs), "computed": {},
           "fallback": fallback, "progress": progress}
    heads = [next((r for r in runs[s] if not r.fixed and r.temperature_K == ctx["headline"][s]), None) for s in SIDES]
    ctx["vdos_window_fs"] = common_vdos_window_fs(heads)
    labels = {s: _label(s, found[s]) for s in SIDES}
    sides = {}
    for s in SIDES:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            sides[s] = _analyse_side(s, runs[s], cfg, ctx)
        caught += ours(w, f"{s}: ")
    model, parity, figures = _parity(cfg, runs, out, clock, caught)
    sides["mlip"]["numbers"].update(parity)
    figures = {"parity": figures} if figures else {}
    _truth(sides, invalid, validation)
    with clock.stage("RDF peaks and coordination numbers by temperature"):
        rdf_shifts, coordination = structure_comparison(sides, runs["mlip"], caught)
    result = {
        "phonion_version": phonion.__version__,
        "mlip_validation": validation,
        "invalid_runs": [r.invalid_entry() for s in SIDES for r in invalid[s]],
        "settings": {k: v for k, v in asdict(cfg).items()},
        "velocities": ctx["velocities"],
        "headline_temperature_K": ctx["headline"],
        "model": model,
        **{s: {"label": labels[s], "dir": str(getattr(cfg, s)), "calculator": ctx["calculators"][s],
               "runs": [r.to_dict() for r in runs[s]], **sides[s]["info"], "numbers": sides[s]["numbers"]}
           for s in SIDES},
        "differences": _differences(sides["reference"]["numbers"], sides["mlip"]["numbers"]),
        "rdf_first_peak_shifts": rdf_shifts,
        "coordination": coordination,
        "warnings": list(dict.fromkeys(caught)),
    }
    with clock.stage("figures"):
        figures.update(make_figures({s: sides[s]["plots"] for s in SIDES}, result, out / "figures", cfg.mobile))
    result["figures"] = {k: [str(p) for p in v] for k, v in figures.items()}
    result["timings_s"] = dict(clock.timings, total=round(time.perf_counter() - t0, 3))
    result = relative_paths(_clean(result), out)  # paths relative to OUT: the files move with their directory
    (out / "numbers.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    write_report(result, figures, out / "report.html")
    return result

