"""The ``phonion`` command: one subcommand per stage, each a thin parser over a workflow (phonion.workflows).

Run ``phonion --help`` for the stages and ``phonion <stage> --help`` for examples.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from phonion.core.paths import format_warning as _format_warning  # one format, also in worker processes
from phonion.core.paths import ignore_library_noise

DESCRIPTION = """\
phonion: from a few ps of AIMD to a MACE potential, long MD, and the same analyses
(diffusion, VDOS, phonons, MDMA, projected force constants) on DFT and MLIP trajectories.

Data flow:  AIMD files --inspect/convert--> H5MD --train--> MACE model --md--> H5MD
            --diffusion/vdos/phonons/mdma/pfc--> numbers --compare--> report

Every command that needs forces takes one calculator SPEC:
  chgnet            pretrained CHGNet (offline; the default "surrogate reference")
  emt               ASE EMT (metals; tests)
  mace:PATH         a trained MACE model file, through mace's MACECalculator
  module:function   any function returning an ASE calculator (e.g. your VASP setup)
"""

EPILOG = """\
examples:
  phonion demo -o demo-out                       # short real job on the bundled LiGa(SeO3)2
  phonion inspect XDATCAR.gz --timestep-fs 2 --json
  phonion convert run1/XDATCAR run2/XDATCAR --timestep-fs 2 -o run.h5
  phonion sites structure.cif --mobile Li --anion O --json
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    from phonion.cli.common import add_time_options
    from phonion.cli.options import add_config_options

    parser = argparse.ArgumentParser(prog="phonion", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_Formatter)
    from phonion import __version__

    parser.add_argument("--version", action="version", version=f"phonion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="STAGE")

    p = sub.add_parser("inspect", formatter_class=_Formatter,
                       help="what a trajectory file holds (atoms, frames, species, energies, forces ...)",
                       description="Read trajectory files (several = pieces of one run, joined in order) "
                                   "and report what they hold.",
                       epilog="example:\n  phonion inspect 700K/XDATCAR.gz --timestep-fs 2 --json\n"
                              "  -> n_atoms 416, n_frames 100, species {Li:192, I:32, S:160, P:32}, "
                              "stride 50, frame_interval_fs 100")
    p.add_argument("files", nargs="+", metavar="FILE")
    add_time_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("convert", formatter_class=_Formatter,
                       help="convert trajectory files to one H5MD file",
                       description="Read one run (several files = restarts, in order) and write it as "
                                   "H5MD: chunked, compressed, readable by any H5MD tool.",
                       epilog="example:\n  phonion convert 1100K/XDATCAR.gz --timestep-fs 2 -o li6ps5i_1100K.h5")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5")
    add_time_options(p)
    p.add_argument("--stride", type=int, default=1, metavar="N", help="keep every N-th frame")
    p.add_argument("--force", action="store_true", help="overwrite OUT.h5 if it exists")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("sites", formatter_class=_Formatter,
                       help="classify anions as O_e / O_c / O_n from polyhedral connectivity",
                       description="O_e: anion of a mobile-ion polyhedron shared with a framework polyhedron "
                                   "that shares an edge with it; O_c: shared through a corner only; O_n: "
                                   "framework anion bonded to no mobile ion. Framework cations are found "
                                   "automatically unless given.",
                       epilog="example:\n  phonion sites structure.cif --json   # LiGa(SeO3)2: 16 O_e, 16 O_c, 16 O_n")
    p.add_argument("structure", nargs="?", default=None, metavar="STRUCTURE",
                   help="any ASE-readable structure or trajectory (first frame); default: bundled LiGa(SeO3)2")
    p.add_argument("--mobile", default="Li")
    p.add_argument("--anion", default="O")
    p.add_argument("--framework", nargs="+", default=None, metavar="EL",
                   help="framework cations (default: automatic)")
    p.add_argument("--bond-tolerance", type=float, default=0.25,
                   help="bond if d <= d_min × (1 + tolerance), d_min the centre's shortest bond")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_sites)

    from phonion.cli.md import add_md_parsers
    from phonion.cli.transport import add_transport_parsers
    from phonion.cli.mdma import add_mdma_parsers
    from phonion.cli.anharmonicity import add_anharmonicity_parser
    from phonion.cli.mlip import add_mlip_parsers
    from phonion.cli.phonons import add_phonon_parsers
    from phonion.cli.compare import add_compare_parser
    from phonion.chain.demo import add_demo_parser
    from phonion.chain.series import add_series_parser
    from phonion.cli.gate import add_gate_parsers

    add_mlip_parsers(sub, _Formatter)
    add_gate_parsers(sub, _Formatter)
    add_md_parsers(sub, _Formatter)
    add_transport_parsers(sub, _Formatter)
    add_phonon_parsers(sub, _Formatter)
    add_mdma_parsers(sub, _Formatter)
    add_anharmonicity_parser(sub, _Formatter)
    add_compare_parser(sub, _Formatter)
    add_demo_parser(sub, _Formatter)
    add_series_parser(sub, _Formatter)
    add_config_options(sub)
    return parser


