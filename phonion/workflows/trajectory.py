"""The trajectory-file stages: ``run_inspect`` (what a run's files hold) and ``run_convert`` (one run → H5MD).

* ``run_inspect(InspectConfig) -> InspectRun``: reads the files (pieces of one run, joined in order);
  ``to_dict()`` is :meth:`phonion.md.trajectory.Trajectory.summary`, what ``phonion inspect --json`` prints.
* ``run_convert(ConvertConfig) -> ConvertRun``: refuses an existing output unless ``force`` (checked before
  anything is read), reads and subsamples the run; ``save()`` writes the H5MD file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from phonion.workflows.common import (check_output_file, check_time_options, dump_json, temporary_path,
                                      trajectory_files)
from phonion.workflows.result import Result

__all__ = ["InspectConfig", "InspectRun", "run_inspect", "ConvertConfig", "ConvertRun", "run_convert"]


def _read(cfg, every: int = 1):
    from phonion.md.io import read_trajectory

    return read_trajectory(list(cfg.files), fmt=cfg.fmt, timestep_fs=cfg.timestep_fs, stride=cfg.file_stride,
                           every=every)


# ---- inspect ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InspectConfig:
    """Settings of ``phonion inspect``: the files of one run and the time options."""

    files: tuple = ()
    timestep_fs: float | None = None
    file_stride: int | None = None
    fmt: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "files", trajectory_files(self.files))
        check_time_options(self.files, self.timestep_fs, self.file_stride, self.fmt)


@dataclass
class InspectRun(Result):
    """The trajectory read and its summary (atoms, frames, species, timestep, which fields it holds)."""

    trajectory: object
    summary: dict

    def to_dict(self) -> dict:
        """The ``phonion inspect`` JSON."""
        return dict(self.summary)

    def save(self, directory) -> dict[str, Path]:
        """``inspect.json`` (the JSON above) into ``directory`` (the command itself writes no file)."""
        return {"inspect_json": dump_json(Path(directory) / "inspect.json", self.to_dict())}


def run_inspect(cfg: InspectConfig) -> InspectRun:
    """Read the run in ``cfg.files`` and summarise it; nothing is written."""
    traj = _read(cfg)
    return InspectRun(trajectory=traj, summary=traj.summary())


# ---- convert ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvertConfig:
    """Settings of ``phonion convert``: the files of one run, the H5MD file to write, every ``stride``-th frame."""

    files: tuple = ()
    output: str = ""
    timestep_fs: float | None = None
    file_stride: int | None = None
    fmt: str | None = None
    stride: int = 1
    force: bool = False

    def __post_init__(self):
        from phonion.md.trajectory import TrajectoryError

        object.__setattr__(self, "files", trajectory_files(self.files))
        if not str(self.output):
            raise ValueError("output: give the H5MD file to write (-o OUT.h5)")
        check_time_options(self.files, self.timestep_fs, self.file_stride, self.fmt)
        if not self.stride >= 1:
            raise TrajectoryError(f"--stride/every must be ≥ 1, got {self.stride}")


def _refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise FileExistsError(f"{path}: exists; pass --force to overwrite (nothing was written)")


@dataclass
class ConvertRun(Result):
    """The (subsampled) trajectory read and where it goes; ``save()`` writes it as H5MD."""

    trajectory: object
    output: Path
    force: bool = False
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The trajectory's summary, the output path and, once saved, ``files``."""
        out = {"output": str(self.output), **self.trajectory.summary()}
        if self.files:
            out["files"] = {k: str(v) for k, v in self.files.items()}
        return out

    def save(self, directory=None) -> dict[str, Path]:
        """Write the H5MD file: ``output``, or a file of that name in ``directory``; an existing file is
        refused unless ``force``."""
        from phonion.md.io.h5md import write_h5md

        path = self.output if directory is None else Path(directory) / self.output.name
        check_output_file(path)
        _refuse_existing(path, self.force)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_path(path)  # short name: H5MD writing adds its own suffix to it
        try:
            write_h5md(tmp, self.trajectory)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self.files = {"h5md": path}
        return dict(self.files)


def run_convert(cfg: ConvertConfig) -> ConvertRun:
    """Read the run in ``cfg.files`` (every ``cfg.stride``-th frame) for writing to ``cfg.output``; an existing
    ``cfg.output`` is refused (``FileExistsError``) before anything is read, unless ``cfg.force``."""
    out = check_output_file(cfg.output)
    _refuse_existing(out, cfg.force)
    return ConvertRun(trajectory=_read(cfg, every=cfg.stride), output=out, force=cfg.force)
