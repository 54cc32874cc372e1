"""``phonion mdma`` and ``phonion pfc``: mass-diffusivity modal analysis of a trajectory, and projected force
constants, as thin layers over :mod:`phonion.mdma.mdma`, :mod:`phonion.mdma.modes`, :mod:`phonion.mdma.sites` and :mod:`phonion.mdma.pfc`.

``mdma`` flow: read the trajectory → load the phonons → Γ modes of the trajectory's own cell (atoms mapped by
position on its first frame) → velocities from the file, or central differences, refused when the frames are
too far apart for the fastest mode → O classes on the ideal sites → dominant class per mode → MDMA → files.
``pfc`` flow: load the phonons → O classes on phonopy's supercell → migration directions (structure or hops
in a trajectory) → bond- and migration-projected force constants.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

__all__ = ["add_mdma_parsers", "run_mdma_command", "temperature_for", "frequency_bins"]

#: above this many modes the heat map is binned by frequency even without --bins-THz
BIN_ABOVE_MODES = 1500
#: default bin width (THz) when binning is automatic
DEFAULT_BIN_THZ = 0.5

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

def _time_options(p) -> None:
    p.add_argument("--timestep-fs", type=float, default=None,
                   help="MD timestep in fs, for files that do not record it (XDATCAR); frame interval = "
                        "timestep × file stride")
    p.add_argument("--file-stride", type=int, default=None, metavar="K",
                   help="integrator steps between the file's saved frames, when the file does not say")
    p.add_argument("--format", dest="fmt", default=None,
                   choices=["xdatcar", "outcar", "vasprun", "extxyz", "traj", "h5md"],
                   help="trajectory format (none: from the file name)")


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
    _time_options(p)
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
    p.add_argument("--site-tolerance-A", type=float, default=0.5,
                   help="largest distance of a first-frame atom from its phonopy site, Å")
    p.add_argument("--n-top", type=int, default=5, help="how many top modes to report")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG files")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_cmd_mdma)

    from phonion.cli.pfc import add_pfc_parser

    add_pfc_parser(sub, formatter)


# ---------------------------------------------------------------------------------------- helpers
def _clean(value):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _source(files) -> str:
    return ", ".join(str(f) for f in files)


def temperature_for(traj, velocities_source: str | None, temperature_K: float | None = None) -> tuple[float, str]:
    """(T in K, where it came from): the user's value, the file's mean temperature, or the kinetic one.

    The kinetic temperature is Σ m v² / (3 N k_B), averaged over frames (3N degrees of freedom: Langevin
    and Nosé–Hoover runs keep them all; a run that conserves total momentum has 3N − 3, 0.1 % less for 1000
    atoms). Central-difference velocities damp fast modes, so that estimate is slightly low.
    """
    from ase import units

    from phonion.mdma.mdma_core import AMU_A2_PER_FS2_TO_EV

    if temperature_K is not None:
        if not temperature_K > 0:
            raise ValueError(f"--temperature-K must be > 0, got {temperature_K}")
        return float(temperature_K), "user (--temperature-K)"
    if traj.temperatures_K is not None and np.isfinite(traj.temperatures_K).any():
        return float(np.nanmean(traj.temperatures_K)), "file (mean of the recorded temperatures)"
    v = traj.velocities
    ke = 0.5 * np.einsum("i,fia->f", traj.masses, v ** 2) * AMU_A2_PER_FS2_TO_EV  # eV per frame
    t = float(np.mean(2.0 * ke / (3.0 * traj.n_atoms * units.kB)))
    how = "central-difference " if velocities_source == "central-difference" else ""
    return t, f"kinetic (mean of Σ m v² / (3 N k_B) over the {how}velocities, 3N degrees of freedom)"


def frequency_bins(frequencies_THz, width_THz: float) -> np.ndarray:
    """Bin edges k·W covering every mode (first edge ≤ f_min, last > f_max)."""
    if not width_THz > 0:
        raise ValueError(f"--bins-THz must be > 0, got {width_THz}")
    f = np.asarray(frequencies_THz, float)
    lo = math.floor(f.min() / width_THz) * width_THz
    n = int(math.floor((f.max() - lo) / width_THz)) + 1
    return lo + width_THz * np.arange(n + 1)


def _streamed_labels(columns, classes, n_atoms: int, block: int = 512):
    """Dominant O class per mode from streamed eigenvector columns (never a 3N × 3N matrix)."""
    from phonion.mdma.modes import O_CLASSES

    idx = {c: np.asarray(getattr(classes, c), int) for c in O_CLASSES}
    M = columns.n_modes
    weights = np.zeros((3, M))
    pr = np.zeros(M)
    for a in range(0, M, block):
        b = min(M, a + block)
        w = (columns(a, b).reshape(n_atoms, 3, b - a) ** 2).sum(axis=1)   # (N, block)
        for k, c in enumerate(O_CLASSES):
            weights[k, a:b] = w[idx[c]].sum(axis=0)
        pr[a:b] = w.sum(axis=0) ** 2 / (n_atoms * (w ** 2).sum(axis=0))
    dominant = np.array(O_CLASSES)[weights.argmax(axis=0)]
    return np.where(weights.max(axis=0) > 0, dominant, ""), pr, weights


def _write_modes_csv(path: Path, result, participation, class_weights) -> Path:
    labels = result.mode_class_labels
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mode", "frequency_THz", "dominant_class", "weight_O_e", "weight_O_c", "weight_O_n",
                    "participation_ratio", "contribution_cm2_s", "diagonal_cm2_s", "modal_equipartition"])
        for n, f in enumerate(result.frequencies_THz):
            cw = ["" if class_weights is None else f"{class_weights[k][n]:.6g}" for k in range(3)]
            w.writerow([n, f"{f:.6f}", "" if labels is None else labels[n], *cw,
                        "" if participation is None else f"{participation[n]:.6g}",
                        f"{result.contributions_cm2_s[n]:.8e}", f"{result.diagonal_cm2_s[n]:.8e}",
                        f"{result.modal_equipartition[n]:.6g}"])
    return path


# ---------------------------------------------------------------------------------------- mdma
def run_mdma_command(files, phonons, output, *, species="Li", anion="O", framework=None, tau_max_ps=None,
                     n_blocks=4, convention="gordiz", timestep_fs=None, file_stride=None, fmt=None, every=1,
                     velocities="auto", temperature_K=None, bins_THz=None, site_tolerance_A=0.5, n_top=5,
                     plots=True, site_unit=None) -> dict:
    """The ``mdma`` command as a function: writes the files into ``output`` and returns the JSON dict.

    ``site_unit``: the structure the MD cell was built from (``Atoms.repeat``). When given and the atom
    order checks out (``phonion.compare.modal.ideal_sites``), atoms are mapped onto the phonon cell by index, so
    mobile ions far from their sites in the first frame do not matter; otherwise by position on frame 0.
    """
    from ase import Atoms

    from phonion.md.io import read_trajectory
    from phonion.md.trajectory import TrajectoryError
    from phonion.md.velocities import central_difference_damping, with_velocities
    from phonion.mdma.mdma import MAX_MATRIX_MODES, MDMAError, run_mdma
    from phonion.mdma.mdma_core import ACOUSTIC_THRESHOLD_THZ
    from phonion.mdma.mdma_report import save_mdma
    from phonion.mdma.modes import mode_classes, modes_for_supercell, supercell_mode_columns
    from phonion.mdma.phonon_io import load_phonons
    from phonion.mdma.sites import classify_oxygens

    files = [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)]
    src = _source(files)
    notes: list[str] = []
    traj = read_trajectory(files, fmt=fmt, timestep_fs=timestep_fs, stride=file_stride, every=every)
    if species not in traj.symbols:
        raise TrajectoryError(f"{src}: no {species!r} atoms (species: {sorted(set(traj.symbols))}); "
                              f"give the mobile species with --species")
    phonon = load_phonons(phonons)

    # Γ modes of the trajectory's own cell, atoms mapped by position on its first frame
    atoms0 = traj.to_atoms(0)
    if site_unit is not None:
        from phonion.compare.modal import ideal_sites

        ideal = ideal_sites(site_unit, atoms0, species)
        if ideal is not None:
            atoms0 = ideal
            notes.append("modes: atoms mapped onto the phonon cell by index (MD cell built from the structure)")
    n_dof = 3 * traj.n_atoms
    streamed = n_dof > MAX_MATRIX_MODES
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            source = (supercell_mode_columns if streamed else modes_for_supercell)(phonon, atoms0,
                                                                                   site_tolerance_A)
    except ValueError as exc:
        raise ValueError(f"{src}: the trajectory (first frame) does not match the phonons in {phonons}: "
                         f"{exc}") from exc
    for w in caught:
        notes.append(f"modes: {w.message}")
    freq = np.asarray(source.frequencies_THz)
    f_max = float(freq.max())

    # velocities (file or central differences), refused if the frames are too far apart
    if velocities == "positions":
        traj = traj.replace(velocities=None)
    traj = with_velocities(traj, max_frequency_THz=f_max)
    vsrc = traj.metadata.get("velocities_source") or "file"
    dt = traj.frame_interval_fs
    if vsrc == "central-difference":
        notes.append(f"velocities from central differences of positions (first and last frame dropped); a mode "
                     f"at f_max = {f_max:.2f} THz is damped by {float(central_difference_damping(f_max, dt)):.4f}")
    temp, temp_source = temperature_for(traj, vsrc, temperature_K)
    if temperature_K is None:
        notes.append("modal_equipartition: its mean over modes is the kinetic temperature of these velocities over "
                     "T, so with T taken from the same run it is ≈ 1 by construction; the check is the per-mode "
                     "spread (std, min, max) and its frequency dependence (modes.csv)")

    # O classes on the ideal sites, dominant class per mode
    ideal = Atoms(source.symbols, positions=source.positions, cell=source.cell, pbc=True)
    labels = participation = class_weights = None
    site_info = None
    try:
        classes = classify_oxygens(ideal, mobile=species, anion=anion, framework=framework)
        site_info = {"framework": list(classes.framework),
                     **{f"n_{c}": len(getattr(classes, c)) for c in ("O_e", "O_c", "O_n", "other", "conflicts")}}
        if streamed:
            labels, participation, cw = _streamed_labels(source, classes, traj.n_atoms)
            class_weights = list(cw)
        else:
            mc = mode_classes(source, classes)
            labels, participation = mc.dominant, mc.participation_ratio
            class_weights = [mc.class_weights[c] for c in ("O_e", "O_c", "O_n")]
    except ValueError as exc:
        notes.append(f"no O classes ({exc}); class_fractions and oe_mean_frequency_THz are null")
        if not streamed:  # the participation ratio does not need classes
            participation = mode_classes(source, {"O_e": [], "O_c": [], "O_n": []}).participation_ratio

    # bins for the heat map
    edges = None
    if bins_THz is not None or n_dof > BIN_ABOVE_MODES:
        width = DEFAULT_BIN_THZ if bins_THz is None else float(bins_THz)
        edges = frequency_bins(freq, width)
        if bins_THz is None:
            notes.append(f"{n_dof} modes: heat map binned by frequency ({width} THz bins, exact block sums)")

    evec = source if streamed else source.eigenvectors
    try:
        result = run_mdma(traj.velocities, traj.masses, list(traj.symbols), freq, evec, dt, temp,
                          tau_max_ps=tau_max_ps, n_blocks=n_blocks, mode_class_labels=labels,
                          convention=convention, mobile_species=species, bin_edges_THz=edges)
    except MDMAError as exc:  # e.g. τmax longer than a block: say which run
        raise MDMAError(f"{src}: {exc}") from exc
    if convention == "notebook":
        notes.append("notebook convention: Li-only unweighted projection, one trapezoid, acoustic modes dropped; "
                     "mdma_total_cm2_s is not comparable with collective_diffusivity_cm2_s and the sum rule is "
                     "not expected to hold (DESIGN.md)")
    if result.tau_max_ps * 1000.0 > 0.5 * (result.n_frames // max(result.n_blocks, 1)) * dt:
        notes.append("tau_max is more than half a block: block errors are unreliable")

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    npz, js = save_mdma(result, out / "mdma", n_top=n_top)
    files_out = {"mdma_npz": npz, "mdma_json": js,
                 "modes_csv": _write_modes_csv(out / "modes.csv", result, participation, class_weights)}
    if plots:
        from phonion.mdma.mdma_plots import plot_mdma_results

        files_out.update(plot_mdma_results(result, out))
    summary = result.to_dict(n_top)
    zero = np.abs(freq) < ACOUSTIC_THRESHOLD_THZ
    if zero.sum() > 3:
        notes.append(f"{int(zero.sum())} zero-frequency modes (|f| < {ACOUSTIC_THRESHOLD_THZ} THz): atoms without "
                     "restoring force constants (e.g. free ions) besides the 3 translations; their summed "
                     "contribution is exact, but how it splits into harmonic / anharmonic among these degenerate "
                     "modes depends on the arbitrary basis chosen inside them")
    if summary["class_fractions"] is None:
        summary["class_fractions"] = {"O_e": None, "O_c": None, "O_n": None}
    errors = {k[:-4]: v for k, v in summary.items() if k.endswith("_err")}
    summary.update({
        "errors": errors,
        "temperature_source": temp_source,
        "velocities_source": vsrc,
        "trajectory": [str(f) for f in files],
        "phonons": str(phonons),
        "n_atoms": traj.n_atoms,
        "n_modes": int(len(freq)),
        "mobile_species": species,
        "frequency_range_THz": [float(freq.min()), f_max],
        "n_imaginary_modes": int((freq < -0.05).sum()),
        "zero_frequency_modes": {"n": int(zero.sum()), "threshold_THz": ACOUSTIC_THRESHOLD_THZ,
                                 "contribution_fraction": float(result.contributions_cm2_s[zero].sum()
                                                                / result.mdma_total_cm2_s)},
        "mode_class_counts": None if labels is None else
        {c: int((np.asarray(labels) == c).sum()) for c in ("O_e", "O_c", "O_n", "")},
        "site_classes": site_info,
        "binned_heatmap": edges is not None,
        "notes": notes,
        "files": {k: str(v) for k, v in {**files_out, "result_json": out / "result.json"}.items()},
    })
    summary = _clean(summary)
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _cmd_mdma(args) -> int:
    result = run_mdma_command(args.files, args.phonons, args.output, species=args.species, anion=args.anion,
                              framework=args.framework, tau_max_ps=args.tau_max_ps, n_blocks=args.n_blocks,
                              convention=args.convention, timestep_fs=args.timestep_fs,
                              file_stride=args.file_stride, fmt=args.fmt, every=args.every,
                              velocities=args.velocities, temperature_K=args.temperature_K,
                              bins_THz=args.bins_THz, site_tolerance_A=args.site_tolerance_A, n_top=args.n_top,
                              plots=not args.no_plots)
    if args.json:
        print(json.dumps(result, indent=1))
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
