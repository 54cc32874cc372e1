"""The transport stages: ``run_diffusion``, ``run_arrhenius``, ``run_conductivity`` (VDOS: :mod:`.vdos`).

* ``run_diffusion(DiffusionConfig) -> DiffusionRun``: tracer / collective / Green–Kubo diffusion, Haven ratio
  and σ of one run (:mod:`phonion.md.diffusion_run`; an H5MD file is read a few atoms at a time).
  ``save(dir)``: ``msd.png`` and ``result.json``.
* ``run_arrhenius(ArrheniusConfig) -> ArrheniusRun``: E_a, D₀ and D, σ at 300 K from several diffusion
  ``result.json`` files. ``save(dir)``: ``arrhenius.png`` and ``arrhenius.json``.
* ``run_conductivity(ConductivityConfig) -> ConductivityRun``: Nernst–Einstein σ from D, T and a structure.

``to_dict()`` is what ``phonion diffusion | arrhenius | conductivity --json`` prints; nothing is written
until ``save``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phonion.core.jsonutil import clean
from phonion.workflows.common import check_time_options, check_window, dump_json, trajectory_files
from phonion.workflows.result import Result

__all__ = ["DiffusionConfig", "DiffusionRun", "run_diffusion", "ArrheniusConfig", "ArrheniusRun", "run_arrhenius",
           "ConductivityConfig", "ConductivityRun", "run_conductivity", "H5MD_SUFFIXES"]

#: file name endings read as H5MD (analysed a few atoms at a time) when no format is given
H5MD_SUFFIXES = (".h5", ".h5md", ".hdf5")


# ---- diffusion --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiffusionConfig:
    """Settings of ``phonion diffusion`` (its options; ``configs/diffusion.yaml``)."""

    files: tuple = ()
    species: str = "Li"
    temperature_K: float | None = None
    timestep_fs: float | None = None
    file_stride: int | None = None
    fmt: str | None = None
    fit_range_ps: tuple | None = None
    fit_fraction: float = 0.5
    slope_tolerance: float = 0.1
    gk_window_ps: tuple | None = None
    n_blocks: int = 5
    estimator: str = "wls"
    drift_correction: bool = True
    charge: float = 1.0
    memory_mb: float = 1024

    def __post_init__(self):
        if self.temperature_K is not None and not self.temperature_K > 0:
            raise ValueError(f"--temperature-K must be > 0, got {self.temperature_K:g}")
        object.__setattr__(self, "files", trajectory_files(self.files))
        check_time_options(self.files, self.timestep_fs, self.file_stride, self.fmt)
        for name, option in (("fit_range_ps", "--fit-range-ps"), ("gk_window_ps", "--gk-window-ps")):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_window(option, getattr(self, name)))
        if not 0 < self.fit_fraction <= 1:
            raise ValueError(f"fit_fraction must be in (0, 1], got {self.fit_fraction}")
        if not self.n_blocks >= 2:
            raise ValueError(f"n_blocks must be ≥ 2 (≥ 4 recommended), got {self.n_blocks}")
        if self.estimator not in ("wls", "gls"):
            raise ValueError(f"estimator must be 'wls' or 'gls', got {self.estimator!r}")


@dataclass
class DiffusionRun(Result):
    """The :class:`phonion.md.diffusion_run.DiffusionResult` of one run (MSD curves, fits, Green–Kubo)."""

    result: object
    figures: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The ``phonion diffusion`` JSON (strict: NaN → null); ``figures`` once saved."""
        out = self.result.to_dict()
        if self.figures:
            out["figures"] = list(self.figures)
        return clean(out)

    def save(self, directory) -> dict[str, Path]:
        """``msd.png`` and ``result.json`` (the JSON above) into ``directory``."""
        from phonion.md.transport_plots import plot_msd

        out = Path(directory)
        png = plot_msd(self.result, out / "msd.png")
        self.figures = [str(png)]
        return {"msd_png": Path(png), "result_json": dump_json(out / "result.json", self.to_dict())}


def _need_temperature(cfg: DiffusionConfig, temps) -> None:
    if cfg.temperature_K is None and (temps is None or not np.isfinite(temps).any()):
        raise ValueError(f"{', '.join(cfg.files)}: the trajectory records no temperature; give --temperature-K")


