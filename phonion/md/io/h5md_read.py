"""Lazy, windowed reading of H5MD 1.1 files (phonion's own and those of other MD tools).

``H5MDReader(path)`` looks at the layout once and then reads only the frames and atoms asked
for (h5py hyperslabs), so a 10⁶-frame run can be analysed in bounded memory with
``iter_chunks``. ``phonion.md.io.h5md`` re-exports everything here; see it for the on-disk layout.

Files from other tools (LAMMPS ``dump h5md``, MDAnalysis, pyh5md, ...) are read too: species
as atomic numbers or strings, box edges fixed or time-dependent, rectangular or triclinic,
``step``/``time`` as arrays or as H5MD 1.1 fixed increments (scalar + ``offset``), units
converted to Å, fs, eV from their ``unit`` attributes, and wrapped positions unwrapped (with
the ``image`` element if present, else frame to frame by the minimum image).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from ase import units as ase_units
from ase.data import chemical_symbols

from phonion.md.io import TruncatedFileWarning
from phonion.md.trajectory import Trajectory, TrajectoryError, masses_for
from phonion.md.velocities import unwrap_fractional

#: HDF5 chunk cache per dataset (bytes): holds a few chunks when reads straddle chunk edges
CHUNK_CACHE_BYTES = 16 * 2**20
_KJMOL, _KCALMOL = ase_units.kJ / ase_units.mol, ase_units.kcal / ase_units.mol
#: factor that takes a value in the named unit to phonion's unit (Å, fs, eV, K, amu); keys normalised
UNITS = {
    "length": {"angstrom": 1.0, "a": 1.0, "å": 1.0, "ang": 1.0, "nm": 10.0, "pm": 0.01,
               "bohr": ase_units.Bohr},
    "time": {"fs": 1.0, "ps": 1e3, "ns": 1e6},
    "velocity": {"angstrom fs-1": 1.0, "a fs-1": 1.0, "å fs-1": 1.0, "nm ps-1": 0.01,
                 "angstrom ps-1": 1e-3, "a ps-1": 1e-3, "å ps-1": 1e-3, "nm fs-1": 10.0},
    "force": {"ev angstrom-1": 1.0, "ev a-1": 1.0, "ev å-1": 1.0, "kj mol-1 nm-1": _KJMOL / 10,
              "kcal mol-1 angstrom-1": _KCALMOL, "kcal mol-1 a-1": _KCALMOL},
    "energy": {"ev": 1.0, "kj mol-1": _KJMOL, "kcal mol-1": _KCALMOL},
    "stress": {"ev angstrom-3": 1.0, "ev a-3": 1.0, "ev å-3": 1.0, "gpa": ase_units.GPa,
               "bar": ase_units.bar, "kbar": 1e3 * ase_units.bar},
    "temperature": {"k": 1.0},
    "mass": {"amu": 1.0, "u": 1.0, "da": 1.0, "g mol-1": 1.0},
}
#: Trajectory attribute -> (H5MD element name under /particles/<group> or /observables, unit kind)
PARTICLE_FIELDS = {"positions": ("position", "length"), "velocities": ("velocity", "velocity"),
                   "forces": ("force", "force")}
OBSERVABLES = {"energies": ("potential_energy", "energy"), "stress": ("stress", "stress"),
               "temperatures_K": ("temperature", "temperature"),
               "force_uncertainty_max_eV_A": ("force_uncertainty_max", "force")}


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, np.bytes_)) else str(value)


def normalise_unit(unit: str) -> str:
    """'nm/ps', 'nm ps^-1', 'kJ/(mol*nm)' -> 'nm ps-1', 'kj mol-1 nm-1' (lower case, H5MD style)."""
    u = unit.strip().lower().replace("^", "").replace("**", "").replace("·", " ").replace("*", " ")
    u = u.replace("(", "").replace(")", "")
    head, *rest = u.split("/")
    parts = head.split() + [f"{tok}-1" if not tok[-1].isdigit() else f"{tok[:-1]}-{tok[-1]}"
                            for r in rest for tok in r.split()]
    return " ".join(parts)


def unit_factor(kind: str, unit: str | None, where: str) -> float:
    """Factor to phonion's unit for ``kind``; missing unit -> 1, unknown unit -> warning and 1."""
    if unit is None or unit.strip() == "":
        return 1.0
    factor = UNITS[kind].get(normalise_unit(unit))
    if factor is None:
        warnings.warn(f"{where}: unknown {kind} unit {unit!r}; assuming phonion's unit "
                      f"({next(iter(UNITS[kind]))})", stacklevel=3)
        return 1.0
    return factor


