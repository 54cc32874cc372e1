"""VASP XDATCAR reader (VASP 5+ layout, constant or variable cell, plain or gzipped).

Layout read here::

    title                      (a comment; never used for species)
    scale                      (1 number; negative = target volume in Å³; or 3 per-axis factors)
    a1 / a2 / a3               (lattice vectors as rows, Å before scaling)
    species line               (e.g. ``Li I S P``; VASP 6 may append ``_sv`` or ``/hash``)
    counts line                (e.g. ``192 32 160 32``)
    Direct configuration=  N   (N = MD step number when VASP wrote the file)
    N_atoms lines of fractional coordinates
    ...                        (a variable-cell run repeats the 7 header lines before each block)

Also read: pymatgen's rewrite (single spaces, frames renumbered 1..F). A VASP 4 file (no
species line) is refused: its species cannot be known from the file.

The coordinate lines of all frames are converted to floats in one numpy call; a Python
loop visits only one line per frame (the ``configuration=`` line), so a 416-atom × 100-frame
file reads in a few hundredths of a second.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers

from phonion.md.io import TruncatedFileWarning
from phonion.md.trajectory import Trajectory, TrajectoryError
from phonion.md.velocities import unwrap_cartesian

__all__ = ["read_xdatcar", "read_text", "element_symbol"]


def read_text(path: str | Path) -> tuple[str, bool]:
    """Whole file as text (latin-1), gunzipping names that end in ``.gz``.

    Returns
    -------
    text : str
    cut : bool
        True when a gzip stream ended early (a truncated ``.gz``): ``text`` then holds
        everything that could be decompressed, and its last line may be partial.

    A damaged (not merely short) gzip stream is a ``TrajectoryError`` naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TrajectoryError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not path.name.lower().endswith(".gz"):
        return raw.decode("latin-1"), False
    out, cut = [], False
    try:
        while raw:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out.append(d.decompress(raw))
            out.append(d.flush())
            if not d.eof:
                cut = True
                break
            raw = d.unused_data.lstrip(b"\0")
    except zlib.error as exc:
        raise TrajectoryError(f"{path}: corrupt gzip data ({exc})") from None
    return b"".join(out).decode("latin-1"), cut


def element_symbol(token: str, where: str) -> str:
    """Element symbol from a POTCAR-style label (``Li``, ``Li_sv``, ``Li_sv/3a0b1c``, ``H1.25``).

    ``where`` (file and line) prefixes the error for a label that is not an element.
    """
    label = token.strip().split("/")[0].split("_")[0].split(".")[0]
    label = label.rstrip("0123456789")
    if label[:1].isalpha():
        label = label[0].upper() + label[1:].lower()
    if label not in atomic_numbers or label == "X":
        raise TrajectoryError(f"{where}: {token!r} is not an element symbol")
    return label


def _floats(line: str, n: int | None, where: str) -> list[float]:
    parts = line.split()
    try:
        values = [float(x) for x in parts]
    except ValueError:
        raise TrajectoryError(f"{where}: expected numbers, found {line.strip()!r}") from None
    if n is not None and len(values) != n:
        raise TrajectoryError(f"{where}: expected {n} numbers, found {line.strip()!r}")
    return values


class _Cut(Exception):
    """The text ended inside a header."""


def _parse_header(lines: list[str], p: int, end: int, src: str) -> tuple[dict, int]:
    """Title, scaled lattice, species and counts starting at line index ``p``."""
    if p + 7 > end:
        raise _Cut
    at = lambda i: f"{src}: line {p + i + 1}"  # noqa: E731 - 1-based line numbers
    title = lines[p].strip()
    scale = _floats(lines[p + 1], None, at(1))
    if len(scale) not in (1, 3):
        raise TrajectoryError(f"{at(1)}: the scale line must hold 1 or 3 numbers, found {lines[p + 1].strip()!r}")
    lattice = np.array([_floats(lines[p + 2 + i], 3, at(2 + i)) for i in range(3)])
    if len(scale) == 3:
        if min(scale) <= 0:
            raise TrajectoryError(f"{at(1)}: per-axis scale factors must be positive, got {scale}")
        lattice = lattice * np.asarray(scale)[None, :]
    elif scale[0] < 0:  # VASP convention: a negative scale is the cell volume in Å³
        volume = abs(np.linalg.det(lattice))
        if volume == 0:
            raise TrajectoryError(f"{at(1)}: negative scale (target volume) with a singular lattice")
        lattice = lattice * (-scale[0] / volume) ** (1.0 / 3.0)
    elif scale[0] == 0:
        raise TrajectoryError(f"{at(1)}: scale factor 0")
    else:
        lattice = lattice * scale[0]
    species_tokens = lines[p + 5].split()
    if not species_tokens or all(t.isdigit() for t in species_tokens):
        raise TrajectoryError(
            f"{at(5)}: no species line (VASP 4 layout), so the species are unknown; the title line "
            "is only a comment. Add the species line (as VASP 5 writes it) or convert the file.")
    species = [element_symbol(t, at(5)) for t in species_tokens]
    try:
        counts = [int(t) for t in lines[p + 6].split()]
    except ValueError:
        raise TrajectoryError(f"{at(6)}: expected atom counts, found {lines[p + 6].strip()!r}") from None
    if len(counts) != len(species) or min(counts, default=0) < 1:
        raise TrajectoryError(
            f"{at(6)}: species count mismatch: the species line (line {p + 6}) names {len(species)} "
            f"species {species} but the counts line gives {counts}")
    return {"title": title, "cell": lattice, "species": species, "counts": counts}, p + 7


