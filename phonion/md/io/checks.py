"""Checks on what the readers return, so that bad numbers never reach an analysis silently.

``check_values(traj, source)``: every position and cell finite, every periodic cell of
non-zero volume; velocities, forces, energies, stress, temperatures finite wherever a frame
holds them (a frame whose row is all NaN simply lacks that quantity, the readers' convention).

``check_pieces(parts, paths)``: the pieces of one run given to ``read_trajectory`` follow
each other in time: no file twice, no piece repeating frames of an earlier one, configuration
/ ionic-step numbers in order without gaps or overlaps, and — where the numbering restarts
(each VASP restart counts from 1 again) — positions that continue across each join.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phonion.md.trajectory import Trajectory, TrajectoryError

#: a periodic cell whose volume is below this fraction of |a||b||c| is singular
MIN_CELL_FILL = 1e-6
#: a join's mean-square displacement may exceed the pieces' largest two-frame one by this factor
JOIN_MSD_FACTOR = 1.5
#: first frames this close (Å, minimum image) are the same frame
SAME_FRAME_A = 1e-6

_OPTIONAL = ("velocities", "forces", "energies", "stress", "temperatures_K")


def _missing_allowed(traj: Trajectory) -> bool:
    """OUTCAR ``frames='all'`` keeps ionic steps without a POSITION table as all-NaN frames."""
    meta = traj.metadata
    return meta.get("format") == "outcar" or (meta.get("converted_from") or {}).get("format") == "outcar"


def _first_bad(arr: np.ndarray, allow_missing_rows: bool, per_atom: bool):
    """(frame, atom or None) of the first non-finite value that is not part of an all-NaN frame, or None."""
    flat = arr.reshape(arr.shape[0], -1)
    bad = ~np.isfinite(flat)
    if allow_missing_rows:
        bad &= ~np.isnan(flat).all(axis=1, keepdims=True)
    if not bad.any():
        return None
    f, k = np.argwhere(bad)[0]
    atom = int(k // 3) if per_atom else None
    return int(f), atom, flat[f, k]


def check_values(traj: Trajectory, source=None, frame_offset: int = 0, frame_step: int = 1,
                 atom_numbers=None) -> None:
    """Refuse non-finite data and singular periodic cells, naming the file, frame and atom.

    ``frame_offset``/``frame_step``/``atom_numbers`` map a window (``H5MDReader``) back to the
    file's own frame and atom indices (all 0-based in the message, as everywhere in phonion).
    """
    src = source or ", ".join(traj.metadata.get("source_files", [])) or "trajectory"
    checks = [("positions", _missing_allowed(traj)), ("cells", _missing_allowed(traj))]
    checks += [(name, True) for name in _OPTIONAL]
    for name, allow in checks:
        value = getattr(traj, name)
        if value is None or value.size == 0:
            continue
        hit = _first_bad(value, allow, name in ("positions", "velocities", "forces"))
        if hit is None:
            continue
        f, atom, v = hit
        frame = frame_offset + f * frame_step
        where = f"frame {frame}" + ("" if atom is None else
                                    f", atom {int(atom_numbers[atom]) if atom_numbers is not None else atom}")
        raise TrajectoryError(f"{src}: {name} hold a non-finite value ({v}) at {where}; "
                              "the file is damaged or was written from a failed run")
    if all(traj.pbc) and traj.n_frames:
        cells = traj.cells
        ok = np.isfinite(cells).all(axis=(1, 2))
        norms = np.prod(np.linalg.norm(np.where(ok[:, None, None], cells, 1.0), axis=2), axis=1)
        vol = np.abs(np.linalg.det(np.where(ok[:, None, None], cells, np.eye(3))))
        bad = ok & ~(vol > MIN_CELL_FILL * norms)
        if bad.any():
            f = int(np.flatnonzero(bad)[0])
            raise TrajectoryError(
                f"{src}: the periodic cell of frame {frame_offset + f * frame_step} is singular "
                f"(volume {vol[f]:.3g} Å³); the lattice vectors in the file are wrong")


# ---- pieces of one run ---------------------------------------------------------------------
def _h5md_steps(path: Path, n_frames: int):
    from phonion.md.io.h5md_read import H5MDReader

    try:
        pe = H5MDReader(path)._el["positions"]
    except TrajectoryError:  # not on disk any more (a Trajectory built by hand): no numbers
        return None
    if pe.steps is None or pe.fixed or len(pe.steps) < n_frames or n_frames == 0:
        return None
    return int(pe.steps[0]), int(pe.steps[n_frames - 1])


def _numbers(traj: Trajectory, path: Path):
    """(first, last, step) of the file's own frame numbering (configuration / ionic step / MD step), or None."""
    meta = traj.metadata
    fmt = meta.get("format")
    if len(meta.get("source_files", [])) != 1:
        return None  # joined pieces keep the first piece's numbering only
    if fmt == "xdatcar" and "configuration_numbers_first" in meta:
        return (int(meta["configuration_numbers_first"]), int(meta["configuration_numbers_last"]),
                int(meta.get("configuration_numbers_step") or 1), "configuration")
    if fmt == "outcar" and meta.get("ionic_steps"):
        steps = meta["ionic_steps"]
        step = int(steps[1] - steps[0]) if len(steps) > 1 else 1
        return int(steps[0]), int(steps[-1]), max(step, 1), "ionic step"
    steps = _h5md_steps(path, traj.n_frames) if fmt == "h5md" else None
    if steps is not None:
        return steps[0], steps[1], max(int(traj.stride), 1), "step"
    return None


