"""Lazy, windowed reading of H5MD 1.1 files (phonion's own and those of other MD tools).

``H5MDReader(path)`` looks at the layout once and then reads only the frames and atoms asked
for (h5py hyperslabs), so a 10⁶-frame run can be analysed in bounded memory with
``iter_chunks``. ``phonion.md.io.h5md`` re-exports everything here; see it for the on-disk layout.

Files from other tools (LAMMPS ``dump h5md``, MDAnalysis, pyh5md, ...) are read too: species
as atomic numbers or strings, box edges fixed or time-dependent, rectangular or triclinic,
``step``/``time`` as arrays or as H5MD 1.1 fixed increments (scalar + ``offset``), units
converted to Å, fs, eV from their ``unit`` attributes, and wrapped positions unwrapped (with
the ``image`` element if present, else frame to frame by the minimum image).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from phonion.md.io.h5md_layout import (  # noqa: F401  (PARTICLE_FIELDS, UNITS, normalise_unit re-exported)
    OBSERVABLES, PARTICLE_FIELDS, UNITS, H5MDLayout, _atom_selection, normalise_unit, unit_factor,
)
from phonion.md.io.checks import check_values
from phonion.md.trajectory import Trajectory, TrajectoryError
from phonion.md.velocities import unwrap_fractional

#: HDF5 chunk cache per dataset (bytes): holds a few chunks when reads straddle chunk edges
CHUNK_CACHE_BYTES = 16 * 2**20


class H5MDReader(H5MDLayout):
    """Lazy reader of one particle group of an H5MD file.

    Parameters
    ----------
    path : path of the ``.h5`` file
    particles_group : name under ``/particles``; default ``all`` if present, else the only one.

    Attributes
    ----------
    n_frames, n_atoms : int
    symbols : tuple of str, length N
    masses : ndarray, shape=(N,), amu
    timestep_fs : float or None, the MD integrator step
    stride : int, integrator steps between stored frames
    """

    def __init__(self, path, particles_group: str | None = None):
        self.path = Path(path)
        self._anchors: dict[int, np.ndarray] = {}
        with self._open() as f:
            try:
                self._scan(f, particles_group)
            except OSError as exc:  # a damaged chunk of step/time/species/...
                raise _damaged(self.path, "its layout datasets", exc) from None

    # ---- layout ----------------------------------------------------------------------
    def _open(self) -> h5py.File:
        try:
            # SWMR read: also opens a file still being written, or left by a killed SWMR writer
            return h5py.File(self.path, "r", swmr=True, rdcc_nbytes=CHUNK_CACHE_BYTES)
        except FileNotFoundError:
            raise TrajectoryError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise TrajectoryError(f"{self.path}: not a readable HDF5 file ({exc})") from None

    # ---- reading ---------------------------------------------------------------------
    def _frames(self, frames) -> tuple[int, int, int]:
        n = self.n_frames
        if frames is None:
            return 0, n, 1
        if isinstance(frames, (int, np.integer)):
            i = int(frames) + n if frames < 0 else int(frames)
            if not 0 <= i < n:
                raise TrajectoryError(f"{self.path}: frame {frames} out of range ({n} frames)")
            return i, i + 1, 1
        if isinstance(frames, slice):
            start, stop, step = frames.indices(n)
            if step < 1:
                raise TrajectoryError(f"{self.path}: frame slices must run forward (step > 0)")
            return start, max(start, stop), step
        idx = np.asarray(frames, dtype=int).reshape(-1)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise TrajectoryError(f"{self.path}: frame index out of range ({n} frames)")
        steps = set(np.diff(idx).tolist())
        if len(steps) > 1 or (steps and min(steps) < 1):
            raise TrajectoryError(f"{self.path}: frame indices must be increasing and evenly spaced "
                                  "(a trajectory has one frame interval); read a slice")
        if idx.size == 0:
            return 0, 0, 1
        step = steps.pop() if steps else 1
        return int(idx[0]), int(idx[-1]) + 1, step

    def _get(self, f, name: str, fr, asel=slice(None), atoms_axis=False) -> np.ndarray | None:
        """Rows of element ``name`` for frames ``fr`` = (start, stop, step), atoms ``asel``, as float."""
        e = self._el.get(name)
        if e is None:
            return None
        try:
            return self._get_raw(f, e, fr, asel, atoms_axis)
        except OSError as exc:  # h5py: "filter returned failure", "can't read data", ...
            raise _damaged(self.path, e.path, exc) from None

    def _get_raw(self, f, e, fr, asel, atoms_axis) -> np.ndarray:
        ds = f[e.path]
        nf = len(range(*fr))
        if e.fixed:
            v = np.asarray(ds[()], dtype=float)
            v = v[asel] if atoms_axis else v
            out = np.broadcast_to(v, (nf,) + v.shape).copy()
        elif e.rows is None:
            out = np.asarray(ds[(slice(*fr), asel) if atoms_axis else slice(*fr)], dtype=float)
        else:
            rows = e.rows[slice(*fr)]
            ok = rows >= 0
            uniq = np.unique(rows[ok])
            data = np.asarray(ds[uniq] if uniq.size else np.empty((0,) + ds.shape[1:]), dtype=float)
            data = data[:, asel] if atoms_axis else data
            out = np.full((nf,) + data.shape[1:], np.nan)
            out[ok] = data[np.searchsorted(uniq, rows[ok])]
        if e.kind is not None:
            out *= unit_factor(e.kind, e.unit, f"{self.path}:{e.path}")
        return out

    def _cells(self, f, fr) -> np.ndarray:
        nf = len(range(*fr))
        c = self._get(f, "cells", fr)
        if c is None:
            return np.zeros((nf, 3, 3))
        if c.shape[1:] == (3,):
            c = c[:, :, None] * np.eye(3)
        if c.shape[1:] != (3, 3):
            raise TrajectoryError(f"{self.path}: box edges have shape {c.shape[1:]}, expected (3,) or (3, 3)")
        return c

    def _unwrap_block(self, raw, cells, prev):
        """Continue unwrapping (fractional) from ``prev`` (n, 3) or from the first frame if None."""
        frac = np.einsum("fnk,fkj->fnj", raw, np.linalg.inv(cells))
        seq = frac if prev is None else np.concatenate([prev[None], frac])
        cont = unwrap_fractional(seq, str(self.path))
        cont = cont if prev is None else cont[1:]
        fixed = ~np.asarray(self.pbc)
        cont[..., fixed] = frac[..., fixed]
        return cont

    def _block_frames(self) -> int:
        return max(1, 2**21 // max(1, 3 * self.n_atoms))

    def _anchor(self, f, k: int) -> np.ndarray:
        """Unwrapped fractional positions of all atoms at frame ``k`` (scans from the nearest cached frame)."""
        if k in self._anchors:
            return self._anchors[k]
        done = [c for c in self._anchors if c < k]
        c = max(done) if done else -1
        prev = self._anchors[c] if done else None
        for b0 in range(c + 1, k + 1, self._block_frames()):
            fr = (b0, min(b0 + self._block_frames(), k + 1), 1)
            raw = self._get(f, "positions", fr, slice(None), True)
            prev = self._unwrap_block(raw, self._cells(f, fr), prev)[-1]
        if len(self._anchors) > 64:
            self._anchors.pop(next(iter(self._anchors)))
        self._anchors[k] = prev
        return prev

    def _positions(self, f, fr, asel, prev):
        """Unwrapped Cartesian positions (Å) and the unwrapped fractional state after the last frame."""
        start, stop, step = fr
        if stop <= start or self._unwrapped or not any(self.pbc):
            return self._get(f, "positions", fr, asel, True), None
        if "image" in self._el:
            img = self._get(f, "image", fr, asel, True)
            pos = self._get(f, "positions", fr, asel, True)
            return pos + np.einsum("fni,fij->fnj", img, self._cells(f, fr)), None
        # wrapped, no images: unwrap frame to frame over every frame of [start, last], in blocks
        if prev is None and start > 0:
            prev = self._anchor(f, start - 1)[asel]
        frames = np.arange(start, stop, step)
        out = None
        for b0 in range(start, frames[-1] + 1, self._block_frames()):
            blk = (b0, min(b0 + self._block_frames(), frames[-1] + 1), 1)
            cells = self._cells(f, blk)
            cont = self._unwrap_block(self._get(f, "positions", blk, asel, True), cells, prev)
            prev = cont[-1]
            if out is None:
                out = np.empty((frames.size,) + cont.shape[1:])
            keep = (np.arange(*blk) - start) % step == 0
            j = (np.arange(*blk)[keep] - start) // step
            out[j] = np.einsum("fnj,fjk->fnk", cont[keep], cells[keep])
        return out, prev

    def _read(self, f, fr, asel, inv, prev=None):
        pos, state = self._positions(f, fr, asel, prev)
        arrays = {"positions": pos, "cells": self._cells(f, fr)}
        for name in ("velocities", "forces"):
            arrays[name] = self._get(f, name, fr, asel, True)
        for name in OBSERVABLES:
            arrays[name] = self._get(f, name, fr)
        if inv is not None:
            for name in ("positions", "velocities", "forces"):
                if arrays[name] is not None:
                    arrays[name] = arrays[name][:, inv]
        pe = self._el["positions"]
        times = None if pe.times is None or pe.fixed else pe.times[slice(*fr)]
        n_sel = pos.shape[1]
        order = np.arange(self.n_atoms)[asel]
        order = order if inv is None else order[inv]
        meta = dict(self.metadata)
        if fr != (0, self.n_frames, 1) or n_sel != self.n_atoms:
            meta["h5md_window"] = {"first_frame": fr[0], "frame_step": fr[2], "n_atoms_read": n_sel}
        traj = Trajectory(symbols=tuple(self.symbols[i] for i in order), masses=self.masses[order],
                          timestep_fs=self.timestep_fs, stride=self.stride * fr[2], times_fs=times,
                          pbc=self.pbc, metadata=meta, **arrays)
        check_values(traj, str(self.path), fr[0], fr[2], order)
        return traj, state

    def read(self, frames=None, atoms=None) -> Trajectory:
        """Read a window: only these frames and atoms are read from disk.

        Parameters
        ----------
        frames : None (all), int, slice (step > 0), or increasing evenly spaced index array
        atoms : None (all) or index array (any order, 0-based); the result keeps that order

        Returns
        -------
        Trajectory with F_window frames and N_window atoms (stride multiplied by the frame step).
        """
        fr = self._frames(frames)
        asel, inv = _atom_selection(atoms, self.n_atoms, str(self.path))
        with self._open() as f:
            return self._read(f, fr, asel, inv)[0]

    def iter_chunks(self, chunk_frames: int = 1024, atoms=None):
        """Yield consecutive windows of ``chunk_frames`` frames (the last may be shorter).

        Memory stays bounded by one window; unwrapped positions continue across windows.
        """
        if chunk_frames < 1:
            raise TrajectoryError(f"{self.path}: chunk_frames must be ≥ 1, got {chunk_frames}")
        asel, inv = _atom_selection(atoms, self.n_atoms, str(self.path))
        prev = None
        with self._open() as f:
            for start in range(0, self.n_frames, chunk_frames):
                fr = (start, min(start + chunk_frames, self.n_frames), 1)
                traj, prev = self._read(f, fr, asel, inv, prev)
                yield traj

    def __repr__(self) -> str:
        return (f"H5MDReader({str(self.path)!r}, group={self.particles_group!r}, "
                f"{self.n_frames} frames x {self.n_atoms} atoms)")


def _damaged(path, dataset: str, exc: OSError) -> TrajectoryError:
    return TrajectoryError(f"{path}: the file is damaged (HDF5 could not read or decompress {dataset}: "
                           f"{exc}); re-convert it or restore it from a copy")


def read_h5md(path, particles_group: str | None = None) -> Trajectory:
    """Read a whole H5MD file into a Trajectory (Å, fs, eV; positions unwrapped)."""
    return H5MDReader(path, particles_group).read()
