"""Finding the runs of one side of ``phonion compare`` and what each run is (temperature, fixed class).

A side is a directory searched recursively (or one trajectory file). Every trajectory file is one run:
H5MD (``*.h5``, ``*.h5md``, ``*.hdf5``; ``phonion md`` / ``reference`` write one ``traj.h5`` per run
directory), extxyz, ASE ``.traj``, and VASP ``vasprun.xml`` / ``OUTCAR`` / ``XDATCAR`` (plain or ``.gz``).
A directory holding several VASP kinds holds the same run written several ways, so only the most complete
kind is read there (vasprun.xml, then OUTCAR, then XDATCAR). Restarts split over several files are not
joined here: join them first (``phonion convert A B -o run.h5``). Skipped: hidden directories, the
comparison's own output directory, phonopy's ``force_constants.hdf5`` and unfinished ``*.part`` files.

Temperature of a run, in this order (the source is recorded):
1. the metadata ``temperature_K_setting`` (the thermostat setting written by ``phonion md``),
2. a ``<T>K`` or ``T<T>_`` pattern in the path (innermost directory first: ``900K/``, ``T900_seed0_fixnone``),
3. the mean kinetic temperature: the file's recorded temperatures, else Σ m v² / (3 N k_B) of its
   velocities (central differences of positions when the file has none).

Fixed-anion runs: metadata ``fix`` = ``O_e`` / ``O_c`` (or ``fixO_e`` / ``fixO_c`` in the path).

The temperature above is the *set-point*: it groups runs and names keys (``D_tracer_900K_cm2_s``). The
*measured* temperature of a run (the T of Arrhenius fits and Nernst–Einstein) is the mean kinetic
temperature over its production frames: ``mean_temperature_K`` of its ``run.json``, else the mean of the
file's temperature observable, else (foreign files without temperatures) the set-point, and it says so.

Run status: a trajectory with a ``run.json`` next to it (``phonion md``) has that record's ``status``
(``complete``, ``invalid`` with ``invalid_reason`` / ``invalid_step``, ``failed`` / ``interrupted`` with
``message``, ``running``); every run that is not ``complete`` is invalid (:attr:`Run.valid`) and compare
keeps it out of every analysis. Files without a ``run.json`` (foreign H5MD, VASP, extxyz) are valid.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["CompareError", "Run", "discover_runs", "load_run", "first_frame", "check_species"]

#: VASP kinds, most complete first (energies, forces, stress > forces > positions only)
VASP_PREFERENCE = ("vasprun", "outcar", "xdatcar")
_SKIP_NAMES = ("force_constants.hdf5",)
_T_PATTERNS = (re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)\s*K(?![A-Za-z])"),
               re.compile(r"(?:^|[_\-])T(\d+(?:\.\d+)?)(?=_|$)"))
_FIX_PATTERN = re.compile(r"fix[_\-]?(O_e|O_c)(?![A-Za-z])")
_STEP_PATTERN = re.compile(r"step (\d+)")
RUN_RECORD = "run.json"
SETPOINT_FALLBACK = "set-point (the file records no temperatures)"


class CompareError(ValueError):
    """Bad input to ``phonion compare``; the message names the directory or file and the problem."""


@dataclass(frozen=True)
class Run:
    """One run of one side (files, what it is, and facts read from its header).

    ``temperature_K`` (the set-point) is None until :func:`load_run` has measured a kinetic temperature
    (source ``"kinetic"``); ``frame_interval_fs`` is None when the file does not say and no timestep was given.
    ``temperature_K_measured``: module docstring. ``status``: ``run.json``'s, None without one (valid).
    """

    side: str
    name: str
    files: tuple[str, ...]
    fmt: str
    temperature_K: float | None
    temperature_source: str
    fix: str
    n_atoms: int
    n_frames: int
    frame_interval_fs: float | None
    species_counts: dict
    has_velocities: bool
    has_forces: bool
    metadata: dict = field(default_factory=dict)
    temperature_K_measured: float | None = None
    temperature_measured_source: str = ""
    status: str | None = None
    status_reason: str | None = None
    status_step: int | None = None

    @property
    def fixed(self) -> bool:
        return self.fix in ("O_e", "O_c")

    @property
    def valid(self) -> bool:
        """Usable for analyses: no ``run.json`` (foreign file) or one that says ``complete``."""
        return self.status is None or self.status == "complete"

    @property
    def has_setpoint(self) -> bool:
        """The temperature is a set-point (metadata or path), not a measured one."""
        return self.temperature_source.startswith(("metadata", "path"))

    @property
    def fit_temperature_K(self) -> float | None:
        """The T of Arrhenius fits and Nernst–Einstein: the measured mean, else the set-point."""
        return self.temperature_K if self.temperature_K_measured is None else self.temperature_K_measured

    def invalid_entry(self) -> dict:
        """The ``invalid_runs`` entry of ``numbers.json``."""
        return {"side": self.side, "run": self.name, "status": self.status, "reason": self.status_reason,
                "step": self.status_step}

    def to_dict(self) -> dict:
        """JSON-ready description for ``numbers.json``."""
        dt = self.frame_interval_fs
        return {"name": self.name, "files": list(self.files), "format": self.fmt, "status": self.status,
                "temperature_K": self.temperature_K, "temperature_source": self.temperature_source,
                "temperature_K_setpoint": self.temperature_K if self.has_setpoint else None,
                "temperature_K_measured": self.fit_temperature_K,
                "temperature_measured_source": self.temperature_measured_source or self.temperature_source,
                "fix": self.fix, "n_atoms": self.n_atoms, "n_frames": self.n_frames,
                "frame_interval_fs": dt,
                "duration_ps": None if dt is None else (self.n_frames - 1) * dt / 1e3,
                "species": self.species_counts, "has_velocities": self.has_velocities,
                "has_forces": self.has_forces,
                "calculator_spec": self.metadata.get("calculator_spec"),
                "reference_kind": self.metadata.get("reference_kind")}


def _candidates(root: Path, exclude: Path | None) -> list[Path]:
    from phonion.md.io import detect_format

    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (exclude is None or (here / d).resolve() != exclude))
        kinds = {}
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(".part") or name in _SKIP_NAMES:
                continue
            try:
                kinds[name] = detect_format(name)
            except ValueError:
                continue
        vasp = [k for k in VASP_PREFERENCE if k in kinds.values()]
        keep_vasp = vasp[0] if vasp else None
        found += [here / n for n, k in kinds.items() if k not in VASP_PREFERENCE or k == keep_vasp]
    return found


def _temperature_from_path(path: Path, root: Path) -> float | None:
    parts = list(path.relative_to(root).parts) if path != root else []
    parts = parts[::-1] + [root.name]
    for part in parts:
        for pat in _T_PATTERNS:
            m = pat.search(part)
            if m and float(m.group(1)) > 0:
                return float(m.group(1))
    return None


def _header(path: Path, timestep_fs):
    """A trajectory's first frame (metadata, species, velocities/forces present) and its frame count."""
    from phonion.md.io import detect_format, read_trajectory

    if detect_format(path) == "h5md":
        from phonion.md.io.h5md import H5MDReader

        reader = H5MDReader(path)
        head = reader.read(frames=slice(0, 1))
        n_frames = reader.n_frames
        if head.timestep_fs is None and timestep_fs is not None:
            head = head.replace(timestep_fs=timestep_fs, times_fs=None)
        return head, n_frames
    traj = read_trajectory(path, timestep_fs=timestep_fs)
    return traj, traj.n_frames


