"""``phonion md`` and ``phonion lammps-export``: thin command-line fronts over phonion.md.sweep / phonion.md.lammps.

Hooked into ``phonion/cli.py`` with ``add_md_parsers(sub, formatter)``; also runnable on its
own as ``python -m phonion.cli.md md ...``. Every option can come from ``--config FILE.yaml`` (a
flat mapping of SweepConfig / MDConfig fields, see ``configs/md.yaml``); options given on
the command line override the file. Errors are ``ValueError`` (bad input) or
``phonion.md.guards.MDGuardError`` (a ``RuntimeError``: the simulation went wrong).
"""

from __future__ import annotations

import argparse
import json
import sys

from phonion.md.md_config import ENSEMBLES, FIX_CHOICES, MDConfig

MD_EPILOG = """\
examples:
  phonion md --config configs/md.yaml
  phonion md --calculator mace:run/model.model --structure LiGa_SeO3_2 --supercell 2 1 1 \\
      --temperatures-K 600 800 1000 --seeds 0 1 --fix none O_e O_c --steps 50000 \\
      --timestep-fs 2 --sample-every 10 --workers 2 -o runs/
  phonion md --config configs/md.yaml --resume          # continue after a crash / kill
  phonion md --engine batched --calculator mace:run/model.model --temperatures-K 600 800 1000 1200 \\
      --fix none O_e -o runs/     # MACE: all runs in one process, one model call per step
  phonion md --config configs/md.yaml --executor dask --scheduler-address tcp://host:8786

each run goes to OUT/T{T}_seed{s}_fix{f}/ (traj.h5, run.json, checkpoint.npz, run.log);
finished runs are never re-run. nvt-nhc, nvt-bussi, nvt-langevin: NVT; nve: velocity Verlet.
restarts are bit-exact for nve, nvt-langevin and nvt-bussi (nvt-nhc: chain variables restart)."""

#: argparse destinations that are not run settings
_NOT_SETTINGS = {"set_overrides", "_generic_config", "resume", "workers", "threads", "engine", "batch_size", "executor", "scheduler_address", "config", "no_progress", "func",
                 "command", "model", "convert"}


