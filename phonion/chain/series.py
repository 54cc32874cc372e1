"""``phonion series``: the LiM(SeO3)2 series, one compound per framework cation M.

For the parent and each M: substitute (``phonion.chain.substitution.substitute``), relax cell and
positions with the reference calculator (``relax``, in ``OUT/<M>/relax/``), run the whole chain
(``phonion.chain.chain.run_chain``, in ``OUT/<M>/chain/``), and collect E_a, D(300 K), σ(300 K), the
MDMA anharmonic share and the O_e-mode mean frequency of the MLIP side next to the paper's
numbers (``phonion.core.paper``), with rank correlations (``phonion.chain.series_report``).

A compound that fails (relaxation diverges, an MD guard stops a run) is reported with its error
and the others go on. Resume: ``OUT/<M>/result.json`` marks a finished compound, which a rerun
skips; relaxations and chain stages resume from their own files.

Cost per compound (80 atoms, CHGNet on 2 shared CPU cores: 2–9 s per force+stress call, one per
BFGS step). Measured: LiAl(SeO3)2 from the prescaled LiGa(SeO3)2 cell, 31 BFGS steps to 0.05 eV/Å
in 156 s (22 steps to 0.1 eV/Å). ``tiny`` ≤ 15 steps to 0.3 eV/Å (≤ 1 min), ``quick`` ≤ 60 steps
to 0.1 eV/Å (≈ 1–5 min), ``full`` ≤ 400 steps to 0.02 eV/Å (GPU). The chain's own cost is set by
its profile (``phonion.chain.profiles``); ``tiny`` is a smoke run whose numbers mean nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["RELAX_PROFILES", "CHAIN_KEYS", "SeriesConfig", "compound_label", "run_series",
           "add_series_parser"]

#: Relaxation settings per profile: (fmax in eV/Å, most FIRE steps).
RELAX_PROFILES: dict[str, tuple[float, int]] = {"tiny": (0.3, 15), "quick": (0.1, 60), "full": (0.02, 400)}

#: Numbers taken from the chain's compare/numbers.json for the table (MLIP side).
CHAIN_KEYS: tuple[str, ...] = ("E_a_meV", "D_300K_cm2_s", "sigma_300K_mS_cm", "mdma_anharmonic_share",
                               "mdma_O_e_mode_mean_frequency_THz", "sigma_A")


@dataclass(frozen=True)
class SeriesConfig:
    """Settings of a series run (units in the names; None = the profile's default)."""

    structure: str = "LiGa_SeO3_2"
    substitute: str = "Ga"
    with_: tuple[str, ...] = ("Al", "In", "Sc", "Y", "La")
    include_parent: bool = True
    output: str = "phonion-series"
    profile: str = "quick"
    calculator: str = "chgnet"
    relax_fmax_eV_A: float | None = None
    relax_max_steps: int | None = None
    prescale: bool = True
    prescale_damping: float = 0.5
    device: str | None = None
    seed: int = 0
    chain_overrides: dict = field(default_factory=dict)

    def relax_settings(self) -> tuple[float, int]:
        """(fmax_eV_A, max_steps) of the relaxation: explicit values, else the profile's."""
        fmax, steps = RELAX_PROFILES[self.profile]
        return (self.relax_fmax_eV_A if self.relax_fmax_eV_A is not None else fmax,
                self.relax_max_steps if self.relax_max_steps is not None else steps)

    def elements(self) -> list[str]:
        """M of each compound, in order: the parent first (when included), no repeats."""
        order = ([self.substitute] if self.include_parent else []) + list(self.with_)
        return list(dict.fromkeys(order))


def compound_label(parent, old: str, new: str) -> str:
    """Name of the compound made by replacing ``old`` with ``new`` in ``parent`` (ase.Atoms).

    LiM(SeO3)2 family members get the paper's notation, e.g. ``LiAl(SeO3)2``; anything else its
    reduced formula with ``new`` in place of ``old``.
    """
    counts = {s: parent.get_chemical_symbols().count(s) for s in set(parent.get_chemical_symbols())}
    n = counts.get(old, 0)
    if n and counts == {"Li": n, old: n, "Se": 2 * n, "O": 6 * n}:
        return f"Li{new}(SeO3)2"
    from pymatgen.core import Composition

    counts[new] = counts.pop(old, 0) + counts.get(new, 0)
    return Composition(counts).reduced_formula


def run_series(cfg: SeriesConfig, chain=None, progress: bool = True) -> dict:
    """Run the series and write OUT/series.json, series.md, series.csv.

    Parameters
    ----------
    cfg : SeriesConfig
    chain : callable, optional
        ``chain(chain_config, progress=bool) -> summary`` with ``summary["compare"]`` the chain's
        numbers dict; default ``phonion.chain.chain.run_chain`` (imported here, lazily).
    progress : bool
        Print one line per stage to stderr.

    Returns
    -------
    dict
        The content of ``series.json`` (see ``phonion.chain.series_report.build_report``).

    Raises
    ------
    ValueError
        Bad configuration (unknown profile, element, structure; ``substitute`` absent; a chain
        setting with an unknown key or a wrong value type), before any work is done. Failures of
        single compounds are recorded, not raised.
    """
    from phonion.chain.series_report import build_report, write_report
    from phonion.core.structures import load_structure
    from phonion.chain.substitution import prescale_factor, substitute

    if cfg.profile not in RELAX_PROFILES:
        raise ValueError(f"unknown profile {cfg.profile!r}; choose one of {sorted(RELAX_PROFILES)}")
    parent = load_structure(cfg.structure)
    elements = cfg.elements()
    if not elements:
        raise ValueError("no compounds: give --with elements or keep the parent")
    for element in elements:  # every bad element is reported before any compound runs
        substitute(parent, cfg.substitute, element, prescale=False)
        if cfg.prescale:
            prescale_factor(cfg.substitute, element, cfg.prescale_damping)
    from phonion.chain.chain import ChainConfig, check_chain

    check_chain(ChainConfig(structure=cfg.structure, output=str(Path(cfg.output) / elements[0] / "chain"),
                            profile=cfg.profile, calculator=cfg.calculator, device=cfg.device, seed=cfg.seed,
                            overrides=dict(cfg.chain_overrides)))  # every chain setting, before any compound
    if chain is None:
        from phonion.chain.chain import run_chain as chain
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for element in elements:
        results.append(_run_compound(cfg, parent, element, out / element, chain, progress))
    report = build_report(cfg, results)
    write_report(out, report)
    return report


def _run_compound(cfg: SeriesConfig, parent, element: str, folder: Path, chain, progress: bool) -> dict:
    from phonion.chain.substitution import relax, substitute

    label = compound_label(parent, cfg.substitute, element)
    done = folder / "result.json"
    if done.is_file():
        previous = json.loads(done.read_text())
        same = previous.get("profile") == cfg.profile and previous.get("calculator") == cfg.calculator \
            and previous.get("settings", _settings(cfg)) == _settings(cfg)
        if previous.get("status") == "ok" and same:
            _say(progress, f"{label}: finished earlier, skipped ({done})")
            return {**previous, "resumed": True}
        if previous.get("status") == "ok":  # other settings: the chain reuses what did not change
            _say(progress, f"{label}: finished earlier with other settings; running it again")
    fmax, steps = cfg.relax_settings()
    result = {"element": element, "label": label, "status": "failed", "stage": "substitute",
              "profile": cfg.profile, "calculator": cfg.calculator, "settings": _settings(cfg), "folder": str(folder),
              "timings_s": {}, "error": None, "resumed": False}
    try:
        start = substitute(parent, cfg.substitute, element, prescale=cfg.prescale,
                           damping=cfg.prescale_damping)
        result["stage"] = "relax"
        t0 = time.perf_counter()
        _say(progress, f"{label}: relaxing cell and positions ({cfg.calculator}, fmax {fmax} eV/Å, "
                       f"≤ {steps} steps)")
        relaxed, summary = relax(start, cfg.calculator, fmax_eV_A=fmax, max_steps=steps,
                                 output_dir=folder / "relax", device=cfg.device)
        result["timings_s"]["relax"] = time.perf_counter() - t0
        result["relax"] = {**summary, "volume_change_vs_parent": relaxed.get_volume() / parent.get_volume() - 1}
        result["o_classes"] = _o_classes(relaxed)
        _say(progress, f"{label}: {'relaxation reused from an earlier run: ' if summary['reused'] else ''}"
                       f"relaxed in {summary['steps']} steps, converged={summary['converged']}, "
                       f"ΔV {100 * summary['volume_change']:+.2f} % (vs parent "
                       f"{100 * result['relax']['volume_change_vs_parent']:+.2f} %), space group "
                       f"{summary['space_group_before']['symbol']} -> {summary['space_group_after']['symbol']}")
        result["stage"] = "chain"
        t0 = time.perf_counter()
        relaxed.calc = None
        summary = chain(_chain_config(cfg, relaxed, folder / "chain", label), progress=progress)
        result["timings_s"]["chain"] = time.perf_counter() - t0
        result["numbers"], result["reference_numbers"] = _chain_numbers(summary)
        result["status"], result["stage"] = "ok", "done"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one compound's failure must not stop the series
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=6)
        _say(progress, f"{label}: FAILED at {result['stage']}: {result['error']}")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, done)
    return result


