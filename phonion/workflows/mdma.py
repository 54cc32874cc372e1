"""``run_mdma(MDMAConfig) -> MDMARun``: mass-diffusivity modal analysis of one trajectory with its phonons.

Flow: read the trajectory → load the phonons → Γ modes of the trajectory's own cell (atoms mapped by
index when the MD cell was built from a known structure, given or named in the trajectory's metadata, else by
position on its first frame) → velocities
from the file, or central differences, refused when the frames are too far apart for the fastest mode →
O classes on the ideal sites → dominant class per mode → MDMA (:func:`phonion.mdma.mdma.run_mdma`).
``MDMARun.to_dict()`` is the JSON of ``phonion mdma``; ``MDMARun.save(dir)`` writes its files.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phonion.workflows.result import Result, write_json

__all__ = ["MDMAConfig", "MDMARun", "run_mdma", "frequency_bins", "BIN_ABOVE_MODES", "DEFAULT_BIN_THZ"]

#: above this many modes the heat map is binned by frequency even without bins_THz
BIN_ABOVE_MODES = 1500
#: default bin width (THz) when binning is automatic
DEFAULT_BIN_THZ = 0.5


@dataclass(frozen=True)
class MDMAConfig:
    """Settings of one MDMA (the ``phonion mdma`` options; ``configs/mdma.yaml``)."""

    files: tuple = ()
    phonons: str = ""
    species: str = "Li"
    anion: str = "O"
    framework: tuple | None = None
    tau_max_ps: float | None = None
    n_blocks: int = 4
    convention: str = "gordiz"
    timestep_fs: float | None = None
    file_stride: int | None = None
    fmt: str | None = None
    every: int = 1
    velocities: str = "auto"
    temperature_K: float | None = None
    bins_THz: float | None = None
    site_tolerance_A: float = 0.5
    #: supercell matrix of phonons given as FORCE_SETS / FORCE_CONSTANTS + POSCAR (3 or 3 × 3 integers)
    supercell: tuple | None = None
    n_top: int = 5
    plots: bool = True
    #: the directory the results go to (checked before any work); None: not checked
    output: str | None = None

    def __post_init__(self):
        if self.convention not in ("gordiz", "notebook"):
            raise ValueError(f"convention must be gordiz or notebook, got {self.convention!r}")
        if self.velocities not in ("auto", "positions"):
            raise ValueError(f"velocities must be auto or positions, got {self.velocities!r}")
        if not (isinstance(self.n_blocks, int) and self.n_blocks >= 1):
            raise ValueError(f"n_blocks must be an integer ≥ 1, got {self.n_blocks!r}")
        if not (isinstance(self.every, int) and self.every >= 1):
            raise ValueError(f"every must be an integer ≥ 1, got {self.every!r}")
        from phonion.mdma.phonon_io import check_supercell

        from phonion.workflows.common import check_output_dir

        object.__setattr__(self, "supercell", check_supercell(self.supercell, "supercell (--supercell)"))
        if self.output is not None:
            check_output_dir(self.output)


@dataclass
class MDMARun(Result):
    """What ``run_mdma`` found: the :class:`phonion.mdma.mdma.MDMAResult` and the command's summary."""

    result: object
    summary: dict
    participation: object = None
    class_weights: object = None
    n_top: int = 5
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``phonion mdma`` JSON (strict: NaN → null); ``files`` once saved."""
        from phonion.core.jsonutil import clean

        out = dict(self.summary)
        if self.files:
            out["files"] = {k: str(v) for k, v in self.files.items()}
        return clean(out)

    def save(self, directory, plots: bool = True) -> dict[str, Path]:
        """mdma.npz + mdma.json, modes.csv, the plots and result.json into ``directory``."""
        from phonion.mdma.mdma_report import save_mdma

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        npz, js = save_mdma(self.result, out / "mdma", n_top=self.n_top)
        files = {"mdma_npz": npz, "mdma_json": js,
                 "modes_csv": _write_modes_csv(out / "modes.csv", self.result, self.participation,
                                               self.class_weights)}
        if plots:
            from phonion.mdma.mdma_plots import plot_mdma_results

            files.update(plot_mdma_results(self.result, out))
        self.files = {**files, "result_json": out / "result.json"}
        write_json(out / "result.json", self.to_dict())
        return dict(self.files)


def _source(files) -> str:
    return ", ".join(str(f) for f in files)


SITE_TOLERANCE_HINT = ("if the atoms are only displaced (a hot or long MD run), loosen the site tolerance "
                       "(--site-tolerance-A, the site_tolerance_A setting; now {tol} Å), or give the structure "
                       "the MD cell was built from so atoms map by index")


def md_sites(traj, mobile: str, files, site_unit=None):
    """(atoms of the first frame to map onto the phonon cell, how): the MD cell's ideal sites in the MD atom
    order when the structure it was built from is known (``site_unit``, else the ``structure`` in the
    trajectory's own metadata) and the order checks out (:func:`phonion.mdma.supercell.ideal_sites`, the
    mapping ``phonion compare`` uses); else the first frame itself (mapped by position)."""
    from phonion.mdma.supercell import ideal_sites, run_structure

    atoms0 = traj.to_atoms(0)
    origin = "given"
    if site_unit is None:
        site_unit, origin = run_structure(traj.metadata, files), "from the trajectory's metadata"
    if site_unit is not None:
        ideal = ideal_sites(site_unit, atoms0, mobile)
        if ideal is not None:
            return ideal, f"index (MD cell built from the structure, {origin})"
    return atoms0, "position (first frame)"


def _modes(cfg: MDMAConfig, traj, phonon, site_unit, src: str, notes: list, files=()):
    """Γ modes of the trajectory's cell: a full matrix, or streamed columns above MAX_MATRIX_MODES."""
    from phonion.mdma.mdma import MAX_MATRIX_MODES
    from phonion.mdma.modes import modes_for_supercell, supercell_mode_columns

    atoms0, how = md_sites(traj, cfg.species, files, site_unit)
    if how.startswith("index"):
        notes.append(f"modes: atoms mapped onto the phonon cell by {how}")
    streamed = 3 * traj.n_atoms > MAX_MATRIX_MODES
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            source = (supercell_mode_columns if streamed else modes_for_supercell)(phonon, atoms0,
                                                                                   cfg.site_tolerance_A)
    except ValueError as exc:
        raise ValueError(f"{src}: the trajectory (first frame) does not match the phonons in {cfg.phonons}: "
                         f"{exc}; " + SITE_TOLERANCE_HINT.format(tol=cfg.site_tolerance_A)) from exc
    for w in caught:
        notes.append(f"modes: {w.message}")
    return source, streamed


