"""``run_anharmonicity(AnharmonicityConfig) -> AnharmonicityRun``: σ_A and mode linewidths of one trajectory.

Flow (atom mapping, Γ modes, O classes and velocities exactly as ``phonion mdma``: :mod:`phonion.workflows.mdma`):
read the trajectory → load the phonons → Γ modes of the trajectory's cell → ideal sites → σ_A over the frames with
forces (:mod:`phonion.mdma.anharmonicity`; null when the file has no forces) → velocities (file or central
differences) → Q̇_n(t), spectra and Lorentzian fits (:mod:`phonion.mdma.linewidths`) → the MDMA anharmonic share
of the same run when MDMA can run, for the three measures side by side.
``AnharmonicityRun.to_dict()`` is the JSON of ``phonion anharmonicity``; ``save(dir)`` writes its files.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phonion.workflows.result import Result, write_json

__all__ = ["AnharmonicityConfig", "AnharmonicityRun", "run_anharmonicity", "HOPPING_TEXT"]

HOPPING_TEXT = {
    "reanchor": "re-anchored: a {sp} ion's displacement is taken from the nearest {sp} site (minimum image) in "
                "every frame, so an ion that hopped into a neighbouring site is measured from that site",
    "exclude": "excluded: a {sp} ion whose nearest {sp} site is not its own (it hopped) is left out of both σ_A "
               "sums in that frame; its displacement from the nearest site still enters its neighbours' F_harm",
}


@dataclass(frozen=True)
class AnharmonicityConfig:
    """Settings of ``phonion anharmonicity`` (the MDMA settings it shares keep their ``phonion mdma`` names)."""

    files: tuple = ()
    phonons: str = ""
    species: str = "Li"
    anion: str = "O"
    framework: tuple | None = None
    structure: str | None = None
    timestep_fs: float | None = None
    file_stride: int | None = None
    fmt: str | None = None
    every: int = 1
    velocities: str = "auto"
    n_segments: int = 1
    hopping: str = "reanchor"
    site_tolerance_A: float = 0.5
    supercell: tuple | None = None
    n_top: int = 4
    mdma: bool = True
    plots: bool = True
    output: str | None = None

    def __post_init__(self):
        from phonion.mdma.anharmonicity import HOPPING
        from phonion.mdma.phonon_io import check_supercell
        from phonion.workflows.common import check_output_dir, check_time_options, trajectory_files

        files = trajectory_files(self.files)
        object.__setattr__(self, "files", files)
        check_time_options(files, self.timestep_fs, self.file_stride, self.fmt)
        if self.hopping not in HOPPING:
            raise ValueError(f"hopping must be one of {', '.join(HOPPING)}, got {self.hopping!r}")
        if self.velocities not in ("auto", "positions"):
            raise ValueError(f"velocities must be auto or positions, got {self.velocities!r}")
        for name in ("n_segments", "every", "n_top"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be an integer ≥ 1, got {v!r}")
        if not self.phonons:
            raise ValueError("no phonons given: --phonons DIR (a 'phonion phonons' output or phonopy files)")
        object.__setattr__(self, "supercell", check_supercell(self.supercell, "supercell (--supercell)"))
        if self.output is not None:
            check_output_dir(self.output)

    def mdma_config(self):
        """The :class:`phonion.workflows.mdma.MDMAConfig` with the same files, mapping and velocity settings."""
        from phonion.workflows.mdma import MDMAConfig

        return MDMAConfig(files=self.files, phonons=self.phonons, species=self.species, anion=self.anion,
                          framework=self.framework, timestep_fs=self.timestep_fs, file_stride=self.file_stride,
                          fmt=self.fmt, every=self.every, velocities=self.velocities,
                          site_tolerance_A=self.site_tolerance_A, supercell=self.supercell, plots=False)


@dataclass
class AnharmonicityRun(Result):
    """What :func:`run_anharmonicity` found: the summary (the JSON) and the arrays its files are made from."""

    summary: dict
    series: dict = field(default_factory=dict)
    spectra: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from phonion.core.jsonutil import clean

        out = dict(self.summary)
        if self.files:
            out["sigma_A_time_series"] = str(self.files.get("sigma_A_time_series_csv")) \
                if "sigma_A_time_series_csv" in self.files else None
            out["files"] = {k: str(v) for k, v in self.files.items()}
        return clean(out)

    def save(self, directory, plots: bool = True) -> dict[str, Path]:
        """result.json, modes.csv, sigma_A_time_series.csv (with forces), spectra.npz and the plots."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files = {"modes_csv": _write_modes_csv(out / "modes.csv", self.summary["modes"])}
        if self.series:
            files["sigma_A_time_series_csv"] = _write_series(out / "sigma_A_time_series.csv", self.series)
        sp = self.spectra
        np.savez(out / "spectra.npz", frequencies_THz=sp["frequencies_THz"], power=sp["power"],
                 harmonic_frequencies_THz=sp["harmonic_THz"], frequency_resolution_THz=sp["frequency_resolution_THz"],
                 frame_interval_fs=sp["dt_fs"], n_frames_per_segment=sp["n"], n_segments=sp["n_segments"])
        files["spectra_npz"] = out / "spectra.npz"
        if plots:
            from phonion.mdma.anharmonicity_plots import plot_anharmonicity

            files.update(plot_anharmonicity(self.summary, self.spectra, out))
        self.files = {**files, "result_json": out / "result.json"}
        write_json(out / "result.json", self.to_dict())
        return dict(self.files)