def _record(path: Path) -> dict | None:
    """The ``run.json`` next to a trajectory (``phonion md``), or None (foreign file)."""
    rec = path.parent / RUN_RECORD
    if not rec.is_file():
        return None
    try:
        data = json.loads(rec.read_text())
    except (OSError, ValueError) as exc:
        return {"status": "unreadable", "message": f"{rec}: unreadable run record ({exc})"}
    return data if isinstance(data, dict) else {"status": "unreadable", "message": f"{rec}: not a JSON object"}


def _status(record: dict | None) -> dict:
    """Run fields status, status_reason, status_step from a run record."""
    if record is None:
        return {}
    status = str(record.get("status") or "unknown")
    if status == "complete":
        return {"status": status}
    reason = record.get("invalid_reason") or record.get("message")
    if reason is None and status == "running":
        reason = "run.json says running: unfinished, or killed without a record"
    step = record.get("invalid_step")
    if step is None and reason:
        m = _STEP_PATTERN.search(str(reason))
        step = int(m.group(1)) if m else None
    return {"status": status, "status_reason": None if reason is None else str(reason),
            "status_step": None if step is None else int(step)}


def _measured(path: Path, head, record: dict | None) -> tuple[float | None, str]:
    """Mean kinetic temperature over the production frames and where it came from (None: not recorded)."""
    from phonion.md.io import detect_format

    if record and record.get("status") == "complete" and record.get("mean_temperature_K") is not None:
        return float(record["mean_temperature_K"]), f"{RUN_RECORD} mean_temperature_K"
    temps = head.temperatures_K
    if detect_format(path) == "h5md":
        from phonion.md.io.h5md import H5MDReader

        temps = H5MDReader(path).read(atoms=[0]).temperatures_K
    if temps is not None and np.isfinite(temps).any():
        return float(np.nanmean(temps)), "mean of the file's temperatures"
    return None, ""