@dataclass
class _Element:
    """One H5MD element: a time-dependent group {step,time,value} or a fixed-in-time dataset."""

    path: str                        # path of the value dataset
    fixed: bool                      # fixed in time: value has no frame axis
    length: int                      # frames stored (1 for fixed)
    steps: np.ndarray | None = None  # integer step of every stored row
    times: np.ndarray | None = None  # time of every stored row, fs
    unit: str | None = None
    kind: str | None = None          # unit kind (UNITS key) for conversion, None: no conversion
    rows: np.ndarray | None = None   # position frame -> row of this element (-1: absent); None = same


def _series(g: h5py.Group, name: str, length: int, read: bool):
    """An element's step or time (array or H5MD 1.1 fixed increment) as (length,) array, and its length."""
    if name not in g or not isinstance(g[name], h5py.Dataset):
        return None, length
    ds = g[name]
    if ds.shape == ():
        return np.asarray(ds.attrs.get("offset", 0)) + np.asarray(ds[()]) * np.arange(length), length
    return (ds[:] if read else None), ds.shape[0]


def _element(f: h5py.File, path: str, lengths: list, kind: str | None = None,
             read: bool = True) -> _Element | None:
    """The element at ``path`` (None if absent); lengths of its datasets are added to ``lengths``."""
    if path not in f:
        return None
    obj = f[path]
    if isinstance(obj, h5py.Dataset):
        return _Element(obj.name, True, 1, unit=_unit(obj), kind=kind)
    if "value" not in obj:
        return None
    value = obj["value"]
    n = value.shape[0]
    lengths.append((value.name, n))
    steps, ns = _series(obj, "step", n, read)
    times, nt = _series(obj, "time", n, read)
    lengths += [(f"{obj.name}/step", ns), (f"{obj.name}/time", nt)]
    if times is not None:
        times = times * unit_factor("time", _unit(obj["time"]), f"{f.filename}:{obj.name}/time")
    return _Element(value.name, False, min(n, ns, nt), steps, times, _unit(value) or _unit(obj), kind)


def _unit(obj) -> str | None:
    return _text(obj.attrs["unit"]) if "unit" in obj.attrs else None


def _atom_selection(atoms, n_atoms: int, where: str):
    """(h5py selection along the atom axis: slice or increasing index array, re-order index or None)."""
    if atoms is None:
        return slice(None), None
    idx = np.asarray(atoms, dtype=int).reshape(-1)
    if idx.size and (idx.min() < -n_atoms or idx.max() >= n_atoms):
        raise TrajectoryError(f"{where}: atom index out of range for {n_atoms} atoms")
    uniq, inv = np.unique(idx % n_atoms, return_inverse=True)
    sel = slice(int(uniq[0]), int(uniq[-1]) + 1) if uniq.size and uniq[-1] - uniq[0] + 1 == uniq.size else uniq
    if isinstance(sel, np.ndarray) and sel.size == 0:
        sel = slice(0, 0)
    return sel, (None if np.array_equal(inv, np.arange(uniq.size)) else inv)