def add_md_parsers(sub, formatter) -> None:
    """Add the ``md`` and ``lammps-export`` subcommands to an argparse sub-parser set."""
    p = sub.add_parser("md", formatter_class=formatter,
                       help="long MD with any calculator: temperature × seed × fixed-anion sweeps",
                       description="Run MD (ASE integrators) into H5MD, one directory per "
                                   "temperature × seed × fix variant, with checkpoints, exact "
                                   "restart, guards and a real executor (local processes or dask).",
                       epilog=MD_EPILOG)
    _add_run_options(p)
    p.add_argument("--workers", type=int, default=argparse.SUPPRESS, metavar="W",
                   help="parallel runs (processes / dask workers / SLURM jobs) (default 1)")
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="torch / OpenMP threads of each run (default: the cores free when the sweep starts, "
                        "divided among the workers; never more threads than cores); recorded in run.json")
    p.add_argument("--engine", choices=["auto", "ase", "batched"], default=argparse.SUPPRESS,
                   help="auto (default): the faster of ase and batched, measured on this device before the sweep "
                        "starts (the choice and its numbers go to sweep.json); ase: one ASE integrator per run, any "
                        "calculator; batched: MACE only, every run advanced together in this process, one model "
                        "call per step (nvt-bussi, nve)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=argparse.SUPPRESS, metavar="B",
                   help="--engine batched: systems per model call (default: all runs)")
    p.add_argument("--executor", choices=["local", "dask", "slurm"], default=argparse.SUPPRESS,
                   help="local processes, dask (LocalCluster or --scheduler-address), or slurm "
                        "(dask-jobqueue; options in the config under 'slurm') (default local)")
    p.add_argument("--scheduler-address", default=argparse.SUPPRESS, metavar="ADDR",
                   help="running dask scheduler, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_md)

    p = sub.add_parser("lammps-export", formatter_class=formatter,
                       help="write LAMMPS inputs (pair_style mace) for the same MD protocol",
                       description="Write a LAMMPS data file and one input script per temperature × "
                                   "seed × fix variant (pair_style mace, fix nvt, fixed groups, dump "
                                   "h5md or custom), and optionally convert the MACE model with "
                                   "mace's own create_lammps_model.",
                       epilog="example:\n  phonion lammps-export --config configs/md.yaml "
                              "--model run/model.model --convert -o lammps/")
    _add_run_options(p)
    p.add_argument("--model", required=True, metavar="MODEL", help="trained MACE model file (.model)")
    p.add_argument("--convert", action="store_true",
                   help="also run python -m mace.cli.create_lammps_model MODEL")
    p.set_defaults(func=cmd_lammps_export)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Run settings; an option not given is absent (SUPPRESS), so the config file or MDConfig decides."""
    d, no = MDConfig(), argparse.SUPPRESS
    p.add_argument("--config", default=None, metavar="YAML", help="settings file; options override it")
    p.add_argument("-o", "--output", default=no, metavar="DIR", help="output directory (default md-sweep)")
    p.add_argument("--calculator", default=no, metavar="SPEC",
                   help=f"chgnet | emt | mace:MODEL | module:function (default {d.calculator})")
    p.add_argument("--structure", default=no, metavar="FILE",
                   help=f"structure file or bundled name (default {d.structure})")
    p.add_argument("--supercell", type=int, nargs=3, default=no, metavar=("A", "B", "C"),
                   help="repetitions of the structure (default 1 1 1)")
    p.add_argument("--temperatures-K", dest="temperatures_K", type=float, nargs="+", default=no,
                   metavar="T", help=f"one run per temperature (default {d.temperature_K:g})")
    p.add_argument("--seeds", type=int, nargs="+", default=no, metavar="S",
                   help=f"one run per seed (default {d.seed})")
    p.add_argument("--fix", nargs="+", choices=FIX_CHOICES, default=no,
                   help="oxygen class held fixed, one run per variant (default none)")
    p.add_argument("--steps", type=int, default=no, metavar="N", help=f"production steps (default {d.steps})")
    p.add_argument("--equilibration-steps", type=int, default=no, metavar="N",
                   help="steps before production, not written (default 0)")
    p.add_argument("--timestep-fs", type=float, default=no, metavar="DT", help=f"(default {d.timestep_fs:g})")
    p.add_argument("--ensemble", choices=ENSEMBLES, default=no, help=f"(default {d.ensemble})")
    p.add_argument("--sample-every", type=int, default=no, metavar="K",
                   help=f"steps between frames (default {d.sample_every})")
    p.add_argument("--checkpoint-every", type=int, default=no, metavar="K",
                   help=f"steps between checkpoints (default {d.checkpoint_every})")
    p.add_argument("--thermostat-time-fs", type=float, default=no, metavar="TAU",
                   help=f"Nosé–Hoover tdamp / Bussi taut (default {d.thermostat_time_fs:g})")
    p.add_argument("--friction-per-fs", type=float, default=no, metavar="GAMMA",
                   help=f"Langevin friction (default {d.friction_per_fs:g})")
    p.add_argument("--pair-floors", dest="pair_floors_A", default=no, metavar="FLOORS",
                   help="per-species-pair closest allowed approach, Å: 'Li-Li=2.1,O-O=2.0' or JSON "
                        "(default: none, only min_distance_A); a run that goes closer is invalid")
    p.add_argument("--uncertainty-threshold", dest="uncertainty_threshold_eV_A", type=float, default=no,
                   metavar="EV_A", help="committee calculators: largest per-atom force std, eV/Å")
    p.add_argument("--uncertainty-action", choices=["flag", "stop"], default=no,
                   help="above the threshold: flag in run.json (default) or stop the run as invalid")
    p.add_argument("--surrogate-reference", action="store_true", default=no,
                   help="label the trajectories 'surrogate reference' (not DFT)")


def sweep_config_from_args(args):
    """SweepConfig from ``--config`` (if any) with the command-line options on top."""
    from phonion.core.config import apply_overrides
    from phonion.md.md_config import read_yaml
    from phonion.md.sweep import SweepConfig

    data = apply_overrides(read_yaml(args.config) if args.config else {}, getattr(args, "set_overrides", []))
    data.pop("slurm", None)
    for key in ("workers", "threads", "engine", "batch_size", "executor", "scheduler_address"):
        data.pop(key, None)
    cli = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS and v is not None}
    if "temperatures_K" in cli:
        data.pop("temperature_K", None)
    if "seeds" in cli:
        data.pop("seed", None)
    return SweepConfig.from_dict({**data, **cli})


def _executor_options(args) -> dict:
    from phonion.core.config import apply_overrides
    from phonion.md.md_config import read_yaml

    data = apply_overrides(read_yaml(args.config) if args.config else {}, getattr(args, "set_overrides", []))
    pick = (lambda key, default: getattr(args, key) if getattr(args, key, None) is not None
            else data.get(key, default))
    return {"executor": pick("executor", "local"), "workers": int(pick("workers", 1)),
            "scheduler_address": pick("scheduler_address", None), "slurm": data.get("slurm"),
            "threads": None if pick("threads", None) is None else int(pick("threads", None)),
            "engine": pick("engine", "auto"),
            "batch_size": None if pick("batch_size", None) is None else int(pick("batch_size", None))}


def cmd_md(args) -> int:
    """Handler of ``phonion md``: run the sweep, print the summary table.

    Returns 0, or 1 when a run is invalid (a guard tripped) or failed (any error in that run:
    unreadable checkpoint, full disk, a calculator that raised); each is printed as
    ``phonion md: invalid: RUN: reason`` or ``phonion md: error: RUN: reason`` and the other runs
    go on; sweep_summary.json is always written. Ctrl-C: one line, 130. Settings that clash with
    runs already in the output directory, a bad calculator SPEC or output path: ValueError
    (exit 2) before anything is written.
    """
    from phonion.md.sweep import format_summary, run_sweep

    cfg = sweep_config_from_args(args)
    try:
        rows = run_sweep(cfg, resume=args.resume, progress=not args.no_progress, **_executor_options(args))
    except KeyboardInterrupt:
        return interrupted("md")
    except OSError as exc:  # full disk, read-only or vanished directory: one line, not a traceback
        raise ValueError(f"{exc}; free space or choose another output directory (-o)") from None
    print(format_summary(rows))
    print(f"summary: {cfg.output}/sweep_summary.json", file=sys.stderr)
    failed = [r for r in rows if r["status"].startswith("failed")]
    invalid = [r for r in rows if r["status"] == "invalid"]
    for r in invalid:
        print(f"phonion md: invalid: {r['run']}: {r['invalid_reason']}", file=sys.stderr)
    for r in failed:
        print(f"phonion md: error: {r['run']}: {r.get('reason')}", file=sys.stderr)
    return 1 if failed or invalid else 0


def interrupted(command: str) -> int:
    """Ctrl-C: one line instead of a traceback, exit code 130 (run.json / the summary are written)."""
    print(f"phonion {command}: interrupted; rerun the same command with --resume to continue",
          file=sys.stderr)
    return 130


def cmd_lammps_export(args) -> int:
    """Handler of ``phonion lammps-export``."""
    from phonion.md.lammps import convert_model_for_lammps, write_lammps_inputs

    from pathlib import Path

    cfg = sweep_config_from_args(args)
    model = args.model
    if not (Path(model).is_file() or Path(f"{model}-lammps.pt").is_file()):
        raise FileNotFoundError(f"{model}: no such MACE model file (--model); train one with "
                                "phonion train, or give the path of an existing .model file")
    if args.convert:
        model = str(convert_model_for_lammps(args.model))
    try:
        written = write_lammps_inputs(cfg, model, cfg.output)
    except OSError as exc:  # output under a file, read-only, name too long: one line
        raise ValueError(f"{exc}; choose another output directory (-o)") from None
    print(json.dumps({k: [str(p) for p in v] if isinstance(v, list) else str(v)
                      for k, v in written.items()}, indent=2))
    return 0


def main(argv=None) -> int:
    """Stand-alone entry point (``python -m phonion.cli.md md ...``), same handlers as ``phonion``."""
    from phonion.md.guards import MDGuardError

    parser = argparse.ArgumentParser(prog="python -m phonion.cli.md")
    sub = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    add_md_parsers(sub, argparse.RawDescriptionHelpFormatter)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, MDGuardError) as exc:
        print(f"phonion {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
