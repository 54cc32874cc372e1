"""``phonion diffusion | arrhenius | conductivity | vdos``: argparse front ends over
:mod:`phonion.workflows.transport` (diffusion, Arrhenius, conductivity) and :mod:`phonion.workflows.vdos`.

``add_transport_parsers(sub, formatter)`` adds the four subcommands to the main parser's
subparsers. Each handler takes ``args``, builds the stage's config, runs the workflow, saves its files,
prints one JSON object with ``--json`` and returns an exit code; bad input raises ``TrajectoryError`` /
``ValueError`` naming the file or option (the main CLI prints "phonion <cmd>: error: ..." and exits 2).
"""

from __future__ import annotations

from pathlib import Path

from phonion.cli.common import add_time_options, emit_json

__all__ = ["add_transport_parsers", "cmd_arrhenius", "cmd_conductivity", "cmd_diffusion", "cmd_vdos"]


def add_transport_parsers(sub, formatter) -> None:
    """Add ``diffusion``, ``arrhenius``, ``conductivity`` and ``vdos`` to the subparsers ``sub``."""
    _add_diffusion_parser(sub, formatter)
    _add_arrhenius_parser(sub, formatter)
    _add_conductivity_parser(sub, formatter)
    _add_vdos_parser(sub, formatter)


def _add_diffusion_parser(sub, formatter) -> None:
    p = sub.add_parser(
        "diffusion", formatter_class=formatter, help="tracer / collective diffusivity, Haven ratio, conductivity",
        description="Tracer D* and collective D_σ from the MSD over all time origins (FFT), Green–Kubo "
                    "D_σ, Haven ratio and σ = n e² D_σ / k_B T. The fit window starts where the local "
                    "log–log MSD slope stays within 1 ± 0.1 for a factor of 2 in time and ends at half "
                    "the run (see md/diffusion.py); errors: the larger of a random-walk-model error "
                    "and a 5-block error. An H5MD file is analysed a few atoms at a time.",
        epilog="example:\n  phonion diffusion 1100K/XDATCAR.gz --timestep-fs 2 --temperature-K 1100 --json -o out")
    p.add_argument("files", nargs="+", metavar="TRAJ", help="trajectory files (several = pieces of one run)")
    p.add_argument("--species", default="Li", help="mobile species")
    p.add_argument("--temperature-K", type=float, default=None,
                   help="temperature (default: the trajectory's mean temperature, if recorded)")
    add_time_options(p)
    p.add_argument("--fit-range-ps", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="fit window in ps (overrides the local-slope rule)")
    p.add_argument("--fit-fraction", type=float, default=0.5, help="window end as a fraction of the run")
    p.add_argument("--slope-tolerance", type=float, default=0.1,
                   help="the fit starts where |d ln MSD / d ln t − 1| ≤ this for a factor of 2 in time")
    p.add_argument("--gk-window-ps", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="Green–Kubo averaging window (default: one octave from the MSD fit start)")
    p.add_argument("--n-blocks", type=int, default=5, help="blocks for the block-averaging error")
    p.add_argument("--estimator", choices=["wls", "gls"], default="wls",
                   help="line fit: weighted (robust) or generalized (kinisi-style) least squares")
    p.add_argument("--no-drift-correction", action="store_true",
                   help="do not subtract the framework's mean displacement")
    p.add_argument("--charge", type=float, default=1.0, help="carrier charge, e")
    p.add_argument("--memory-mb", type=float, default=1024, help="memory bound for one H5MD chunk")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help="write DIR/result.json and DIR/msd.png")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_diffusion)


def _add_arrhenius_parser(sub, formatter) -> None:
    p = sub.add_parser(
        "arrhenius", formatter_class=formatter, help="E_a, D₀ and D, σ at 300 K from diffusion results",
        description="Weighted fit of ln D vs 1/T (σ_lnD = σ_D / D) over the result.json files of "
                    "`phonion diffusion` at several temperatures; extrapolation to 300 K with the "
                    "propagated fit covariance; σ(300 K) by Nernst–Einstein with the carrier density "
                    "stored in the results.",
        epilog="example:\n  phonion arrhenius 700K/result.json 1100K/result.json --json -o arr")
    p.add_argument("results", nargs="+", metavar="RESULT.json")
    p.add_argument("--quantity", choices=["tracer", "collective"], default="tracer",
                   help="which diffusivity to fit (the paper's σ(300 K) uses the tracer D*)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help="write DIR/arrhenius.json and DIR/arrhenius.png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_arrhenius)


