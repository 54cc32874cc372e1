"""extxyz (plain or ``.gz``) and ASE ``.traj`` reader, through ``ase.io``.

Per frame: positions, cell, pbc; energy, forces and stress from the attached calculator
(ASE puts a ``SinglePointCalculator`` on frames that carry them; NaN in frames that do not);
velocities from momenta when the file stores them. The energy is ``free_energy`` when the
frame has one (as VASP's TOTEN, which the VASP readers return), else ``energy``.

Units: ASE velocities are Å per ASE time unit; here they become Å/fs
(``v_A_per_fs = v_ase * ase.units.fs``). ASE stress is eV/Å³ with ASE's sign already.
The MD timestep comes from ``atoms.info["timestep_fs"]`` or ``["dt_fs"]`` when present, else
None; ``info["stride"]`` likewise (default 1).

Truncation: an extxyz is pre-scanned line by line (atom-count line, comment, atom lines) to
find the complete frames; a short last frame, or a last line without its newline, is dropped
with a ``TruncatedFileWarning``. For ``.traj`` a frame that fails to load together with every
later one is a cut file; a failing frame followed by a readable one is corruption.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from ase import units
from ase.stress import voigt_6_to_full_3x3_stress

from phonion.md.io import TruncatedFileWarning
from phonion.md.io.vasp_xdatcar import read_text
from phonion.md.trajectory import Trajectory, TrajectoryError
from phonion.md.velocities import unwrap_cartesian, unwrap_fractional

__all__ = ["read_ase"]


def _extxyz_frames(path: Path, src: str):
    """(list of Atoms, truncated) for an extxyz file."""
    import ase.io

    text, gz_cut = read_text(path)
    lines = text.splitlines()
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    starts, i, truncated = [], 0, False
    while i < end:
        try:
            n = int(lines[i].split()[0])
        except (ValueError, IndexError):
            if i == end - 1:
                truncated = True
                break
            raise TrajectoryError(f"{src}: line {i + 1}: expected the atom count of a frame, "
                                  f"found {lines[i].strip()[:60]!r}") from None
        if i + 2 + n > end:
            truncated = True
            break
        starts.append((i, n))
        i += 2 + n
    if starts and (gz_cut or not text.endswith(("\n", "\r"))) and sum(starts[-1]) + 2 == end:
        starts.pop()  # the last line may be cut inside a number
        truncated = True
    if not starts:
        raise TrajectoryError(f"{src}: no complete extxyz frame")
    frames = []
    reader = ase.io.iread(io.StringIO("\n".join(lines[:sum(starts[-1]) + 2]) + "\n"), index=":",
                          format="extxyz")
    k = 0
    try:
        for atoms in reader:
            frames.append(atoms)
            k += 1
    except Exception as exc:  # noqa: BLE001 - ASE raises ValueError, XYZError, KeyError...
        i, n = starts[min(k, len(starts) - 1)]
        raise TrajectoryError(f"{src}: frame {k + 1} (lines {i + 1}-{i + n + 2}) cannot be read: {exc}") from None
    return frames, truncated


def _traj_frames(path: Path, src: str):
    from ase.io.trajectory import Trajectory as AseTrajectory

    if path.name.lower().endswith(".gz"):
        raise TrajectoryError(f"{src}: ASE .traj files cannot be read gzipped; gunzip it first")
    try:
        traj = AseTrajectory(str(path), "r")
    except Exception as exc:  # noqa: BLE001
        raise TrajectoryError(f"{src}: not a readable ASE trajectory ({exc})") from None
    frames, truncated = [], False
    with traj:
        n = len(traj)
        for k in range(n):
            try:
                frames.append(traj[k])
            except Exception as exc:  # noqa: BLE001
                try:
                    traj[n - 1]
                except Exception:  # noqa: BLE001 - the rest is unreadable too: a cut file
                    truncated = True
                    break
                raise TrajectoryError(f"{src}: frame {k + 1} of {n} cannot be read ({exc})") from None
    if not frames:
        raise TrajectoryError(f"{src}: no complete frame")
    return frames, truncated


def _results(atoms) -> dict:
    calc = atoms.calc
    return dict(getattr(calc, "results", {}) or {}) if calc is not None else {}


def _store_labels(k: int, atoms, arrays: tuple, have: dict, kinds: set) -> None:
    """Frame ``k``'s energy, forces, stress and velocities into ``arrays`` = (energies, forces, stress, velocities);
    ``have`` notes which quantities some frame has, ``kinds`` the energy kinds found."""
    energies, forces, stress, vel = arrays
    res = _results(atoms)
    for key in ("free_energy", "energy"):
        if res.get(key) is not None:
            energies[k] = float(res[key])
            kinds.add(key)
            have["energy"] = True
            break
    if res.get("forces") is not None:
        forces[k] = res["forces"]
        have["forces"] = True
    if res.get("stress") is not None:
        s = np.asarray(res["stress"], dtype=float)
        stress[k] = voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s.reshape(3, 3)
        have["stress"] = True
    if "momenta" in atoms.arrays:
        vel[k] = atoms.get_velocities() * units.fs  # Å/(ASE time) → Å/fs
        have["velocities"] = True


def read_ase(path: str | Path) -> Trajectory:
    """Read an extxyz (``.xyz``/``.extxyz``, optionally ``.gz``) or ASE ``.traj`` file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Trajectory
        ``positions`` (F, N, 3) Å, unwrapped along periodic directions; ``cells`` (F, 3, 3) Å;
        ``energies`` (F,) eV, ``forces`` (F, N, 3) eV/Å, ``stress`` (F, 3, 3) eV/Å³ where any frame
        has them (NaN in the others; None when no frame has them); ``velocities`` (F, N, 3) Å/fs
        when the frames carry momenta; ``timestep_fs`` from ``info`` or None.

    Raises
    ------
    TrajectoryError
        Unreadable frame, species differing between frames; the message names the file.

    Warns
    -----
    TruncatedFileWarning
        The file ends inside a frame; the whole frames before it are returned.
    """
    path = Path(path)
    src = str(path)
    name = path.name.lower().removesuffix(".gz")
    frames, truncated = (_traj_frames if name.endswith(".traj") else _extxyz_frames)(path, src)
    if truncated:
        warnings.warn(f"{src}: file ends inside a frame; kept the {len(frames)} complete frame(s)",
                      TruncatedFileWarning, stacklevel=2)
    first = frames[0]
    symbols = tuple(first.get_chemical_symbols())
    pbc = tuple(bool(x) for x in first.pbc)
    n_frames, n_atoms = len(frames), len(first)
    pos = np.empty((n_frames, n_atoms, 3))
    cells = np.empty((n_frames, 3, 3))
    energies, forces = np.full(n_frames, np.nan), np.full((n_frames, n_atoms, 3), np.nan)
    stress, vel = np.full((n_frames, 3, 3), np.nan), np.full((n_frames, n_atoms, 3), np.nan)
    have = {"energy": False, "forces": False, "stress": False, "velocities": False}
    timesteps, strides, kinds = set(), set(), set()
    for k, atoms in enumerate(frames):
        if tuple(atoms.get_chemical_symbols()) != symbols:
            raise TrajectoryError(f"{src}: frame {k + 1} has different species (or order) from frame 1")
        if tuple(bool(x) for x in atoms.pbc) != pbc:
            raise TrajectoryError(f"{src}: frame {k + 1} has pbc {atoms.pbc.tolist()}, frame 1 {list(pbc)}")
        pos[k] = atoms.get_positions()
        cells[k] = atoms.get_cell()[:]
        _store_labels(k, atoms, (energies, forces, stress, vel), have, kinds)
        for key in ("timestep_fs", "dt_fs"):
            if key in atoms.info:
                timesteps.add(float(atoms.info[key]))
                break
        if "stride" in atoms.info:
            strides.add(int(atoms.info["stride"]))
    if len(timesteps) > 1 or len(strides) > 1:
        raise TrajectoryError(f"{src}: frames disagree on the timestep {sorted(timesteps)} or stride {sorted(strides)}")
    positions = _unwrap(pos, cells, pbc, src)
    meta = {"source_files": [src], "format": "traj" if name.endswith(".traj") else "extxyz",
            "stride_source": "file" if strides else "default"}
    if kinds:
        meta["energy_kind"] = "free_energy" if kinds == {"free_energy"} else "/".join(sorted(kinds))
    if have["velocities"]:
        meta["velocities_source"] = "file"
    masses = first.get_masses() if first.has("masses") else None
    return Trajectory(
        symbols=symbols, positions=positions, cells=cells, pbc=pbc,
        timestep_fs=timesteps.pop() if timesteps else None, stride=strides.pop() if strides else 1,
        energies=energies if have["energy"] else None, forces=forces if have["forces"] else None,
        stress=stress if have["stress"] else None, velocities=vel if have["velocities"] else None,
        masses=masses, metadata=meta)


def _unwrap(pos: np.ndarray, cells: np.ndarray, pbc: tuple, src: str) -> np.ndarray:
    """Unwrap along periodic directions (fractional, per-frame cell); others untouched."""
    if not any(pbc):
        return pos
    if (np.abs(np.linalg.det(cells)) < 1e-12).any():
        raise TrajectoryError(f"{src}: periodic frames with a singular cell")
    frac = np.linalg.solve(np.swapaxes(cells, 1, 2)[:, None], pos[..., None])[..., 0]
    if all(pbc):
        return unwrap_cartesian(frac, cells, src)
    periodic = np.array(pbc)
    cont = unwrap_fractional(frac, src)
    cont[..., ~periodic] = frac[..., ~periodic]
    return np.einsum("fnj,fjk->fnk", cont, cells)
