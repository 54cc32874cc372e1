"""Streamed writing of phonion's H5MD files: :class:`H5MDWriter` (layout: :mod:`phonion.md.io.h5md`).

``phonion.md.io.h5md`` re-exports everything here.
"""

from __future__ import annotations

import functools
import getpass
import json
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
from ase.data import atomic_numbers

from phonion.core.jsonutil import default as json_default
from phonion.core.paths import require_free_space
from phonion.md.io import TruncatedFileWarning
from phonion.md.io.h5md_flags import clear_consistency_flags
from phonion.md.io.h5md_read import CHUNK_CACHE_BYTES, OBSERVABLES, PARTICLE_FIELDS
from phonion.md.trajectory import TrajectoryError, masses_for

#: element name -> (append keyword, per-frame shape (``None`` = (N, 3)), unit, fill value)
FIELDS = {"position": ("positions", None, "Angstrom"), "velocity": ("velocities", None, "Angstrom fs-1"),
          "force": ("forces", None, "eV Angstrom-1")}
OBSERVABLE_SPECS = {"potential_energy": ("energies", (), "eV"), "stress": ("stress", (3, 3), "eV Angstrom-3"),
                    "temperature": ("temperatures_K", (), "K"),
                    "force_uncertainty_max": ("force_uncertainty_max_eV_A", (), "eV Angstrom-1")}
#: largest chunk of one dataset, bytes (a chunk spans chunk_frames frames of all atoms)
MAX_CHUNK_BYTES = 4 * 2**20


def _fixed(text: str) -> np.bytes_:
    return np.bytes_(text.encode("ascii", "replace"))