def _settings(cfg: SeriesConfig) -> dict:
    """What a finished compound's numbers depend on besides profile and calculator (as JSON reads back)."""
    return json.loads(json.dumps({"seed": cfg.seed, "relax": list(cfg.relax_settings()), "prescale": cfg.prescale,
                                  "prescale_damping": cfg.prescale_damping,
                                  "chain_overrides": dict(sorted(cfg.chain_overrides.items()))}, default=str))


def _chain_config(cfg: SeriesConfig, atoms, output: Path, label: str):
    kwargs = dict(structure=atoms, output=str(output), profile=cfg.profile, calculator=cfg.calculator,
                  device=cfg.device, seed=cfg.seed, label=label, overrides=dict(cfg.chain_overrides))
    from phonion.chain.chain import ChainConfig

    return ChainConfig(**kwargs)


def _chain_numbers(summary) -> tuple[dict, dict]:
    """MLIP-side and reference-side numbers of CHAIN_KEYS from a chain summary."""
    if not isinstance(summary, dict) or not isinstance(summary.get("compare"), dict):
        raise RuntimeError("the chain returned no 'compare' numbers")
    sides = []
    for side in ("mlip", "reference"):
        numbers = (summary["compare"].get(side) or {}).get("numbers") or {}
        sides.append({key: _number(numbers.get(key), key) for key in CHAIN_KEYS})
    return sides[0], sides[1]


