"""The ``mlip`` stages of the ``phonion`` command: ``reference``, ``train``, ``evaluate``.

``add_mlip_parsers(sub, formatter)`` adds them to the subparsers of ``phonion.cli.main``; each handler
takes the parsed arguments and returns an exit code; bad input raises ``ValueError`` (or
``TrajectoryError`` / ``CalculatorSpecError``, both ValueErrors) whose message names the file.

=============  ============================================================================
stage          what it does
=============  ============================================================================
reference      surrogate-reference MD per temperature → ``DIR/<T>K/traj.h5`` (``phonion.mlip.reference``)
train          train / fine-tune MACE with Lightning → ``DIR/model.model`` (``phonion.mlip.train``)
evaluate       errors of a model on trajectories (``phonion.mlip.evaluate``)
=============  ============================================================================
"""

from __future__ import annotations

import contextlib
import json
import sys

from phonion.cli.common import emit_json


def add_mlip_parsers(sub, formatter) -> None:
    """Add the ``reference``, ``train`` and ``evaluate`` subcommands to ``sub``."""
    add_reference_parser(sub, formatter)
    add_train_parser(sub, formatter)
    add_evaluate_parser(sub, formatter)


def add_reference_parser(sub, formatter) -> None:
    from phonion.mlip.reference import ReferenceConfig

    d = ReferenceConfig()
    p = sub.add_parser(
        "reference", formatter_class=formatter,
        help="surrogate reference MD (a calculator standing in for DFT), one H5MD per temperature",
        description="Run MD with a reference calculator (default CHGNet, offline) at each temperature via "
                    "the phonion MD driver; write DIR/<T>K/traj.h5 (energies, forces, stress, velocities) "
                    "labelled 'surrogate reference' and DIR/reference.json. Rerunning continues unfinished "
                    "runs.",
        epilog="example:\n  phonion reference LiGa_SeO3_2 --calculator chgnet --temperatures-K 600 900 1200 "
               "--steps 2000 --timestep-fs 2 -o reference")
    p.add_argument("structure", metavar="STRUCTURE", help="structure file or bundled name (LiGa_SeO3_2)")
    p.add_argument("--calculator", default=d.calculator, metavar="SPEC")
    p.add_argument("--temperatures-K", type=float, nargs="+", required=True, metavar="T")
    p.add_argument("--steps", type=int, default=d.steps, help="production steps per temperature")
    p.add_argument("--timestep-fs", type=float, default=d.timestep_fs)
    p.add_argument("--equilibration-steps", type=int, default=None, metavar="N",
                   help="steps before the stored frames, per temperature (default: 5 thermostat times, "
                        "5 × thermostat_time_fs / timestep_fs rounded up to a multiple of --sample-every, "
                        "so the frames sample the set-point; 0 for nve)")
    p.add_argument("--sample-every", type=int, default=d.sample_every, help="steps between saved frames")
    p.add_argument("--ensemble", default=d.ensemble, choices=["nvt-bussi", "nvt-nhc", "nvt-langevin", "nve"])
    p.add_argument("--supercell", type=int, nargs=3, default=list(d.supercell), metavar=("A", "B", "C"))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_reference)