def _run(path: Path, base: Path, side: str, timestep_fs) -> Run:
    """One trajectory file as a Run (module docstring: set-point, measured temperature, fix, status)."""
    from phonion.md.io import detect_format

    head, n_frames = _header(path, timestep_fs)
    if head.frame_interval_fs is None:
        raise CompareError(f"{side} {path}: the MD timestep is unknown (the file does not record it); give it "
                           "with --timestep-fs")
    meta = dict(head.metadata)
    rel = path.relative_to(base)
    if meta.get("temperature_K_setting") is not None:
        temp, how = float(meta["temperature_K_setting"]), "metadata temperature_K_setting"
    elif _temperature_from_path(path, base) is not None:
        temp, how = _temperature_from_path(path, base), f"path ({rel.as_posix()})"
    else:
        temp, how = None, "kinetic"
    fix = str(meta.get("fix") or "none")
    m = _FIX_PATTERN.search(rel.as_posix())
    if fix == "none" and m:
        fix = m.group(1)
    name = rel.parent.as_posix() if rel.name == "traj.h5" and rel.parent.as_posix() != "." else rel.as_posix()
    record = _record(path)
    t_meas, t_how = _measured(path, head, record)
    if t_meas is None and temp is not None:
        t_meas, t_how = temp, SETPOINT_FALLBACK
    return Run(side=side, name=name, files=(str(path),), fmt=detect_format(path), temperature_K=temp,
               temperature_source=how, fix=fix, n_atoms=head.n_atoms, n_frames=int(n_frames),
               frame_interval_fs=head.frame_interval_fs, species_counts=head.species_counts,
               has_velocities=bool(head.velocities is not None and head.frames_with("velocities").all()),
               has_forces=bool(head.frames_with("forces").any()), metadata=_small(meta),
               temperature_K_measured=t_meas, temperature_measured_source=t_how, **_status(record))


