"""``phonion diffusion | arrhenius | conductivity | vdos``: a thin command layer over phonion.md.diffusion_run,
phonion.md.conductivity, phonion.md.vdos and phonion.md.transport_plots.

``add_transport_parsers(sub, formatter)`` adds the four subcommands to the main parser's
subparsers. Each handler takes ``args``, prints one JSON object with ``--json`` and returns an exit
code; bad input raises ``TrajectoryError`` / ``ValueError`` naming the file (the main CLI prints
"phonion <cmd>: error: ..." and exits 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from phonion.core.jsonutil import clean

H5MD_SUFFIXES = (".h5", ".h5md", ".hdf5")


def _emit(obj: dict, args, out_dir: Path | None = None, name: str | None = None) -> None:
    obj = clean(obj)
    text = json.dumps(obj, indent=2)
    if out_dir is not None and name:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text(text + "\n")
    if getattr(args, "json", False):
        print(text)


def _time_options(p) -> None:
    p.add_argument("--timestep-fs", type=float, default=None,
                   help="MD timestep (VASP POTIM), fs, for files that do not record it (XDATCAR); "
                        "the frame interval is timestep × stride")
    p.add_argument("--file-stride", type=int, default=None, metavar="K",
                   help="integrator steps between the file's frames, when the file does not say "
                        "(e.g. an XDATCAR renumbered by pymatgen)")
    p.add_argument("--format", dest="fmt", default=None,
                   choices=["xdatcar", "outcar", "vasprun", "extxyz", "traj", "h5md"])


def add_transport_parsers(sub, formatter) -> None:
    """Add ``diffusion``, ``arrhenius``, ``conductivity`` and ``vdos`` to the subparsers ``sub``."""
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
    _time_options(p)
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
    _time_options(p)
    p.add_argument("--window-fs", type=float, default=None, help="correlation window (default half the run)")
    p.add_argument("--taper", choices=["hann", "none"], default="hann")
    p.add_argument("--cutoff-thz", type=float, default=3.0, help="low-frequency cutoff for the weight fraction")
    p.add_argument("--reference", nargs="+", default=None, metavar="TRAJ",
                   help="decoupled run (same atoms) to compare the mobile-ion spectrum with")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_vdos)


# ---- handlers -------------------------------------------------------------------------------------
def _read(files, args):
    from phonion.md.io import read_trajectory

    return read_trajectory(files, fmt=args.fmt, timestep_fs=args.timestep_fs, stride=args.file_stride)


def cmd_diffusion(args) -> int:
    from phonion.md.diffusion_run import analyse_h5md, analyse_trajectory

    if args.temperature_K is not None and not args.temperature_K > 0:
        raise ValueError(f"--temperature-K must be > 0, got {args.temperature_K:g}")
    options = dict(fit_range_ps=args.fit_range_ps, gk_window_ps=args.gk_window_ps, n_blocks=args.n_blocks,
                   fit_fraction=args.fit_fraction, slope_tolerance=args.slope_tolerance,
                   drift_correction=not args.no_drift_correction, charge=args.charge,
                   estimator=args.estimator)
    files = [Path(f) for f in args.files]
    h5 = len(files) == 1 and (args.fmt == "h5md" or (args.fmt is None and files[0].suffix.lower() in H5MD_SUFFIXES))

    def need_temperature(temps):
        if args.temperature_K is None and (temps is None or not np.isfinite(temps).any()):
            raise ValueError(f"{', '.join(args.files)}: the trajectory records no temperature; "
                             "give --temperature-K")

    if h5:
        from phonion.md.io.h5md import H5MDReader

        need_temperature(H5MDReader(files[0]).read(frames=slice(0, 1), atoms=[0]).temperatures_K)
        result = analyse_h5md(files[0], args.species, temperature_K=args.temperature_K,
                              timestep_fs=args.timestep_fs, stride=args.file_stride,
                              memory_mb=args.memory_mb, **options)
    else:
        traj = _read(args.files, args)
        need_temperature(traj.temperatures_K)
        result = analyse_trajectory(traj, args.species, temperature_K=args.temperature_K,
                                    timestep_fs=args.timestep_fs, **options)
    out = result.to_dict()
    if args.output is not None:
        from phonion.md.transport_plots import plot_msd

        out["figures"] = [str(plot_msd(result, args.output / "msd.png"))]
    _emit(out, args, args.output, "result.json")
    return 0


def _load_result(path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    need = ("temperature_K", "carrier_density_cm3", "tracer_diffusivity_cm2_s")
    missing = [k for k in need if data.get(k) is None]
    if missing:
        raise ValueError(f"{path}: not a `phonion diffusion` result (missing {', '.join(missing)})")
    return data


def cmd_arrhenius(args) -> int:
    from phonion.md.conductivity import arrhenius_fit, nernst_einstein_conductivity_mS_cm

    results = [_load_result(p) for p in args.results]
    key = f"{args.quantity}_diffusivity"
    t = np.array([r["temperature_K"] for r in results], dtype=float)
    d = np.array([r[f"{key}_cm2_s"] for r in results], dtype=float)
    e = np.array([r.get(f"{key}_err_cm2_s") if r.get(f"{key}_err_cm2_s") is not None else np.nan
                  for r in results], dtype=float)
    bad = [str(p) for p, v in zip(args.results, d) if not v > 0]
    if bad:
        raise ValueError(f"{', '.join(bad)}: {args.quantity} diffusivity ≤ 0; no Arrhenius fit possible")
    fit = arrhenius_fit(t, d, None if np.isnan(e).all() else e)
    n = np.array([r["carrier_density_cm3"] for r in results], dtype=float)
    notes = list(fit.notes)
    if np.ptp(n) > 0.01 * n.mean():
        notes.append(f"carrier densities differ between results ({n.min():.4g}–{n.max():.4g} cm^-3); "
                     "their mean is used")
    charge = float(results[0].get("charge") or 1.0)
    d300, lo, hi, s_ln = fit.predict(300.0)
    unit = nernst_einstein_conductivity_mS_cm(1.0, 300.0, float(n.mean()), charge)
    out = {
        "activation_energy_eV": fit.activation_energy_eV,
        "activation_energy_err_eV": fit.activation_energy_err_eV,
        "prefactor_cm2_s": fit.prefactor_cm2_s,
        "diffusivity_300K_cm2_s": d300,
        "conductivity_300K_mS_cm": d300 * unit,
        "prefactor_err_cm2_s": fit.prefactor_err_cm2_s,
        "diffusivity_300K_err_cm2_s": d300 * s_ln,
        "diffusivity_300K_band_cm2_s": [lo, hi],
        "conductivity_300K_band_mS_cm": [lo * unit, hi * unit],
        "ln_diffusivity_300K_err": s_ln,
        "quantity": args.quantity,
        "temperatures_K": t, "diffusivities_cm2_s": d, "diffusivity_errs_cm2_s": e,
        "carrier_density_cm3": float(n.mean()), "chi2_reduced": fit.chi2_reduced,
        "weighted": fit.weighted, "n_points": int(t.size), "notes": notes,
        "sources": [str(p) for p in args.results],
    }
    if args.output is not None:
        from phonion.md.transport_plots import plot_arrhenius

        out["figures"] = [str(plot_arrhenius(fit, args.output / "arrhenius.png"))]
    _emit(out, args, args.output, "arrhenius.json")
    return 0


def _load_structure(name):
    try:
        from phonion.core.structures import load_structure
    except ImportError:  # pragma: no cover - phonion.core.structures is part of the package
        import ase.io

        path = Path(name)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file") from None
        return ase.io.read(path)
    return load_structure(name)


def cmd_conductivity(args) -> int:
    from phonion.md.conductivity import carrier_density_from_atoms, nernst_einstein_conductivity_mS_cm

    if not args.temperature_K > 0:
        raise ValueError(f"--temperature-K must be > 0, got {args.temperature_K:g}")
    if not args.diffusivity_cm2_s >= 0:
        raise ValueError(f"--diffusivity-cm2-s must be ≥ 0, got {args.diffusivity_cm2_s:g}")
    atoms = _load_structure(args.structure)
    try:
        n = carrier_density_from_atoms(atoms, args.species)
    except ValueError as exc:
        raise ValueError(f"{args.structure}: {exc}") from None
    sigma = nernst_einstein_conductivity_mS_cm(args.diffusivity_cm2_s, args.temperature_K, n, args.charge)
    out = {"conductivity_mS_cm": sigma, "carrier_density_cm3": n,
           "n_carriers": sum(s == args.species for s in atoms.get_chemical_symbols()),
           "volume_A3": float(abs(atoms.cell.volume)), "species": args.species,
           "diffusivity_cm2_s": args.diffusivity_cm2_s, "temperature_K": args.temperature_K,
           "charge": args.charge, "structure": str(args.structure)}
    if args.diffusivity_err_cm2_s is not None:
        out["conductivity_err_mS_cm"] = sigma / args.diffusivity_cm2_s * args.diffusivity_err_cm2_s
    _emit(out, args)
    if not args.json:
        print(f"sigma = {sigma:.4g} mS/cm  (n = {n:.4g} cm^-3)")
    return 0


def _vdos_groups(traj, args, src):
    species = {s: traj.indices_of(s) for s in traj.species_counts}
    if args.by == "species":
        return species, list(species)
    from phonion.mdma.sites import classify_oxygens

    if args.species not in species:
        raise ValueError(f"{src}: no {args.species} atoms; O classes are defined around the mobile ion")
    classes = classify_oxygens(traj.to_atoms(0), mobile=args.species, anion=args.anion)
    groups = {args.species: species[args.species]}
    groups.update({k: np.asarray(getattr(classes, k)) for k in ("O_e", "O_c", "O_n")})
    return {**species, **groups}, list(species)


def cmd_vdos(args) -> int:
    import warnings

    from phonion.md.transport_plots import plot_vdos
    from phonion.md.vdos import compare_spectra, spectral_summary, vdos
    from phonion.md.velocities import with_velocities

    src = ", ".join(args.files)

    def spectrum(files):
        traj = with_velocities(_read(files, args), timestep_fs=args.timestep_fs)
        groups, species = _vdos_groups(traj, args, ", ".join(files))
        return vdos(traj.velocities, traj.masses, traj.frame_interval_fs, groups,
                    window_fs=args.window_fs, taper=args.taper, total_of=species), traj

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, traj = spectrum(args.files)
        ref = spectrum(args.reference)[0] if args.reference else None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # keeps the origin
    shown = list(result.spectra) if args.by == "species" else (
        [args.species, "O_e", "O_c", "O_n", "total"])
    out = {"frequencies_THz": result.frequencies_THz, "frame_interval_fs": result.dt_fs,
           "window_fs": result.window_fs, "taper": result.taper, "by": args.by,
           "velocities_source": traj.metadata.get("velocities_source", "file"),
           "groups": {k: {"n_atoms": result.n_atoms[k],
                          "kinetic_temperature_K": result.kinetic_temperature_K.get(k),
                          **spectral_summary(result.frequencies_THz, result.spectra[k], args.cutoff_thz)}
                     for k in shown if k in result.spectra},
           "warnings": [str(w.message) for w in caught], "sources": src}
    if ref is not None and args.species in ref.spectra and args.species in result.spectra:
        out["mobile_ion_shift"] = {"species": args.species, "reference": ", ".join(args.reference),
                                   **compare_spectra(result.frequencies_THz, result.spectra[args.species],
                                                     ref.frequencies_THz, ref.spectra[args.species],
                                                     args.cutoff_thz)}
    args.output.mkdir(parents=True, exist_ok=True)
    cols = [k for k in shown if k in result.spectra]
    np.savetxt(args.output / "vdos.csv", np.column_stack([result.frequencies_THz] + [result.spectra[k] for k in cols]),
               delimiter=",", header="frequency_THz," + ",".join(f"{k}_per_THz" for k in cols), comments="")
    out["figures"] = [str(plot_vdos(result, args.output / "vdos.png", cols, ref))]
    out["files"] = [str(args.output / "vdos.json"), str(args.output / "vdos.csv")]
    _emit(out, args, args.output, "vdos.json")
    return 0


__all__ = ["add_transport_parsers", "cmd_arrhenius", "cmd_conductivity", "cmd_diffusion", "cmd_vdos"]