def _number(entry, key: str) -> dict:
    if not isinstance(entry, dict):
        return {"value": None, "uncertainty": None, "unit": None, "converged": False,
                "note": f"{key} not produced by the chain"}
    return {"value": entry.get("value"), "uncertainty": entry.get("uncertainty"), "unit": entry.get("unit"),
            "converged": bool(entry.get("converged", False)), "note": entry.get("note")}


def _o_classes(atoms) -> dict:
    try:
        from phonion.mdma.sites import classify_oxygens

        classes = classify_oxygens(atoms).to_dict()
        return {k: len(classes[k]) for k in ("O_e", "O_c", "O_n")}
    except Exception as exc:  # a diagnostic only
        return {"error": f"{type(exc).__name__}: {exc}"}


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"[series] {text}", file=sys.stderr, flush=True)


def add_series_parser(sub, formatter) -> None:
    """Register ``phonion series`` on the CLI's subparsers."""
    d = SeriesConfig()
    p = sub.add_parser(
        "series", formatter_class=formatter,
        help="LiM(SeO3)2 series: substitute, relax, run the chain per M, table vs the paper",
        description="For the parent and each M: replace the framework cation, relax cell and positions "
                    "with the reference calculator (space group kept), run the whole chain (surrogate "
                    "reference MD, MACE training, MLIP MD sweep, phonons, MDMA, compare), then tabulate "
                    "E_a, D(300 K), sigma(300 K), anharmonic share and O_e-mode mean frequency next to "
                    "the paper's DFT numbers with Spearman/Kendall rank correlations. Outputs in OUT: "
                    "<M>/relax/, <M>/chain/, series.json, series.md, series.csv. Rerunning skips "
                    "finished compounds; exit status 1 when a compound failed (the table says why). Relaxation per profile (fmax eV/A, steps): "
                    + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in RELAX_PROFILES.items()) + ".",
        epilog="examples:\n  phonion series --with Al --profile tiny -o series-tiny      # smoke run\n"
               "  phonion series --structure LiGa_SeO3_2 --substitute Ga --with Al In Sc Y La "
               "--profile full -o series   # GPU")
    p.add_argument("--structure", default=d.structure, metavar="FILE",
                   help="parent structure file or bundled name")
    p.add_argument("--substitute", default=d.substitute, metavar="EL", help="element to replace")
    p.add_argument("--with", dest="with_", nargs="+", default=list(d.with_), metavar="EL",
                   help="elements put in its place, one compound each")
    p.add_argument("--no-parent", action="store_true", help="do not run the parent compound itself")
    p.add_argument("--profile", default=d.profile, choices=sorted(RELAX_PROFILES),
                   help="run lengths: tiny = smoke run, quick = CPU, full = GPU (E_a to ±30 meV)")
    p.add_argument("--calculator", default=d.calculator, metavar="SPEC",
                   help="reference calculator for relaxation and surrogate reference MD")
    p.add_argument("--relax-fmax", type=float, default=None, metavar="F",
                   help="relaxation threshold, eV/A; None = the profile's")
    p.add_argument("--relax-steps", type=int, default=None, metavar="N",
                   help="most relaxation steps; None = the profile's")
    p.add_argument("--no-prescale", action="store_true",
                   help="do not prescale the cell from Shannon radii before relaxing")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N; None = cuda when available")
    p.add_argument("--seed", type=int, default=d.seed, help="added to every seed of the chain's profile")
    p.add_argument("-o", "--output", default=d.output, metavar="OUT",
                   help="output directory (rerun the same command to continue it)")
    from phonion.chain.demo import add_settings_options

    add_settings_options(p, "phonion series --with Al")  # chain settings of the profile, every compound
    p.add_argument("--json", action="store_true", help="print series.json instead of the table")
    p.set_defaults(func=_cmd_series)


