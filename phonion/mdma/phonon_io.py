"""Reading and writing phonons and phonon results (no numerics here).

:func:`save_phonons` writes phonopy's own files; :func:`load_phonons` reads them back and also
reads the files a DFT user has (phonopy's DFT route):

1. a phonopy yaml holding force constants or forces (``phonopy_params.yaml``, ``phonopy.yaml``);
2. ``FORCE_CONSTANTS`` (or ``force_constants.hdf5``) + a unit cell (``POSCAR``, or the cell of
   a phonopy yaml beside it) + the supercell matrix (from a phonopy yaml beside it, or given);
3. ``FORCE_SETS`` + ``phonopy_disp.yaml`` (displacements and supercell).

Text files keep ~10 significant digits; :func:`save_phonons` also writes the force constants
exactly (``force_constants.hdf5``, phonopy's HDF5 layout), and :func:`load_phonons` prefers that
file when it lies beside the yaml, so a save/load round trip gives identical frequencies.
Files are only looked for next to the path given, never in the current directory (phonopy's
own ``load`` would also look there; every file name is passed to it explicitly). A ``BORN`` file
beside the data, or NAC parameters in the yaml, switch the non-analytical correction on.
Loaded phonons use the unit cell as the primitive cell (``primitive_matrix="P"``) unless told
otherwise, and hold full force constants ``(N_sc, N_sc, 3, 3)``, as
:func:`phonion.mdma.phonons.compute_force_constants` gives.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["save_phonons", "load_phonons", "summary_scalars", "write_dos_csv", "write_pdos_csv",
           "write_band_csv", "write_summary_json", "write_phonon_results"]

PARAMS_YAML = "phonopy_params.yaml"
YAML_NAMES = (PARAMS_YAML, "phonopy.yaml", "phonopy_disp.yaml")
HDF5_NAME = "force_constants.hdf5"
ASR_TOLERANCE = 1e-8  # eV/Å², as phonion.mdma.phonons
FC_NAMES = (HDF5_NAME, "FORCE_CONSTANTS")


def save_phonons(phonon, directory: str | os.PathLike) -> dict[str, Path]:
    """Write ``phonopy_params.yaml`` (cell, supercell matrix, dataset, force constants),
    ``FORCE_CONSTANTS`` (text) and ``force_constants.hdf5`` (exact) into ``directory``
    (created if needed).

    Returns
    -------
    dict of str to pathlib.Path
        ``{"phonopy_params": ..., "force_constants": ..., "force_constants_hdf5": ...}``.
    """
    from phonopy.file_IO import write_FORCE_CONSTANTS, write_force_constants_to_hdf5

    if phonon.force_constants is None:
        raise ValueError("phonon has no force constants to save")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    params = out / PARAMS_YAML
    phonon.save(params, settings={"force_constants": True})
    fc_path = out / "FORCE_CONSTANTS"
    fc = phonon.force_constants
    p2s = None if fc.shape[0] == fc.shape[1] else phonon.primitive.p2s_map
    write_FORCE_CONSTANTS(fc, filename=fc_path, p2s_map=p2s)
    h5_path = out / HDF5_NAME
    write_force_constants_to_hdf5(fc, filename=str(h5_path), p2s_map=p2s)  # eV/Å², as phonopy
    return {"phonopy_params": params, "force_constants": fc_path, "force_constants_hdf5": h5_path}


def _yaml_holds(path: Path) -> tuple[bool, bool, object]:
    """(has force constants, has forces, parsed data) of a phonopy yaml."""
    from phonopy.interface.phonopy_yaml import read_phonopy_yaml

    try:
        data = read_phonopy_yaml(path)
    except Exception as exc:  # yaml / key errors of many kinds
        raise ValueError(f"{path}: cannot read as a phonopy yaml: {type(exc).__name__}: {exc}") \
            from exc
    ds = data.dataset or {}
    if "first_atoms" in ds:
        has_forces = bool(ds["first_atoms"]) and all("forces" in d for d in ds["first_atoms"])
    else:
        has_forces = ds.get("forces") is not None
    return data.force_constants is not None, has_forces, data


def _first(directory: Path, names) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def load_phonons(path: str | os.PathLike, supercell_matrix=None, primitive_matrix="P",
                 symprec: float = 1e-5):
    """Phonons with force constants from phonopy files (see module docstring for the routes).

    Parameters
    ----------
    path : str or path-like
        A phonopy yaml, a ``FORCE_CONSTANTS`` or ``FORCE_SETS`` file, or a directory holding
        them (``phonopy_params.yaml`` is preferred, then ``FORCE_CONSTANTS``, then
        ``FORCE_SETS``).
    supercell_matrix : 3 ints or (3, 3) ints, optional
        For ``FORCE_CONSTANTS`` with a ``POSCAR``; overrides the matrix of a yaml.
    primitive_matrix : optional
        phonopy primitive matrix; default ``"P"`` (the unit cell, atom order kept).
    symprec : float, optional
        Symmetry tolerance passed to phonopy.

    Returns
    -------
    phonopy.Phonopy
        With full force constants, shape (N_sc, N_sc, 3, 3), eV/Å².

    Raises
    ------
    ValueError
        Naming the file or directory, when it does not exist, cannot be read, or the files
        needed for a route are missing.
    """
    import phonopy

    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{p}: no such file or directory")
    directory = p if p.is_dir() else p.parent
    born = _first(directory, ["BORN"])
    yaml, fc_file, sets_file = _pick_files(p, directory)
    kwargs = dict(primitive_matrix=primitive_matrix, is_compact_fc=False, produce_fc=True,
                  symprec=symprec, log_level=0, supercell_matrix=supercell_matrix)
    cell_source, data, fc_file, sets_file = _route(yaml, fc_file, sets_file, directory, supercell_matrix)
    if "phonopy_yaml" in cell_source and data is None:
        data = _yaml_holds(cell_source["phonopy_yaml"])[2]
    is_nac = born is not None or (data is not None and data.nac_params is not None)
    # force constants read from a file are kept as they are (symmetrised below only if the
    # acoustic sum rule fails); force constants produced from forces are symmetrised
    from_fc = fc_file is not None or (data is not None and data.force_constants is not None)
    try:
        phonon = phonopy.load(**cell_source, **kwargs, is_nac=is_nac, born_filename=born,
                              force_constants_filename=fc_file, force_sets_filename=sets_file,
                              symmetrize_fc=not from_fc)
    except Exception as exc:  # phonopy raises many kinds; say which files were used
        used = [str(f) for f in (*cell_source.values(), fc_file, sets_file) if f is not None]
        raise ValueError(f"phonopy could not load {', '.join(used)}: "
                         f"{type(exc).__name__}: {exc}") from exc
    if phonon.force_constants is None:
        raise ValueError(f"{p}: phonopy produced no force constants from these files")
    fc = phonon.force_constants
    if fc.shape[0] != fc.shape[1]:
        from phonopy.harmonic.force_constants import compact_fc_to_full_fc

        phonon.force_constants = compact_fc_to_full_fc(phonon.primitive, fc)
    residual = float(np.abs(phonon.force_constants.sum(axis=1)).max())
    if residual > ASR_TOLERANCE:
        warnings.warn(f"{p}: force constants break the acoustic sum rule (max |sum_j Phi_ij| = "
                      f"{residual:.2e} eV/Å²); symmetrised with phonopy", stacklevel=2)
        phonon.symmetrize_force_constants(show_drift=False)
    return phonon


def _pick_files(p: Path, directory: Path):
    """(phonopy yaml, force-constants file, FORCE_SETS file), each or None, for the path given (a file names
    its route; in a directory ``phonopy_params.yaml`` is preferred, then ``FORCE_CONSTANTS``, then ``FORCE_SETS``)."""
    name = p.name if p.is_file() else None
    yaml = None
    fc_file = sets_file = None
    if name is None:
        yaml = _first(directory, [PARAMS_YAML, "phonopy.yaml"])
        if yaml is not None and not any(_yaml_holds(yaml)[:2]):
            yaml = None
        if yaml is None:
            fc_file = _first(directory, FC_NAMES)
            sets_file = None if fc_file else _first(directory, ["FORCE_SETS"])
            if fc_file is None and sets_file is None:
                raise ValueError(f"{p}: found no phonopy data: looked for {PARAMS_YAML} or "
                                 "phonopy.yaml with force constants or forces, FORCE_CONSTANTS, "
                                 "FORCE_SETS")
    elif name.startswith("FORCE_CONSTANTS") or name.endswith(".hdf5"):
        fc_file = p
    elif name.startswith("FORCE_SETS"):
        sets_file = p
    else:
        yaml = p
    return yaml, fc_file, sets_file


def _route(yaml, fc_file, sets_file, directory: Path, supercell_matrix):
    """(phonopy.load's cell keyword, parsed yaml or None, force-constants file, FORCE_SETS file) of the route."""
    if yaml is not None:  # route 1, or a yaml holding only the cell + dataset
        has_fc, has_forces, data = _yaml_holds(yaml)
        fc_file = _first(directory, [HDF5_NAME])  # exact copy of what the yaml holds
        if not (has_fc or has_forces) and fc_file is None:
            fc_file = _first(directory, ["FORCE_CONSTANTS"])
            sets_file = None if fc_file else _first(directory, ["FORCE_SETS"])
            if fc_file is None and sets_file is None:
                raise ValueError(f"{yaml}: holds no force constants and no forces, and there "
                                 f"is no FORCE_CONSTANTS or FORCE_SETS beside it")
        cell_source = {"phonopy_yaml": yaml}
    elif fc_file is not None:  # route 2
        poscar = _first(directory, ["POSCAR", "SPOSCAR_unitcell"])
        cell_yaml = _first(directory, YAML_NAMES)
        if poscar is not None and supercell_matrix is not None:
            cell_source = {"unitcell_filename": poscar}
        elif cell_yaml is not None:
            cell_source = {"phonopy_yaml": cell_yaml}
        elif poscar is not None:
            raise ValueError(f"{fc_file}: the supercell matrix is unknown: give it "
                             f"(supercell_matrix=...) or put a phonopy_disp.yaml beside it")
        else:
            raise ValueError(f"{fc_file}: no unit cell beside it: need a POSCAR (with the "
                             f"supercell matrix) or a phonopy yaml ({', '.join(YAML_NAMES)}) "
                             f"in {directory}")
        data = None
    else:  # route 3
        disp = _first(directory, ["phonopy_disp.yaml", "phonopy.yaml"])
        if disp is None:
            raise ValueError(f"{sets_file}: needs phonopy_disp.yaml (displacements and "
                             f"supercell) in {directory}, not found")
        cell_source = {"phonopy_yaml": disp}
        data = None
    return cell_source, data, fc_file, sets_file


# ---------------------------------------------------------------- result writers

_ARRAY_KEYS = ("dos", "pdos", "band")


def summary_scalars(summary: dict) -> dict:
    """The JSON-ready part of :func:`phonion.mdma.phonons.phonon_summary` (arrays left out)."""
    out = {k: v for k, v in summary.items() if k not in _ARRAY_KEYS}
    if "band" in summary:
        out["band_labels"] = list(summary["band"]["labels"])
    return out


def write_summary_json(summary: dict, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """``summary.json``: :func:`summary_scalars` plus ``extra`` (e.g. provenance)."""
    data = summary_scalars(summary)
    if extra:
        data.update(extra)
    path = Path(path)
    path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    return path


def _write_columns(path: Path, header: list[str], columns: list[np.ndarray]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in np.column_stack(columns):
            w.writerow([f"{x:.8g}" for x in row])
    return path


def write_dos_csv(summary: dict, path: str | os.PathLike) -> Path:
    """``dos.csv``: frequency_THz, total_dos (states/THz per unit cell)."""
    d = summary["dos"]
    return _write_columns(Path(path), ["frequency_THz", "total_dos"],
                          [d["frequency_THz"], d["total"]])


def write_pdos_csv(summary: dict, path: str | os.PathLike) -> Path:
    """``pdos.csv``: frequency_THz, one column per species, then one per O class (``O_e`` ...)."""
    d = summary["pdos"]
    names = list(d["by_species"]) + list(d["by_class"])
    cols = [d["by_species"][s] for s in d["by_species"]] + [d["by_class"][c] for c in d["by_class"]]
    return _write_columns(Path(path), ["frequency_THz"] + names, [d["frequency_THz"]] + cols)


def write_band_csv(summary: dict, path: str | os.PathLike) -> Path:
    """``band.csv``: segment, distance, q1, q2, q3 (fractional), then f_0 ... f_{3n-1} in THz."""
    b = summary["band"]
    rows = []
    for k, (dist, q, f) in enumerate(zip(b["distances"], b["qpoints"], b["frequencies_THz"])):
        rows.append(np.column_stack([np.full(len(dist), k), dist, q, f]))
    data = np.vstack(rows)
    nb = data.shape[1] - 5
    header = ["segment", "distance", "q1", "q2", "q3"] + [f"f_{i}_THz" for i in range(nb)]
    return _write_columns(Path(path), header, [data])


def write_phonon_results(summary: dict, directory: str | os.PathLike,
                         extra: dict | None = None) -> dict[str, Path]:
    """``dos.csv``, ``pdos.csv``, ``band.csv``, ``summary.json`` in ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return {"dos": write_dos_csv(summary, out / "dos.csv"),
            "pdos": write_pdos_csv(summary, out / "pdos.csv"),
            "band": write_band_csv(summary, out / "band.csv"),
            "summary": write_summary_json(summary, out / "summary.json", extra)}