def _time_config(args) -> dict:
    return dict(files=tuple(args.files), timestep_fs=args.timestep_fs, file_stride=args.file_stride, fmt=args.fmt)


def _cmd_inspect(args) -> int:
    from phonion.cli.common import emit_json
    from phonion.workflows.trajectory import InspectConfig, run_inspect

    summary = run_inspect(InspectConfig(**_time_config(args))).to_dict()
    if args.json:
        emit_json(summary)
    else:
        for key, value in summary.items():
            print(f"{key:>22}: {value}")
    return 0


def _cmd_convert(args) -> int:
    from phonion.workflows.trajectory import ConvertConfig, run_convert

    run = run_convert(ConvertConfig(output=args.output, stride=args.stride, force=args.force, **_time_config(args)))
    path = run.save()["h5md"]
    traj = run.trajectory
    print(f"wrote {path}: {traj.n_frames} frames × {traj.n_atoms} atoms "
          f"(frame interval {traj.frame_interval_fs} fs)", file=sys.stderr)
    return 0


def _cmd_sites(args) -> int:
    from phonion.cli.common import emit_json
    from phonion.workflows.sites import SitesConfig, run_sites

    result = run_sites(SitesConfig(structure=args.structure, mobile=args.mobile, anion=args.anion,
                                   framework=args.framework, bond_tolerance=args.bond_tolerance)).to_dict()
    if args.json:
        emit_json(result)
    else:
        for key in ("O_e", "O_c", "O_n"):
            print(f"{key}: {len(result[key])} atoms: {result[key]}")
        print(f"framework: {', '.join(result['framework'])}")
    return 0


def _one_line(exc) -> str:
    """The error message on one line: a multi-line message (a YAML parser's, with its caret line) joined."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return " ".join(line for line in lines if line and set(line) != {"^"})


def _json_mode(args):
    """With ``--json``: stdout carries the JSON alone, everything else (library banners too) goes to stderr."""
    import contextlib

    from phonion.cli.common import json_stdout

    return json_stdout() if getattr(args, "json", False) else contextlib.nullcontext()


def main(argv=None) -> int:
    from phonion.cli.options import parse_with_config

    parser = build_parser()
    try:
        args = parse_with_config(parser, argv)
    except ValueError as exc:  # a bad --config / --set: one line, before any work
        print(f"phonion: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from phonion.md.trajectory import TrajectoryError
    from phonion.core.calculators import CalculatorSpecError

    original_formatwarning = warnings.formatwarning
    with warnings.catch_warnings():  # restores filters and showwarning, not formatwarning: hence the finally
        warnings.simplefilter("default")
        ignore_library_noise()
        warnings.formatwarning = _format_warning
        try:
            with _json_mode(args):
                return int(args.func(args) or 0)
        except (TrajectoryError, CalculatorSpecError, FileExistsError, FileNotFoundError,
                ValueError, RuntimeError) as exc:  # RuntimeError: MD guards (phonion.md.guards.MDGuardError)
            print(f"phonion {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # Ctrl-C: one line; long stages keep what they wrote and resume on a rerun
            print(f"phonion {args.command}: interrupted; what was written is kept (rerun the same command to "
                  "continue where a stage supports it)", file=sys.stderr)
            return 130
        except OSError as exc:  # a full disk, a read-only or vanished directory met while working
            print(f"phonion {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        finally:
            warnings.formatwarning = original_formatwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
