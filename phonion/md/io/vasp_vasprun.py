"""VASP vasprun.xml reader (plain or gzipped), streaming.

The file is fed in 1 MiB chunks to ``xml.etree.ElementTree.XMLPullParser`` and each
``<calculation>`` (one ionic step) is turned into arrays and cleared as soon as it closes, so
memory stays at one ionic step plus the output arrays however long the run.

Read per ``<calculation>``: ``structure/crystal/varray[basis]`` (cell, Å),
``structure/varray[positions]`` (fractional), ``varray[forces]`` (eV/Å), ``varray[stress]``
(kB → eV/Å³, ASE sign, as ``ase.io.vasp.read_vasp_xml`` does: ×(−0.1 GPa)), and
``e_fr_energy`` of the calculation's own last ``<energy>`` child (the free energy TOTEN, the
same number as the OUTCAR's ``free  energy   TOTEN``), not those of the ``<scstep>``s.
Species and masses (POMASS) come from ``<atominfo>``; IBRION, POTIM, TEBEG from
``<parameters>`` (effective values), falling back to ``<incar>``.

A file cut mid-way (a killed run: tags left open) ends with an XML error only when the
parser is told the input is over; that case keeps the complete ``<calculation>`` blocks with a
``TruncatedFileWarning``. An XML error in the middle of the data, or unreadable numbers, is a
``TrajectoryError`` naming the file.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np

from phonion.md.io import TruncatedFileWarning
from phonion.md.io.vasp_outcar import kbar_to_stress
from phonion.md.io.vasp_xdatcar import element_symbol
from phonion.md.trajectory import Trajectory, TrajectoryError
from phonion.md.velocities import unwrap_cartesian

__all__ = ["read_vasprun"]

_CHUNK = 1 << 20


def _byte_chunks(path: Path, state: dict):
    """The file's bytes in chunks, gunzipped for ``.gz``; sets ``state["cut"]`` if the gzip stream ends early.

    Decompressed here with ``zlib`` rather than ``gzip.open``, whose ``read`` raises EOFError on
    a cut stream and loses the data it had decoded in that call.
    """
    gz = path.name.lower().endswith(".gz")
    with open(path, "rb") as fh:
        if not gz:
            yield from iter(lambda: fh.read(_CHUNK), b"")
            return
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        for raw in iter(lambda: fh.read(_CHUNK), b""):
            while raw:
                if d.eof:  # another gzip member follows
                    raw = raw.lstrip(b"\0")
                    if not raw:
                        break
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = d.decompress(raw)
                if out:
                    yield out
                raw = d.unused_data if d.eof else b""
        if not d.eof:
            state["cut"] = True


def _varray(parent, name: str, shape: tuple[int, int], where: str) -> np.ndarray | None:
    node = parent.find(f"varray[@name='{name}']") if parent is not None else None
    if node is None:
        return None
    try:
        arr = np.array([v.text.split() for v in node.findall("v")], dtype=float)
    except (ValueError, AttributeError):
        raise TrajectoryError(f"{where}: unreadable numbers in <varray name='{name}'>") from None
    if arr.shape != shape:
        raise TrajectoryError(f"{where}: <varray name='{name}'> has shape {arr.shape}, expected {shape}")
    return arr


def _params(elem, into: dict) -> None:
    for node in elem.iter("i"):
        name = node.get("name")
        if name in ("IBRION", "POTIM", "TEBEG", "ISIF", "NBLOCK") and node.text and node.text.strip():
            try:
                into[name] = float(node.text.split()[0])
            except ValueError:
                pass


def _atominfo(elem, src: str) -> tuple[list[str], np.ndarray | None]:
    atoms = elem.find("array[@name='atoms']/set")
    if atoms is None:
        raise TrajectoryError(f"{src}: <atominfo> has no 'atoms' array; species unknown")
    rows = [[c.text or "" for c in rc.findall("c")] for rc in atoms.findall("rc")]
    symbols = [element_symbol(r[0], f"{src}: <atominfo>") for r in rows]
    masses = None
    types = elem.find("array[@name='atomtypes']/set")
    if types is not None:
        try:
            per_type = [float(rc.findall("c")[2].text) for rc in types.findall("rc")]
            masses = np.array([per_type[int(r[1]) - 1] for r in rows])
        except (IndexError, ValueError, TypeError):
            masses = None
    return symbols, masses


def _parse(path: Path, src: str):
    """Stream the XML: (symbols, masses, frames as ``_calculation`` tuples, INCAR + parameters settings, whether the
    file ends with tags still open)."""
    parser = ET.XMLPullParser(events=("start", "end"))
    incar: dict = {}
    params: dict = {}
    symbols, masses = None, None
    frames: list[tuple] = []
    truncated = False
    depth_calc = 0

    def handle(events):
        nonlocal symbols, masses, depth_calc
        for event, elem in events:
            tag = elem.tag
            if event == "start":
                if tag == "calculation":
                    depth_calc += 1
                continue
            if tag == "calculation":
                depth_calc -= 1
                frames.append(_calculation(elem, symbols, len(frames), src))
                elem.clear()
            elif tag == "scstep":
                elem.clear()
            elif tag == "atominfo":
                symbols, masses = _atominfo(elem, src)
            elif tag == "incar" and depth_calc == 0:
                _params(elem, incar)
            elif tag == "parameters" and depth_calc == 0:
                _params(elem, params)

    state = {"cut": False}
    try:
        for chunk in _byte_chunks(path, state):
            parser.feed(chunk)
            try:
                handle(parser.read_events())
            except ET.ParseError as exc:  # raised where the bad bytes were fed: corruption
                raise TrajectoryError(f"{src}: malformed XML ({exc})") from None
        try:
            parser.close()
        except ET.ParseError:
            truncated = True  # input over with tags still open
        handle(parser.read_events())
    except (OSError, zlib.error) as exc:
        raise TrajectoryError(f"{src}: cannot read ({exc})") from None
    truncated = truncated or state["cut"]
    return symbols, masses, frames, {**incar, **params}, truncated


def read_vasprun(path: str | Path) -> Trajectory:
    """Read a VASP vasprun.xml (plain or ``.gz``) into a Trajectory, one frame per ``<calculation>``.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Trajectory
        ``positions`` (F, N, 3) unwrapped Cartesian Å; ``cells`` (F, 3, 3) Å; ``forces``
        (F, N, 3) eV/Å; ``energies`` (F,) eV (e_fr_energy); ``stress`` (F, 3, 3) eV/Å³, ASE sign;
        NaN where a calculation lacks the quantity. ``timestep_fs`` = POTIM when IBRION = 0
        (MD), else None; stride 1; masses from POMASS; ``metadata["temperature_K_setting"]`` = TEBEG.

    Raises
    ------
    TrajectoryError
        Malformed XML in the middle of the file, unreadable numbers, no species, no frame.

    Warns
    -----
    TruncatedFileWarning
        The XML ends with open tags (killed run); the complete calculations are kept.
    """
    path = Path(path)
    src = str(path)
    symbols, masses, frames, settings, truncated = _parse(path, src)
    if symbols is None:
        raise TrajectoryError(f"{src}: no <atominfo> block; not a vasprun.xml or cut before it")
    if not frames:
        raise TrajectoryError(f"{src}: no complete <calculation> block")
    if truncated:
        warnings.warn(f"{src}: file ends inside the XML (killed run?); kept the {len(frames)} "
                      "complete <calculation> block(s)", TruncatedFileWarning, stacklevel=2)
    ibrion = settings.get("IBRION")
    timestep = settings.get("POTIM") if ibrion == 0 else None
    cells = np.array([f[0] for f in frames])
    frac = np.array([f[1] for f in frames])
    meta = {"source_files": [src], "format": "vasprun", "stride_source": "file",
            "ibrion": None if ibrion is None else int(ibrion), "potim": settings.get("POTIM"),
            "energy_kind": "free energy (e_fr_energy)",
            "masses_source": "POMASS" if masses is not None else "standard"}
    if "TEBEG" in settings:
        meta["temperature_K_setting"] = settings["TEBEG"]
    return Trajectory(
        symbols=tuple(symbols), positions=unwrap_cartesian(frac, cells, src), cells=cells,
        timestep_fs=timestep, stride=1, forces=np.array([f[2] for f in frames]),
        energies=np.array([f[4] for f in frames]), stress=np.array([f[3] for f in frames]),
        masses=masses, metadata=meta)


def _calculation(elem, symbols, index: int, src: str) -> tuple:
    """(cell (3,3), fractional positions (N,3), forces (N,3), stress (3,3), energy) of one step."""
    where = f"{src}: <calculation> {index + 1}"
    if symbols is None:
        raise TrajectoryError(f"{where} comes before <atominfo>; species unknown")
    n = len(symbols)
    structure = elem.find("structure")
    cell = _varray(structure.find("crystal") if structure is not None else None, "basis", (3, 3), where)
    frac = _varray(structure, "positions", (n, 3), where)
    if cell is None or frac is None:
        raise TrajectoryError(f"{where}: no <structure> with basis and positions")
    forces = _varray(elem, "forces", (n, 3), where)
    stress = _varray(elem, "stress", (3, 3), where)
    energy = np.nan
    blocks = elem.findall("energy")
    if blocks:
        node = blocks[-1].find("i[@name='e_fr_energy']")
        if node is not None:
            try:
                energy = float(node.text)
            except (TypeError, ValueError):
                raise TrajectoryError(f"{where}: unreadable e_fr_energy {node.text!r}") from None
    if stress is not None:  # vasprun stress is the 3×3 matrix in kB
        stress = kbar_to_stress([stress[0, 0], stress[1, 1], stress[2, 2],
                                 stress[0, 1], stress[1, 2], stress[0, 2]])
    return (cell, frac,
            forces if forces is not None else np.full((n, 3), np.nan),
            stress if stress is not None else np.full((3, 3), np.nan), energy)
