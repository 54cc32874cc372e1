"""``phonion demo``: the first thing a user runs — the whole chain on the bundled LiGa(SeO3)2.

Surrogate-reference MD (CHGNet by default) at a few temperatures → a committee of small MACE
models trained on it, one or more active-learning rounds and the fit-for-MD gate →
MLIP MD at the same temperatures plus fixed-O_e / fixed-O_c runs → the comparison report
(diffusion, Arrhenius, Haven, VDOS, phonons, MDMA, pFC, parity). It is :func:`phonion.chain.chain.run_chain`
with a profile (:mod:`phonion.chain.profiles`): ``quick`` (default, ≤ 15 min on 2 CPU cores), ``full`` (GPU)
or ``tiny`` (tests). At the end it prints the headline numbers of both sides with their
uncertainties and ``converged`` flags, says which are too short to be converged, and where the
report is. Rerun the same command after an interruption: finished stages are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DemoConfig:
    """Settings of ``phonion demo`` (the chain's, on the bundled structure)."""

    output: str = "phonion-demo"
    profile: str = "quick"
    calculator: str = "chgnet"
    device: str | None = None
    seed: int = 0
    structure: str = "LiGa_SeO3_2"
    overrides: dict = field(default_factory=dict)


def add_demo_parser(sub, formatter) -> None:
    """The ``phonion demo`` subcommand."""
    p = sub.add_parser(
        "demo", formatter_class=formatter,
        help="the whole chain on the bundled LiGa(SeO3)2 (start here; ~15 min on 2 CPU cores)",
        description="The whole chain on the bundled LiGa(SeO3)2 cell (Materials Project, CC BY 4.0): "
                    "surrogate-reference MD with CHGNet at a few temperatures, a committee of MACE models with "
                    "an active-learning round and the fit-for-MD gate, an MLIP MD "
                    "sweep with fixed-O_e / fixed-O_c runs, then phonons, MDMA, pFC and the reference-vs-MLIP "
                    "comparison report. Profiles: quick (CPU, ≤ 15 min on 2 cores; numbers NOT "
                    "converged), full (GPU: 2x1x1 cell, production-sized MACE, 200 ps runs), tiny (tests). "
                    "Outputs in OUT: sites.json, reference/, learn/, mlip_md/, compare/report.html, "
                    "summary.json. Rerun the same command to continue an interrupted demo.",
        epilog="examples:\n  phonion demo -o demo-out\n  phonion demo -o demo-gpu --profile full\n"
               "  phonion demo -o demo-out --set mlip_md.steps=8000 --set train.trainer.max_epochs=20")
    d = DemoConfig()
    p.add_argument("-o", "--output", default=d.output, metavar="OUT",
                   help="output directory (created; rerun the same command to continue it)")
    p.add_argument("--profile", default=d.profile, choices=("tiny", "quick", "full"),
                   help="run lengths: quick = CPU (~15 min on 2 cores, numbers not converged), "
                        "full = GPU (production), tiny = tests (numbers meaningless)")
    p.add_argument("--calculator", default=d.calculator, metavar="SPEC",
                   help="reference calculator (stands in for DFT: 'surrogate reference')")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N; None = cuda for the full profile "
                                                  "when available, else cpu")
    p.add_argument("--seed", type=int, default=d.seed, help="added to every seed of the profile")
    add_settings_options(p, "phonion demo -o demo-out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of the text")
    p.set_defaults(func=_cmd_demo)


def add_settings_options(p, example: str) -> None:
    """``--config`` (a YAML file of profile settings) and ``--set SECTION.KEY=VALUE`` of demo and series."""
    p.add_argument("--config", default=None, metavar="YAML",
                   help="profile settings file: a nested mapping of sections and keys (e.g. "
                        "'mlip_md: {steps: 8000}') applied on top of the profile; --set wins over it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a profile setting (repeatable; the value is read as YAML), e.g. "
                        f"{example} --set mlip_md.steps=8000; sections and keys: phonion/chain/profiles.py "
                        "(every key and value is checked before anything runs)")


def settings_overrides(args) -> dict:
    """``{dotted key: value}`` from ``--config`` (flattened) and ``--set`` (which wins)."""
    from phonion.chain.profiles import parse_override
    from phonion.core.config import read_yaml

    def flat(data: dict, where: str = "") -> dict:
        out = {}
        for key, value in data.items():
            name = f"{where}.{key}" if where else str(key)
            deeper = isinstance(value, dict) and value and name != "mlip_md.pair_floors_A"
            out.update(flat(value, name) if deeper else {name: value})
        return out

    out = flat(read_yaml(args.config)) if args.config else {}
    out.update(dict(parse_override(text) for text in args.overrides))
    return out


def _cmd_demo(args) -> int:
    summary = run_demo(DemoConfig(output=args.output, profile=args.profile, calculator=args.calculator,
                                  device=args.device, seed=args.seed, overrides=settings_overrides(args)))
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def run_demo(cfg: DemoConfig, progress: bool = True) -> dict:
    """Run (or continue) the demo chain; returns the summary also written to OUT/summary.json."""
    from phonion.chain.chain import ChainConfig, run_chain

    return run_chain(ChainConfig(structure=cfg.structure, output=cfg.output, profile=cfg.profile,
                                 calculator=cfg.calculator, device=cfg.device, seed=cfg.seed,
                                 overrides=dict(cfg.overrides)), progress=progress)