def _groups(traj, labels_of_atoms: dict) -> tuple[dict, dict]:
    species = {s: traj.indices_of(s) for s in traj.species_counts}
    return species, {c: np.asarray(v, int) for c, v in labels_of_atoms.items()}


def _sigma_block(traj, source, cfg, class_atoms: dict, notes: list) -> tuple[dict, dict]:
    """The σ_A keys of the summary and the time series (empty without forces)."""
    from phonion.mdma.anharmonicity import displacements, harmonic_forces, sigma_a, sigma_a_series

    hop = {"handling": cfg.hopping, "text": HOPPING_TEXT[cfg.hopping].format(sp=cfg.species),
           "n_atom_frames_reanchored": None, "n_ions_ever_reanchored": None}
    keys = {"sigma_A": None, "sigma_A_by_species": None, "sigma_A_by_class": None, "hopping": hop,
            "n_frames_with_forces": 0, "sigma_A_err": None, "sigma_A_by_species_err": None,
            "sigma_A_by_class_err": None, "sigma_A_error": None}
    have = traj.frames_with("forces") if traj.forces is not None else np.zeros(traj.n_frames, bool)
    if not have.any():
        notes.append("the trajectory has no forces: sigma_A, sigma_A_by_species and sigma_A_by_class are null "
                     "(σ_A needs the force on every atom); the mode spectra and linewidths are computed")
        return keys, {}
    if not have.all():
        notes.append(f"σ_A over the {int(have.sum())} of {traj.n_frames} frames that carry forces")
    frames = np.flatnonzero(have)
    u, moved = displacements(traj.positions[frames], traj.cells[frames], source.positions, traj.symbols,
                             cfg.species)
    forces = traj.forces[frames]
    fh = harmonic_forces(u, source.masses, source.frequencies_THz,
                         source if callable(source) else source.eigenvectors)
    excl = moved if cfg.hopping == "exclude" else None
    species, classes = _groups(traj, class_atoms)
    hop.update(n_atom_frames_reanchored=int(moved.sum()), n_ions_ever_reanchored=int(moved.any(axis=0).sum()))
    keys.update(sigma_A=sigma_a(forces, fh, exclude=excl),
                sigma_A_by_species={s: sigma_a(forces, fh, idx, excl) for s, idx in species.items()},
                sigma_A_by_class={c: sigma_a(forces, fh, idx, excl) if len(idx) else None
                                  for c, idx in classes.items()} or None,
                n_frames_with_forces=int(have.sum()))
    keys.update(_sigma_errors(forces, fh, excl, species, classes, notes))
    series = {"time_ps": (traj.times_fs[frames] if traj.times_fs is not None else frames * traj.frame_interval_fs) * 1e-3,
              "sigma_A": sigma_a_series(forces, fh, exclude=excl)}
    series.update({f"sigma_A_{c}": sigma_a_series(forces, fh, idx, excl) for c, idx in classes.items() if len(idx)})
    return keys, series


def _sigma_errors(forces, fh, excl, species: dict, classes: dict, notes: list) -> dict:
    """``sigma_A_err``, ``sigma_A_by_species_err``, ``sigma_A_by_class_err`` (block averaging of block ratios,
    :func:`phonion.mdma.anharmonicity.sigma_a_error`) and ``sigma_A_error`` (how: block length, plateau)."""
    from phonion.mdma.anharmonicity import MIN_BLOCKS, sigma_a_error, sigma_a_sums

    def err(atoms):
        return sigma_a_error(*sigma_a_sums(forces, fh, atoms, excl))

    total = err(None)
    by_sp = {s: err(idx) for s, idx in species.items()}
    by_cl = {c: err(idx) if len(idx) else None for c, idx in classes.items()}
    short = [k for k, e in [("all", total), *by_sp.items(), *by_cl.items()] if e is not None and e["error"] is not None
             and not e["plateau"]]
    if total["error"] is None:
        notes.append(f"σ_A errors need at least {MIN_BLOCKS} frames with forces: sigma_A_err is null")
    elif short:
        notes.append(f"σ_A block errors of {', '.join(short)} reached no plateau (the run is short against the "
                     "forces' correlation time): those errors are lower bounds")
    return {"sigma_A_err": total["error"],
            "sigma_A_by_species_err": {s: e["error"] for s, e in by_sp.items()},
            "sigma_A_by_class_err": {c: None if e is None else e["error"] for c, e in by_cl.items()} or None,
            "sigma_A_error": {"method": "block averaging: SE of block σ_A values (each the ratio of its block's "
                                        "sums) at the plateau block length (Flyvbjerg & Petersen 1989)",
                              "block_frames": total["block_frames"], "n_blocks": total["n_blocks"],
                              "plateau": total["plateau"]}}


