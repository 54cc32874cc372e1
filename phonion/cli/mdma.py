"""``phonion mdma`` (and the ``pfc`` parser from :mod:`phonion.cli.pfc`): argparse front ends over
:func:`phonion.workflows.mdma.run_mdma` and :func:`phonion.workflows.pfc.run_pfc`."""

from __future__ import annotations

import sys
from pathlib import Path

from phonion.cli.common import add_time_options, emit_json
from phonion.workflows.mdma import BIN_ABOVE_MODES, DEFAULT_BIN_THZ, frequency_bins  # noqa: F401

__all__ = ["add_mdma_parsers", "run_mdma_command", "frequency_bins"]

MDMA_EPILOG = """\
examples:
  phonion mdma run.h5 --phonons phonons-out -o mdma-out --json
  phonion mdma XDATCAR --timestep-fs 2 --phonons phonons-out --tau-max-ps 1 -o mdma-out
  phonion mdma run.h5 --phonons phonons-out --convention notebook -o mdma-notebook   # published notebook

The trajectory's cell must be the phonopy unit cell or a commensurate supercell of it (same lattice,
atoms within --site-tolerance-A of their sites in the first frame, any order). Velocities come from the
file, else from central differences of positions; frames must be at most 1/(2 f_max) apart.
outputs in DIR: result.json (the JSON below), mdma.npz + mdma.json (every array; phonion.mdma.mdma_report.load_mdma),
modes.csv (frequency, class, participation ratio, contribution per mode), running_integral.png,
cumulative.png, per_mode.png, heatmap.png.
JSON keys: collective_diffusivity_cm2_s, mdma_total_cm2_s, sum_rule_relative_error, harmonic_fraction,
anharmonic_fraction, class_fractions, oe_mean_frequency_THz, equal_time_anharmonic_fraction,
modal_equipartition, top_modes, errors, temperature_K (+ temperature_source), notes, ..."""

def add_mdma_parsers(sub, formatter) -> None:
    """Add the ``mdma`` and ``pfc`` subcommands to an argparse subparsers object."""
    p = sub.add_parser(
        "mdma", formatter_class=formatter,
        help="mass-diffusivity modal analysis (exact Gordiz MDMA) of a trajectory with its phonons",
        description="D_{n,n'} = (s_n·s_n')/(3 N_c) ∫₀^τmax ⟨Q̇_n(τ) Q̇_n'(0)⟩ dτ with Q̇_n = Σ_i √m_i e_{i,n}·v_i over "
                    "all atoms and s_n = Σ_{i∈mobile} e_{i,n}/√m_i, for every pair of Γ modes of the "
                    "trajectory's cell at once; Σ D_{n,n'} equals the Green–Kubo D_σ of the same velocities. "
                    "Harmonic (n = n') and anharmonic shares, O-class shares, running integral, block errors, "
                    "equal-time checks. --convention notebook reproduces the published notebook instead.",
        epilog=MDMA_EPILOG)
    p.add_argument("files", nargs="+", metavar="TRAJ", help="trajectory file(s) of one run, in time order")
    p.add_argument("--phonons", required=True, metavar="DIR",
                   help="phonopy data: a directory written by 'phonion phonons', a phonopy yaml, "
                        "FORCE_CONSTANTS or FORCE_SETS")
    p.add_argument("--species", default="Li", help="mobile species")
    p.add_argument("--anion", default="O", help="anion species for the O classes")
    p.add_argument("--framework", nargs="+", default=None, metavar="EL",
                   help="framework cations for the O classes (none: found automatically)")
    p.add_argument("--tau-max-ps", type=float, default=None,
                   help="correlation window τmax, ps (none: half a block); ignored by --convention notebook")
    p.add_argument("--n-blocks", type=int, default=4, help="contiguous blocks for the standard errors")
    p.add_argument("--convention", choices=["gordiz", "notebook"], default="gordiz",
                   help="gordiz: exact all-atom mass-weighted projection; notebook: the published notebook's "
                        "Li-only, unweighted, one-trapezoid variant (for comparison only)")
    add_time_options(p)
    p.add_argument("--every", type=int, default=1, metavar="N", help="use every N-th saved frame")
    p.add_argument("--velocities", choices=["auto", "positions"], default="auto",
                   help="auto: the file's velocities if it has them, else central differences; positions: "
                        "always central differences (like-for-like with AIMD files without velocities)")
    p.add_argument("--temperature-K", type=float, default=None,
                   help="temperature for the equipartition check (none: the file's mean temperature, "
                        "else the kinetic temperature of the velocities)")
    p.add_argument("--bins-THz", type=float, default=None, metavar="W",
                   help=f"bin the heat map by frequency in bins of W THz (none: {DEFAULT_BIN_THZ} THz bins "
                        f"above {BIN_ABOVE_MODES} modes, else the full matrix)")
    p.add_argument("--supercell", type=int, nargs="+", default=None, metavar="N",
                   help="supercell matrix of phonons given as FORCE_SETS / FORCE_CONSTANTS + POSCAR without a "
                        "phonopy_disp.yaml or a .conf with DIM (3 or 9 integers)")
    p.add_argument("--site-tolerance-A", type=float, default=0.5,
                   help="largest distance of a first-frame atom from its phonopy site, Å")
    p.add_argument("--n-top", type=int, default=5, help="how many top modes to report")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG files")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_cmd_mdma)

    from phonion.cli.pfc import add_pfc_parser

    add_pfc_parser(sub, formatter)


