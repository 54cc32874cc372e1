"""Bundled structures and a single entry point for reading a structure file.

The default structure is LiGa(SeO3)2 (I-42d, 80 atoms), Materials Project data (CC BY 4.0);
see ``phonion/data/SOURCE.md``.
"""

from __future__ import annotations

import os
import pathlib
from importlib import resources

import ase
import ase.io
import numpy as np

__all__ = ["BUNDLED_STRUCTURES", "bundled_structure_path", "load_structure", "require_periodic"]

#: Names of the structures shipped in ``phonion/data`` and their file names.
BUNDLED_STRUCTURES: dict[str, str] = {
    "LiGa_SeO3_2": "LiGa_SeO3_2.cif",
}


def bundled_structure_path(name: str = "LiGa_SeO3_2") -> pathlib.Path:
    """Path of a structure file bundled with phonion.

    Parameters
    ----------
    name : str, optional
        Name of the bundled structure (a key of :data:`BUNDLED_STRUCTURES`), with or without
        the ``.cif`` suffix. Default ``"LiGa_SeO3_2"``.

    Returns
    -------
    pathlib.Path
        Path of the file inside the installed package.

    Raises
    ------
    ValueError
        If ``name`` is not a bundled structure.
    """
    key = name[:-4] if name.endswith(".cif") else name
    if key not in BUNDLED_STRUCTURES:
        raise ValueError(
            f"unknown bundled structure {name!r}; available: {sorted(BUNDLED_STRUCTURES)}"
        )
    ref = resources.files("phonion").joinpath("data", BUNDLED_STRUCTURES[key])
    path = pathlib.Path(str(ref))
    if not path.is_file():  # pragma: no cover - broken installation
        raise ValueError(f"bundled structure {name!r} is missing from the installation ({path})")
    return path


def require_periodic(atoms: ase.Atoms, source: str) -> None:
    """Refuse a structure without a 3-D periodic cell of non-zero volume (``source`` names it)."""
    cell = np.asarray(atoms.cell[:], dtype=float)
    norms = np.prod(np.linalg.norm(cell, axis=1))
    volume = abs(float(np.linalg.det(cell))) if np.isfinite(cell).all() else 0.0
    if not all(atoms.pbc) or not volume > 1e-6 * norms:
        raise ValueError(
            f"{source}: the structure has no 3-D periodic cell (pbc={[bool(p) for p in atoms.pbc]}, "
            f"volume {volume:.3g} Å³); phonion needs a crystal: write it with its lattice "
            "(CIF, POSCAR, or extxyz with Lattice=)")


def load_structure(path_or_name: str | os.PathLike, index: int | str = 0, format: str | None = None,
                   periodic: bool = True) -> ase.Atoms:
    """Read a structure from any ASE-readable file or a bundled structure name.

    Parameters
    ----------
    path_or_name : str or path-like
        A file ASE can read (CIF, POSCAR/CONTCAR, extxyz, ASE trajectory, ...) or the name of a
        bundled structure (e.g. ``"LiGa_SeO3_2"``). An existing file takes precedence over a
        bundled name.
    index : int or str, optional
        Which frame to read from a multi-frame file (ASE ``index`` syntax). Default the first.
    format : str, optional
        ASE format name; guessed from the file name and contents when omitted.
    periodic : bool, optional
        Require a 3-D periodic cell of non-zero volume (default: every phonion analysis of a
        crystal needs one; a molecule file would give silently wrong sites, phonons, MD).

    Returns
    -------
    ase.Atoms
        The structure, atom order as in the file.

    Raises
    ------
    ValueError
        If the file does not exist and is not a bundled name, if ASE cannot read it, if it
        holds no atoms, or (``periodic``) if it has no 3-D periodic cell. The message names the file.
    """
    path = pathlib.Path(os.fspath(path_or_name)).expanduser()
    if not path.is_file():
        key = str(path_or_name)
        key = key[:-4] if key.endswith(".cif") else key
        if key in BUNDLED_STRUCTURES:
            path = bundled_structure_path(key)
        else:
            raise ValueError(
                f"structure file {str(path_or_name)!r} does not exist and is not a bundled "
                f"structure name (bundled: {sorted(BUNDLED_STRUCTURES)})"
            )
    try:
        atoms = ase.io.read(path, index=index, format=format)
    except Exception as exc:  # ASE raises many different types for unreadable files
        raise ValueError(
            f"could not read a structure from {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(atoms, list):  # a slice index was given
        if not atoms:
            raise ValueError(f"no frames selected by index {index!r} in {str(path)!r}")
        atoms = atoms[0]
    if len(atoms) == 0:
        raise ValueError(f"structure file {str(path)!r} holds no atoms")
    if periodic:
        require_periodic(atoms, str(path))
    return atoms