def run_diffusion(cfg: DiffusionConfig) -> DiffusionRun:
    """Diffusion analysis of the run in ``cfg.files``; nothing is written."""
    from phonion.md.diffusion_run import analyse_h5md, analyse_trajectory

    options = dict(fit_range_ps=cfg.fit_range_ps, gk_window_ps=cfg.gk_window_ps, n_blocks=cfg.n_blocks,
                   fit_fraction=cfg.fit_fraction, slope_tolerance=cfg.slope_tolerance,
                   drift_correction=cfg.drift_correction, charge=cfg.charge, estimator=cfg.estimator)
    files = [Path(f) for f in cfg.files]
    h5 = len(files) == 1 and (cfg.fmt == "h5md" or (cfg.fmt is None and files[0].suffix.lower() in H5MD_SUFFIXES))
    if h5:
        from phonion.md.io.h5md import H5MDReader

        _need_temperature(cfg, H5MDReader(files[0]).read(frames=slice(0, 1), atoms=[0]).temperatures_K)
        result = analyse_h5md(files[0], cfg.species, temperature_K=cfg.temperature_K,
                              timestep_fs=cfg.timestep_fs, stride=cfg.file_stride, memory_mb=cfg.memory_mb,
                              **options)
    else:
        from phonion.md.io import read_trajectory

        traj = read_trajectory(list(cfg.files), fmt=cfg.fmt, timestep_fs=cfg.timestep_fs, stride=cfg.file_stride)
        _need_temperature(cfg, traj.temperatures_K)
        result = analyse_trajectory(traj, cfg.species, temperature_K=cfg.temperature_K,
                                    timestep_fs=cfg.timestep_fs, **options)
    return DiffusionRun(result=result)


# ---- arrhenius --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrheniusConfig:
    """Settings of ``phonion arrhenius``: the ``phonion diffusion`` result files and which D to fit."""

    results: tuple = ()
    quantity: str = "tracer"

    def __post_init__(self):
        object.__setattr__(self, "results", trajectory_files(self.results, "results"))
        if self.quantity not in ("tracer", "collective"):
            raise ValueError(f"quantity must be tracer or collective, got {self.quantity!r}")


@dataclass
class ArrheniusRun(Result):
    """The :class:`phonion.md.conductivity.ArrheniusFit` and the ``phonion arrhenius`` summary."""

    fit: object
    summary: dict
    figures: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The ``phonion arrhenius`` JSON (strict: NaN → null); ``figures`` once saved."""
        out = dict(self.summary)
        if self.figures:
            out["figures"] = list(self.figures)
        return clean(out)

    def save(self, directory) -> dict[str, Path]:
        """``arrhenius.png`` and ``arrhenius.json`` (the JSON above) into ``directory``."""
        from phonion.md.transport_plots import plot_arrhenius

        out = Path(directory)
        png = plot_arrhenius(self.fit, out / "arrhenius.png")
        self.figures = [str(png)]
        return {"arrhenius_png": Path(png), "arrhenius_json": dump_json(out / "arrhenius.json", self.to_dict())}


def load_diffusion_result(path) -> dict:
    """A ``phonion diffusion`` result.json, refused (ValueError naming the file) when it is not one."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give the result.json files written by `phonion diffusion -o DIR`")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a `phonion diffusion` result (a JSON {type(data).__name__}, "
                         "not an object); give the result.json files written by `phonion diffusion -o DIR`")
    need = ("temperature_K", "carrier_density_cm3", "tracer_diffusivity_cm2_s")
    missing = [k for k in need if data.get(k) is None]
    if missing:
        raise ValueError(f"{path}: not a `phonion diffusion` result (missing {', '.join(missing)})")
    return data


def _column(results, paths, key: str, required: bool) -> np.ndarray:
    """``key`` of every result as floats (missing → NaN, or a ValueError naming the file when ``required``);
    numbers that are not numbers, or negative uncertainties, are refused naming the file."""
    values = []
    for path, r in zip(paths, results):
        v = r.get(key)
        if v is None and required:
            raise ValueError(f"{path}: no {key} in this result (written by an older `phonion diffusion`?); "
                             "rerun `phonion diffusion`, or fit --quantity tracer")
        try:
            v = np.nan if v is None else float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: {key} is not a number ({v!r})") from None
        if key.endswith("_err_cm2_s") and not (np.isnan(v) or 0 <= v < np.inf):
            raise ValueError(f"{path}: {key} is an uncertainty and must be a finite number ≥ 0, got {v:g}")
        values.append(v)
    return np.array(values, dtype=float)


