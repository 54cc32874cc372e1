"""The one in-memory trajectory type that every reader returns and every analysis takes.

All arrays are numpy, units are named: Å, fs, eV, K, amu. Positions are *unwrapped*
Cartesian coordinates (an atom that leaves the cell keeps going), so displacements are
plain differences. Frames that lack a quantity (an OUTCAR written with NWRITE=0 has
forces only for some steps) hold NaN there; ``frames_with(...)`` tells which are real.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers


class TrajectoryError(ValueError):
    """Bad or inconsistent trajectory input. The message names the file and the problem."""


def masses_for(symbols, source: str = "") -> np.ndarray:
    """Standard atomic masses (amu) for element symbols; unknown symbols are an error."""
    try:
        return np.array([atomic_masses[atomic_numbers[s]] for s in symbols], dtype=float)
    except KeyError as exc:
        where = f"{source}: " if source else ""
        raise TrajectoryError(f"{where}unknown element symbol {exc.args[0]!r}") from None


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A molecular-dynamics trajectory.

    Attributes
    ----------
    symbols : tuple[str, ...]
        Element symbol of every atom, length N, in file order.
    positions : ndarray, shape=(F, N, 3), dtype=float64, Å
        Unwrapped Cartesian positions.
    cells : ndarray, shape=(F, 3, 3), dtype=float64, Å
        Cell vectors as rows, per frame.
    timestep_fs : float or None
        The MD integrator timestep (VASP POTIM), fs; None when the file does not say and the
        user did not give it (never guessed).
    stride : int
        Integrator steps between consecutive stored frames (VASP: from the configuration
        numbers of XDATCAR, NBLOCK, or subsampling). The frame interval is
        ``frame_interval_fs = timestep_fs * stride``.
    times_fs : ndarray, shape=(F,), dtype=float64, fs, or None
    velocities : ndarray, shape=(F, N, 3), Å/fs, or None
    forces : ndarray, shape=(F, N, 3), eV/Å, or None (NaN rows: frame without forces)
    energies : ndarray, shape=(F,), eV, or None (potential/free energy; NaN where missing)
    stress : ndarray, shape=(F, 3, 3), eV/Å³ (ASE sign convention), or None
    temperatures_K : ndarray, shape=(F,), K, or None
    masses : ndarray, shape=(N,), amu (standard masses unless the file gives others)
    pbc : tuple of 3 bool
    metadata : dict
        ``source_files`` (list of str), ``format``, ``timestep_fs_source`` ('file' | 'user'),
        ``stride_source`` ('file' | 'user' | 'default'), ``velocities_source`` ('file' | 'central-difference'), plus reader-specific entries.
    force_uncertainty_max_eV_A : ndarray, shape=(F,), eV/Å, or None
        Committee MD (``phonion.md.driver``): the largest per-atom force standard deviation over the
        committee members at the latest evaluation up to each frame (NaN: none yet).
    """

    symbols: tuple[str, ...]
    positions: np.ndarray
    cells: np.ndarray
    timestep_fs: float | None = None
    stride: int = 1
    times_fs: np.ndarray | None = None
    velocities: np.ndarray | None = None
    forces: np.ndarray | None = None
    energies: np.ndarray | None = None
    stress: np.ndarray | None = None
    temperatures_K: np.ndarray | None = None
    masses: np.ndarray | None = None
    pbc: tuple[bool, bool, bool] = (True, True, True)
    metadata: dict[str, Any] = field(default_factory=dict)
    force_uncertainty_max_eV_A: np.ndarray | None = None

    def __post_init__(self):
        src = ", ".join(self.metadata.get("source_files", [])) or "trajectory"
        pos = np.asarray(self.positions, dtype=float)
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise TrajectoryError(f"{src}: positions must have shape (frames, atoms, 3), got {pos.shape}")
        n_frames, n_atoms, _ = pos.shape
        if len(self.symbols) != n_atoms:
            raise TrajectoryError(
                f"{src}: {len(self.symbols)} species labels for {n_atoms} atoms (species count mismatch)"
            )
        cells = np.asarray(self.cells, dtype=float)
        if cells.shape == (3, 3):
            cells = np.broadcast_to(cells, (n_frames, 3, 3)).copy()
        if cells.shape != (n_frames, 3, 3):
            raise TrajectoryError(f"{src}: cells must have shape ({n_frames}, 3, 3), got {cells.shape}")
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "cells", cells)
        if self.masses is None:
            object.__setattr__(self, "masses", masses_for(self.symbols, src))
        shapes = {
            "velocities": (n_frames, n_atoms, 3),
            "forces": (n_frames, n_atoms, 3),
            "energies": (n_frames,),
            "stress": (n_frames, 3, 3),
            "temperatures_K": (n_frames,),
            "force_uncertainty_max_eV_A": (n_frames,),
            "times_fs": (n_frames,),
            "masses": (n_atoms,),
        }
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=float)
            if arr.shape != shape:
                raise TrajectoryError(f"{src}: {name} must have shape {shape}, got {arr.shape}")
            object.__setattr__(self, name, arr)
        if int(self.stride) != self.stride or self.stride < 1:
            raise TrajectoryError(f"{src}: stride must be a positive integer, got {self.stride}")
        object.__setattr__(self, "stride", int(self.stride))
        if self.timestep_fs is not None:
            if not np.isfinite(self.timestep_fs) or self.timestep_fs <= 0:
                raise TrajectoryError(f"{src}: timestep must be > 0 fs, got {self.timestep_fs}")
            object.__setattr__(self, "timestep_fs", float(self.timestep_fs))
            if self.times_fs is None:
                object.__setattr__(self, "times_fs", np.arange(n_frames) * self.frame_interval_fs)

    @property
    def frame_interval_fs(self) -> float | None:
        """Time between consecutive stored frames, ``timestep_fs * stride``, fs (None if unknown)."""
        return None if self.timestep_fs is None else self.timestep_fs * self.stride

    # ---- sizes and facts -------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[1]

    @property
    def species_counts(self) -> dict[str, int]:
        """Element symbol → number of atoms, in order of first appearance."""
        return dict(Counter(self.symbols))

    def indices_of(self, symbol: str) -> np.ndarray:
        """0-based indices of the atoms of one element, shape=(n,), dtype=int."""
        return np.flatnonzero(np.asarray(self.symbols) == symbol)

    def frames_with(self, quantity: str) -> np.ndarray:
        """Boolean mask, shape=(F,), of frames where ``quantity`` holds real (non-NaN) data."""
        value = getattr(self, quantity)
        if value is None:
            return np.zeros(self.n_frames, dtype=bool)
        flat = value.reshape(self.n_frames, -1)
        return ~np.isnan(flat).any(axis=1)

    @property
    def volumes_A3(self) -> np.ndarray:
        """Cell volume per frame, shape=(F,), Å³."""
        return np.abs(np.linalg.det(self.cells))

    # ---- derived trajectories ----------------------------------------------------------
    def replace(self, **changes) -> Trajectory:
        """A copy with some fields changed (the dataclass is frozen)."""
        if "metadata" not in changes:
            changes["metadata"] = dict(self.metadata)
        return dataclasses.replace(self, **changes)

    def select_frames(self, index) -> Trajectory:
        """Frames picked by a slice or index array; the frame interval follows a slice step."""
        idx = np.arange(self.n_frames)[index]
        step = index.step if isinstance(index, slice) and index.step else 1
        out = {}
        for name in ("positions", "cells", "times_fs", "velocities", "forces", "energies", "stress",
                     "temperatures_K", "force_uncertainty_max_eV_A"):
            value = getattr(self, name)
            out[name] = None if value is None else value[idx]
        if not isinstance(index, slice) and len(idx) > 1 and len(set(np.diff(idx))) > 1:
            raise TrajectoryError("select_frames needs evenly spaced frames (a slice)")
        if not isinstance(index, slice) and len(idx) > 1:
            step = int(idx[1] - idx[0])
        return dataclasses.replace(self, stride=self.stride * step, metadata=dict(self.metadata), **out)

    def select_atoms(self, indices) -> Trajectory:
        """Only the given atoms (0-based), in the given order."""
        idx = np.asarray(indices, dtype=int)
        out = {}
        for name in ("positions", "velocities", "forces"):
            value = getattr(self, name)
            out[name] = None if value is None else value[:, idx]
        return dataclasses.replace(
            self, symbols=tuple(self.symbols[i] for i in idx), masses=self.masses[idx],
            metadata=dict(self.metadata), **out)

    def to_atoms(self, frame: int = 0) -> Atoms:
        """One frame as ASE Atoms (positions wrapped into the cell), with velocities if known.

        ASE velocities are in Å per ASE time unit; conversion happens here and only here.
        """
        from ase import units

        atoms = Atoms(self.symbols, positions=self.positions[frame], cell=self.cells[frame],
                      pbc=self.pbc, masses=self.masses)
        atoms.wrap()
        if self.velocities is not None and not np.isnan(self.velocities[frame]).any():
            atoms.set_velocities(self.velocities[frame] / units.fs)  # Å/fs → Å/(ASE time)
        return atoms

    def summary(self) -> dict[str, Any]:
        """Facts a user checks first (the ``phonion inspect`` contract)."""
        return {
            "n_atoms": self.n_atoms,
            "n_frames": self.n_frames,
            "species": self.species_counts,
            "species_order": list(dict.fromkeys(self.symbols)),
            "timestep_fs": self.timestep_fs,
            "timestep_fs_source": self.metadata.get("timestep_fs_source"),
            "stride": self.stride,
            "stride_source": self.metadata.get("stride_source"),
            "frame_interval_fs": self.frame_interval_fs,
            "duration_ps": (None if self.timestep_fs is None
                            else (self.n_frames - 1) * self.frame_interval_fs / 1000.0),
            "has_energy": bool(self.frames_with("energies").any()),
            "has_forces": bool(self.frames_with("forces").any()),
            "has_stress": bool(self.frames_with("stress").any()),
            "has_velocities": bool(self.frames_with("velocities").any()),
            "n_frames_with_energy": int(self.frames_with("energies").sum()),
            "n_frames_with_forces": int(self.frames_with("forces").sum()),
            "n_frames_with_stress": int(self.frames_with("stress").sum()),
            "velocities_source": self.metadata.get("velocities_source"),
            "n_ionic_steps_in_file": self.metadata.get("n_ionic_steps"),
            "variable_cell": bool(np.ptp(self.cells, axis=0).max() > 1e-8) if self.n_frames else False,
            "volume_A3": float(self.volumes_A3.mean()) if self.n_frames else None,
            "source_files": list(self.metadata.get("source_files", [])),
            "format": self.metadata.get("format"),
            "reference_kind": self.metadata.get("reference_kind"),
        }