def _velocities(cfg: MDMAConfig, traj, f_max: float, notes: list):
    """The trajectory with velocities (file or central differences), its source and the temperature."""
    from phonion.md.velocities import central_difference_damping, temperature_for, with_velocities

    if cfg.velocities == "positions":
        traj = traj.replace(velocities=None)
    traj = with_velocities(traj, max_frequency_THz=f_max)
    vsrc = traj.metadata.get("velocities_source") or "file"
    dt = traj.frame_interval_fs
    if vsrc == "central-difference":
        notes.append(f"velocities from central differences of positions (first and last frame dropped); a mode "
                     f"at f_max = {f_max:.2f} THz is damped by {float(central_difference_damping(f_max, dt)):.4f}")
    temp, temp_source = temperature_for(traj, vsrc, cfg.temperature_K)
    if cfg.temperature_K is None:
        notes.append("modal_equipartition: its mean over modes is the kinetic temperature of these velocities over "
                     "T, so with T taken from the same run it is ≈ 1 by construction; the check is the per-mode "
                     "spread (std, min, max) and its frequency dependence (modes.csv)")
    return traj, vsrc, temp, temp_source


def _classes(cfg: MDMAConfig, source, streamed: bool, n_atoms: int, notes: list):
    """(labels, participation, class_weights, site_info): dominant O class per mode on the ideal sites."""
    from ase import Atoms

    from phonion.mdma.modes import mode_classes
    from phonion.mdma.sites import classify_oxygens

    ideal = Atoms(source.symbols, positions=source.positions, cell=source.cell, pbc=True)
    labels = participation = class_weights = site_info = None
    try:
        classes = classify_oxygens(ideal, mobile=cfg.species, anion=cfg.anion, framework=cfg.framework)
        site_info = {"framework": list(classes.framework),
                     **{f"n_{c}": len(getattr(classes, c)) for c in ("O_e", "O_c", "O_n", "other", "conflicts")}}
        if streamed:
            labels, participation, cw = _streamed_labels(source, classes, n_atoms)
            class_weights = list(cw)
        else:
            mc = mode_classes(source, classes)
            labels, participation = mc.dominant, mc.participation_ratio
            class_weights = [mc.class_weights[c] for c in ("O_e", "O_c", "O_n")]
    except ValueError as exc:
        notes.append(f"no O classes ({exc}); class_fractions and oe_mean_frequency_THz are null")
        if not streamed:  # the participation ratio does not need classes
            participation = mode_classes(source, {"O_e": [], "O_c": [], "O_n": []}).participation_ratio
    return labels, participation, class_weights, site_info


def _bin_edges(cfg: MDMAConfig, freq, n_dof: int, notes: list):
    if cfg.bins_THz is None and n_dof <= BIN_ABOVE_MODES:
        return None
    width = DEFAULT_BIN_THZ if cfg.bins_THz is None else float(cfg.bins_THz)
    if cfg.bins_THz is None:
        notes.append(f"{n_dof} modes: heat map binned by frequency ({width} THz bins, exact block sums)")
    return frequency_bins(freq, width)