def run_arrhenius(cfg: ArrheniusConfig) -> ArrheniusRun:
    """Weighted Arrhenius fit of ln D vs 1/T over ``cfg.results``, extrapolated to 300 K; nothing is written."""
    from phonion.md.conductivity import arrhenius_fit, nernst_einstein_conductivity_mS_cm

    results = [load_diffusion_result(p) for p in cfg.results]
    key = f"{cfg.quantity}_diffusivity"
    t = _column(results, cfg.results, "temperature_K", True)
    d = _column(results, cfg.results, f"{key}_cm2_s", True)
    e = _column(results, cfg.results, f"{key}_err_cm2_s", False)
    bad_t = [str(p) for p, v in zip(cfg.results, t) if not 0 < v < np.inf]
    if bad_t:
        raise ValueError(f"{', '.join(bad_t)}: temperature_K must be > 0")
    bad = [str(p) for p, v in zip(cfg.results, d) if not v > 0]
    if bad:
        raise ValueError(f"{', '.join(bad)}: {cfg.quantity} diffusivity ≤ 0; no Arrhenius fit possible")
    fit = arrhenius_fit(t, d, None if np.isnan(e).all() else e)
    n = _column(results, cfg.results, "carrier_density_cm3", True)
    notes = list(fit.notes)
    if np.ptp(n) > 0.01 * n.mean():
        notes.append(f"carrier densities differ between results ({n.min():.4g}–{n.max():.4g} cm^-3); "
                     "their mean is used")
    charge = float(results[0].get("charge") or 1.0)
    d300, lo, hi, s_ln = fit.predict(300.0)
    unit = nernst_einstein_conductivity_mS_cm(1.0, 300.0, float(n.mean()), charge)
    summary = {
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
        "quantity": cfg.quantity,
        "temperatures_K": t, "diffusivities_cm2_s": d, "diffusivity_errs_cm2_s": e,
        "carrier_density_cm3": float(n.mean()), "chi2_reduced": fit.chi2_reduced,
        "weighted": fit.weighted, "n_points": int(t.size), "notes": notes,
        "sources": [str(p) for p in cfg.results],
    }
    return ArrheniusRun(fit=fit, summary=summary)


# ---- conductivity -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConductivityConfig:
    """Settings of ``phonion conductivity``: σ = n (z e)² D / (k_B T), n = carriers / cell volume."""

    structure: str
    diffusivity_cm2_s: float
    temperature_K: float
    species: str = "Li"
    diffusivity_err_cm2_s: float | None = None
    charge: float = 1.0

    def __post_init__(self):
        if not self.temperature_K > 0:
            raise ValueError(f"--temperature-K must be > 0, got {self.temperature_K:g}")
        if not 0 <= self.diffusivity_cm2_s < math.inf:
            raise ValueError(f"--diffusivity-cm2-s must be ≥ 0 and finite, got {self.diffusivity_cm2_s:g}")
        err = self.diffusivity_err_cm2_s
        if err is not None and not 0 <= err < math.inf:
            raise ValueError(f"--diffusivity-err-cm2-s is an uncertainty: it must be a finite number ≥ 0, "
                             f"got {err:g}")
        if not (math.isfinite(self.charge) and self.charge != 0):
            raise ValueError(f"--charge must be a finite non-zero number, got {self.charge:g}")


@dataclass
class ConductivityRun(Result):
    """The Nernst–Einstein conductivity and the numbers it came from (``summary``, floats as computed)."""

    summary: dict

    def to_dict(self) -> dict:
        """The ``phonion conductivity`` JSON (strict: NaN → null)."""
        return clean(self.summary)

    def save(self, directory) -> dict[str, Path]:
        """``conductivity.json`` (the JSON above) into ``directory`` (the command itself writes no file)."""
        return {"conductivity_json": dump_json(Path(directory) / "conductivity.json", self.to_dict())}


def run_conductivity(cfg: ConductivityConfig) -> ConductivityRun:
    """σ from ``cfg.diffusivity_cm2_s`` at ``cfg.temperature_K`` with the carrier density of ``cfg.structure``."""
    from phonion.core.structures import load_structure
    from phonion.md.conductivity import carrier_density_from_atoms, nernst_einstein_conductivity_mS_cm

    atoms = load_structure(cfg.structure)
    try:
        n = carrier_density_from_atoms(atoms, cfg.species)
    except ValueError as exc:
        raise ValueError(f"{cfg.structure}: {exc}") from None
    sigma = nernst_einstein_conductivity_mS_cm(cfg.diffusivity_cm2_s, cfg.temperature_K, n, cfg.charge)
    out = {"conductivity_mS_cm": sigma, "carrier_density_cm3": n,
           "n_carriers": sum(s == cfg.species for s in atoms.get_chemical_symbols()),
           "volume_A3": float(abs(atoms.cell.volume)), "species": cfg.species,
           "diffusivity_cm2_s": cfg.diffusivity_cm2_s, "temperature_K": cfg.temperature_K,
           "charge": cfg.charge, "structure": str(cfg.structure)}
    if cfg.diffusivity_err_cm2_s is not None:
        unit = nernst_einstein_conductivity_mS_cm(1.0, cfg.temperature_K, n, cfg.charge)
        out["conductivity_err_mS_cm"] = unit * cfg.diffusivity_err_cm2_s
    return ConductivityRun(summary=out)
