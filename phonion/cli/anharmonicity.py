"""``phonion anharmonicity``: argparse front end over :func:`phonion.workflows.anharmonicity.run_anharmonicity`."""

from __future__ import annotations

import sys
from pathlib import Path

from phonion.cli.common import add_time_options, emit_json

__all__ = ["add_anharmonicity_parser", "run_anharmonicity_command"]

EPILOG = """\
examples:
  phonion anharmonicity run.h5 --phonons phonons-out -o anh-out --json
  phonion anharmonicity XDATCAR --timestep-fs 2 --phonons phonons-out --structure POSCAR -o anh-out

Same atom mapping, Γ modes, O classes and velocities as 'phonion mdma'. σ_A needs forces (null without them;
the spectra are still computed). Linewidths need a run much longer than 1/linewidth: a mode whose line spans
fewer than 3 frequency bins (resolution = 1/segment length) is flagged 'not resolved' and not fitted; a mode
above the Nyquist frequency of the frames is flagged 'above Nyquist'; a spectrum that is not one Lorentzian near its
peak (several peaks, a shoulder) is flagged 'not Lorentzian' and left out of linewidth_summary.
outputs in DIR: result.json (the JSON below), modes.csv, sigma_A_time_series.csv, spectra.npz, sigma_A.png,
linewidths.png, mode_spectra.png.
JSON keys: sigma_A, sigma_A_by_species, sigma_A_by_class (and their block-averaging standard errors sigma_A_err,
sigma_A_by_species_err, sigma_A_by_class_err; sigma_A_error says how), sigma_A_time_series, hopping, modes (index, class,
harmonic_frequency_THz, peak_frequency_THz, linewidth_THz, linewidth_err_THz, status, ...),
frequency_resolution_THz, nyquist_THz, linewidth_summary, mdma_anharmonic_fraction, notes, ..."""


def add_anharmonicity_parser(sub, formatter) -> None:
    """Add the ``anharmonicity`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "anharmonicity", formatter_class=formatter,
        help="σ_A (Knoop 2020) and Γ-mode linewidths/shifts of a trajectory, beside the MDMA share",
        description="σ_A = sqrt(Σ(F − F_harm)² / ΣF²) over atoms and frames, F_harm = −Φ·u with Φ the trajectory "
                    "cell's force constants from phonopy and u the displacement from the ideal site (minimum "
                    "image); in total, per species and per O class (O_e / O_c / O_n), and per frame. The power "
                    "spectrum of every Γ-mode velocity Q̇_n(t) (the MDMA projection) fitted by a Lorentzian: peak "
                    "frequency and linewidth (FWHM) with errors.",
        epilog=EPILOG)
    p.add_argument("files", nargs="+", metavar="TRAJ", help="trajectory file(s) of one run, in time order")
    p.add_argument("--phonons", required=True, metavar="DIR",
                   help="phonopy data: a 'phonion phonons' directory, a phonopy yaml, FORCE_CONSTANTS or FORCE_SETS")
    p.add_argument("--species", default="Li", help="mobile species (its hopping ions: see --hopping)")
    p.add_argument("--structure", default=None, metavar="S",
                   help="structure the MD cell was built from (maps atoms by index; default: the trajectory's "
                        "metadata, else by position on the first frame)")
    p.add_argument("--anion", default="O", help="anion species for the O classes")
    p.add_argument("--framework", nargs="+", default=None, metavar="EL", help="framework cations (none: automatic)")
    p.add_argument("--hopping", choices=["reanchor", "exclude"], default="reanchor",
                   help="mobile ions off their own site: reanchor (u from the nearest site of the species) or "
                        "exclude (left out of the σ_A sums in those frames)")
    p.add_argument("--n-segments", type=int, default=1,
                   help="average the spectra over N contiguous segments (resolution 1/segment length)")
    add_time_options(p)
    p.add_argument("--every", type=int, default=1, metavar="N", help="use every N-th saved frame")
    p.add_argument("--velocities", choices=["auto", "positions"], default="auto",
                   help="auto: the file's velocities if present, else central differences; positions: always "
                        "central differences")
    p.add_argument("--supercell", type=int, nargs="+", default=None, metavar="N",
                   help="supercell matrix of phonons given as FORCE_SETS / FORCE_CONSTANTS + POSCAR (3 or 9 integers)")
    p.add_argument("--site-tolerance-A", type=float, default=0.5,
                   help="largest distance of a first-frame atom from its phonopy site, Å")
    p.add_argument("--n-top", type=int, default=4, help="top MDMA modes whose spectra are plotted")
    p.add_argument("--no-mdma", action="store_true", help="skip the MDMA share of the same run")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG files")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_cmd)


def run_anharmonicity_command(files, phonons, output, *, plots: bool = True, site_unit=None, **options) -> dict:
    """The command as a function: runs the workflow, writes its files into ``output``, returns the JSON dict."""
    from phonion.workflows.anharmonicity import AnharmonicityConfig, run_anharmonicity

    files = tuple(str(f) for f in ([files] if isinstance(files, (str, Path)) else files))
    framework = options.pop("framework", None)
    cfg = AnharmonicityConfig(files=files, phonons=str(phonons), output=str(output), plots=plots,
                              framework=None if framework is None else tuple(framework), **options)
    run = run_anharmonicity(cfg, site_unit=site_unit)
    run.save(output, plots=plots)
    return run.to_dict()


def _cmd(args) -> int:
    result = run_anharmonicity_command(
        args.files, args.phonons, args.output, species=args.species, structure=args.structure, anion=args.anion,
        framework=args.framework, hopping=args.hopping, n_segments=args.n_segments, timestep_fs=args.timestep_fs,
        file_stride=args.file_stride, fmt=args.fmt, every=args.every, velocities=args.velocities,
        supercell=None if args.supercell is None else tuple(args.supercell), site_tolerance_A=args.site_tolerance_A,
        n_top=args.n_top, mdma=not args.no_mdma, plots=not args.no_plots)
    if args.json:
        emit_json(result, indent=1)
        return 0
    for key in ("sigma_A", "sigma_A_err", "sigma_A_by_species", "sigma_A_by_species_err", "sigma_A_by_class",
                "sigma_A_by_class_err", "mdma_anharmonic_fraction",
                "frequency_resolution_THz", "nyquist_THz", "status_counts"):
        print(f"{key:>26}: {result[key]}")
    print(f"{'hopping':>26}: {result['hopping']['text']}")
    for cls, s in result["linewidth_summary"].items():
        print(f"{'linewidths ' + cls:>26}: {s['n_fitted']}/{s['n_modes']} fitted, mean {s['mean_linewidth_THz']} THz")
    for n in result["notes"]:
        print(f"note: {n}", file=sys.stderr)
    print(f"wrote {args.output}: {', '.join(sorted(result['files']))}")
    return 0