def run_mdma_command(files, phonons, output, *, plots: bool = True, site_unit=None, **options) -> dict:
    """The ``mdma`` command as a function: runs :func:`phonion.workflows.mdma.run_mdma`, writes its files into
    ``output`` and returns the JSON dict. ``options``: the other :class:`MDMAConfig` fields."""
    from phonion.workflows.common import check_output_dir
    from phonion.workflows.mdma import MDMAConfig, run_mdma

    check_output_dir(output)
    files = tuple(str(f) for f in ([files] if isinstance(files, (str, Path)) else files))
    framework = options.pop("framework", None)
    cfg = MDMAConfig(files=files, phonons=str(phonons), plots=plots,
                     framework=None if framework is None else tuple(framework), **options)
    run = run_mdma(cfg, site_unit=site_unit)
    run.save(output, plots=plots)
    return run.to_dict()


def _cmd_mdma(args) -> int:
    result = run_mdma_command(args.files, args.phonons, args.output, species=args.species, anion=args.anion,
                              framework=args.framework, tau_max_ps=args.tau_max_ps, n_blocks=args.n_blocks,
                              convention=args.convention, timestep_fs=args.timestep_fs,
                              file_stride=args.file_stride, fmt=args.fmt, every=args.every,
                              velocities=args.velocities, temperature_K=args.temperature_K,
                              bins_THz=args.bins_THz, site_tolerance_A=args.site_tolerance_A, n_top=args.n_top,
                              supercell=None if args.supercell is None else tuple(args.supercell),
                              plots=not args.no_plots)
    if args.json:
        emit_json(result, indent=1)
    else:
        for key in ("collective_diffusivity_cm2_s", "mdma_total_cm2_s", "sum_rule_relative_error",
                    "harmonic_fraction", "anharmonic_fraction", "class_fractions", "oe_mean_frequency_THz",
                    "equal_time_anharmonic_fraction", "temperature_K", "temperature_source"):
            print(f"{key:>32}: {result[key]}")
        print(f"{'modal_equipartition (mean)':>32}: {result['modal_equipartition']['mean']}")
        for t in result["top_modes"]:
            print(f"{'top mode':>32}: {t['frequency_THz']:.3f} THz  {t['class'] or '-':4}  "
                  f"{t['contribution_cm2_s']:.3e} cm²/s")
        for n in result["notes"]:
            print(f"note: {n}", file=sys.stderr)
        print(f"wrote {args.output}: {', '.join(sorted(result['files']))}")
    return 0
