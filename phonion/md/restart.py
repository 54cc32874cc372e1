"""Atomic files of an MD run: the checkpoint (``checkpoint.npz``) and the run record (``run.json``).

Both are written to a temporary file in the same directory, flushed, fsync'ed and moved over
the old one with ``os.replace`` (atomic on POSIX), so a kill at any moment leaves either the
old or the new version, never a torn one.

Checkpoint contents (one ``.npz``):

==============================  ===========================================================
key                             meaning
==============================  ===========================================================
``positions``                   (N, 3) float64, Å, exactly as the integrator left them
``momenta``                     (N, 3) float64, ASE units (amu^½ eV^½), bit-exact
``cell``                        (3, 3) float64, Å
``step``                        int, integrator steps done (equilibration + production)
``n_frames``                    int, frames in the H5MD file that belong to steps ≤ ``step``
``rng_state``                   JSON of ``numpy.random.Generator.bit_generator.state``
``thermostat``                  JSON of the integrator's public state (Bussi:
                                ``transferred_energy``), ``{}`` when there is none
``wall_s``                      float, wall time spent on the run so far, s
``settings_key``                JSON of the settings that must not change on resume
``uncertainty``                 (E, 2) float64, committee runs only: integrator step and largest
                                per-atom force std (eV/Å) of every evaluation so far
==============================  ===========================================================
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phonion.core.jsonutil import default as json_default
from phonion.core.paths import require_free_space

CHECKPOINT_NAME = "checkpoint.npz"
RECORD_NAME = "run.json"
TRAJECTORY_NAME = "traj.h5"
LOG_NAME = "run.log"
LOCK_NAME = ".lock"


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then move it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    text = json.dumps(data, indent=2, default=json_default).encode()
    atomic_write_bytes(path, lambda fh: fh.write(text))


def check_output_dir(path, option: str = "-o/--output") -> Path:
    """Create ``path`` (and parents) and make sure a file can be written in it; return it.

    Raises ValueError naming the directory when it is a file, lies under a file, is read-only or
    its name is too long, before any work is done.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path}: exists and is not a directory; choose another output directory "
                             f"({option})")
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
        require_free_space(path, what="a run")
    except OSError as exc:
        raise ValueError(f"{path}: cannot write the output directory ({exc.strerror or exc}); "
                         f"choose another output directory ({option})") from None
    return path


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when the file does not exist."""
    path = Path(path)
    try:
        if not path.is_file():
            return None
        return json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc}); choose another output "
                         "directory (-o)") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete the run directory to start the "
                         "run from scratch") from None


@dataclass(frozen=True)
class Checkpoint:
    """State of a run after integrator step ``step`` (see module docstring for the units)."""

    positions: np.ndarray
    momenta: np.ndarray
    cell: np.ndarray
    step: int
    n_frames: int
    rng_state: dict
    thermostat: dict
    wall_s: float
    settings_key: dict
    uncertainty: np.ndarray | None = None


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write a checkpoint atomically (temporary file + ``os.replace``)."""
    arrays = {"positions": np.asarray(ckpt.positions, dtype=np.float64),
              "momenta": np.asarray(ckpt.momenta, dtype=np.float64),
              "cell": np.asarray(ckpt.cell, dtype=np.float64),
              "step": np.int64(ckpt.step), "n_frames": np.int64(ckpt.n_frames),
              "wall_s": np.float64(ckpt.wall_s),
              "rng_state": np.array(json.dumps(ckpt.rng_state)),
              "thermostat": np.array(json.dumps(ckpt.thermostat, default=json_default)),
              "settings_key": np.array(json.dumps(ckpt.settings_key, sort_keys=True))}
    if ckpt.uncertainty is not None:
        arrays["uncertainty"] = np.asarray(ckpt.uncertainty, dtype=np.float64).reshape(-1, 2)
    atomic_write_bytes(path, lambda fh: np.savez(fh, **arrays))


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint in ``path``, or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return _read_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - truncated zip, garbage, missing keys: one clear line
        raise ValueError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); delete it to "
                         "restart this run from scratch (its frames are rewritten)") from None


def _read_checkpoint(path: Path) -> Checkpoint:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
        return Checkpoint(positions=z["positions"].copy(), momenta=z["momenta"].copy(),
                          cell=z["cell"].copy(), step=int(z["step"]), n_frames=int(z["n_frames"]),
                          rng_state=json.loads(str(z["rng_state"])),
                          thermostat=json.loads(str(z["thermostat"])), wall_s=float(z["wall_s"]),
                          settings_key=json.loads(str(z["settings_key"])),
                          uncertainty=z["uncertainty"].copy() if "uncertainty" in z.files else None)


def rng_from_state(state: dict) -> np.random.Generator:
    """A numpy Generator whose bit generator continues exactly from ``state``."""
    bit_gen = getattr(np.random, state["bit_generator"])()
    bit_gen.state = state
    return np.random.Generator(bit_gen)


class RunLock:
    """An exclusive ``flock`` on ``DIR/.lock`` while a run writes into DIR (the file is removed on release).

    The kernel drops the lock when the process dies (even by SIGKILL), so a resumed run waits
    at most ``timeout_s`` for a dying predecessor and never writes alongside a live one.
    """

    def __init__(self, directory: Path, timeout_s: float = 30.0):
        self.path = Path(directory) / LOCK_NAME
        self.timeout_s = float(timeout_s)
        self._fh = None

    def __enter__(self) -> RunLock:
        import fcntl
        import time

        deadline = time.monotonic() + self.timeout_s
        while True:
            self._fh = open(self.path, "a")
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._fh.close()
                if time.monotonic() > deadline:
                    raise ValueError(f"{self.path.parent}: another process is running this MD run "
                                     f"(lock held for more than {self.timeout_s:g} s)") from None
                time.sleep(0.1)
                continue
            # the holder before us removes the file on release: a lock on a removed file guards nothing
            if self._same_file():
                return self
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()

    def _same_file(self) -> bool:
        import os

        try:
            return os.fstat(self._fh.fileno()).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def __exit__(self, *exc) -> None:
        import fcntl

        self.path.unlink(missing_ok=True)  # still locked: nobody can take the lock on this file now
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


class QuietFileHandler(logging.FileHandler):
    """The handler of run.log, a diary: a failed write (a full disk) must not print logging's traceback;
    the run's status (run.json, the summary) reports the error."""

    def handleError(self, record):  # noqa: N802 (logging's name)
        pass
