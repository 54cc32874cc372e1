"""``run_vdos(VDOSConfig) -> VDOSRun``: vibrational density of states per species or O class.

Flow: read the run (and, if given, a decoupled reference run of the same atoms) → velocities from the file
or central differences → groups (species, or the mobile ion and O_e / O_c / O_n) → mass-weighted VACF
spectra (:func:`phonion.md.vdos.vdos`) → per-group summaries and the mobile-ion shift against the reference.
``VDOSRun.to_dict()`` is the JSON of ``phonion vdos``; ``VDOSRun.save(dir)`` writes ``vdos.csv``,
``vdos.png`` and ``vdos.json``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phonion.core.jsonutil import clean
from phonion.workflows.common import check_time_options, dump_json, trajectory_files
from phonion.workflows.result import Result

__all__ = ["VDOSConfig", "VDOSRun", "run_vdos"]


@dataclass(frozen=True)
class VDOSConfig:
    """Settings of ``phonion vdos`` (its options)."""

    files: tuple = ()
    by: str = "species"
    species: str = "Li"
    anion: str = "O"
    timestep_fs: float | None = None
    file_stride: int | None = None
    fmt: str | None = None
    window_fs: float | None = None
    taper: str = "hann"
    cutoff_thz: float = 3.0
    reference: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "files", trajectory_files(self.files))
        if self.reference is not None:
            object.__setattr__(self, "reference", tuple(str(f) for f in self.reference) or None)
        check_time_options(self.files, self.timestep_fs, self.file_stride, self.fmt)
        if self.by not in ("species", "oclass"):
            raise ValueError(f"by must be species or oclass, got {self.by!r}")
        if self.taper not in ("hann", "none"):
            raise ValueError(f"taper must be 'hann' or 'none', got {self.taper!r}")
        if self.window_fs is not None and not self.window_fs > 0:
            raise ValueError(f"--window-fs must be > 0, got {self.window_fs}")


@dataclass
class VDOSRun(Result):
    """The :class:`phonion.md.vdos.VDOS` of the run (and of the reference), the groups shown, the summary."""

    result: object
    reference: object
    columns: list
    summary: dict
    figures: list = field(default_factory=list)
    files: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The ``phonion vdos`` JSON (strict: NaN → null); ``figures`` and ``files`` once saved."""
        out = dict(self.summary)
        if self.figures:
            out["figures"] = list(self.figures)
        if self.files:
            out["files"] = list(self.files)
        return clean(out)

    def save(self, directory) -> dict[str, Path]:
        """``vdos.csv`` (frequency and one column per group shown), ``vdos.png`` and ``vdos.json``."""
        from phonion.md.transport_plots import plot_vdos

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        res, cols = self.result, self.columns
        np.savetxt(out / "vdos.csv", np.column_stack([res.frequencies_THz] + [res.spectra[k] for k in cols]),
                   delimiter=",", header="frequency_THz," + ",".join(f"{k}_per_THz" for k in cols), comments="")
        png = plot_vdos(res, out / "vdos.png", cols, self.reference)
        self.figures = [str(png)]
        self.files = [str(out / "vdos.json"), str(out / "vdos.csv")]
        return {"vdos_csv": out / "vdos.csv", "vdos_png": Path(png),
                "vdos_json": dump_json(out / "vdos.json", self.to_dict())}


def _groups(traj, cfg: VDOSConfig, src: str):
    """(groups, species): atom indices per species, plus the mobile ion and O classes with ``by = oclass``."""
    species = {s: traj.indices_of(s) for s in traj.species_counts}
    if cfg.by == "species":
        return species, list(species)
    from phonion.mdma.sites import classify_oxygens

    if cfg.species not in species:
        raise ValueError(f"{src}: no {cfg.species} atoms; O classes are defined around the mobile ion")
    classes = classify_oxygens(traj.to_atoms(0), mobile=cfg.species, anion=cfg.anion)
    groups = {cfg.species: species[cfg.species]}
    groups.update({k: np.asarray(getattr(classes, k)) for k in ("O_e", "O_c", "O_n")})
    return {**species, **groups}, list(species)


def _spectrum(cfg: VDOSConfig, files):
    from phonion.md.io import read_trajectory
    from phonion.md.vdos import vdos
    from phonion.md.velocities import with_velocities

    traj = read_trajectory(list(files), fmt=cfg.fmt, timestep_fs=cfg.timestep_fs, stride=cfg.file_stride)
    traj = with_velocities(traj, timestep_fs=cfg.timestep_fs)
    groups, species = _groups(traj, cfg, ", ".join(files))
    return vdos(traj.velocities, traj.masses, traj.frame_interval_fs, groups,
                window_fs=cfg.window_fs, taper=cfg.taper, total_of=species), traj


def run_vdos(cfg: VDOSConfig) -> VDOSRun:
    """VDOS of the run in ``cfg.files`` (and the mobile-ion shift against ``cfg.reference``); nothing is written.

    Warnings raised while reading and transforming are re-issued from their origin and listed in ``warnings``.
    """
    from phonion.md.vdos import compare_spectra, spectral_summary

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, traj = _spectrum(cfg, cfg.files)
        ref = _spectrum(cfg, cfg.reference)[0] if cfg.reference else None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # keeps the origin
    shown = list(result.spectra) if cfg.by == "species" else [cfg.species, "O_e", "O_c", "O_n", "total"]
    out = {"frequencies_THz": result.frequencies_THz, "frame_interval_fs": result.dt_fs,
           "window_fs": result.window_fs, "taper": result.taper, "by": cfg.by,
           "velocities_source": traj.metadata.get("velocities_source", "file"),
           "groups": {k: {"n_atoms": result.n_atoms[k],
                          "kinetic_temperature_K": result.kinetic_temperature_K.get(k),
                          **spectral_summary(result.frequencies_THz, result.spectra[k], cfg.cutoff_thz)}
                      for k in shown if k in result.spectra},
           "warnings": [str(w.message) for w in caught], "sources": ", ".join(cfg.files)}
    if ref is not None and cfg.species in ref.spectra and cfg.species in result.spectra:
        out["mobile_ion_shift"] = {"species": cfg.species, "reference": ", ".join(cfg.reference),
                                   **compare_spectra(result.frequencies_THz, result.spectra[cfg.species],
                                                     ref.frequencies_THz, ref.spectra[cfg.species],
                                                     cfg.cutoff_thz)}
    return VDOSRun(result=result, reference=ref, columns=[k for k in shown if k in result.spectra], summary=out)
