"""Checks and writers shared by the workflow configs and results (trajectory files, time options, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from phonion.core.jsonutil import clean

__all__ = ["trajectory_files", "check_time_options", "check_window", "dump_json"]


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