class H5MDWriter:
    """Stream frames into an H5MD file, one frame or a block at a time.

    Parameters
    ----------
    path : output file (created, or with ``append=True`` continued if it exists)
    symbols : sequence of str, length N, element symbols
    masses : ndarray, shape=(N,), amu, or None for standard masses
    timestep_fs : MD integrator timestep, fs, or None (then no ``time`` is stored unless
        ``store_time``)
    stride : integrator steps between stored frames (the default step increment)
    metadata : dict, stored as JSON in ``/parameters/phonion``
    chunk_frames : frames per HDF5 chunk (reduced so one chunk stays ≤ 4 MiB)
    compression : "gzip", "lzf" or None
    fields : per-atom elements, from "position" (required), "velocity", "force"
    observables : from "potential_energy", "stress", "temperature", "force_uncertainty_max"
    append : continue an existing file written by this class (symbols must match)
    pbc : periodic boundaries per cell vector (written as box ``boundary``)
    store_time : write ``time`` datasets even without a timestep (times then given to append)
    buffer_frames : frames collected in memory before they are written and the file flushed
        (default: one chunk). Flushing re-compresses the partial chunk, ~10 ms for 400 atoms,
        so flushing every MD step would dominate; 1 writes through on every ``append``.
    flush_interval_s : also write when this long has passed since the last write, so a killed
        run loses at most ``buffer_frames`` frames or this many seconds of frames.
    swmr : write in HDF5 single-writer/multiple-reader mode (file format of HDF5 ≥ 1.10): the
        file stays consistent if the writer is killed, and can be read while it is written.

    Crash safety: each write grows all datasets together (step, time, then values, the last
    a NaN-filled observable) and flushes; in SWMR mode HDF5 orders its metadata writes so a
    killed run leaves a file readable up to its last flush (without SWMR a kill during a
    flush can leave a chunk unreadable). The reader takes the shortest dataset and warns if
    lengths differ; ``append=True`` clears the flags a killed SWMR writer leaves. Call
    ``flush()`` before writing an MD checkpoint, then ``append=True`` + ``truncate(n)`` resumes.
    """

    def __init__(self, path, symbols, masses=None, *, timestep_fs=None, stride=1, metadata=None,
                 chunk_frames=64, compression="gzip", fields=("position", "velocity", "force"),
                 observables=("potential_energy", "stress", "temperature"), append=False,
                 pbc=(True, True, True), store_time=None, buffer_frames=None, flush_interval_s=60.0, swmr=True):
        self.path = Path(path)
        self._buffer: list[list[np.ndarray]] = []
        self._flush_interval_s = float(flush_interval_s)
        self._last_write = time.monotonic()
        self.symbols = tuple(str(s) for s in symbols)
        self.masses = (masses_for(self.symbols, str(self.path)) if masses is None
                       else np.asarray(masses, dtype=float))
        if self.masses.shape != (len(self.symbols),):
            raise TrajectoryError(f"{self.path}: {self.masses.shape[0]} masses for {len(self.symbols)} atoms")
        self.timestep_fs = None if timestep_fs is None else float(timestep_fs)
        self.stride = int(stride)
        if append and self.path.exists():
            version = clear_consistency_flags(self.path)  # flags left by a killed SWMR writer
            swmr = swmr and version >= 3
            try:
                self._file = h5py.File(self.path, "r+", rdcc_nbytes=CHUNK_CACHE_BYTES,
                                       **({"libver": ("v110", "v110")} if swmr else {}))
            except OSError as exc:
                raise TrajectoryError(f"{self.path}: cannot open for appending ({exc})") from None
            try:
                self._open_existing(timestep_fs)
                chunks = self._file["particles/all/position/value"].chunks
                self._buffer_frames = chunks[0] if buffer_frames is None else max(1, int(buffer_frames))
                if swmr:
                    self._file.swmr_mode = True
            except BaseException:
                self._file.close()
                raise
            return
        unknown = (set(fields) - set(FIELDS)) | (set(observables) - set(OBSERVABLE_SPECS))
        if unknown or "position" not in fields:
            raise TrajectoryError(f"{self.path}: fields must include 'position' and come from "
                                  f"{list(FIELDS)} / {list(OBSERVABLE_SPECS)}; got unknown {sorted(unknown)}")
        frames = max(1, min(int(chunk_frames), MAX_CHUNK_BYTES // (24 * max(len(self.symbols), 1))))
        self._buffer_frames = frames if buffer_frames is None else max(1, int(buffer_frames))
        self._file = h5py.File(self.path, "w", rdcc_nbytes=CHUNK_CACHE_BYTES,
                               **({"libver": ("v110", "v110")} if swmr else {}))
        try:
            self._create(metadata or {}, frames, compression, fields, observables, pbc,
                         self.timestep_fs is not None if store_time is None else bool(store_time))
            if swmr:
                self._file.swmr_mode = True
        except BaseException:
            self._file.close()
            raise

    # ---- layout ----------------------------------------------------------------------
    def _create(self, metadata, frames, compression, fields, observables, pbc, store_time):
        f, n = self._file, len(self.symbols)
        h5md = f.create_group("h5md")
        h5md.attrs["version"] = np.array([1, 1], dtype=np.int32)
        try:
            user = getpass.getuser()
        except Exception:  # no login name in some containers
            user = "unknown"
        h5md.create_group("author").attrs["name"] = _fixed(user)
        creator = h5md.create_group("creator")
        from phonion import __version__

        creator.attrs["name"], creator.attrs["version"] = _fixed("phonion"), _fixed(__version__)
        g = f.create_group("particles/all")
        box = g.create_group("box")
        box.attrs["dimension"] = np.int32(3)
        box.attrs["boundary"] = np.array([b"periodic" if p else b"none" for p in pbc], dtype="S8")
        g.create_dataset("species", data=np.array([atomic_numbers.get(s, 0) for s in self.symbols],
                                                  dtype=np.int32))
        g.create_dataset("mass", data=self.masses).attrs["unit"] = _fixed("amu")
        opts = {} if compression is None else {"compression": compression, "shuffle": True}
        self._elements: dict[str, h5py.Group] = {}
        shared = None

        def element(parent, name, shape, unit, key):
            nonlocal shared
            eg = parent.create_group(name)
            if shared is None:
                step = eg.create_dataset("step", (0,), maxshape=(None,), dtype=np.int64,
                                         chunks=(max(frames, 1024),))
                shared = [step]
                if store_time:
                    t = eg.create_dataset("time", (0,), maxshape=(None,), dtype=np.float64,
                                          chunks=(max(frames, 1024),), fillvalue=np.nan)
                    t.attrs["unit"] = _fixed("fs")
                    shared.append(t)
            else:  # hard links: one step/time series for every element
                eg["step"] = shared[0]
                if len(shared) > 1:
                    eg["time"] = shared[1]
            v = eg.create_dataset("value", (0,) + shape, maxshape=(None,) + shape, dtype=np.float64,
                                  chunks=(frames,) + shape, fillvalue=np.nan, **opts)
            v.attrs["unit"] = _fixed(unit)
            self._elements[key] = eg
            return v

        element(g, "position", (n, 3), "Angstrom", "positions").attrs["phonion_unwrapped"] = np.int8(1)
        element(box, "edges", (3, 3), "Angstrom", "cells")
        for name in fields:
            if name != "position":
                key, _, unit = FIELDS[name]
                element(g, name, (n, 3), unit, key)
        obs = f.create_group("observables")
        for name in observables:
            key, shape, unit = OBSERVABLE_SPECS[name]
            element(obs, name, shape, unit, key)
        p = f.create_group("parameters/phonion")
        p.attrs["timestep_fs"] = np.nan if self.timestep_fs is None else self.timestep_fs
        p.attrs["stride"] = np.int64(self.stride)
        p.attrs["symbols"] = np.array([s.encode() for s in self.symbols] or [b""])[:len(self.symbols)]
        p.attrs["metadata"] = json.dumps(metadata, default=functools.partial(json_default, fallback=str))
        f.flush()
        self._n, self._next_step = 0, 0

    def _open_existing(self, timestep_fs):
        f, src = self._file, str(self.path)
        if "parameters/phonion" not in f or "particles/all/position/value" not in f:
            raise TrajectoryError(f"{src}: not written by phonion's H5MDWriter; cannot append to it")
        p = f["parameters/phonion"].attrs
        have = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in p["symbols"])
        if have != self.symbols:
            raise TrajectoryError(f"{src}: cannot append: the file holds {len(have)} atoms "
                                  f"{_counts(have)}, the new frames {len(self.symbols)} atoms {_counts(self.symbols)}")
        ts = float(p["timestep_fs"])
        if timestep_fs is not None and np.isfinite(ts) and abs(ts - float(timestep_fs)) > 1e-12:
            raise TrajectoryError(f"{src}: cannot append: file timestep {ts} fs, given {timestep_fs} fs")
        self.timestep_fs = ts if np.isfinite(ts) else self.timestep_fs
        self.stride = int(p["stride"])
        self.masses = f["particles/all/mass"][()]
        self._elements = {}
        for key, (name, _) in PARTICLE_FIELDS.items():
            if f"particles/all/{name}/value" in f:
                self._elements[key] = f[f"particles/all/{name}"]
        self._elements["cells"] = f["particles/all/box/edges"]
        for key, (name, _) in OBSERVABLES.items():
            if f"observables/{name}/value" in f:
                self._elements[key] = f[f"observables/{name}"]
        lengths = [ds.shape[0] for ds in self._datasets()]
        n = min(lengths)
        if len(set(lengths)) > 1:
            warnings.warn(TruncatedFileWarning(f"{src}: datasets differ in length (interrupted write); "
                                               f"cutting all to {n} frames before appending"), stacklevel=3)
        self._n = max(lengths)
        self.truncate(n)

    def _datasets(self) -> list[h5py.Dataset]:
        """Every time-dependent dataset (shared step/time once), in write order: step, time, values."""
        first = self._elements["positions"]
        out = [first["step"]] + ([first["time"]] if "time" in first else [])
        return out + [g["value"] for g in self._elements.values()]

    # ---- writing ---------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Frames appended so far (on disk plus buffered)."""
        return self._n + sum(len(block[0]) for block in self._buffer)

    def has(self, key: str) -> bool:
        """Whether the file has an element for the ``append`` keyword ``key`` (e.g. "stress")."""
        return key in self._elements

    def append(self, positions, cells, *, velocities=None, forces=None, energies=None, stress=None,
               temperatures_K=None, steps=None, times_fs=None, force_uncertainty_max_eV_A=None) -> None:
        """Append one frame or a block of B frames.

        Frames reach the disk (and the file is flushed) once ``buffer_frames`` are pending or
        ``flush_interval_s`` has passed since the last write, and on ``flush``/``close``.

        Parameters
        ----------
        positions : ndarray, shape=(B, N, 3) or (N, 3), unwrapped, Å
        cells : ndarray, shape=(B, 3, 3), (3, 3) (same for all), or (3,) (orthorhombic), Å
        velocities, forces : ndarray, shape=(B, N, 3), Å/fs and eV/Å, or None (NaN stored)
        energies, temperatures_K : ndarray, shape=(B,), eV and K, or None
        force_uncertainty_max_eV_A : ndarray, shape=(B,), eV/Å, or None
        stress : ndarray, shape=(B, 3, 3), eV/Å³, or None
        steps : ndarray, shape=(B,), int, integrator steps (default: continue by ``stride``)
        times_fs : ndarray, shape=(B,), fs (default: ``steps * timestep_fs``)
        """
        src, n = str(self.path), len(self.symbols)
        pos = np.asarray(positions, dtype=float)
        pos = pos[None] if pos.ndim == 2 else pos
        if pos.ndim != 3 or pos.shape[1:] != (n, 3):
            raise TrajectoryError(f"{src}: positions must have shape (frames, {n}, 3), got {pos.shape}")
        b = pos.shape[0]
        cel = np.asarray(cells, dtype=float)
        cel = np.diag(cel) if cel.shape == (3,) else cel
        data = {"positions": pos, "cells": np.broadcast_to(cel, (b, 3, 3)).copy() if cel.ndim == 2 else cel}
        given = {"velocities": velocities, "forces": forces, "energies": energies, "stress": stress,
                 "temperatures_K": temperatures_K, "force_uncertainty_max_eV_A": force_uncertainty_max_eV_A}
        for key, value in given.items():
            if value is None:
                continue
            if key not in self._elements:
                raise TrajectoryError(f"{src}: {key} given but the file has no element for them")
            data[key] = np.asarray(value, dtype=float)
        for key, arr in data.items():
            want = (b,) + self._elements[key]["value"].shape[1:]
            if arr.shape != want:
                if arr.shape == want[1:] and b == 1:
                    data[key] = arr[None]
                else:
                    raise TrajectoryError(f"{src}: {key} must have shape {want}, got {arr.shape}")
        if steps is None:
            st = self._next_step + self.stride * np.arange(b, dtype=np.int64)
        else:
            st = np.asarray(steps, dtype=np.int64).reshape(-1)
            last = self._next_step - self.stride
            if st.shape != (b,) or np.any(np.diff(st) <= 0) or (self.n_frames and st[0] <= last):
                raise TrajectoryError(f"{src}: steps must be {b} increasing integers after step "
                                      f"{last}, got {st.tolist()[:5]}")
        first = self._elements["positions"]
        series = [st]
        if times_fs is not None and "time" not in first:
            raise TrajectoryError(f"{src}: times_fs given but the file stores no time (no timestep_fs)")
        if "time" in first:
            if times_fs is not None:
                series.append(np.asarray(times_fs, dtype=float).reshape(b))
            else:
                series.append(st * (np.nan if self.timestep_fs is None else self.timestep_fs))
        nan = {key: np.full((b,) + g["value"].shape[1:], np.nan) for key, g in self._elements.items()
               if key not in data}
        entry = series + [data.get(key, nan.get(key)) for key in self._elements]
        self._next_step = int(st[-1]) + self.stride
        if (self.n_frames + b - self._n >= self._buffer_frames
                or time.monotonic() - self._last_write >= self._flush_interval_s):
            self._buffer.append(entry)
            self.flush()
        else:  # kept past this call: copy, the caller may reuse its arrays
            self._buffer.append([np.array(a) for a in entry])

    def _write_buffer(self) -> None:
        """Grow every dataset by the buffered frames and write them, in the order of ``_datasets``."""
        if not self._buffer:
            return
        columns = [col[0] if len(col) == 1 else np.concatenate(col) for col in zip(*self._buffer)]
        require_free_space(self.path, sum(c.nbytes for c in columns), f"{len(columns[0])} frames of {self.path.name}")
        n0, n1 = self._n, self._n + len(columns[0])
        for ds, value in zip(self._datasets(), columns):
            ds.resize(n1, axis=0)
            ds[n0:n1] = value
        self._n, self._buffer = n1, []

    def flush(self) -> None:
        """Write the buffered frames and flush the file to disk (a checkpoint may follow)."""
        self._write_buffer()
        self._file.flush()
        self._last_write = time.monotonic()

    def truncate(self, n_frames: int) -> None:
        """Cut every time-dependent dataset back to its first ``n_frames`` frames (resume from a checkpoint)."""
        self._write_buffer()
        if not 0 <= n_frames <= self._n:
            raise TrajectoryError(f"{self.path}: cannot truncate to {n_frames} frames; the file has {self._n}")
        for ds in self._datasets():
            if ds.shape[0] > n_frames:
                ds.resize(n_frames, axis=0)
        self._n = n_frames
        steps = self._elements["positions"]["step"]
        self._next_step = int(steps[n_frames - 1]) + self.stride if n_frames else 0
        self.flush()

    def close(self) -> None:
        """Write what is buffered and close the file."""
        if self._file.id.valid:
            try:
                self.flush()
            finally:
                self._file.close()

    def __enter__(self) -> H5MDWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _counts(symbols) -> dict:
    out: dict = {}
    for s in symbols:
        out[s] = out.get(s, 0) + 1
    return out


def update_metadata(path, **fields) -> None:
    """Add ``fields`` to the JSON metadata (``/parameters/phonion``) of a closed H5MD file written by
    :class:`H5MDWriter` (e.g. the measured mean temperature once a run is complete, so the file alone says
    what temperature its frames had). Written by opening the file read-write without SWMR: HDF5 does not
    allow attributes to change while a SWMR writer holds the file."""
    with h5py.File(path, "r+") as f:
        p = f["parameters/phonion"]
        meta = json.loads(p.attrs["metadata"]) if "metadata" in p.attrs else {}
        meta.update(fields)
        p.attrs["metadata"] = json.dumps(meta, default=functools.partial(json_default, fallback=str))