def discover_runs(root, side: str, *, timestep_fs: float | None = None, exclude=None) -> list[Run]:
    """All runs under ``root`` (a directory searched recursively, or one file), sorted by relative path.

    Raises :class:`CompareError` naming ``root`` when it does not exist, holds no trajectory, a run's frame
    interval is unknown, or its runs have different species (compositions; supercells of one cell are fine).
    Invalid runs (``run.json`` not complete) are returned too: the caller keeps them out (``Run.valid``).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise CompareError(f"{side} {root}: no such file or directory")
    exclude = None if exclude is None else Path(exclude).expanduser().resolve()
    if root.is_file():
        files, base = [root], root.parent
    else:
        files, base = _candidates(root, exclude), root
    if not files:
        raise CompareError(f"{side} {root}: no trajectory files found (looked recursively for H5MD *.h5, "
                           "vasprun.xml, OUTCAR, XDATCAR[.gz], *.extxyz/*.xyz, *.traj)")
    runs = [_run(path, base, side, timestep_fs) for path in files]
    runs.sort(key=lambda r: r.name)
    first = runs[0]
    for r in runs[1:]:
        if _reduced(r.species_counts) != _reduced(first.species_counts):
            raise CompareError(
                f"{side} {root}: runs hold different species: {first.name} has {_formula(first.species_counts)}, "
                f"{r.name} has {_formula(r.species_counts)}; one comparison is about one material")
    return runs


def _reduced(counts: dict) -> dict:
    """Composition with the counts divided by their greatest common divisor (supercells compare equal)."""
    from functools import reduce
    from math import gcd

    k = reduce(gcd, counts.values())
    return {s: n // k for s, n in sorted(counts.items())}


def check_species(ref_root, ref: list[Run], mlip_root, mlip: list[Run], mobile: str, anion: str) -> None:
    """Both sides must hold the same elements, including the mobile ion and the anion."""
    a, b = set(ref[0].species_counts), set(mlip[0].species_counts)
    if a != b:
        raise CompareError(f"reference {ref_root} holds {_formula(ref[0].species_counts)} but mlip {mlip_root} "
                           f"holds {_formula(mlip[0].species_counts)}: not the same material")
    for root, runs in ((ref_root, ref), (mlip_root, mlip)):
        for el, what in ((mobile, "mobile ion (--mobile)"), (anion, "anion (--anion)")):
            if el not in runs[0].species_counts:
                raise CompareError(f"{root}: no {el} atoms, the {what}; the runs hold "
                                   f"{_formula(runs[0].species_counts)}")


def _formula(counts: dict) -> str:
    return "".join(f"{s}{n}" for s, n in counts.items())


def _small(meta: dict) -> dict:
    keep = ("calculator_spec", "calculator", "reference_kind", "temperature_K_setting", "fix", "fixed_indices",
            "structure", "supercell", "source", "ensemble", "seed", "format", "timestep_fs_source")
    return {k: meta[k] for k in keep if k in meta}


def first_frame(run: Run, timestep_fs: float | None = None):
    """The first frame of a run as ASE Atoms (an H5MD file is not read beyond it)."""
    return _header(Path(run.files[0]), timestep_fs)[0].to_atoms(0)


def load_run(run: Run, *, timestep_fs: float | None = None, velocities: str = "file"):
    """(trajectory, run) with the run's temperature filled in.

    ``velocities="positions"`` drops the file's velocities so that every analysis derives them by central
    differences (the like-for-like rule when the other side has none). A run without a temperature gets
    its mean kinetic temperature (:func:`phonion.md.velocities.temperature_for`).
    """
    import dataclasses

    from phonion.md.io import read_trajectory
    from phonion.md.velocities import with_velocities
    from phonion.md.velocities import temperature_for

    traj = read_trajectory(list(run.files), timestep_fs=timestep_fs)
    if velocities == "positions" and traj.velocities is not None:
        meta = dict(traj.metadata, velocities_dropped="like-for-like: derived from positions on both sides")
        traj = traj.replace(velocities=None, metadata=meta)
    if run.temperature_K is None:
        v = with_velocities(traj, timestep_fs=timestep_fs)
        temp, how = temperature_for(v, v.metadata.get("velocities_source") or "file")
        t = float(np.round(temp, 6))
        run = dataclasses.replace(run, temperature_K=t, temperature_source=how, temperature_K_measured=t,
                                  temperature_measured_source=how)
    return traj, run