def _decimals(token: str) -> int:
    return len(token.split(".")[1]) if "." in token else 0


def read_xdatcar(path: str | Path) -> Trajectory:
    """Read a VASP XDATCAR (plain or ``.gz``) into a Trajectory.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Trajectory
        ``positions`` (F, N, 3) unwrapped Cartesian Å (frame-to-frame minimum image in each
        frame's cell), ``cells`` (F, 3, 3) Å (scale factor applied), ``timestep_fs=None``
        (XDATCAR has no POTIM), ``stride`` = spacing of the configuration numbers.
        No forces, energies, stress or velocities.

    Raises
    ------
    TrajectoryError
        Unknown species (VASP 4), counts/species mismatch, non-numeric or missing coordinate
        lines in the middle, unevenly spaced configuration numbers. The message starts with
        the file path and gives the line number.

    Warns
    -----
    TruncatedFileWarning
        The file ends inside a frame; the whole frames before it are returned.
    """
    path = Path(path)
    src = str(path)
    text, gz_cut = read_text(path)
    lines = text.splitlines()
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    last_line_suspect = gz_cut or not text.endswith(("\n", "\r"))
    if any("Konfig=" in line for line in lines[:12]):
        raise TrajectoryError(f"{src}: VASP 4 XDATCAR (no species line), so the species are unknown")
    try:
        first, p = _parse_header(lines, 0, end, src)
    except _Cut:
        raise TrajectoryError(f"{src}: file ends inside the header ({end} lines); no frame to read") from None
    n_atoms = sum(first["counts"])
    starts, cells, numbers, truncated = _blocks(lines, first, p, end, last_line_suspect, src)

    frac, n_frames, cut_in_block = _coordinates(lines, starts, n_atoms, end, last_line_suspect, src)
    if cut_in_block:
        truncated = True
    if n_frames == 0:
        raise TrajectoryError(f"{src}: no complete frame (file ends inside the first configuration)")
    numbers, cells = numbers[:n_frames], np.array(cells[:n_frames])
    if truncated:
        warnings.warn(f"{src}: file ends inside a frame; kept the {n_frames} complete frame(s)",
                      TruncatedFileWarning, stacklevel=2)
    meta = {
        "source_files": [src], "format": "xdatcar", "stride_source": "file", "title": first["title"],
        "configuration_numbers_first": numbers[0], "configuration_numbers_last": numbers[-1],
        "variable_cell": bool(np.ptp(cells, axis=0).max() > 0) if n_frames > 1 else False,
    }
    stride = _stride(numbers, starts, src)
    meta["configuration_numbers_step"] = stride
    if stride == 1 and n_frames > 1:
        meta["stride_note"] = ("configuration numbers run 1, 2, 3, ...: either every MD step was "
                               "written (NBLOCK=1) or the file was renumbered (e.g. by pymatgen); "
                               "give the stride if the frames are subsampled")
    symbols = [s for s, c in zip(first["species"], first["counts"]) for _ in range(c)]
    return Trajectory(symbols=tuple(symbols), positions=unwrap_cartesian(frac, cells, src), cells=cells,
                      timestep_fs=None, stride=stride, metadata=meta)


