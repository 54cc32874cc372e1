"""``phonion validate`` and ``phonion learn``: the fit-for-MD gate and active learning (thin parsers).

The work is in :mod:`phonion.workflows.validate` and :mod:`phonion.workflows.learn`; with ``--json`` stdout carries the
JSON object alone (banners that libraries print while loading models go to stderr).
"""

from __future__ import annotations

from phonion.cli.common import emit_json, stdout_to_stderr


def add_gate_parsers(sub, formatter) -> None:
    p = sub.add_parser(
        "validate", formatter_class=formatter,
        help="is an MLIP fit for MD? held-out errors, a validation run above the top temperature, RDFs",
        description="The gate before long MLIP MD: held-out force RMSE (per temperature and species), "
                    "two short validation runs (at the hottest reference temperature and 1.1× above) "
                    "that must stay physical (per-pair closest-approach floors from the reference, "
                    "temperature control), partial-RDF first peaks against the reference, and the "
                    "committee uncertainty. Prints one JSON object with `passed` and every check.",
        epilog="example:\n  phonion validate --model mace:train/model.model --reference reference -o validation --json\n"
               "  phonion validate --model 'mace:committee/member*/model.model' --reference reference -o val")
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="calculator SPEC of the MLIP; a committee: mace:a.model,b.model,c.model")
    p.add_argument("--reference", required=True, metavar="DIR",
                   help="reference runs (<T>K/traj.h5, as phonion reference writes them)")
    p.add_argument("--temperature-K", type=float, default=None,
                   help="temperature of the RDF run (default: the hottest reference temperature); the "
                        "stability run is at --hot-factor × this")
    p.add_argument("--hot-factor", type=float, default=1.1)
    p.add_argument("--steps", type=int, default=1000, help="production steps of each validation run")
    p.add_argument("--equilibration-steps", type=int, default=200)
    p.add_argument("--structure", default=None, help="start structure (default: the reference's)")
    p.add_argument("--max-force-rmse-meV-A", type=float, default=None)
    p.add_argument("--max-rdf-shift-A", type=float, default=None)
    p.add_argument("--max-coordination-difference", type=float, default=None,
                   help="largest MLIP − reference difference of a bonded shell's neighbour count per centre atom (default 0.2)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "learn", formatter_class=formatter,
        help="active learning: committee MACE, exploratory MD, label uncertain frames, retrain, gate",
        description="Train a committee of MACE models on the data, then repeat: exploratory MLIP MD at "
                    "the target temperatures and above, harvest frames where the committee disagrees or "
                    "atoms come closer than the training data ever had them, label them with the "
                    "reference calculator, continue training, run the gate (phonion validate) — until the "
                    "gate passes or the round limit. Resumable: run the same command again after a kill.",
        epilog="example:\n  phonion learn --reference-calculator chgnet --data 'reference/*K/traj.h5' "
               "--config configs/learn.yaml -o learn")
    p.add_argument("--reference-calculator", required=True, metavar="SPEC",
                   help="labels new frames: chgnet (surrogate), or module:function for your DFT")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE",
                   help="training trajectories (each a run; globs allowed)")
    p.add_argument("--config", default=None, help="configs/learn.yaml-style settings")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. rounds.max_rounds=3")
    p.add_argument("--json", action="store_true", help="print rounds.json at the end")
    p.set_defaults(func=cmd_learn)


def cmd_validate(args) -> int:
    from phonion.workflows.validate import ValidateConfig, validate

    extra = {k: v for k, v in (("max_force_rmse_meV_A", args.max_force_rmse_meV_A),
                               ("max_rdf_shift_A", args.max_rdf_shift_A),
                               ("max_coordination_difference", args.max_coordination_difference)) if v is not None}
    cfg = ValidateConfig(model=args.model, reference=args.reference, output=args.output,
                         temperature_K=args.temperature_K, hot_factor=args.hot_factor, steps=args.steps,
                         equilibration_steps=args.equilibration_steps, structure=args.structure,
                         workers=args.workers, device=args.device, **extra)
    with stdout_to_stderr():
        result = validate(cfg, progress=not args.json)
    if args.json:
        emit_json(result)
    else:
        print(format_validation(result))
    return 0 if result["passed"] else 1


def _is_override(word: str) -> bool:
    """``section.key=value`` (an override), not a file name that happens to contain '='."""
    from pathlib import Path

    key, sep, _ = word.partition("=")
    return bool(sep) and bool(key) and "/" not in key and not Path(word).exists()


def format_validation(result: dict) -> str:
    """The gate's verdict as a few lines of text."""
    lines = [f"MLIP fit for MD: {'PASSED' if result['passed'] else 'FAILED'}  ({result['model']})"]
    for name, c in result["checks"].items():
        value = c["value"]
        shown = "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
        lines.append(f"  {'ok  ' if c['passed'] else 'FAIL'} {name:<26} {shown:>10}   limit {c['limit']}")
    return "\n".join(lines)


def cmd_learn(args) -> int:
    from phonion.workflows.learn import load_learn_config, run_learn

    # ``--data`` takes every word after it: key=value words there are overrides, not files
    data = [d for d in args.data if not _is_override(d)]
    overrides = [d for d in args.data if _is_override(d)] + list(args.overrides) + list(getattr(args, "set_overrides", []))
    cfg = load_learn_config(args.config, overrides, output=args.output, data=data,
                            reference_calculator=args.reference_calculator)
    with stdout_to_stderr():
        rounds = run_learn(cfg, progress=True)
    if args.json:
        emit_json(rounds)
    else:
        for r in rounds:  # a round whose gate was not run (before rounds.min_rounds) has no numbers
            rmse, p99 = r["force_rmse_meV_A"], r["uncertainty_p99_meV_A"]
            print(f"round {r['round']}: +{r['n_added']} frames, held-out force RMSE "
                  f"{'n/a' if rmse is None else f'{rmse:.1f}'} meV/Å, p99 uncertainty "
                  f"{'n/a' if p99 is None else f'{p99:.1f}'} meV/Å, gate "
                  f"{'passed' if r['gate_passed'] else ('failed' if r.get('gate_checked', True) else 'not run')}")
    return 0 if rounds and rounds[-1]["gate_passed"] else 1


__all__ = ["add_gate_parsers", "cmd_learn", "cmd_validate", "format_validation", "stdout_to_stderr"]
