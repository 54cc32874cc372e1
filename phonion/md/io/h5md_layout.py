"""The layout side of H5MD reading: units, elements, and the one-time scan of a file.

Unit tables and conversion (``UNITS``, ``unit_factor``), the H5MD element model (time-dependent
``{step,time,value}`` groups or fixed datasets), atom selections, and :class:`H5MDLayout`, the part of
:class:`phonion.md.io.h5md_read.H5MDReader` that looks at a file once (particle group, element
alignment, species, masses, timing, metadata). ``phonion.md.io.h5md_read`` re-exports the public names.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import h5py
import numpy as np
from ase import units as ase_units
from ase.data import chemical_symbols

from phonion.md.io import TruncatedFileWarning
from phonion.md.trajectory import TrajectoryError, masses_for

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



class H5MDLayout:
    """What :class:`~phonion.md.io.h5md_read.H5MDReader` learns from one look at a file (its ``_scan``)."""

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
