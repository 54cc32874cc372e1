"""``phonion phonons``: finite-displacement phonons of a structure with any calculator SPEC.

An argparse front end over :func:`phonion.workflows.phonons.run_phonons` (force constants, summary) and
:meth:`phonion.workflows.phonons.PhononsRun.save` (phonopy files, CSVs, summary.json, plots).
"""

from __future__ import annotations

import sys

from phonion.cli.common import emit_json

__all__ = ["add_phonon_parsers", "run_phonons_command", "run_phonons"]

EPILOG = """\
examples:
  phonion phonons LiGa_SeO3_2 --calculator chgnet --supercell 1 1 1 --mesh 4 4 4 -o phonons-out
  phonion phonons POSCAR --calculator mace:model.model --supercell 2 2 2 -o out --json

outputs in DIR: phonopy_params.yaml and FORCE_CONSTANTS (phonopy's format, readable by phonopy and
by phonion.mdma.phonons.load_phonons), dos.csv, pdos.csv (by species and O class), band.csv,
summary.json, dos.png, band.png.
JSON keys: min_frequency_THz, max_frequency_THz, n_imaginary, li_band_centre_THz, ..."""


def add_phonon_parsers(sub, formatter) -> None:
    """Add the ``phonons`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "phonons", formatter_class=formatter,
        help="phonons (phonopy finite displacements) with any calculator: DOS, PDOS, bands, stability",
        description="Force constants by phonopy finite displacements with forces from the calculator "
                    "SPEC (the structure is phonopy's unit and primitive cell, atom order kept), then "
                    "DOS, projected DOS by species and by O class (O_e / O_c / O_n around the mobile "
                    "ion), band structure, mobile-ion band centre and a dynamic-stability report.",
        epilog=EPILOG)
    p.add_argument("structure", metavar="STRUCTURE",
                   help="any ASE-readable structure file, or a bundled name (LiGa_SeO3_2)")
    p.add_argument("--calculator", required=True, metavar="SPEC",
                   help="chgnet | emt | mace:PATH | module:function")
    p.add_argument("--supercell", nargs=3, type=int, default=[2, 2, 2], metavar=("A", "B", "C"),
                   help="phonopy supercell (diagonal)")
    p.add_argument("--displacement-A", type=float, default=0.01, help="displacement amplitude, Å")
    p.add_argument("--mesh", nargs=3, type=int, default=[8, 8, 8], metavar=("A", "B", "C"),
                   help="q-point mesh for DOS and PDOS")
    p.add_argument("--mobile", default="Li", help="mobile-ion species (band centre, O classes)")
    p.add_argument("--anion", default="O", help="anion species for the O classes")
    p.add_argument("--tolerance-THz", type=float, default=0.05,
                   help="a mode is imaginary when f < -tolerance")
    p.add_argument("--symprec", type=float, default=1e-5, help="phonopy symmetry tolerance, Å")
    p.add_argument("--device", default=None, help="cpu | cuda (default: SPEC option or automatic)")
    p.add_argument("--no-plots", action="store_true", help="skip dos.png and band.png")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=_cmd_phonons)


def run_phonons_command(structure, calculator: str, output, *, plots: bool = True, progress: bool = True,
                        **options) -> dict:
    """The ``phonons`` command as a function: runs :func:`phonion.workflows.phonons.run_phonons`, writes its
    files into ``output`` and returns the JSON dict. ``options``: the other :class:`PhononsConfig` fields
    (supercell, displacement_A, mesh, mobile, anion, tolerance_THz, symprec, device)."""
    from phonion.workflows.phonons import PhononsConfig
    from phonion.workflows.common import check_output_dir
    from phonion.workflows.phonons import run_phonons as run_workflow

    check_output_dir(output)
    run = run_workflow(PhononsConfig(structure=structure, calculator=calculator, plots=plots, **options),
                       progress=progress)
    run.save(output, plots=plots)
    return run.to_dict()


#: the old name (``run_phonons(structure, calculator, output, supercell=..., ...)``), kept for scripts
run_phonons = run_phonons_command


def _cmd_phonons(args) -> int:
    result = run_phonons_command(args.structure, args.calculator, args.output, supercell=args.supercell,
                                 displacement_A=args.displacement_A, mesh=args.mesh, mobile=args.mobile,
                                 anion=args.anion, tolerance_THz=args.tolerance_THz,
                                 symprec=args.symprec, device=args.device, plots=not args.no_plots,
                                 progress=sys.stderr.isatty())
    if args.json:
        emit_json(result)
    else:
        for key in ("min_frequency_THz", "max_frequency_THz", "n_imaginary", "li_band_centre_THz"):
            print(f"{key:>20}: {result[key]}")
        print(f"wrote {args.output}: {', '.join(sorted(result['files']))}")
    return 0
