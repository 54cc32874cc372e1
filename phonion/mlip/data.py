"""Training data from AIMD (or surrogate-reference) trajectories, split by time blocks.

``build_dataset(cfg)`` reads every run with ``phonion.md.io.read_trajectory``, keeps the frames that have
both energy and forces, checks the data, splits each run into train / validation / test *time
blocks*, fixes the isolated-atom energies (E0s) and returns ASE Atoms per split. mace's own
tooling (``config_from_atoms`` → ``AtomicData.from_config``) turns them into graphs
(``to_atomic_data``).

Split rule (per run, never random frames of one run)
----------------------------------------------------
Consecutive MD frames are strongly correlated, so a random split puts near-copies of test frames
into training and reports errors that are too good. Each run (one file, or several files that
are pieces of one run) is cut in time:

* ``n_blocks: 1`` (default): the first ``fractions[0]`` of the frames train, the next
  ``fractions[1]`` validate, the last ``fractions[2]`` test.
* ``n_blocks: k``: the run is cut into k equal segments, each split the same way, so that
  validation and test blocks are spread over the run (use it when the run is not stationary).

``gap_frames`` frames are dropped after every boundary between two blocks (also between
segments), so the last training frame and the first validation frame are at least
``gap_frames + 1`` frame intervals apart. Choose the gap ≳ the force autocorrelation time
divided by the frame interval (a few tens of fs in oxides: 5 frames at a 10-fs interval).
Frames without forces are dropped *after* the split (the block boundaries stay in time).

E0s (isolated-atom energies)
----------------------------
``e0s: {Li: -0.19, ...}`` (eV, user-given isolated-atom energies, e.g. from DFT of one atom in a
box) are used as given; every element of the data must be there. ``e0s: fit`` solves
min ‖E − N·E0‖² over the *training* frames (E total energies, N element counts, lstsq) — a
least-squares fit on composition, never an average energy per atom. When all training frames
share one composition the E0s are not identifiable one by one (only Σ N_Z E0_Z is): the
minimum-norm solution is used and a warning says so; energies and forces of that composition
are unaffected, but the E0s do not transfer to other compositions.

Checks before any training (each error names the file): frames without forces/energy (unless
``skip_incomplete_frames``); empty blocks; forces not eV/Å-like (RMS > ``max_rms_force_eV_A``, or
5× off the other files); energy jumps inside a file; energy changes that disagree with the work
of the forces between consecutive frames (E and F in different units); energy per atom after the
E0s far from the other files (units, reference, E0s); elements without a user E0; elements a
foundation model lacks (``check_elements``).
"""

from __future__ import annotations

import glob
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from phonion.mlip.data_mace import KEYS, check_elements, keyspec, to_atomic_data  # noqa: F401  (re-exported)
from phonion.mlip.data_numerics import (  # noqa: F401  (re-exported; work_slope is looked up here by _check_run)
    SPLITS, fit_e0s, split_indices, temperature_from_name, work_slope,
)