def run_mdma(cfg: MDMAConfig, *, site_unit=None, phonon=None) -> MDMARun:
    """MDMA of the run in ``cfg.files`` with the phonons in ``cfg.phonons``; nothing is written.

    ``site_unit``: the structure the MD cell was built from (``Atoms.repeat``; default: the ``structure`` named
    in the trajectory's metadata, as phonion's MD writes it). When known and the atom
    order checks out (:func:`phonion.mdma.supercell.ideal_sites`), atoms are mapped onto the phonon cell by
    index, so mobile ions far from their sites in the first frame do not matter; otherwise by position.
    ``phonon``: the phonopy object of ``cfg.phonons`` when the caller has it loaded already.
    """
    from phonion.md.io import read_trajectory
    from phonion.md.trajectory import TrajectoryError
    from phonion.mdma.mdma import MDMAError
    from phonion.mdma.mdma import run_mdma as mdma_of
    from phonion.mdma.phonon_io import load_phonons

    files = [Path(f) for f in ([cfg.files] if isinstance(cfg.files, (str, Path)) else cfg.files)]
    src = _source(files)
    notes: list[str] = []
    traj = read_trajectory(files, fmt=cfg.fmt, timestep_fs=cfg.timestep_fs, stride=cfg.file_stride,
                           every=cfg.every)
    if cfg.species not in traj.symbols:
        raise TrajectoryError(f"{src}: no {cfg.species!r} atoms (species: {sorted(set(traj.symbols))}); "
                              f"give the mobile species with --species")
    if phonon is None:
        phonon = load_phonons(cfg.phonons, supercell_matrix=cfg.supercell)
    source, streamed = _modes(cfg, traj, phonon, site_unit, src, notes, files)
    freq = np.asarray(source.frequencies_THz)
    traj, vsrc, temp, temp_source = _velocities(cfg, traj, float(freq.max()), notes)
    labels, participation, class_weights, site_info = _classes(cfg, source, streamed, traj.n_atoms, notes)
    edges = _bin_edges(cfg, freq, 3 * traj.n_atoms, notes)
    try:
        result = mdma_of(traj.velocities, traj.masses, list(traj.symbols), freq,
                         source if streamed else source.eigenvectors, traj.frame_interval_fs, temp,
                         tau_max_ps=cfg.tau_max_ps, n_blocks=cfg.n_blocks, mode_class_labels=labels,
                         convention=cfg.convention, mobile_species=cfg.species, bin_edges_THz=edges)
    except MDMAError as exc:  # e.g. τmax longer than a block: say which run
        raise MDMAError(f"{src}: {exc}") from exc
    summary = _summary(cfg, result, traj, freq, _Found(files, labels, site_info, edges, notes, vsrc, temp_source))
    return MDMARun(result=result, summary=summary, participation=participation, class_weights=class_weights,
                   n_top=cfg.n_top)


@dataclass(frozen=True)
class _Found:
    """What :func:`run_mdma` found besides the MDMA result, for its summary: the trajectory ``files``, mode class
    ``labels`` (or None), ``site_info``, heat-map bin ``edges`` (or None), ``notes`` (appended to), and where the
    velocities and the temperature came from."""

    files: list
    labels: object
    site_info: object
    edges: object
    notes: list
    velocities_source: str
    temperature_source: str


def _summary(cfg, result, traj, freq, found: _Found) -> dict:
    """The ``phonion mdma`` JSON (without ``files``) of one MDMA result."""
    from phonion.core.jsonutil import clean
    from phonion.mdma.mdma_core import ACOUSTIC_THRESHOLD_THZ

    files, labels, site_info, edges, notes = found.files, found.labels, found.site_info, found.edges, found.notes
    velocities_source, temperature_source = found.velocities_source, found.temperature_source
    dt = traj.frame_interval_fs
    if cfg.convention == "notebook":
        notes.append("notebook convention: Li-only unweighted projection, one trapezoid, acoustic modes dropped; "
                     "mdma_total_cm2_s is not comparable with collective_diffusivity_cm2_s and the sum rule is "
                     "not expected to hold (DESIGN.md)")
    if result.tau_max_ps * 1000.0 > 0.5 * (result.n_frames // max(result.n_blocks, 1)) * dt:
        notes.append("tau_max is more than half a block: block errors are unreliable")
    summary = result.to_dict(cfg.n_top)
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
        "temperature_source": temperature_source,
        "velocities_source": velocities_source,
        "trajectory": [str(f) for f in files],
        "phonons": str(cfg.phonons),
        "n_atoms": traj.n_atoms,
        "n_modes": int(len(freq)),
        "mobile_species": cfg.species,
        "frequency_range_THz": [float(freq.min()), float(freq.max())],
        "n_imaginary_modes": int((freq < -0.05).sum()),
        "zero_frequency_modes": {"n": int(zero.sum()), "threshold_THz": ACOUSTIC_THRESHOLD_THZ,
                                 "contribution_fraction": float(result.contributions_cm2_s[zero].sum()
                                                                / result.mdma_total_cm2_s)},
        "mode_class_counts": None if labels is None else
        {c: int((np.asarray(labels) == c).sum()) for c in ("O_e", "O_c", "O_n", "")},
        "site_classes": site_info,
        "binned_heatmap": edges is not None,
        "notes": notes,
    })
    return clean(summary)


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
