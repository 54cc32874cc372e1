"""``phonion pfc``: projected force constants of mobile ion–O_e / O_c bonds, a thin layer over
:mod:`phonion.mdma.pfc`. Flow: load the phonons → O classes on phonopy's supercell → migration directions
(structure or hops in a trajectory) → bond- and migration-projected force constants.
"""

from __future__ import annotations


from phonion.cli.common import add_time_options, emit_json

__all__ = ["add_pfc_parser", "run_pfc_command"]

PFC_EPILOG = """\
examples:
  phonion pfc --phonons phonons-out --json
  phonion pfc --phonons phonons-out --trajectory run.h5 --json     # directions from observed Li hops

Φ_AB is the 3 × 3 force-constant block (eV/Å²) of a mobile ion A and an O_e / O_c neighbour B in phonopy's
supercell; b̂ the A→B unit vector; m̂ a migration direction of A. bond pFC = b̂ᵀΦb̂, mpFC = (Φb̂)·m̂, averaged
over all mobile ions, neighbours and directions; ΔpFC = mpFC(O_e) − mpFC(O_c). A central spring of stiffness
k gives Φ_AB = −k b̂b̂ᵀ, so stiffer bonds are more negative.
JSON keys: mpfc_Oe_eV_A2, mpfc_Oc_eV_A2, delta_pfc_eV_A2, bond_pfc_Oe_eV_A2, bond_pfc_Oc_eV_A2 (means), their
*_err (standard errors), spreads (mean, std, min, max, n, sem of each), directions_source, ..."""


# ---------------------------------------------------------------------------------------- parsers

def add_pfc_parser(sub, formatter) -> None:
    """Add the ``pfc`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "pfc", formatter_class=formatter,
        help="projected force constants of mobile ion–O_e / O_c bonds (bond and migration projected)",
        description="Bond-projected (b̂ᵀΦb̂, Φb̂) and migration-projected ((Φb̂)·m̂) force constants for every "
                    "mobile ion and its O_e / O_c neighbours, averaged with spread, and ΔpFC. Migration "
                    "directions: the nearest shell of other mobile-ion sites (default), or the hops seen in "
                    "--trajectory.",
        epilog=PFC_EPILOG)
    p.add_argument("--phonons", required=True, metavar="DIR", help="phonopy data (as for mdma)")
    p.add_argument("--trajectory", nargs="+", default=None, metavar="TRAJ",
                   help="take migration directions from the mobile-ion hops in this run")
    p.add_argument("--mobile", default="Li", help="mobile species")
    p.add_argument("--anion", default="O", help="anion species")
    p.add_argument("--framework", nargs="+", default=None, metavar="EL",
                   help="framework cations for the O classes (none: found automatically)")
    p.add_argument("--k-nearest", type=int, default=None, metavar="K",
                   help="structure directions: the K nearest sites instead of the whole first shell")
    p.add_argument("--hop-threshold-A", type=float, default=1.0, help="hop: site change larger than this, Å")
    p.add_argument("--hop-window", type=int, default=50, help="hop: frames averaged into a site")
    p.add_argument("--supercell", type=int, nargs="+", default=None, metavar="N",
                   help="supercell matrix of phonons given as FORCE_SETS / FORCE_CONSTANTS + POSCAR without a "
                        "phonopy_disp.yaml or a .conf with DIM (3 or 9 integers)")
    p.add_argument("--site-tolerance-A", type=float, default=0.5,
                   help="largest distance of a first-frame atom from its phonopy site, Å")
    add_time_options(p)
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="also write pfc.json (with every ion–anion record) into DIR")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_cmd_pfc)


# ---------------------------------------------------------------------------------------- pfc
def run_pfc_command(phonons, *, output=None, trajectory=None, framework=None, **options) -> dict:
    """The ``pfc`` command as a function; returns the JSON dict (and writes ``pfc.json`` into ``output``)."""
    from phonion.workflows.common import check_output_dir
    from phonion.workflows.pfc import PFCConfig, run_pfc

    if output is not None:
        check_output_dir(output)
    cfg = PFCConfig(phonons=str(phonons), trajectory=None if not trajectory else tuple(str(t) for t in trajectory),
                    framework=None if framework is None else tuple(framework), **options)
    run = run_pfc(cfg)
    if output is not None:
        run.save(output)
    return run.to_dict()


def _cmd_pfc(args) -> int:
    result = run_pfc_command(args.phonons, trajectory=args.trajectory, mobile=args.mobile, anion=args.anion,
                             framework=args.framework, k_nearest=args.k_nearest,
                             hop_threshold_A=args.hop_threshold_A, hop_window=args.hop_window,
                             site_tolerance_A=args.site_tolerance_A, timestep_fs=args.timestep_fs,
                             file_stride=args.file_stride, fmt=args.fmt, output=args.output,
                             supercell=None if args.supercell is None else tuple(args.supercell))
    if args.json:
        emit_json(result, indent=1)
    else:
        for key in ("mpfc_Oe_eV_A2", "mpfc_Oc_eV_A2", "delta_pfc_eV_A2", "bond_pfc_Oe_eV_A2",
                    "bond_pfc_Oc_eV_A2"):
            print(f"{key:>20}: {result[key]} ± {result.get(key + '_err')}")
        print(f"{'directions':>20}: {result['directions_source']}")
    return 0