class H5MDReader:
    """Lazy reader of one particle group of an H5MD file.

    Parameters
    ----------
    path : path of the ``.h5`` file
    particles_group : name under ``/particles``; default ``all`` if present, else the only one.

    Attributes
    ----------
    n_frames, n_atoms : int
    symbols : tuple of str, length N
    masses : ndarray, shape=(N,), amu
    timestep_fs : float or None, the MD integrator step
    stride : int, integrator steps between stored frames
    """

    def __init__(self, path, particles_group: str | None = None):
        self.path = Path(path)
        self._anchors: dict[int, np.ndarray] = {}
        with self._open() as f:
            self._scan(f, particles_group)

    # ---- layout ----------------------------------------------------------------------
    def _open(self) -> h5py.File:
        try:
            # SWMR read: also opens a file still being written, or left by a killed SWMR writer
            return h5py.File(self.path, "r", swmr=True, rdcc_nbytes=CHUNK_CACHE_BYTES)
        except FileNotFoundError:
            raise TrajectoryError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise TrajectoryError(f"{self.path}: not a readable HDF5 file ({exc})") from None

    def _scan(self, f: h5py.File, group: str | None) -> None:
        src = str(self.path)
        if "particles" not in f:
            raise TrajectoryError(f"{src}: no /particles group; not an H5MD trajectory")
        groups = sorted(f["particles"].keys())
        if group is None:
            group = "all" if "all" in groups else (groups[0] if len(groups) == 1 else None)
            if group is None:
                raise TrajectoryError(f"{src}: several particle groups {groups}; choose one "
                                      "(particles_group=...)")
        elif group not in groups:
            raise TrajectoryError(f"{src}: no particle group {group!r}; the file has {groups}")
        g = f["particles"][group]
        self.particles_group = group
        params = f["parameters/phonion"].attrs if "parameters/phonion" in f else None
        self._ours = params is not None
        lengths: list = []
        el: dict[str, _Element] = {}
        for name, (h5name, kind) in PARTICLE_FIELDS.items():  # our files share step/time: read once
            el[name] = _element(f, f"{g.name}/{h5name}", lengths, kind, not self._ours or name == "positions")
        if el["positions"] is None:
            raise TrajectoryError(f"{src}: particle group {group!r} has no position element")
        rd = not self._ours
        el["image"] = _element(f, f"{g.name}/image", lengths, None, rd)
        el["cells"] = _element(f, f"{g.name}/box/edges", lengths, "length", rd)
        for name, (h5name, kind) in OBSERVABLES.items():
            el[name] = (_element(f, f"/observables/{h5name}", lengths, kind, rd)
                        or _element(f, f"/observables/{group}/{h5name}", lengths, kind, rd))
        self._el = {k: v for k, v in el.items() if v is not None}
        self._align(lengths)
        pos_g = f[self._el["positions"].path]
        self._unwrapped = bool(pos_g.attrs.get("phonion_unwrapped", 0))
        box = g["box"] if "box" in g else None
        boundary = [] if box is None else [_text(b).strip().lower() for b in box.attrs.get("boundary", [])]
        self.pbc = tuple(b == "periodic" for b in boundary) if len(boundary) == 3 else (
            (True,) * 3 if "cells" in self._el else (False,) * 3)
        if any(self.pbc) and "cells" not in self._el:
            raise TrajectoryError(f"{src}: periodic boundaries but no box/edges in group {group!r}")
        self.n_atoms = int(pos_g.shape[0 if self._el["positions"].fixed else 1])
        self.symbols = self._symbols(f, g, params)
        self.masses = self._masses(f, g)
        self._timing(params)
        self.metadata = self._metadata(f, params)

    def _align(self, lengths: list) -> None:
        """Frame count and, for elements sampled at other steps, the position-frame -> row map."""
        pos = self._el["positions"]
        if self._ours:  # one writer wrote all elements together: lengths only
            n = min(n for _, n in lengths)
            if len({n for _, n in lengths}) > 1:
                short = sorted({p for p, m in lengths if m > n})
                warnings.warn(TruncatedFileWarning(
                    f"{self.path}: datasets differ in length (interrupted write?); reading the first "
                    f"{n} frames, which all of them hold ({', '.join(short)} longer)"), stacklevel=3)
            self.n_frames = n if not pos.fixed else 1
            return
        n = pos.length
        group = pos.path.rsplit("/", 1)[0] + "/"
        if len({m for p, m in lengths if p.startswith(group)}) > 1:
            warnings.warn(TruncatedFileWarning(f"{self.path}: position step/time/value differ in "
                                               f"length; reading {n} frames"), stacklevel=3)
        ref = pos.steps
        for name, e in self._el.items():
            if e.fixed or name == "positions":
                continue
            m = min(e.length, n)
            if e.steps is None or ref is None or np.array_equal(e.steps[:m], ref[:m]):
                if e.length < n:
                    warnings.warn(TruncatedFileWarning(f"{self.path}: {e.path} has {e.length} of {n} "
                                                       "frames; reading the first"), stacklevel=3)
                    n = e.length
            else:  # sampled at other steps: match by step, NaN where this element has none
                order = np.argsort(e.steps[:e.length], kind="stable")
                srt = e.steps[:e.length][order]
                at = np.minimum(np.searchsorted(srt, ref), max(e.length - 1, 0))
                e.rows = np.where((e.length > 0) & (srt[at] == ref), order[at], -1)
        self.n_frames = n if not pos.fixed else 1

    def _symbols(self, f, g, params) -> tuple[str, ...]:
        if params is not None and "symbols" in params:
            return tuple(_text(s) for s in params["symbols"])
        sp = _element(f, f"{g.name}/species", [])
        if sp is None:
            raise TrajectoryError(f"{self.path}: no species record; cannot tell the elements "
                                  f"(group {self.particles_group!r} has no species dataset)")
        values = f[sp.path][()] if sp.fixed else f[sp.path][0]
        values = np.asarray(values).reshape(-1)
        if values.dtype.kind in "iu":
            if values.size and (values.min() < 1 or values.max() >= len(chemical_symbols)):
                raise TrajectoryError(f"{self.path}: species {sorted(set(values.tolist()))[:8]} are "
                                      "not atomic numbers")
            out = tuple(chemical_symbols[int(z)] for z in values)
        else:
            out = tuple(_text(s).strip() for s in values)
        if len(out) != self.n_atoms:
            raise TrajectoryError(f"{self.path}: {len(out)} species for {self.n_atoms} atoms")
        return out

    def _masses(self, f, g) -> np.ndarray:
        m = _element(f, f"{g.name}/mass", [])
        if m is None:
            return masses_for(self.symbols, str(self.path))
        value = np.asarray(f[m.path][()] if m.fixed else f[m.path][0], dtype=float)
        return np.broadcast_to(value * unit_factor("mass", m.unit, m.path), (self.n_atoms,)).copy()

    def _timing(self, params) -> None:
        pos = self._el["positions"]
        if params is not None:
            ts = float(params.get("timestep_fs", np.nan))
            self.timestep_fs = ts if np.isfinite(ts) else None
            self.stride = int(params.get("stride", 1))
            return
        self.timestep_fs, self.stride = None, 1
        st, tm = pos.steps, pos.times
        if self.n_frames < 2:
            return
        dstep = int(st[1] - st[0]) if st is not None else None
        dt = float(tm[1] - tm[0]) if tm is not None else None
        if (st is not None and len(set(np.diff(st[:self.n_frames]).tolist())) > 1) or dstep == 0:
            warnings.warn(f"{self.path}: frames are not evenly spaced in steps; stride and timestep "
                          "are taken from the first two frames", stacklevel=3)
        if dstep:
            self.stride = abs(dstep)
            if dt:
                self.timestep_fs = dt / dstep
        elif dt:
            self.timestep_fs = dt

    def _metadata(self, f, params) -> dict:
        meta = json.loads(_text(params["metadata"])) if params is not None and "metadata" in params else {}
        if meta.get("format", "h5md") != "h5md" and "converted_from" not in meta:
            meta["converted_from"] = {"format": meta["format"],
                                      "source_files": list(meta.get("source_files", []))}
        meta["source_files"], meta["format"] = [str(self.path)], "h5md"
        if not self._ours:
            creator = f["h5md/creator"].attrs if "h5md/creator" in f else {}
            meta["creator"] = " ".join(_text(creator[k]) for k in ("name", "version") if k in creator)
            meta["particles_group"] = self.particles_group
            meta.setdefault("timestep_fs_source", "file" if self.timestep_fs else None)
            meta.setdefault("stride_source", "file")
        return meta

    # ---- reading ---------------------------------------------------------------------
    def _frames(self, frames) -> tuple[int, int, int]:
        n = self.n_frames
        if frames is None:
            return 0, n, 1
        if isinstance(frames, (int, np.integer)):
            i = int(frames) + n if frames < 0 else int(frames)
            if not 0 <= i < n:
                raise TrajectoryError(f"{self.path}: frame {frames} out of range ({n} frames)")
            return i, i + 1, 1
        if isinstance(frames, slice):
            start, stop, step = frames.indices(n)
            if step < 1:
                raise TrajectoryError(f"{self.path}: frame slices must run forward (step > 0)")
            return start, max(start, stop), step
        idx = np.asarray(frames, dtype=int).reshape(-1)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise TrajectoryError(f"{self.path}: frame index out of range ({n} frames)")
        steps = set(np.diff(idx).tolist())
        if len(steps) > 1 or (steps and min(steps) < 1):
            raise TrajectoryError(f"{self.path}: frame indices must be increasing and evenly spaced "
                                  "(a trajectory has one frame interval); read a slice")
        if idx.size == 0:
            return 0, 0, 1
        step = steps.pop() if steps else 1
        return int(idx[0]), int(idx[-1]) + 1, step

    def _get(self, f, name: str, fr, asel=slice(None), atoms_axis=False) -> np.ndarray | None:
        """Rows of element ``name`` for frames ``fr`` = (start, stop, step), atoms ``asel``, as float."""
        e = self._el.get(name)
        if e is None:
            return None
        ds = f[e.path]
        nf = len(range(*fr))
        if e.fixed:
            v = np.asarray(ds[()], dtype=float)
            v = v[asel] if atoms_axis else v
            out = np.broadcast_to(v, (nf,) + v.shape).copy()
        elif e.rows is None:
            out = np.asarray(ds[(slice(*fr), asel) if atoms_axis else slice(*fr)], dtype=float)
        else:
            rows = e.rows[slice(*fr)]
            ok = rows >= 0
            uniq = np.unique(rows[ok])
            data = np.asarray(ds[uniq] if uniq.size else np.empty((0,) + ds.shape[1:]), dtype=float)
            data = data[:, asel] if atoms_axis else data
            out = np.full((nf,) + data.shape[1:], np.nan)
            out[ok] = data[np.searchsorted(uniq, rows[ok])]
        if e.kind is not None:
            out *= unit_factor(e.kind, e.unit, f"{self.path}:{e.path}")
        return out

    def _cells(self, f, fr) -> np.ndarray:
        nf = len(range(*fr))
        c = self._get(f, "cells", fr)
        if c is None:
            return np.zeros((nf, 3, 3))
        if c.shape[1:] == (3,):
            c = c[:, :, None] * np.eye(3)
        if c.shape[1:] != (3, 3):
            raise TrajectoryError(f"{self.path}: box edges have shape {c.shape[1:]}, expected (3,) or (3, 3)")
        return c

    def _unwrap_block(self, raw, cells, prev):
        """Continue unwrapping (fractional) from ``prev`` (n, 3) or from the first frame if None."""
        frac = np.einsum("fnk,fkj->fnj", raw, np.linalg.inv(cells))
        seq = frac if prev is None else np.concatenate([prev[None], frac])
        cont = unwrap_fractional(seq, str(self.path))
        cont = cont if prev is None else cont[1:]
        fixed = ~np.asarray(self.pbc)
        cont[..., fixed] = frac[..., fixed]
        return cont

    def _block_frames(self) -> int:
        return max(1, 2**21 // max(1, 3 * self.n_atoms))

    def _anchor(self, f, k: int) -> np.ndarray:
        """Unwrapped fractional positions of all atoms at frame ``k`` (scans from the nearest cached frame)."""
        if k in self._anchors:
            return self._anchors[k]
        done = [c for c in self._anchors if c < k]
        c = max(done) if done else -1
        prev = self._anchors[c] if done else None
        for b0 in range(c + 1, k + 1, self._block_frames()):
            fr = (b0, min(b0 + self._block_frames(), k + 1), 1)
            raw = self._get(f, "positions", fr, slice(None), True)
            prev = self._unwrap_block(raw, self._cells(f, fr), prev)[-1]
        if len(self._anchors) > 64:
            self._anchors.pop(next(iter(self._anchors)))
        self._anchors[k] = prev
        return prev

    def _positions(self, f, fr, asel, prev):
        """Unwrapped Cartesian positions (Å) and the unwrapped fractional state after the last frame."""
        start, stop, step = fr
        if stop <= start or self._unwrapped or not any(self.pbc):
            return self._get(f, "positions", fr, asel, True), None
        if "image" in self._el:
            img = self._get(f, "image", fr, asel, True)
            pos = self._get(f, "positions", fr, asel, True)
            return pos + np.einsum("fni,fij->fnj", img, self._cells(f, fr)), None
        # wrapped, no images: unwrap frame to frame over every frame of [start, last], in blocks
        if prev is None and start > 0:
            prev = self._anchor(f, start - 1)[asel]
        frames = np.arange(start, stop, step)
        out = None
        for b0 in range(start, frames[-1] + 1, self._block_frames()):
            blk = (b0, min(b0 + self._block_frames(), frames[-1] + 1), 1)
            cells = self._cells(f, blk)
            cont = self._unwrap_block(self._get(f, "positions", blk, asel, True), cells, prev)
            prev = cont[-1]
            if out is None:
                out = np.empty((frames.size,) + cont.shape[1:])
            keep = (np.arange(*blk) - start) % step == 0
            j = (np.arange(*blk)[keep] - start) // step
            out[j] = np.einsum("fnj,fjk->fnk", cont[keep], cells[keep])
        return out, prev

    def _read(self, f, fr, asel, inv, prev=None):
        pos, state = self._positions(f, fr, asel, prev)
        arrays = {"positions": pos, "cells": self._cells(f, fr)}
        for name in ("velocities", "forces"):
            arrays[name] = self._get(f, name, fr, asel, True)
        for name in OBSERVABLES:
            arrays[name] = self._get(f, name, fr)
        if inv is not None:
            for name in ("positions", "velocities", "forces"):
                if arrays[name] is not None:
                    arrays[name] = arrays[name][:, inv]
        pe = self._el["positions"]
        times = None if pe.times is None or pe.fixed else pe.times[slice(*fr)]
        n_sel = pos.shape[1]
        order = np.arange(self.n_atoms)[asel]
        order = order if inv is None else order[inv]
        meta = dict(self.metadata)
        if fr != (0, self.n_frames, 1) or n_sel != self.n_atoms:
            meta["h5md_window"] = {"first_frame": fr[0], "frame_step": fr[2], "n_atoms_read": n_sel}
        traj = Trajectory(symbols=tuple(self.symbols[i] for i in order), masses=self.masses[order],
                          timestep_fs=self.timestep_fs, stride=self.stride * fr[2], times_fs=times,
                          pbc=self.pbc, metadata=meta, **arrays)
        return traj, state

    def read(self, frames=None, atoms=None) -> Trajectory:
        """Read a window: only these frames and atoms are read from disk.

        Parameters
        ----------
        frames : None (all), int, slice (step > 0), or increasing evenly spaced index array
        atoms : None (all) or index array (any order, 0-based); the result keeps that order

        Returns
        -------
        Trajectory with F_window frames and N_window atoms (stride multiplied by the frame step).
        """
        fr = self._frames(frames)
        asel, inv = _atom_selection(atoms, self.n_atoms, str(self.path))
        with self._open() as f:
            return self._read(f, fr, asel, inv)[0]

    def iter_chunks(self, chunk_frames: int = 1024, atoms=None):
        """Yield consecutive windows of ``chunk_frames`` frames (the last may be shorter).

        Memory stays bounded by one window; unwrapped positions continue across windows.
        """
        if chunk_frames < 1:
            raise TrajectoryError(f"{self.path}: chunk_frames must be ≥ 1, got {chunk_frames}")
        asel, inv = _atom_selection(atoms, self.n_atoms, str(self.path))
        prev = None
        with self._open() as f:
            for start in range(0, self.n_frames, chunk_frames):
                fr = (start, min(start + chunk_frames, self.n_frames), 1)
                traj, prev = self._read(f, fr, asel, inv, prev)
                yield traj

    def __repr__(self) -> str:
        return (f"H5MDReader({str(self.path)!r}, group={self.particles_group!r}, "
                f"{self.n_frames} frames x {self.n_atoms} atoms)")


def read_h5md(path, particles_group: str | None = None) -> Trajectory:
    """Read a whole H5MD file into a Trajectory (Å, fs, eV; positions unwrapped)."""
    return H5MDReader(path, particles_group).read()