def _add_conductivity_parser(sub, formatter) -> None:
    p = sub.add_parser(
        "conductivity", formatter_class=formatter, help="Nernst–Einstein σ from D, T and a structure",
        description="σ = n (z e)² D / (k_B T), n = carriers / cell volume of the structure.",
        epilog="example:\n  phonion conductivity --structure LiGa_SeO3_2 --diffusivity-cm2-s 3.14e-9 "
               "--temperature-K 300 --json   # 0.135 mS/cm")
    p.add_argument("--structure", required=True, help="structure file (ASE-readable) or bundled name")
    p.add_argument("--species", default="Li")
    p.add_argument("--diffusivity-cm2-s", type=float, required=True)
    p.add_argument("--diffusivity-err-cm2-s", type=float, default=None)
    p.add_argument("--temperature-K", type=float, required=True)
    p.add_argument("--charge", type=float, default=1.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_conductivity)


def _add_vdos_parser(sub, formatter) -> None:
    p = sub.add_parser(
        "vdos", formatter_class=formatter, help="VDOS per species or O class; Li spectral shift",
        description="VDOS from the mass-weighted velocity autocorrelation (all origins, Hann-tapered "
                    "cosine transform), each group normalised to 3 × its atom count. Velocities from "
                    "the file or central differences of positions. --reference gives a decoupled run "
                    "(e.g. framework held fixed) whose mobile-ion spectrum is compared (centroid shift, "
                    "weight below --cutoff-thz).",
        epilog="example:\n  phonion vdos md.h5 --by oclass -o vdos-out")
    p.add_argument("files", nargs="+", metavar="TRAJ")
    p.add_argument("--by", choices=["species", "oclass"], default="species")
    p.add_argument("--species", default="Li", help="mobile species (for the shift and O classes)")
    p.add_argument("--anion", default="O", help="anion classified into O_e / O_c / O_n with --by oclass")
    add_time_options(p)
    p.add_argument("--window-fs", type=float, default=None, help="correlation window (default half the run)")
    p.add_argument("--taper", choices=["hann", "none"], default="hann")
    p.add_argument("--cutoff-thz", type=float, default=3.0, help="low-frequency cutoff for the weight fraction")
    p.add_argument("--reference", nargs="+", default=None, metavar="TRAJ",
                   help="decoupled run (same atoms) to compare the mobile-ion spectrum with")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_vdos)


# ---- handlers -------------------------------------------------------------------------------------
def _print_result(run, args, formatter) -> None:
    """One JSON object with ``--json``, else a few lines of text (``formatter(dict)``) on stdout."""
    if getattr(args, "json", False):
        emit_json(run.to_dict())
    else:
        print(formatter(run.to_dict()))


def _pm(value, err=None, unit: str = "") -> str:
    """``value ± err unit``; ``n/a`` for a missing value."""
    if value is None:
        return "n/a"
    text = f"{value:.4g}" + ("" if err is None else f" ± {err:.2g}")
    return f"{text} {unit}".rstrip()


def format_diffusion(d: dict) -> str:
    """The headline numbers of a ``phonion diffusion`` result as text."""
    lines = [f"{d.get('species', '')} at T = {_pm(d.get('temperature_K'), unit='K')} "
             f"({d.get('temperature_source', 'n/a')}); {d.get('n_frames')} frames, {_pm(d.get('duration_ps'), unit='ps')}"]
    for label, key, unit in (("D* (tracer)", "tracer_diffusivity", "cm²/s"),
                             ("D_σ (collective)", "collective_diffusivity", "cm²/s"),
                             ("D_σ (Green–Kubo)", "green_kubo_collective_diffusivity", "cm²/s")):
        lines.append(f"{label:>20}: {_pm(d.get(key + '_cm2_s'), d.get(key + '_err_cm2_s'), unit)}")
    lines.append(f"{'Haven ratio':>20}: {_pm(d.get('haven_ratio'), d.get('haven_ratio_err'))}")
    lines.append(f"{'σ':>20}: {_pm(d.get('conductivity_mS_cm'), d.get('conductivity_err_mS_cm'), 'mS/cm')}")
    return "\n".join(lines + _figures(d))