def cmd_reference(args) -> int:
    from phonion.mlip.reference import ReferenceConfig, run_reference

    cfg = ReferenceConfig(structure=args.structure, calculator=args.calculator,
                          temperatures_K=tuple(args.temperatures_K), steps=args.steps,
                          timestep_fs=args.timestep_fs, equilibration_steps=args.equilibration_steps,
                          sample_every=args.sample_every, ensemble=args.ensemble,
                          supercell=tuple(args.supercell), seed=args.seed, output=args.output)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the result (libraries print)
            summary = run_reference(cfg, progress=not args.no_progress)
    except OSError as exc:  # full disk, read-only or vanished directory: one line, not a traceback
        raise ValueError(f"{exc}; free space or choose another output directory (-o)") from None
    except KeyboardInterrupt:
        print("phonion reference: interrupted; rerun the same command to continue (finished "
              "temperatures are kept)", file=sys.stderr)
        return 130
    for run in summary["runs"]:
        print(f"{run['temperature_K']:g} K: mean temperature of the {run['n_frames']} stored frames "
              f"{run['mean_temperature_K']:.1f} ± {run['std_temperature_K']:.1f} K "
              f"(equilibration {run['equilibration_steps']} steps)", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


def add_train_parser(sub, formatter) -> None:
    p = sub.add_parser(
        "train", formatter_class=formatter, help="train or fine-tune a MACE potential (Lightning)",
        description="Train a MACE potential on trajectory frames (time-block splits per run), or fine-tune "
                    "a foundation model (model.foundation=a .model file or a mace name such as medium-mpa-0, "
                    "from mace's cache; finetune.mode=naive|multihead|freeze, replay data in finetune.replay). "
                    "Resumes from OUTPUT/checkpoints/last.ckpt. "
                    "Writes OUTPUT/model.model (EMA weights, loadable by MACECalculator), metrics.json, "
                    "parity plots, checkpoints/, logs/ (CSV, offline wandb).",
        epilog="examples:\n  phonion train --config configs/train.yaml\n"
               "  phonion train --config configs/train.yaml model.num_channels=32 trainer.max_epochs=5\n"
               "  phonion train --config configs/train_tiny.yaml output=tiny-run wandb.mode=disabled\n"
               "  phonion train --config configs/train.yaml model.foundation=small-omat-0 finetune.mode=multihead "
               "dtype=float64 optim.lr=0.001")
    p.add_argument("--config", default=None, help="YAML with sections data, model, loss, optim, trainer, wandb, export")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. trainer.max_epochs=5")
    p.add_argument("--json", action="store_true", help="print metrics.json at the end")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from phonion.mlip.train import load_config, run
    from phonion.workflows.common import check_output_dir

    cfg = load_config(args.config, list(args.overrides) + list(getattr(args, "set_overrides", [])))
    check_output_dir(cfg.output, "output")
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the result (libraries print)
        metrics = run(cfg)
    if not metrics:  # a non-zero DDP rank: rank 0 exports, evaluates and reports
        return 0
    if args.json:
        emit_json(metrics, default=str)
    else:
        test = metrics.get("test") or metrics.get("val") or {}
        print(f"model: {metrics.get('model_file')}; force RMSE {test.get('force_rmse_meV_A', float('nan')):.1f} "
              f"meV/Å, energy MAE {test.get('energy_mae_meV_atom', float('nan')):.2f} meV/atom")
        rep = metrics.get("replay")
        if rep:  # the forgetting measure: the foundation's domain before and after fine-tuning
            print(f"replay ({rep['n_test']} held-out frames): force RMSE {rep['before']['force_rmse_meV_A']:.1f} → "
                  f"{rep['after']['force_rmse_meV_A']:.1f} meV/Å (foundation → fine-tuned)")
    return 0


def add_evaluate_parser(sub, formatter) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=formatter, help="errors of a trained MACE model on trajectories",
        description="Predict every frame with energy and forces of the given trajectories (each file one "
                    "run) with mace's MACECalculator and report energy MAE (meV/atom), force RMSE/MAE "
                    "(meV/Å), stress RMSE (GPa), per-element force RMSE, per temperature too.",
        epilog="example:\n  phonion evaluate --model run/model.model run/splits/test_*.extxyz --json")
    p.add_argument("files", nargs="+", metavar="TRAJ")
    p.add_argument("--model", required=True, metavar="M", help="MACE .model file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--every", type=int, default=1, help="evaluate every N-th frame")
    p.add_argument("--timestep-fs", type=float, default=None)
    p.add_argument("--format", dest="fmt", default=None)
    p.add_argument("--skip-incomplete", action="store_true", help="skip frames without energy or forces")
    p.add_argument("--plots", default=None, metavar="PREFIX", help="write PREFIX_energy.png, PREFIX_forces.png")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from phonion.core.threads import threads
    from phonion.mlip.evaluate import evaluate_model, frames_from_files, plot_parity
    from phonion.workflows.common import check_output_file

    if args.plots:
        check_output_file(f"{args.plots}_energy.png", "--plots")
    with threads(args.threads, env=False):
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the result (libraries print)
            frames = frames_from_files(args.files, fmt=args.fmt, timestep_fs=args.timestep_fs, every=args.every,
                                       skip_incomplete=args.skip_incomplete)
            metrics, pred = evaluate_model(args.model, frames, device=args.device, dtype=args.dtype)
            metrics["model"], metrics["files"] = str(args.model), [str(f) for f in args.files]
            if args.plots:
                metrics["plots"] = [str(p) for p in plot_parity(pred, args.plots)]
    if args.json:
        emit_json(metrics)
    else:
        for key, value in metrics.items():
            print(f"{key:>30}: {value}")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m phonion.cli.mlip train ...``) with the same subcommands."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m phonion.cli.mlip",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_mlip_parsers(parser.add_subparsers(dest="command", metavar="STAGE"),
                     argparse.ArgumentDefaultsHelpFormatter)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"phonion {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