def _fmt(entry: dict) -> str:
    value, err = entry.get("value"), entry.get("uncertainty")
    if value is None:
        return "n/a"
    text = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
    if isinstance(err, (int, float)):
        text += f" ± {err:.2g}"
    return f"{text} {entry.get('unit') or ''}".rstrip()


def structure_lines(numbers: dict) -> list[str]:
    """The closing text's lines on the MLIP runs' structure against the reference (``compare/numbers.json``):
    RDF first peaks and coordination numbers at the reference's temperature, and runs whose framework changed."""
    r, c = numbers.get("rdf_first_peak_shifts") or {}, numbers.get("coordination") or {}
    verdict = {True: "within", False: "OUTSIDE"}
    out = []
    if r.get("max_abs_shift_A") is not None:
        w = r.get("worst") or {}
        out.append(f"  RDF first peaks (MLIP − reference, at the reference's measured T): largest |shift| "
                   f"{r['max_abs_shift_A']:.3f} Å ({w.get('pair')}, {w.get('temperature')}), "
                   f"{verdict.get(r.get('passed'), 'not judged')} ±{r.get('limit_A', 0.1):g} Å")
    if c.get("max_abs_difference") is not None:
        w = c.get("worst") or {}
        out.append(f"  coordination ({', '.join(c.get('shells') or {})}): largest |MLIP − reference| "
                   f"{c['max_abs_difference']:.2f} per centre atom ({w.get('pair')}, {w.get('temperature')}), "
                   f"{verdict.get(c.get('passed'), 'not judged')} ±{c.get('limit', 0.2):g}")
    for d in c.get("drifting_runs") or []:
        if d["side"] != "mlip":
            continue
        marked = d.get("verdict") in ("fails", "not judged")  # the numbers of these runs are marked in compare
        out.append(f"  MLIP run {d['run']}: {d['pair']} coordination changed by {d['drift']:+.2f} during the run ("
                   + (f"{d['verdict']}; its numbers are marked)" if marked else "as the reference's run does)"))
    return ["", "structure of the MLIP runs vs the reference:"] + out if out else []


def format_summary(summary: dict) -> str:
    """The demo's closing text: stage times, headline numbers of both sides, what is not converged."""
    lines = [f"phonion demo: {summary['label']} — profile {summary['profile']} "
             f"({summary['profile_description']})", "", "stages (wall time):"]
    for name, st in summary["stages"].items():
        lines.append(f"  {name:<10} {st.get('status', '?'):<22} {st.get('wall_s', 0):8.1f} s")
    lines.append(f"  {'total':<10} {'':<22} {summary.get('total_wall_s', 0):8.1f} s")
    learn = (summary.get("stages") or {}).get("learn") or {}
    gate = learn.get("gate") or {}
    if gate:
        verdict = "PASSED" if gate.get("passed") else "FAILED (" + ", ".join(gate.get("failed_checks") or []) + ")"
        lines += ["", f"MLIP fit for MD (committee of MACE models, gate before long MD): {verdict}"]
        for r in learn.get("rounds") or []:
            rmse, p99 = r.get("force_rmse_meV_A"), r.get("uncertainty_p99_meV_A")
            lines.append(f"  round {r['round']}: +{r.get('n_added', 0)} labelled frames, held-out force RMSE "
                         + ("n/a" if rmse is None else f"{rmse:.1f} meV/Å")
                         + ", committee spread p99 " + ("n/a" if p99 is None else f"{p99:.0f} meV/Å")
                         + ("" if r.get("failed_checks") is None
                            else f", gate {'passed' if r.get('gate_passed') else 'failed'}"))
    lines += structure_lines(summary.get("compare") or {})
    head = summary.get("headline") or {}
    ref, mlip = head.get("reference", {}), head.get("mlip", {})
    keys = list(dict.fromkeys(list(ref.get("numbers", {})) + list(mlip.get("numbers", {}))))
    lines += ["", "headline numbers ('*' = not converged):",
              f"  {'':<36} {'reference: ' + str(ref.get('label')):<34} {'MLIP: ' + str(mlip.get('label'))}"]
    for key in keys:
        cells = []
        for side in (ref, mlip):
            e = side.get("numbers", {}).get(key)
            cells.append("-" if e is None else _fmt(e) + ("" if e.get("converged") else " *"))
        lines.append(f"  {key:<36} {cells[0]:<34} {cells[1]}")
    bad = summary.get("not_converged") or []
    if bad:
        lines += ["", f"too short to be converged ({len(bad)} of the numbers above): " + ", ".join(bad),
                  "  (the quick and tiny profiles check the chain, not the physics; the full profile on a "
                  "GPU runs long enough for E_a to about ±30 meV)"]
    warnings = (summary.get("compare") or {}).get("warnings") or []
    for w in warnings:
        lines.append(f"warning: {w}")
    lines += ["", "all reference numbers are surrogate reference "
                  f"({summary['calculator']} standing in for DFT), never DFT",
              f"summary: {summary['paths']['summary']}", f"open {summary['paths']['report']}"]
    return "\n".join(lines)


__all__ = ["DemoConfig", "add_demo_parser", "add_settings_options", "format_summary", "run_demo",
           "settings_overrides"]
