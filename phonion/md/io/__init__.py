"""Trajectory readers and the H5MD store.

``read_trajectory(paths)`` is the one entry point: it picks the reader from the file name
(or ``fmt``), reads several files of one run in order and joins them (VASP restarts), fills
in the MD timestep when the file lacks it, and subsamples.

Readers (each ``read_*(path) -> Trajectory``, one file, plain or gzipped):

==========  =============================================  ==========================
format      files                                           module
==========  =============================================  ==========================
xdatcar     XDATCAR, XDATCAR.gz, *XDATCAR*                  ``phonion.md.io.vasp_xdatcar``
outcar      OUTCAR, OUTCAR*.gz, *OUTCAR*                    ``phonion.md.io.vasp_outcar``
vasprun     vasprun.xml, *.xml, *.xml.gz                    ``phonion.md.io.vasp_vasprun``
extxyz      *.xyz, *.extxyz                                 ``phonion.md.io.ase_formats``
traj        *.traj (ASE)                                    ``phonion.md.io.ase_formats``
h5md        *.h5, *.h5md, *.hdf5                            ``phonion.md.io.h5md``
==========  =============================================  ==========================

Every file read is checked (``phonion.md.io.checks``): non-finite numbers, singular cells,
and pieces of a run that repeat, overlap, come out of order or leave a gap are refused.
A file cut inside a frame reads up to its last whole frame with a ``TruncatedFileWarning``;
anything else wrong raises ``TrajectoryError`` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from phonion.md.trajectory import Trajectory, TrajectoryError, concatenate


class TruncatedFileWarning(UserWarning):
    """A file ended inside a frame; the complete frames before it were kept."""


FORMATS = ("xdatcar", "outcar", "vasprun", "extxyz", "traj", "h5md")


def detect_format(path: str | os.PathLike) -> str:
    """Format name from a file name (case-insensitive, ``.gz`` ignored)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if "xdatcar" in name:
        return "xdatcar"
    if "outcar" in name:
        return "outcar"
    if name.endswith(".xml") or "vasprun" in name:
        return "vasprun"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if name.endswith(".traj"):
        return "traj"
    if name.endswith((".h5", ".h5md", ".hdf5")):
        return "h5md"
    raise TrajectoryError(
        f"{path}: cannot tell the format from the name; pass one of {', '.join(FORMATS)} explicitly")


def _reader(fmt: str):
    if fmt == "xdatcar":
        from phonion.md.io.vasp_xdatcar import read_xdatcar as fn
    elif fmt == "outcar":
        from phonion.md.io.vasp_outcar import read_outcar as fn
    elif fmt == "vasprun":
        from phonion.md.io.vasp_vasprun import read_vasprun as fn
    elif fmt in ("extxyz", "traj"):
        from phonion.md.io.ase_formats import read_ase as fn
    elif fmt == "h5md":
        from phonion.md.io.h5md import read_h5md as fn
    else:
        raise TrajectoryError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return fn


def read_trajectory(paths, *, fmt: str | None = None, timestep_fs: float | None = None,
                    stride: int | None = None, every: int = 1) -> Trajectory:
    """Read one run from one or more files (in the order given) into one Trajectory.

    Parameters
    ----------
    paths : path or list of paths, pieces of one run in time order (e.g. restarts). Pieces
        given twice, overlapping, out of order or with a gap between them are refused
        (``phonion.md.io.checks.check_pieces``), as are non-finite values and singular cells.
    fmt : format name, or None to detect from each file name
    timestep_fs : MD integrator timestep (POTIM), fs. Used when the file does not record it;
        if the file does and the two disagree, that is an error.
    stride : integrator steps between the file's stored frames, when the file does not record
        it (or misstates it, e.g. an XDATCAR renumbered by pymatgen). Overrides the file.
    every : keep every ``every``-th frame after joining (the result's stride is multiplied).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise TrajectoryError("no input files given")
    from phonion.md.io.checks import check_values

    parts = []
    for path in paths:
        if not path.exists():
            raise TrajectoryError(f"{path}: no such file")
        traj = _reader(fmt or detect_format(path))(path)
        check_values(traj, str(path))
        parts.append(_fill_time(traj, timestep_fs, stride, path))
    traj = parts[0] if len(parts) == 1 else concatenate(parts)
    if every < 1:
        raise TrajectoryError(f"--stride/every must be ≥ 1, got {every}")
    if every > 1:
        traj = traj.select_frames(slice(None, None, every))
    return traj


def _fill_time(traj: Trajectory, timestep_fs, stride, path) -> Trajectory:
    meta = dict(traj.metadata)
    changes = {}
    if timestep_fs is not None:
        if timestep_fs <= 0:
            raise TrajectoryError(f"{path}: --timestep-fs must be > 0, got {timestep_fs}")
        if traj.timestep_fs is not None and abs(traj.timestep_fs - timestep_fs) > 1e-9:
            raise TrajectoryError(
                f"{path}: the file says the timestep is {traj.timestep_fs:g} fs but "
                f"--timestep-fs {timestep_fs:g} was given")
        if traj.timestep_fs is None:
            changes["timestep_fs"] = timestep_fs
            meta["timestep_fs_source"] = "user"
    elif traj.timestep_fs is not None:
        meta.setdefault("timestep_fs_source", "file")
    if stride is not None:
        changes["stride"] = int(stride)
        meta["stride_source"] = "user"
    else:
        meta.setdefault("stride_source", "file")
    if changes:
        changes["times_fs"] = None
    return traj.replace(metadata=meta, **changes)


__all__ = ["read_trajectory", "detect_format", "TruncatedFileWarning", "FORMATS"]