@dataclass(frozen=True)
class DataConfig:
    """The ``data:`` section of configs/train.yaml (see the module docstring for the rules).

    files : each entry a path or glob (every match is one run) or a list of paths (pieces of one run)
    format, timestep_fs : passed to ``read_trajectory`` (for files that do not say)
    every : keep every ``every``-th frame (subsampling stride)
    fractions : train, validation, test fractions of each run (test may be 0)
    n_blocks, gap_frames : time-block split, see above
    e0s : "fit" or a mapping element symbol → isolated-atom energy, eV
    skip_incomplete_frames : drop frames lacking forces or energy instead of failing
    use_stress : train on stress where all frames of a run have it
    temperatures_K : optional mapping file name → temperature label, K (else metadata / file name)
    train_only_files : files of independent configurations (e.g. frames labelled by active
        learning: ``phonion learn``) whose frames all go to the training split — no time blocks,
        no gap, no consecutive-frame work check (their frames are not a time series)
    train_only_weight : loss weight of those frames (mace's per-configuration ``config_weight``):
        a few dozen frames chosen where the potential fails weigh more than as many MD frames
    max_rms_force_eV_A, max_energy_jump_eV_atom, max_e0_residual_eV_atom : unit-check thresholds
    """

    files: tuple = ()
    format: str | None = None
    timestep_fs: float | None = None
    every: int = 1
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    n_blocks: int = 1
    gap_frames: int = 5
    e0s: Any = "fit"
    skip_incomplete_frames: bool = False
    use_stress: bool = True
    temperatures_K: dict = field(default_factory=dict)
    max_rms_force_eV_A: float = 20.0
    max_energy_jump_eV_atom: float = 1.0
    max_e0_residual_eV_atom: float = 1.0
    train_only_files: tuple = ()
    train_only_weight: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "train_only_files", tuple(
            str(p) for p in ([self.train_only_files] if isinstance(self.train_only_files, str)
                             else self.train_only_files)))
        files = tuple(tuple(str(p) for p in f) if isinstance(f, (list, tuple)) else str(f)
                      for f in ([self.files] if isinstance(self.files, str) else self.files))
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "fractions", tuple(float(x) for x in self.fractions))
        if len(self.fractions) != 3 or min(self.fractions) < 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise ValueError(f"data.fractions must be three numbers ≥ 0 summing to 1, got {self.fractions}")
        if self.fractions[0] <= 0 or self.fractions[1] <= 0:
            raise ValueError("data.fractions: training and validation fractions must be > 0")
        for name in ("every", "n_blocks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"data.{name} must be ≥ 1, got {getattr(self, name)}")
        if int(self.gap_frames) < 0:
            raise ValueError(f"data.gap_frames must be ≥ 0, got {self.gap_frames}")
        if not (self.e0s == "fit" or isinstance(self.e0s, dict)):
            raise ValueError(f"data.e0s must be 'fit' or a mapping element → eV, got {self.e0s!r}")


@dataclass(frozen=True)
class RunInfo:
    """One run: where it came from, its temperature label and the frame indices of each split."""

    name: str
    files: tuple[str, ...]
    temperature_K: float | None
    n_frames: int
    indices: dict  # split → ndarray of frame indices (after ``every``) with energy and forces
    elements: tuple[str, ...] = ()
    reference_kind: str | None = None


@dataclass(frozen=True)
class Dataset:
    """Frames per split as ASE Atoms (labels in ``info``/``arrays`` under ``KEYS``).

    zs : sorted atomic numbers present; e0s : atomic number → eV; has_stress : any frame has stress
    """

    train: list
    val: list
    test: list
    runs: tuple[RunInfo, ...]
    zs: tuple[int, ...]
    e0s: dict
    e0s_source: str
    has_stress: bool

    def split(self, name: str) -> list:
        return getattr(self, name)

    def summary(self) -> dict:
        """JSON-ready description (frames per split, elements, E0s, runs with their block ranges)."""
        return {"n_frames": {s: len(self.split(s)) for s in SPLITS},
                "elements": [chemical_symbols[z] for z in self.zs],
                "e0s_eV": {chemical_symbols[z]: float(e) for z, e in self.e0s.items()},
                "e0s_source": self.e0s_source, "has_stress": self.has_stress,
                "runs": [{"name": r.name, "files": list(r.files), "temperature_K": r.temperature_K,
                          "n_frames": r.n_frames, "reference_kind": r.reference_kind,
                          **{f"{s}_frames": [int(r.indices[s][0]), int(r.indices[s][-1])]
                             if len(r.indices[s]) else [] for s in SPLITS}} for r in self.runs]}


# ---- reading and checking ---------------------------------------------------------------------
def expand_runs(files) -> list[tuple[str, ...]]:
    """Config entries → runs (tuples of paths). A glob with no match is an error naming it."""
    runs = []
    for entry in files:
        if isinstance(entry, tuple):
            runs.append(entry)
            continue
        matches = sorted(glob.glob(entry)) if glob.has_magic(entry) else [entry]
        if not matches:
            raise ValueError(f"data.files: {entry!r} matches no file")
        runs.extend((m,) for m in matches)
    if not runs:
        raise ValueError("data.files is empty: give the trajectory files to train on")
    return runs


def run_temperature(traj, files, overrides=None) -> float | None:
    """Temperature label of a run, K: ``overrides`` (file name → K), else the metadata's target
    temperature (``temperature_K_setting`` written by ``phonion.md.driver``), else the file name
    (``700K/XDATCAR``), else None (never the instantaneous temperature)."""
    for f in files:
        for key in (f, Path(f).name):
            if overrides and key in overrides:
                return float(overrides[key])
    for key in ("temperature_K_setting", "temperature_K", "target_temperature_K"):
        value = traj.metadata.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return temperature_from_name(" ".join(files))


def _check_run(cfg: DataConfig, traj, name: str, usable: np.ndarray, time_series: bool = True) -> None:
    """Unit and consistency checks on one run (frames with energy and forces only)."""
    n = traj.n_atoms
    forces, energies = traj.forces[usable], traj.energies[usable]
    rms = float(np.sqrt(np.mean(forces ** 2)))
    if rms == 0.0:
        raise ValueError(f"{name}: all forces are zero; these are not reference forces")
    if rms > cfg.max_rms_force_eV_A:
        raise ValueError(f"{name}: RMS force {rms:.3g} is too large for eV/Å (limit "
                         f"{cfg.max_rms_force_eV_A:g}); forces in kcal/mol/Å are 23× eV/Å — convert to eV/Å")
    per_atom = energies / n
    jump = np.abs(per_atom - np.median(per_atom))
    if jump.max() > cfg.max_energy_jump_eV_atom:
        k = int(np.flatnonzero(usable)[np.argmax(jump)])
        raise ValueError(f"{name}: the energy of frame {k} is {jump.max():.3g} eV/atom away from the "
                         "file's median: energies not in eV (kcal/mol, kJ/mol?) or mixed references "
                         "inside one file")
    idx = np.flatnonzero(usable)
    pairs = idx[np.flatnonzero(np.diff(idx) == 1)]
    if time_series and len(pairs) >= 10:
        p, f, e = traj.positions, traj.forces, traj.energies
        slope, corr = work_slope(p[pairs], p[pairs + 1], f[pairs], f[pairs + 1], e[pairs], e[pairs + 1])
        if corr > 0.9 and not 0.5 < slope < 2.0:
            raise ValueError(
                f"{name}: energy changes between consecutive frames are {slope:.3g}× the work of "
                "the forces (should be 1): energies and forces are in different units "
                "(e.g. kcal/mol vs eV/Å: 23) or the energy is not the one the forces derive from")


def _check_across_runs(cfg: DataConfig, stats: list[dict]) -> None:
    """Files of one data set must agree: force scale and energy per atom after the E0s.

    The odd file is the one furthest from the median over all files; with two files, both are named.
    """
    if len(stats) < 2:
        return
    names = [s["name"] for s in stats]
    log_rms = np.log([s["rms_force"] for s in stats])
    dev = np.abs(log_rms - np.median(log_rms))
    if dev.max() > np.log(5.0) or (len(stats) == 2 and np.ptp(log_rms) > np.log(5.0)):
        which = _odd(names, dev)
        raise ValueError(f"{which}: RMS forces differ more than 5× between the files "
                         f"({dict(zip(names, np.round(np.exp(log_rms), 3).tolist()))} eV/Å): "
                         "check that every file is in eV/Å (kcal/mol/Å is 23× larger)")
    res = np.array([s["residual"] for s in stats])
    dev = np.abs(res - np.median(res))
    if dev.max() > cfg.max_e0_residual_eV_atom or (len(stats) == 2 and np.ptp(res) > cfg.max_e0_residual_eV_atom):
        raise ValueError(
            f"{_odd(names, dev)}: energy per atom after subtracting the E0s differs by more than "
            f"{cfg.max_e0_residual_eV_atom:g} eV from the other files ({dict(zip(names, np.round(res, 3).tolist()))} eV): "
            "different energy units, a different reference (functional, pseudopotentials, code), or "
            "E0s that do not fit this file's species")


def _odd(names, dev) -> str:
    if len(names) == 2:
        return f"{names[0]} and {names[1]} disagree"
    return names[int(np.argmax(dev))]


def _resolve_e0s(cfg: DataConfig, runs_data, zs) -> tuple[dict, str]:
    if isinstance(cfg.e0s, dict):
        given = {}
        for key, value in cfg.e0s.items():
            z = int(key) if str(key).isdigit() else atomic_numbers.get(str(key))
            if z is None:
                raise ValueError(f"data.e0s: unknown element {key!r}")
            given[z] = float(value)
        for z in zs:
            if z not in given:
                files = [", ".join(r["files"]) for r in runs_data if z in r["zs"]]
                raise ValueError(f"data.e0s has no energy for {chemical_symbols[z]}, which occurs in "
                                 f"{'; '.join(files)}")
        return {z: given[z] for z in zs}, "user"
    counts, energies = [], []
    for r in runs_data:
        sel = r["indices"]["train"]
        counts.append(np.tile([r["counts"].get(z, 0) for z in zs], (len(sel), 1)))
        energies.append(r["energies"][sel])
    e0, rank = fit_e0s(np.concatenate(counts), np.concatenate(energies))
    if rank < len(zs):
        warnings.warn(f"E0 fit: the training frames span only {rank} independent composition(s) for "
                      f"{len(zs)} elements; using the minimum-norm least-squares E0s (energies of these "
                      "compositions are unaffected; give isolated-atom energies in data.e0s to transfer "
                      "to other compositions)", stacklevel=3)
    return {z: float(e) for z, e in zip(zs, e0)}, "least-squares fit on element counts (train split)"


def build_dataset(cfg: DataConfig) -> Dataset:
    """Read, check and split the runs of ``cfg.files``; see the module docstring."""
    from phonion.md.io import read_trajectory

    runs_data = []
    train_only = set(expand_runs(cfg.train_only_files)) if cfg.train_only_files else set()
    for files in expand_runs(cfg.files) + sorted(train_only):
        name = " + ".join(files)
        traj = read_trajectory(list(files), fmt=cfg.format, timestep_fs=cfg.timestep_fs, every=int(cfg.every))
        has_f, has_e = traj.frames_with("forces"), traj.frames_with("energies")
        usable = has_f & has_e
        if not usable.all() and not cfg.skip_incomplete_frames:
            missing = np.flatnonzero(~usable)
            what = "forces" if (~has_f).any() else "energy"
            raise ValueError(f"{name}: {len(missing)} of {traj.n_frames} frames have no {what} "
                             f"(first: frame {missing[0]}); e.g. an OUTCAR written with NWRITE=0 or an "
                             "XDATCAR (positions only). Set data.skip_incomplete_frames: true to drop them")
        if not usable.any():
            raise ValueError(f"{name}: no frame has both energy and forces; nothing to train on")
        _check_run(cfg, traj, name, usable, time_series=files not in train_only)
        if files in train_only:
            idx = {"train": np.flatnonzero(usable), "val": np.zeros(0, int), "test": np.zeros(0, int)}
        else:
            idx = split_indices(traj.n_frames, cfg.fractions, int(cfg.n_blocks), int(cfg.gap_frames))
            idx = {s: v[usable[v]] for s, v in idx.items()}
        for s, frac in zip(SPLITS, cfg.fractions):
            if frac > 0 and len(idx[s]) == 0 and files not in train_only:
                raise ValueError(f"{name}: the {s} block is empty ({traj.n_frames} frames, fractions "
                                 f"{cfg.fractions}, gap {cfg.gap_frames}, every {cfg.every}); use more "
                                 "frames, a smaller gap or other fractions")
        counts = {atomic_numbers[s]: c for s, c in traj.species_counts.items()}
        stress_ok = cfg.use_stress and bool(traj.frames_with("stress")[usable].all())
        runs_data.append({"name": name, "files": files, "traj": traj, "indices": idx, "counts": counts,
                          "zs": set(counts), "energies": traj.energies, "stress": stress_ok,
                          "temperature_K": run_temperature(traj, files, cfg.temperatures_K), "usable": usable,
                          "weight": float(cfg.train_only_weight) if files in train_only else 1.0})
    zs = tuple(sorted(set().union(*(r["zs"] for r in runs_data))))
    e0s, source = _resolve_e0s(cfg, runs_data, zs)
    stats = []
    for r in runs_data:
        if r["files"] in train_only:  # far-from-equilibrium frames by design (active learning)
            continue
        u, n = r["usable"], r["traj"].n_atoms
        ref = sum(c * e0s[z] for z, c in r["counts"].items())
        stats.append({"name": r["name"], "rms_force": float(np.sqrt(np.mean(r["traj"].forces[u] ** 2))),
                      "residual": float(np.median((r["energies"][u] - ref) / n))})
    _check_across_runs(cfg, stats)
    splits = {s: [] for s in SPLITS}
    runs = []
    for k, r in enumerate(runs_data):
        for s in SPLITS:
            splits[s].extend(_atoms(r, i, k) for i in r["indices"][s])
        runs.append(RunInfo(r["name"], tuple(r["files"]), r["temperature_K"], r["traj"].n_frames,
                            r["indices"], tuple(r["traj"].species_counts),
                            r["traj"].metadata.get("reference_kind")))
    return Dataset(splits["train"], splits["val"], splits["test"], tuple(runs), zs, e0s, source,
                   any(r["stress"] for r in runs_data))


def _atoms(r: dict, i: int, run: int) -> Atoms:
    traj = r["traj"]
    atoms = traj.to_atoms(int(i))
    atoms.info[KEYS["energy"]] = float(traj.energies[i])
    atoms.arrays[KEYS["forces"]] = np.array(traj.forces[i], dtype=float)
    if r["stress"]:
        s = traj.stress[i]
        atoms.info[KEYS["stress"]] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    if r.get("weight", 1.0) != 1.0:
        atoms.info["config_weight"] = float(r["weight"])  # read by mace's config_from_atoms
    atoms.info.update(run=run, frame=int(i), source=r["name"],
                      temperature_K=np.nan if r["temperature_K"] is None else r["temperature_K"])
    return atoms
