"""``phonion phonons``: finite-displacement phonons of a structure with any calculator SPEC.

A thin layer over :func:`phonion.mdma.phonons.compute_force_constants`, :func:`phonion.mdma.phonons.phonon_summary`,
the writers in :mod:`phonion.mdma.phonon_io` and the plots in :mod:`phonion.mdma.phonon_plots`.
"""

from __future__ import annotations

import json
import sys
import time

__all__ = ["add_phonon_parsers", "run_phonons"]

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


def run_phonons(structure, calculator: str, output, supercell=(2, 2, 2), displacement_A=0.01,
                mesh=(8, 8, 8), mobile="Li", anion="O", tolerance_THz=0.05, symprec=1e-5,
                device=None, plots=True, progress=True) -> dict:
    """Compute, summarise and write phonons; returns the JSON-ready summary."""
    from phonion.mdma.phonon_io import save_phonons, summary_scalars, write_phonon_results
    from phonion.mdma.phonons import compute_force_constants, phonon_summary
    from phonion.mdma.sites import classify_oxygens
    from phonion.core.calculators import calculator_metadata, resolve_calculator
    from phonion.core.structures import load_structure

    if any(int(n) < 1 for n in supercell) or any(int(n) < 1 for n in mesh):
        raise ValueError(f"--supercell and --mesh need positive integers, got {list(supercell)} "
                         f"and {list(mesh)}")
    atoms = load_structure(structure)
    calc = resolve_calculator(calculator, device=device)
    t0 = time.perf_counter()
    phonon = compute_force_constants(atoms, calc, supercell_matrix=tuple(supercell),
                                     displacement_A=displacement_A, symprec=symprec,
                                     progress=progress)
    elapsed = time.perf_counter() - t0
    symbols = set(atoms.get_chemical_symbols())
    classes, note = None, None
    if mobile in symbols and anion in symbols:
        try:
            classes = classify_oxygens(atoms, mobile=mobile, anion=anion)
        except ValueError as exc:  # structure without the polyhedra: no class PDOS
            note = f"no O classes: {exc}"
    summary = phonon_summary(phonon, classes=classes, mesh=tuple(mesh), mobile=mobile,
                             tolerance_THz=tolerance_THz)
    extra = {"structure": str(structure), "n_atoms_unit_cell": len(atoms),
             "supercell": [int(n) for n in supercell],
             "n_displacements": len(phonon.supercells_with_displacements),
             "displacement_A": float(displacement_A), "force_constants_wall_s": round(elapsed, 2),
             **calculator_metadata(calculator)}
    if classes is not None:
        extra["o_classes"] = {c: [int(i) for i in getattr(classes, c)] for c in ("O_e", "O_c", "O_n")}
    if note:
        extra["note"] = note
    files = save_phonons(phonon, output)
    files.update(write_phonon_results(summary, output, extra))
    if plots:
        from phonion.mdma.phonon_plots import plot_phonon_results

        files.update(plot_phonon_results(summary, output))
    result = summary_scalars(summary)
    result.update(extra)
    result["files"] = {k: str(v) for k, v in files.items()}
    return result


def _cmd_phonons(args) -> int:
    result = run_phonons(args.structure, args.calculator, args.output, supercell=args.supercell,
                         displacement_A=args.displacement_A, mesh=args.mesh, mobile=args.mobile,
                         anion=args.anion, tolerance_THz=args.tolerance_THz,
                         symprec=args.symprec, device=args.device, plots=not args.no_plots,
                         progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key in ("min_frequency_THz", "max_frequency_THz", "n_imaginary", "li_band_centre_THz"):
            print(f"{key:>20}: {result[key]}")
        print(f"wrote {args.output}: {', '.join(sorted(result['files']))}")
    return 0