def _class_atoms(cfg, source) -> dict:
    from ase import Atoms

    from phonion.mdma.sites import classify_oxygens

    ideal = Atoms(source.symbols, positions=source.positions, cell=source.cell, pbc=True)
    try:
        c = classify_oxygens(ideal, mobile=cfg.species, anion=cfg.anion, framework=cfg.framework)
    except ValueError:
        return {}
    return {k: list(getattr(c, k)) for k in ("O_e", "O_c", "O_n")}


def _mdma_share(cfg, phonon, site_unit, notes: list):
    """(anharmonic fraction, top mode indices) of ``phonion mdma`` on the same run, or (None, []) with a note."""
    if not cfg.mdma:
        return None, []
    from phonion.workflows.mdma import run_mdma

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = run_mdma(cfg.mdma_config(), site_unit=site_unit, phonon=phonon)
    except ValueError as exc:
        notes.append(f"no MDMA share for this run ({exc}); top modes for the spectra plot are the "
                     "highest-frequency-resolved ones instead")
        return None, []
    return run.result.anharmonic_fraction, [t["mode_index"] for t in run.result.top_modes(cfg.n_top)]


def _spectra_block(traj, source, cfg, labels, notes: list) -> tuple[list, dict, dict]:
    """(modes list, spectra arrays, summary keys) from Q̇_n(t) of the same projection as ``phonion mdma``."""
    from phonion.md.velocities import nyquist_THz, with_velocities
    from phonion.mdma.linewidths import fit_modes, modal_velocities

    if cfg.velocities == "positions":
        traj = traj.replace(velocities=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = with_velocities(traj)          # no stride refusal: modes above Nyquist are flagged one by one
    notes += [f"velocities: {w.message}" for w in caught]
    freq = np.asarray(source.frequencies_THz, float)
    dt = traj.frame_interval_fs
    if freq.max() > nyquist_THz(dt):
        notes.append(f"frames {dt:g} fs apart resolve only up to {nyquist_THz(dt):.2f} THz; the "
                     f"{int((freq > nyquist_THz(dt)).sum())} modes above it (up to {freq.max():.2f} THz) are "
                     "flagged 'above Nyquist' and not fitted")
    qdot = modal_velocities(traj.velocities, source.masses, source if callable(source) else source.eigenvectors)
    fits = fit_modes(qdot, dt, freq, n_segments=cfg.n_segments)
    modes = []
    for f in fits["fits"]:
        k = f["index"]
        shift = None if f["peak_frequency_THz"] is None or f["status"] in ("acoustic", "imaginary", "above Nyquist") \
            else f["peak_frequency_THz"] - f["harmonic_frequency_THz"]
        modes.append({"index": k, "class": None if labels is None or not labels[k] else str(labels[k]),
                      "harmonic_frequency_THz": f["harmonic_frequency_THz"],
                      "peak_frequency_THz": f["peak_frequency_THz"], "peak_frequency_err_THz": f["peak_frequency_err_THz"],
                      "frequency_shift_THz": shift, "linewidth_THz": f["linewidth_THz"],
                      "linewidth_err_THz": f["linewidth_err_THz"], "line_shape_chi2": f.get("line_shape_chi2"),
                      "status": f["status"], "reason": f["reason"]})
    vsrc = traj.metadata.get("velocities_source") or "file"
    arrays = {"frequencies_THz": fits["frequencies_THz"], "power": fits["power"], "harmonic_THz": freq,
              "frequency_resolution_THz": fits["frequency_resolution_THz"], "dt_fs": dt,
              "n": int(round(fits["segment_ps"] / (dt * 1e-3))), "n_segments": cfg.n_segments}
    keys = {"frequency_resolution_THz": fits["frequency_resolution_THz"], "nyquist_THz": fits["nyquist_THz"],
            "segment_ps": fits["segment_ps"], "n_segments": cfg.n_segments, "velocities_source": vsrc,
            "frame_interval_fs": dt, "status_counts": {s: sum(m["status"] == s for m in modes)
                                                        for s in dict.fromkeys(m["status"] for m in modes)}}
    return modes, arrays, keys


def linewidth_summary(modes: list) -> dict:
    """Per O class (and all): number of fitted modes and their mean / median linewidth and mean shift (THz)."""
    out = {}
    for cls in ("all", "O_e", "O_c", "O_n"):
        sel = [m for m in modes if m["status"] == "fitted" and (cls == "all" or m["class"] == cls)]
        lw = np.array([m["linewidth_THz"] for m in sel], float)
        err = np.array([m["linewidth_err_THz"] for m in sel], float)
        sh = np.array([m["frequency_shift_THz"] for m in sel], float)
        out[cls] = {"n_fitted": len(sel),
                    "n_modes": sum(1 for m in modes if cls == "all" or m["class"] == cls),
                    "mean_linewidth_THz": float(lw.mean()) if len(sel) else None,
                    "mean_linewidth_err_THz": float(np.sqrt((err ** 2).sum()) / len(sel)) if len(sel) else None,
                    "median_linewidth_THz": float(np.median(lw)) if len(sel) else None,
                    "mean_shift_THz": float(sh.mean()) if len(sel) else None}
    return out


def _site_unit(cfg):
    if cfg.structure is None:
        return None
    from phonion.core.structures import load_structure

    return load_structure(cfg.structure)


def run_anharmonicity(cfg: AnharmonicityConfig, *, site_unit=None, phonon=None) -> AnharmonicityRun:
    """σ_A, mode spectra and linewidths (and the MDMA share) of the run in ``cfg.files``; nothing is written.

    ``site_unit`` (or ``cfg.structure``): the structure the MD cell was built from, for mapping atoms by index
    (as ``phonion mdma``); ``phonon``: the phonopy object of ``cfg.phonons`` when already loaded.
    """
    from phonion.md.io import read_trajectory
    from phonion.md.trajectory import TrajectoryError
    from phonion.mdma.phonon_io import load_phonons
    from phonion.workflows.mdma import _classes, _modes

    files = [Path(f) for f in cfg.files]
    src = ", ".join(str(f) for f in files)
    notes: list[str] = []
    traj = read_trajectory(files, fmt=cfg.fmt, timestep_fs=cfg.timestep_fs, stride=cfg.file_stride, every=cfg.every)
    if cfg.species not in traj.symbols:
        raise TrajectoryError(f"{src}: no {cfg.species!r} atoms (species: {sorted(set(traj.symbols))}); "
                              f"give the mobile species with --species")
    if traj.frame_interval_fs is None:
        raise TrajectoryError(f"{src}: the frame interval is unknown; give --timestep-fs (MD timestep × steps "
                              "between saved frames)")
    site_unit = site_unit if site_unit is not None else _site_unit(cfg)
    if phonon is None:
        phonon = load_phonons(cfg.phonons, supercell_matrix=cfg.supercell)
    mcfg = cfg.mdma_config()
    source, streamed = _modes(mcfg, traj, phonon, site_unit, src, notes, files)
    labels, _, _, site_info = _classes(mcfg, source, streamed, traj.n_atoms, notes)
    class_atoms = _class_atoms(cfg, source)
    sig, series = _sigma_block(traj, source, cfg, class_atoms, notes)
    modes, arrays, spec_keys = _spectra_block(traj, source, cfg, labels, notes)
    share, top = _mdma_share(cfg, phonon, site_unit, notes)
    if not top:
        fitted = [m["index"] for m in modes if m["status"] == "fitted"]
        top = fitted[-cfg.n_top:]
    temps = traj.temperatures_K
    summary = {
        **sig, **spec_keys,
        "sigma_A_time_series": None,
        "modes": modes,
        "linewidth_summary": linewidth_summary(modes),
        "mdma_anharmonic_fraction": share,
        "top_mdma_modes": top,
        "trajectory": [str(f) for f in files], "phonons": str(cfg.phonons), "n_atoms": traj.n_atoms,
        "n_frames": traj.n_frames, "mobile_species": cfg.species,
        "temperature_K": None if temps is None or np.isnan(temps).all() else float(np.nanmean(temps)),
        "site_classes": site_info,
        "notes": notes,
    }
    return AnharmonicityRun(summary=summary, series=series, spectra=arrays)


def _write_modes_csv(path: Path, modes: list) -> Path:
    cols = ["index", "class", "harmonic_frequency_THz", "peak_frequency_THz", "peak_frequency_err_THz",
            "frequency_shift_THz", "linewidth_THz", "linewidth_err_THz", "line_shape_chi2", "status", "reason"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for m in modes:
            w.writerow(["" if m[c] is None else (f"{m[c]:.6g}" if isinstance(m[c], float) else m[c]) for c in cols])
    return path


def _write_series(path: Path, series: dict) -> Path:
    keys = list(series)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for row in zip(*(series[k] for k in keys)):
            w.writerow([f"{x:.8g}" for x in row])
    return path