def _blocks(lines: list[str], first: dict, p: int, end: int, last_line_suspect: bool, src: str):
    """The configuration blocks from line ``p`` on: (first coordinate line of each, cell of each, configuration
    numbers, whether the file ends inside a block or a repeated header)."""
    n_atoms = sum(first["counts"])
    starts, cells, numbers = [], [], []
    cell = first["cell"]
    truncated = False
    while p < end:
        line = lines[p]
        low = line.strip().lower()
        if not (low.startswith(("direct", "cartesian")) and "configuration" in low):
            if p == end - 1 and last_line_suspect:
                truncated = True
                break
            if line.strip() != first["title"]:
                raise TrajectoryError(
                    f"{src}: line {p + 1}: expected 'Direct configuration=' or a repeated header after "
                    f"{n_atoms} coordinate lines (the counts line says {n_atoms} atoms), found "
                    f"{line.strip()[:60]!r}; the counts do not add up")
            try:
                header, p = _parse_header(lines, p, end, src)  # variable cell: header repeats
            except _Cut:
                truncated = True
                break
            if header["species"] != first["species"] or header["counts"] != first["counts"]:
                raise TrajectoryError(
                    f"{src}: line {p - 1}: species/counts {header['species']} {header['counts']} differ "
                    f"from the first header's {first['species']} {first['counts']}")
            cell = header["cell"]
            continue
        if not low.startswith("direct"):
            raise TrajectoryError(f"{src}: line {p + 1}: only 'Direct configuration=' blocks are "
                                  f"supported (VASP writes no other), found {line.strip()!r}")
        try:
            numbers.append(int(line.split("=")[1].split()[0]))
        except (IndexError, ValueError):
            raise TrajectoryError(
                f"{src}: line {p + 1}: cannot read the configuration number in {line.strip()!r}") from None
        if p + 1 + n_atoms > end:
            truncated = True
            numbers.pop()
            break
        starts.append(p + 1)
        cells.append(cell)
        p += 1 + n_atoms
    return starts, cells, numbers, truncated


def _coordinates(lines, starts, n_atoms, end, last_line_suspect, src):
    """All coordinate blocks as one (F, N, 3) array; drops a final frame cut by end of file."""
    if not starts:
        return np.empty((0, n_atoms, 3)), 0, False
    block = [line for s in starts for line in lines[s:s + n_atoms]]
    try:
        flat = np.array(" ".join(block).split(), dtype=float)
        ok = flat.size == 3 * len(block)
    except ValueError:
        ok = False
    if ok:  # same total count; make sure no line holds 2 numbers and another 4
        widths = np.fromiter((len(line.split()) for line in block), dtype=np.int64, count=len(block))
        ok = bool((widths == 3).all())
    n_frames, cut = len(starts), False
    if not ok:  # slow path: find the first bad line
        for k, s in enumerate(starts):
            for i in range(s, s + n_atoms):
                parts = lines[i].split()
                good = len(parts) == 3
                if good:
                    try:
                        [float(x) for x in parts]
                    except ValueError:
                        good = False
                if not good:
                    if i == end - 1 and last_line_suspect and k == len(starts) - 1:
                        n_frames, cut = k, True
                        break
                    if "configuration" in lines[i].lower():
                        raise TrajectoryError(
                            f"{src}: line {i + 1}: configuration at line {s} has only {i - s} coordinate "
                            f"lines but the counts line says {n_atoms} atoms; the counts do not add up")
                    raise TrajectoryError(
                        f"{src}: line {i + 1}: expected 3 fractional coordinates (atom {i - s + 1} of "
                        f"{n_atoms} after the configuration line {s}), found {lines[i].strip()!r}")
            if cut:
                break
        flat = np.array(" ".join(block[:n_frames * n_atoms]).split(), dtype=float)
    elif last_line_suspect and starts[-1] + n_atoms == end and end >= 2:
        # the final line may be cut inside its last number: compare its precision with the line above
        last, above = lines[end - 1].split(), lines[end - 2].split()
        if _decimals(last[-1]) < _decimals(above[-1]):
            n_frames, cut = len(starts) - 1, True
            flat = flat[: n_frames * n_atoms * 3]
    return flat.reshape(n_frames, n_atoms, 3), n_frames, cut


def _stride(numbers: list[int], starts: list[int], src: str) -> int:
    if len(numbers) < 2:
        return 1
    steps = np.diff(numbers)
    if steps[0] < 1 or (steps != steps[0]).any():
        bad = int(np.flatnonzero((steps != steps[0]) | (steps < 1))[0]) + 1
        raise TrajectoryError(
            f"{src}: line {starts[bad]}: configuration numbers are not evenly spaced "
            f"({numbers[bad - 1]} then {numbers[bad]} after a spacing of {steps[0]}); the frame "
            "interval is undefined. Split the file at restarts and pass the pieces in order.")
    return int(steps[0])