def concatenate(parts: list[Trajectory], check: bool | None = None) -> Trajectory:
    """Join consecutive pieces of one run (e.g. VASP restarts) into one trajectory.

    Species must agree; each later piece is shifted by whole cell vectors so that unwrapped
    positions continue smoothly across the join (restart files start from wrapped positions).
    ``check``: refuse pieces given twice, overlapping, out of order or with a gap between them
    (``phonion.md.io.checks.check_pieces``); None (default) checks pieces read from files (those
    whose metadata name their ``source_files``), not trajectories built in code.
    """
    if not parts:
        raise TrajectoryError("no trajectory to concatenate")
    first = parts[0]
    files = [f for p in parts for f in p.metadata.get("source_files", [])]
    for p in parts[1:]:
        if p.symbols != first.symbols:
            raise TrajectoryError(
                f"{', '.join(p.metadata.get('source_files', []))}: species order differs from "
                f"{', '.join(first.metadata.get('source_files', []))}; these are not pieces of one run")
    dts = {(p.timestep_fs, p.stride) for p in parts}
    if len(dts) > 1:
        raise TrajectoryError(f"{', '.join(files)}: pieces have different (timestep_fs, stride) {sorted(map(str, dts))}")
    if check is None:
        check = all(p.metadata.get("source_files") for p in parts)
    if check and len(parts) > 1:
        from phonion.md.io.checks import check_pieces

        names = [", ".join(p.metadata.get("source_files", [])) or f"piece {k + 1}" for k, p in enumerate(parts)]
        check_pieces(parts, names)
    pos = [parts[0].positions]
    for p in parts[1:]:
        prev_last = pos[-1][-1]
        cell = p.cells[0]
        frac = np.linalg.solve(cell.T, (p.positions[0] - prev_last).T).T
        shift = -np.round(frac) @ cell  # rounded like unwrap_fractional (not core.geometry): whole cell vectors
        pos.append(p.positions + shift)
    out: dict[str, Any] = {"positions": np.concatenate(pos), "cells": np.concatenate([p.cells for p in parts])}
    for name in ("velocities", "forces", "energies", "stress", "temperatures_K", "force_uncertainty_max_eV_A"):
        values = [getattr(p, name) for p in parts]
        if all(v is None for v in values):
            out[name] = None
        else:
            out[name] = np.concatenate([
                v if v is not None else np.full((p.n_frames,) + _tail(name, p), np.nan)
                for v, p in zip(values, parts)])
    meta = dict(first.metadata)
    meta["source_files"] = files
    return Trajectory(symbols=first.symbols, masses=first.masses, pbc=first.pbc,
                      timestep_fs=first.timestep_fs, stride=first.stride, metadata=meta, **out)


def _tail(name: str, p: Trajectory) -> tuple[int, ...]:
    return {"velocities": (p.n_atoms, 3), "forces": (p.n_atoms, 3), "stress": (3, 3)}.get(name, ())
