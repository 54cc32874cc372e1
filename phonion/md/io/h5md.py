"""The H5MD 1.1 store for long runs: streamed writing, atomic conversion, lazy windowed reading.

Layout written (H5MD 1.1, https://www.nongnu.org/h5md/h5md.html; units as ``unit`` attributes)::

    /h5md                          version=[1, 1]
        author                     name
        creator                    name="phonion", version
    /particles/all
        position/{step,time,value} value (F, N, 3) float64 "Angstrom", attr phonion_unwrapped=1
        velocity/{step,time,value} value (F, N, 3) "Angstrom fs-1"      (NaN rows: frame lacks it)
        force/{step,time,value}    value (F, N, 3) "eV Angstrom-1"
        box                        dimension=3, boundary=["periodic"]*3 (fixed-length strings)
            edges/{step,time,value} value (F, 3, 3) "Angstrom", cell vectors as rows
        species                    (N,) int32 atomic numbers
        mass                       (N,) float64 "amu"
    /observables
        potential_energy/{step,time,value} (F,) "eV"
        stress/{step,time,value}   (F, 3, 3) "eV Angstrom-3" (ASE sign convention)
        temperature/{step,time,value} (F,) "K"
        force_uncertainty_max/{step,time,value} (F,) "eV Angstrom-1" (committee MD only: largest
                                   per-atom force std over the members; read back as
                                   Trajectory.force_uncertainty_max_eV_A)
    /parameters/phonion            timestep_fs, stride, symbols, metadata (JSON)

``step`` (int64, integrator step) and ``time`` (float64, "fs") exist once, in ``position``;
every other element holds HDF5 hard links to those two datasets (H5MD allows sharing), so
they can never disagree. ``time`` is written only when the timestep or the times are known.
All time-dependent datasets are float64 (exact round trip), chunked along frames, resizable
(maxshape (None, ...)), gzip + shuffle compressed, and grown together. String attributes
are fixed-length ASCII; ``/parameters/phonion`` keeps what H5MD has no place for.

Crash safety: ``H5MDWriter`` writes in HDF5 SWMR mode (HDF5 ≥ 1.10 file format) and
flushes after every written block, so a killed run leaves a file readable up to its last
flush (``H5MDReader`` opens files SWMR-read; other tools need ``h5clear -s FILE`` or
``clear_consistency_flags(FILE)`` first). ``write_h5md`` (conversion) writes a plain
HDF5 1.8-compatible file to a temporary name beside FILE and renames it into place when complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from phonion.md.io.h5md_flags import clear_consistency_flags
from phonion.md.io.h5md_read import (  # noqa: F401  (re-exported)
    CHUNK_CACHE_BYTES, OBSERVABLES, PARTICLE_FIELDS, H5MDReader, read_h5md,
)
from phonion.md.io.h5md_write import (  # noqa: F401  (re-exported)
    FIELDS, MAX_CHUNK_BYTES, OBSERVABLE_SPECS, H5MDWriter, update_metadata,
)
from phonion.md.trajectory import Trajectory


def write_h5md(path, traj: Trajectory, chunk_frames: int = 64, compression: str | None = "gzip",
               block_frames: int = 256) -> Path:
    """Write a whole Trajectory to a new H5MD file, atomically.

    The data go to a short temporary name (``.tmpXXXXXXXX``, so any name legal for ``path`` works) in the
    same directory, which replaces ``path`` only when complete; on any error the partial file is removed
    and the error re-raised, so ``path``
    is either the old file (or absent) or the complete new one.
    Elements are written only for the quantities the trajectory has.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=".tmp", suffix=".h5", dir=path.parent)
    os.close(fd)
    part = Path(name)
    try:
        fields = ["position"] + [n for n, (k, _, _) in FIELDS.items()
                                 if n != "position" and getattr(traj, k) is not None]
        obs = [n for n, (k, _, _) in OBSERVABLE_SPECS.items() if getattr(traj, k) is not None]
        with H5MDWriter(part, traj.symbols, traj.masses, timestep_fs=traj.timestep_fs, stride=traj.stride,
                        metadata=traj.metadata, chunk_frames=chunk_frames, compression=compression,
                        fields=fields, observables=obs, pbc=traj.pbc,
                        store_time=traj.times_fs is not None, swmr=False) as w:
            for a in range(0, traj.n_frames, block_frames):
                s = slice(a, a + block_frames)
                opt = {k: None if getattr(traj, k) is None else getattr(traj, k)[s]
                       for k in ("velocities", "forces", "energies", "stress", "temperatures_K",
                                 "force_uncertainty_max_eV_A", "times_fs")}
                w.append(traj.positions[s], traj.cells[s], steps=np.arange(traj.n_frames)[s] * traj.stride, **opt)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


__all__ = ["H5MDWriter", "H5MDReader", "read_h5md", "write_h5md", "clear_consistency_flags", "update_metadata"]
