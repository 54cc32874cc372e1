"""VASP OUTCAR reader (plain or gzipped): positions, forces, free energy, stress per ionic step.

A focused hand parser, not ``ase.io.read(..., format="vasp-out")``: ASE's reader refuses an
OUTCAR written with NWRITE=0 ("Did not find required property positions"), because such a
file prints the POSITION/TOTAL-FORCE table only for some ionic steps, and it cannot keep the
whole steps of a file cut inside a force table.

What is read
------------
- species order from the ``VRHFIN =Li:`` lines (one per POTCAR, in POSCAR order), else from the
  first ``POTCAR:`` lines; never from the title/``POSCAR:`` comment (the Li6PS5I files say
  ``Li192 P32 S160 I32`` there, while the real order is Li I S P); counts from ``ions per type``;
- masses from the ``POMASS`` summary line (the masses VASP integrated with);
- IBRION, POTIM, TEBEG, ISIF, NSW from the parameter dump; ``timestep_fs = POTIM`` only for MD
  (IBRION = 0), else None; stride 1 (OUTCAR prints every ionic step);
- per ionic step (``Iteration  n(  m)`` headers, n = ionic step): the ``in kB`` stress line,
  ``direct lattice vectors`` (first 3 columns), the ``POSITION … TOTAL-FORCE`` table,
  ``free  energy   TOTEN`` (printed once per ionic step; the electronic steps print
  ``free energy    TOTEN`` with other spacing) and the MD ``(temperature … K)``.

NWRITE=0 and frames
-------------------
With NWRITE=0 VASP prints the POSITION/TOTAL-FORCE table (and the lattice) only for the first
and last ionic step; the other steps have energy and stress but *no positions at all* (the
Ti fixture: 10 TOTEN, 10 stress lines, 2 force tables, at steps 1 and 10). A frame without
positions cannot be analysed, so by default (``frames="positions"``) the frames are the ionic
steps that have a POSITION table: for the Ti file 2 frames, steps 1 and 10, stride 9, each with
forces, energy and stress. ``frames="all"`` gives one frame per ionic step instead (10 for Ti):
positions and forces are NaN for steps without a table (cells too, unless ISIF < 3 fixes the
cell), so ``frames_with("forces")`` shows which steps carry forces. Either way
``metadata["ionic_steps"]`` lists the 1-based ionic step of each frame and
``metadata["n_ionic_steps"]`` / ``["n_force_blocks"]`` count what the file holds.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from ase.units import GPa

from phonion.md.io import TruncatedFileWarning
from phonion.md.io.vasp_xdatcar import element_symbol, read_text
from phonion.md.trajectory import Trajectory, TrajectoryError
from phonion.md.velocities import unwrap_cartesian

__all__ = ["read_outcar", "kbar_to_stress"]

_ITER = re.compile(r"Iteration\s+(\d+)\s*\(\s*\d+\s*\)")
_NUM = re.compile(r"[-+]?\d*\.\d+(?:[EeDd][-+]?\d+)?")
_TEMP = re.compile(r"\(temperature\s+([-\d.Ee+]+)\s*K\)")


def kbar_to_stress(values) -> np.ndarray:
    """VASP stress (kB, order XX YY ZZ XY YZ ZX) → 3×3 stress in eV/Å³, ASE sign convention.

    Same conversion as ``ase.io.vasp_parsers.vasp_outcar_parsers.convert_vasp_outcar_stress``:
    stress = −values × 0.1 GPa (VASP prints pressure-like, positive = compressed).
    """
    xx, yy, zz, xy, yz, zx = (-np.asarray(values, dtype=float) * 0.1 * GPa)
    return np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])


def _param(lines: list[str], name: str, src: str):
    """Last value of ``NAME =`` in the header (the parameter dump repeats the INCAR)."""
    pat = re.compile(rf"^\s*{name}\s*=\s*([-+\d.EeDd]+)")
    value = None
    for line in lines:
        m = pat.match(line)
        if m:
            try:
                value = float(m.group(1).replace("D", "E").replace("d", "e"))
            except ValueError:
                raise TrajectoryError(f"{src}: cannot read {name} in {line.strip()!r}") from None
    return value


def _species(header: list[str], src: str) -> tuple[list[str], list[int], np.ndarray | None]:
    counts = None
    for i, line in enumerate(header):
        if "ions per type" in line:
            try:
                counts = [int(x) for x in line.split("=")[1].split()]
            except ValueError:
                raise TrajectoryError(f"{src}: line {i + 1}: cannot read {line.strip()!r}") from None
    if not counts:
        raise TrajectoryError(f"{src}: no 'ions per type' line; not a VASP OUTCAR or cut in its header")
    vrhfin = [element_symbol(l.split("=")[1].split(":")[0], f"{src}: line {i + 1}")
              for i, l in enumerate(header) if l.lstrip().startswith("VRHFIN")]
    potcar = [element_symbol(l.split()[2], f"{src}: line {i + 1}")
              for i, l in enumerate(header) if l.lstrip().startswith("POTCAR:") and len(l.split()) > 2]
    if len(vrhfin) == len(counts):
        species = vrhfin
        if len(potcar) >= len(counts) and potcar[:len(counts)] != species:
            raise TrajectoryError(f"{src}: POTCAR lines {potcar[:len(counts)]} disagree with VRHFIN {species}")
    elif len(potcar) >= len(counts):
        species = potcar[:len(counts)]  # each POTCAR is listed once up front, then again in detail
    else:
        raise TrajectoryError(f"{src}: {len(counts)} ion types but species lines (VRHFIN/POTCAR) for "
                              f"{len(vrhfin) or len(potcar)}; the species are unknown")
    masses = None
    for line in header:
        if line.lstrip().startswith("POMASS") and ";" not in line:
            vals = re.findall(r"\d+\.\d\d", line)  # F6.2 fields may run together: '7.01126.90'
            if len(vals) == len(counts):
                masses = np.repeat(np.array(vals, dtype=float), counts)
    return species, counts, masses


class _Step:
    __slots__ = ("number", "cell", "table", "energy", "stress", "temperature", "cut")

    def __init__(self, number):
        self.number, self.cell, self.table, self.energy = number, None, None, np.nan
        self.stress, self.temperature, self.cut = None, np.nan, False


def read_outcar(path: str | Path, frames: str = "positions") -> Trajectory:
    """Read a VASP OUTCAR (plain or ``.gz``).

    Parameters
    ----------
    path : str or Path
    frames : {"positions", "all"}
        "positions" (default): one frame per ionic step that printed a POSITION table.
        "all": one frame per ionic step; NaN positions/forces where the table is missing.

    Returns
    -------
    Trajectory
        ``positions`` (F, N, 3) unwrapped Cartesian Å; ``cells`` (F, 3, 3) Å; ``forces``
        (F, N, 3) eV/Å; ``energies`` (F,) eV (free energy TOTEN); ``stress`` (F, 3, 3) eV/Å³
        (ASE sign); ``temperatures_K`` (F,) for MD; masses from POMASS.
        ``metadata["temperature_K_setting"]`` = TEBEG.

    Raises
    ------
    TrajectoryError
        Unknown species, a non-numeric or short table in the middle of the file; the message
        starts with the path and gives the line number.

    Warns
    -----
    TruncatedFileWarning
        The file ends inside an ionic step (e.g. in a force table); whole steps are kept.
    """
    if frames not in ("positions", "all"):
        raise TrajectoryError(f"{path}: frames must be 'positions' or 'all', got {frames!r}")
    path = Path(path)
    src = str(path)
    text, gz_cut = read_text(path)
    lines = text.splitlines()
    if gz_cut or not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line may be cut inside a number: never trust it
    first_iter = next((i for i, l in enumerate(lines) if "Iteration" in l and _ITER.search(l)), len(lines))
    header = lines[:first_iter]
    species, counts, pomass = _species(header, src)
    n_atoms = sum(counts)
    params = {k: _param(header, k, src) for k in ("IBRION", "POTIM", "TEBEG", "ISIF", "NSW")}
    for k in ("IBRION", "ISIF", "NSW"):
        params[k] = None if params[k] is None else int(params[k])
    cell0 = None
    for i, line in enumerate(header):
        if "direct lattice vectors" in line:
            cell0 = _cell(lines, i, src)
    steps = _complete_steps(_scan(lines, first_iter, n_atoms, src), text, gz_cut, src)
    with_table = [s for s in steps if s.table is not None]
    if not with_table:
        raise TrajectoryError(f"{src}: no POSITION/TOTAL-FORCE table in any ionic step; positions unknown")
    chosen = with_table if frames == "positions" else steps
    is_md = params["IBRION"] == 0
    meta = {"source_files": [src], "format": "outcar", "stride_source": "file",
            "ionic_steps": [s.number for s in chosen], "n_ionic_steps": len(steps),
            "n_force_blocks": len(with_table), "ibrion": params["IBRION"], "potim": params["POTIM"],
            "energy_kind": "free energy (TOTEN)",
            "masses_source": "POMASS" if pomass is not None else "standard"}
    if params["TEBEG"] is not None:
        meta["temperature_K_setting"] = params["TEBEG"]
    timestep, stride = _timing(meta, frames, params["POTIM"] if is_md else None, src)
    table, cells, has = _tables_and_cells(chosen, n_atoms, params["ISIF"], cell0, src)
    positions = np.full((len(chosen), n_atoms, 3), np.nan)
    frac = np.einsum("fnk,fkj->fnj", table[has, :, :3], np.linalg.inv(cells[has]))
    positions[has] = unwrap_cartesian(frac, cells[has], src)
    stress = np.array([s.stress if s.stress is not None else np.full((3, 3), np.nan) for s in chosen])
    temps = np.array([s.temperature for s in chosen])
    return Trajectory(
        symbols=tuple(sp for sp, c in zip(species, counts) for _ in range(c)), positions=positions,
        cells=cells, timestep_fs=timestep, stride=stride, forces=table[:, :, 3:],
        energies=np.array([s.energy for s in chosen]), stress=stress,
        temperatures_K=temps if is_md and not np.isnan(temps).all() else None,
        masses=pomass, metadata=meta)


def _complete_steps(steps: list[_Step], text: str, gz_cut: bool, src: str) -> list[_Step]:
    """The whole ionic steps (a last one cut by the end of the file is dropped, with a warning), consecutive."""
    complete = "General timing" in text[-20000:] and not gz_cut
    truncated = False
    if steps and (np.isnan(steps[-1].energy) or steps[-1].cut) and not complete:
        steps.pop()
        truncated = True
    if not steps:
        raise TrajectoryError(f"{src}: no complete ionic step" + (" (the file ends inside the first)" if truncated else ""))
    if truncated:
        warnings.warn(f"{src}: file ends inside ionic step {steps[-1].number + 1}; kept the "
                      f"{len(steps)} complete ionic step(s)", TruncatedFileWarning, stacklevel=3)
    numbers = [s.number for s in steps]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise TrajectoryError(f"{src}: ionic steps are not consecutive: {numbers[:20]}")
    return steps


def _timing(meta: dict, frames: str, timestep, src: str):
    """(timestep_fs, stride) of the chosen frames; POSITION tables at uneven ionic steps leave no time axis."""
    stride = 1
    if frames == "positions" and len(meta["ionic_steps"]) > 1:
        gaps = set(np.diff(meta["ionic_steps"]).tolist())
        if len(gaps) == 1:
            stride = gaps.pop()
        else:
            if timestep is not None:
                warnings.warn(f"{src}: POSITION tables at unevenly spaced ionic steps "
                              f"{meta['ionic_steps']}; the time axis is unknown (timestep_fs=None). "
                              "Use frames='all' or vasprun.xml/XDATCAR for dynamics.", stacklevel=3)
            timestep, meta["uneven_ionic_steps"] = None, True
    return timestep, stride


def _tables_and_cells(chosen: list[_Step], n_atoms: int, isif, cell0, src: str):
    """POSITION/TOTAL-FORCE tables (F, N, 6) and cells (F, 3, 3), NaN where a step has none (the cell is carried
    over when ISIF < 3 fixes it), and which frames have a table (F,)."""
    n = len(chosen)
    has = np.array([s.table is not None for s in chosen])
    table = np.full((n, n_atoms, 6), np.nan)
    cells = np.full((n, 3, 3), np.nan)
    fixed_cell = isif is not None and isif < 3
    last_cell = cell0
    for k, s in enumerate(chosen):
        if s.table is not None:
            table[k] = s.table
        if s.cell is not None:
            last_cell = s.cell
        if s.cell is not None or (fixed_cell and last_cell is not None):
            cells[k] = last_cell
    if np.isnan(cells[has]).any():
        raise TrajectoryError(f"{src}: an ionic step has positions but no lattice vectors")
    return table, cells, has


def _cell(lines: list[str], i: int, src: str) -> np.ndarray | None:
    """First 3 columns of the 3 lines after ``direct lattice vectors`` (None if cut by EOF)."""
    if i + 4 > len(lines):
        return None
    rows = [_NUM.findall(lines[i + 1 + k]) for k in range(3)]
    if any(len(r) < 3 for r in rows):
        raise TrajectoryError(f"{src}: line {i + 2}: cannot read the lattice vectors")
    return np.array([r[:3] for r in rows], dtype=float)


def _table(lines: list[str], i: int, n_atoms: int, src: str) -> np.ndarray | None:
    """The N×6 POSITION/TOTAL-FORCE table after the header at line index ``i``; None if cut by EOF."""
    start, stop = i + 2, i + 2 + n_atoms
    block = lines[start:stop]
    try:
        arr = np.array(" ".join(block).split(), dtype=float)
        if arr.size == 6 * n_atoms and len(block) == n_atoms and lines[stop].lstrip().startswith("---"):
            return arr.reshape(n_atoms, 6)
    except (ValueError, IndexError):
        pass
    for j in range(start, stop):  # slow path: find the first bad line
        if j >= len(lines):
            return None
        parts = lines[j].split()
        try:
            ok = len([float(x) for x in parts]) == 6
        except ValueError:
            ok = False
        if not ok:
            raise TrajectoryError(
                f"{src}: line {j + 1}: expected 3 positions and 3 forces for atom {j - start + 1} of "
                f"{n_atoms} (table at line {i + 1}), found {lines[j].strip()!r}")
    if stop >= len(lines):
        return None
    raise TrajectoryError(f"{src}: line {stop + 1}: the POSITION table at line {i + 1} has more than "
                          f"{n_atoms} rows ('ions per type' counts do not add up)")


def _scan(lines: list[str], i: int, n_atoms: int, src: str) -> list[_Step]:
    steps: list[_Step] = []
    step = None
    n = len(lines)
    while i < n:
        line = lines[i]
        if "Iteration" in line:
            m = _ITER.search(line)
            if m and (step is None or int(m.group(1)) != step.number):
                step = _Step(int(m.group(1)))
                steps.append(step)
        elif step is None:
            pass
        elif "in kB" in line:
            vals = _NUM.findall(line.split("in kB", 1)[1])
            if len(vals) != 6:
                raise TrajectoryError(f"{src}: line {i + 1}: expected 6 stress values, found {line.strip()!r}")
            step.stress = kbar_to_stress([float(v) for v in vals])
        elif "direct lattice vectors" in line:
            step.cell = _cell(lines, i, src)
            if step.cell is None:
                step.cut = True
                break
        elif "TOTAL-FORCE" in line and "POSITION" in line:
            step.table = _table(lines, i, n_atoms, src)
            if step.table is None:
                step.cut = True
                break
            i += n_atoms + 2
            continue
        elif "free  energy   TOTEN" in line:
            try:
                step.energy = float(line.split("=")[1].split()[0])
            except (IndexError, ValueError):
                raise TrajectoryError(f"{src}: line {i + 1}: cannot read the energy in {line.strip()!r}") from None
        elif "(temperature" in line:
            m = _TEMP.search(line)
            if m:
                step.temperature = float(m.group(1))
        i += 1
    return steps