def format_arrhenius(d: dict) -> str:
    """The Arrhenius fit and its 300 K extrapolation as text."""
    band = d.get("conductivity_300K_band_mS_cm") or [None, None]
    lines = [f"{d.get('quantity')} diffusivity, {d.get('n_points')} temperatures {d.get('temperatures_K')} K",
             f"{'E_a':>20}: {_pm(d.get('activation_energy_eV'), d.get('activation_energy_err_eV'), 'eV')}",
             f"{'D₀':>20}: {_pm(d.get('prefactor_cm2_s'), d.get('prefactor_err_cm2_s'), 'cm²/s')}",
             f"{'D(300 K)':>20}: {_pm(d.get('diffusivity_300K_cm2_s'), d.get('diffusivity_300K_err_cm2_s'), 'cm²/s')}",
             f"{'σ(300 K)':>20}: {_pm(d.get('conductivity_300K_mS_cm'), unit='mS/cm')} "
             f"(band {_pm(band[0])} – {_pm(band[1])})"]
    return "\n".join(lines + [f"note: {n}" for n in d.get("notes") or []] + _figures(d))


def format_vdos(d: dict) -> str:
    """Per group: atoms, spectral centroid, peak and low-frequency weight."""
    lines = []
    for name, g in (d.get("groups") or {}).items():
        lines.append(f"{name:>10}: {g.get('n_atoms')} atoms, centroid {_pm(g.get('centroid_THz'), unit='THz')}, "
                     f"peak {_pm(g.get('peak_THz'), unit='THz')}, weight below {_pm(g.get('cutoff_THz'), unit='THz')} "
                     f"{_pm(g.get('low_frequency_fraction'))}")
    return "\n".join(lines + _figures(d))


def _figures(d: dict) -> list:
    files = list(d.get("figures") or []) + [f for f in d.get("files") or [] if f not in (d.get("figures") or [])]
    return [f"wrote {', '.join(files)}"] if files else []


def _check_output(args) -> None:
    from phonion.workflows.common import check_output_dir

    if getattr(args, "output", None) is not None:
        check_output_dir(args.output)


def _window(value):
    return None if value is None else tuple(value)


def cmd_diffusion(args) -> int:
    from phonion.workflows.transport import DiffusionConfig, run_diffusion

    cfg = DiffusionConfig(files=tuple(args.files), species=args.species, temperature_K=args.temperature_K,
                          timestep_fs=args.timestep_fs, file_stride=args.file_stride, fmt=args.fmt,
                          fit_range_ps=_window(args.fit_range_ps), fit_fraction=args.fit_fraction,
                          slope_tolerance=args.slope_tolerance, gk_window_ps=_window(args.gk_window_ps),
                          n_blocks=args.n_blocks, estimator=args.estimator,
                          drift_correction=not args.no_drift_correction, charge=args.charge,
                          memory_mb=args.memory_mb)
    _check_output(args)
    run = run_diffusion(cfg)
    if args.output is not None:
        run.save(args.output)
    _print_result(run, args, format_diffusion)
    return 0


def cmd_arrhenius(args) -> int:
    from phonion.workflows.transport import ArrheniusConfig, run_arrhenius

    cfg = ArrheniusConfig(results=tuple(args.results), quantity=args.quantity)
    _check_output(args)
    run = run_arrhenius(cfg)
    if args.output is not None:
        run.save(args.output)
    _print_result(run, args, format_arrhenius)
    return 0


def cmd_conductivity(args) -> int:
    from phonion.workflows.transport import ConductivityConfig, run_conductivity

    run = run_conductivity(ConductivityConfig(
        structure=args.structure, diffusivity_cm2_s=args.diffusivity_cm2_s, temperature_K=args.temperature_K,
        species=args.species, diffusivity_err_cm2_s=args.diffusivity_err_cm2_s, charge=args.charge))
    _print_result(run, args, _format_conductivity)
    return 0


def cmd_vdos(args) -> int:
    from phonion.workflows.vdos import VDOSConfig, run_vdos

    cfg = VDOSConfig(files=tuple(args.files), by=args.by, species=args.species, anion=args.anion,
                     timestep_fs=args.timestep_fs, file_stride=args.file_stride, fmt=args.fmt,
                     window_fs=args.window_fs, taper=args.taper, cutoff_thz=args.cutoff_thz,
                     reference=None if args.reference is None else tuple(args.reference))
    _check_output(args)
    run = run_vdos(cfg)
    run.save(args.output)
    _print_result(run, args, format_vdos)
    return 0


def _format_conductivity(s: dict) -> str:
    return (f"sigma = {_pm(s['conductivity_mS_cm'], s.get('conductivity_err_mS_cm'), 'mS/cm')}  "
            f"(n = {s['carrier_density_cm3']:.4g} cm^-3, D = {s['diffusivity_cm2_s']:.4g} cm^2/s, "
            f"T = {s['temperature_K']:g} K)")