def parse_sets(items) -> dict:
    """``["a.b=1", "c=[1,2]"]`` → ``{"a.b": 1, "c": [1, 2]}`` (values parsed as YAML; bad YAML: ValueError)."""
    from phonion.core.config import parse_override

    return dict(parse_override(item) for item in items)


def _cmd_series(args) -> int:
    from phonion.chain.demo import settings_overrides
    from phonion.chain.series_report import format_table

    cfg = SeriesConfig(structure=args.structure, substitute=args.substitute, with_=tuple(args.with_),
                       include_parent=not args.no_parent, output=args.output, profile=args.profile,
                       calculator=args.calculator, relax_fmax_eV_A=args.relax_fmax,
                       relax_max_steps=args.relax_steps, prescale=not args.no_prescale,
                       device=args.device, seed=args.seed, chain_overrides=settings_overrides(args))
    report = run_series(cfg, progress=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        print(f"\nwrote {Path(cfg.output) / 'series.md'}, series.json, series.csv")
    return 0 if all(r["status"] == "ok" for r in report["compounds"]) else 1


def config_dict(cfg: SeriesConfig) -> dict:
    """The config as a JSON-able dict (for series.json)."""
    out = asdict(cfg)
    out["with_"] = list(cfg.with_)
    out["relax_fmax_eV_A"], out["relax_max_steps"] = cfg.relax_settings()
    return out
