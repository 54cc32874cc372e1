"""Checks and writers shared by the workflow configs and results (trajectory files, time options, JSON)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from phonion.core.jsonutil import clean

__all__ = ["trajectory_files", "check_time_options", "check_window", "dump_json", "check_output_dir",
           "check_output_file", "temporary_path"]


def trajectory_files(files, name: str = "files") -> tuple:
    """``files`` (one path or several, in time order) as a tuple of str; none → ``TrajectoryError``."""
    from phonion.md.trajectory import TrajectoryError

    if files is None:
        files = ()
    files = tuple(str(f) for f in ([files] if isinstance(files, (str, Path)) else files))
    if not files:
        raise TrajectoryError("no input files given" if name == "files" else f"{name}: no input files given")
    return files


def check_time_options(files, timestep_fs, file_stride, fmt) -> None:
    """``--timestep-fs`` > 0, ``--file-stride`` ≥ 1 and ``--format`` one of the readers' FORMATS, checked
    before any file is read (the messages are those of :func:`phonion.md.io.read_trajectory`)."""
    from phonion.md.io import FORMATS
    from phonion.md.trajectory import TrajectoryError

    if fmt is not None and fmt not in FORMATS:
        raise TrajectoryError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if timestep_fs is not None and not timestep_fs > 0:
        raise TrajectoryError(f"{files[0]}: --timestep-fs must be > 0, got {timestep_fs}")
    if file_stride is not None and not file_stride >= 1:
        raise ValueError(f"--file-stride must be ≥ 1, got {file_stride}")


def check_window(option: str, window) -> tuple:
    """A time window (A, B) in ps with 0 ≤ A < B, as a tuple; ``option`` names it in the message."""
    window = tuple(window)
    if len(window) != 2:
        raise ValueError(f"{option} takes 2 values (A B), got {list(window)}")
    a, b = (float(v) for v in window)
    if not 0 <= a < b:
        raise ValueError(f"{option} needs 0 ≤ A < B, got {a:g} {b:g}")
    return window


def dump_json(path, data: dict) -> Path:
    """``data`` (cleaned: NaN → null) as indented JSON plus a newline into ``path``, parents made.

    The transport commands' files (``result.json``, ``arrhenius.json``, ``vdos.json``) use indent 2, as
    before; :func:`phonion.workflows.result.write_json` uses indent 1.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(data), indent=2) + "\n")
    return path


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _check_names(path: Path, option: str) -> None:
    """Every name in ``path`` no longer than the file system allows (checked before anything is stat-ed)."""
    folder = path.parent
    while not os.path.isdir(folder) and folder != folder.parent:
        folder = folder.parent
    limit = _name_max(folder)
    long = [part for part in path.parts if len(os.fsencode(part)) > limit]
    if long:
        raise ValueError(f"{option} {path}: the name {long[0][:40]}… is {len(os.fsencode(long[0]))} bytes, longer "
                         f"than the file system allows ({limit}); give a shorter name (nothing was written)")


def _check_parents(path: Path, option: str, what: str) -> None:
    """The nearest existing folder of ``path`` a writable directory (not a file)."""
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise ValueError(f"{option} {path}: {existing} is a file, so no {what} can be made under it; give "
                         "another path (nothing was written)")
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: {folder} is not writable; give another path (nothing was written)")


def check_output_dir(path, option: str = "-o") -> Path:
    """``path`` as an output directory that can be made and written: refused (ValueError naming it and the
    option) when it is an existing file, lies under an existing file, has a name longer than the file
    system allows, or its nearest existing folder is read-only. Call it before any long work."""
    path = Path(path)
    _check_names(path, option)
    if os.path.lexists(path) and not path.is_dir():
        raise ValueError(f"{option} {path}: exists and is not a directory; give a directory (nothing was written)")
    _check_parents(path, option, "directory")
    return path


def check_output_file(path, option: str = "-o") -> Path:
    """``path`` as an output file that can be written: refused (ValueError) when it is an existing directory,
    lies under an existing file, has a name too long, or its folder is read-only (an existing file is the
    caller's business: ``--force``)."""
    path = Path(path)
    _check_names(path, option)
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a directory; give a file name, e.g. {path / 'out.h5'} "
                         "(nothing was written)")
    if not path.name:
        raise ValueError(f"{option} {path}: give a file name (nothing was written)")
    _check_parents(path, option, "file")
    return path


def temporary_path(path) -> Path:
    """A fresh, short temporary file name in ``path``'s directory (``.tmpXXXXXXXX``), for writing ``path``
    atomically (write there, then ``os.replace``): a name legal for ``path`` stays legal for it."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(name)
    return Path(name)