def _min_image(a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """b − a per atom by the minimum image of ``cell`` (rows), Å."""
    frac = np.linalg.solve(cell.T, (b - a).T).T
    return (frac - np.round(frac)) @ cell


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or a.samefile(b)
    except OSError:
        return False


def _check_duplicates(parts, paths) -> None:
    for j in range(1, len(parts)):
        for i in range(j):
            if _same_file(paths[i], paths[j]):
                raise TrajectoryError(f"{paths[j]} is given twice (as piece {i + 1} and {j + 1}); "
                                      "give each piece of the run once")
            prev, nxt = parts[i], parts[j]
            if prev.n_atoms != nxt.n_atoms or not np.isfinite(nxt.positions[0]).all():
                continue
            frac = (nxt.positions[0][None] - prev.positions) @ np.linalg.inv(nxt.cells[0])
            d = np.einsum("fnj,jk->fnk", frac - np.round(frac), nxt.cells[0])
            worst = np.abs(d).max(axis=(1, 2))
            same = np.flatnonzero(worst < SAME_FRAME_A)
            if same.size:
                f = int(same[0])
                what = ("holds the same frames as" if f == 0 else "starts with the last frame of"
                        if f == prev.n_frames - 1 else f"starts with frame {f} of")
                raise TrajectoryError(
                    f"{paths[j]} {what} {paths[i]} (the pieces overlap or one file is given twice); "
                    "give each stretch of the run once, in time order")


def _msd_two_frames(traj: Trajectory) -> float | None:
    p = traj.positions
    if traj.n_frames < 3:
        return None
    return float(((p[2:] - p[:-2]) ** 2).sum(-1).mean(-1).max())


def _check_join(prev: Trajectory, nxt: Trajectory, a: Path, b: Path) -> None:
    na, nb = _numbers(prev, a), _numbers(nxt, b)
    if na is not None and nb is not None and na[3] == nb[3]:
        (a0, a1, s, word), b0 = na, nb[0]
        if b0 == a1 + s:
            return  # numbering continues: the pieces follow each other
        if b0 < a0 and a0 > s:
            raise TrajectoryError(
                f"{a} starts at {word} {a0} but {b}, given after it, starts at {b0}: "
                "give the pieces in time order")
        if a0 < b0 <= a1:
            raise TrajectoryError(f"{b} starts at {word} {b0}, inside {a} ({word}s {a0}–{a1}): "
                                  "the pieces overlap; give each stretch of the run once")
        if b0 > a1 + s:
            raise TrajectoryError(f"{a} ends at {word} {a1} but {b} starts at {b0}: {word}s in between "
                                  "are missing; give all pieces of the run, in time order")
    # numbering restarts (VASP counts each restart from 1): the positions must continue
    refs = [m for m in (_msd_two_frames(prev), _msd_two_frames(nxt)) if m is not None]
    if not refs or not (np.isfinite(prev.positions[-1]).all() and np.isfinite(nxt.positions[0]).all()):
        return
    jump = float((_min_image(prev.positions[-1], nxt.positions[0], nxt.cells[0]) ** 2).sum(-1).mean())
    limit = JOIN_MSD_FACTOR * max(refs)
    if jump > limit:
        raise TrajectoryError(
            f"{b} does not continue where {a} ends: the atoms jump by a mean-square {jump:.3g} Å² "
            f"at the join, more than {limit:.3g} Å² ({JOIN_MSD_FACTOR:g}× the largest two-frame "
            "change inside the pieces); give the pieces in time order, each once, with none missing")


def check_pieces(parts: list[Trajectory], paths) -> None:
    """Refuse pieces of one run that are repeated, overlapping, out of order or have gaps."""
    paths = [Path(p) for p in paths]
    _check_duplicates(parts, paths)
    for k in range(1, len(parts)):
        if parts[k - 1].n_atoms == parts[k].n_atoms:
            _check_join(parts[k - 1], parts[k], paths[k - 1], paths[k])


__all__ = ["check_values", "check_pieces"]
