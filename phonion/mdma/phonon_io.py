"""Reading and writing phonons and phonon results (no numerics here).

:func:`save_phonons` writes phonopy's own files; :func:`load_phonons` reads them back and also
reads the files a DFT user has (phonopy's DFT route):

1. a phonopy yaml holding force constants or forces (``phonopy_params.yaml``, ``phonopy.yaml``);
2. ``FORCE_CONSTANTS`` (or ``force_constants.hdf5``) + a unit cell (``POSCAR``, or the cell of
   a phonopy yaml beside it) + the supercell matrix (from a phonopy yaml beside it, given, or the
   ``DIM`` of a phonopy ``*.conf`` beside it);
3. ``FORCE_SETS`` + ``phonopy_disp.yaml`` (displacements and supercell), or + a unit cell
   (``POSCAR``) + the supercell matrix (given, or the ``DIM`` of a phonopy ``*.conf`` beside it).

Text files keep ~10 significant digits; :func:`save_phonons` also writes the force constants
exactly (``force_constants.hdf5``, phonopy's HDF5 layout), and :func:`load_phonons` prefers that
file when it lies beside the yaml, so a save/load round trip gives identical frequencies.
Files are only looked for next to the path given, never in the current directory (phonopy's
own ``load`` would also look there; every file name is passed to it explicitly), and each yaml is
parsed once. A ``BORN`` file beside the data (symmetry-independent atoms, or every atom), or NAC
parameters in the yaml, switch the non-analytical correction on.
Loaded phonons use the unit cell as the primitive cell (``primitive_matrix="P"``) unless told
otherwise, and hold full force constants ``(N_sc, N_sc, 3, 3)``, as
:func:`phonion.mdma.phonons.compute_force_constants` gives.
"""

from __future__ import annotations

import csv
import dataclasses
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
POSCAR_NAMES = ("POSCAR", "POSCAR-unitcell", "UPOSCAR", "SPOSCAR_unitcell")


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


def _yaml_holds(path: Path, cache: dict | None = None) -> tuple[bool, bool, object]:
    """(has force constants, has forces, parsed data) of a phonopy yaml, parsed once per ``cache``."""
    from phonopy.interface.phonopy_yaml import read_phonopy_yaml

    cache = {} if cache is None else cache
    key = str(path)
    if key not in cache:
        try:
            cache[key] = read_phonopy_yaml(path)
        except Exception as exc:  # yaml / key errors of many kinds
            raise ValueError(f"{path}: cannot read as a phonopy yaml: {type(exc).__name__}: {exc}") \
                from exc
    data = cache[key]
    ds = data.dataset or {}
    if "first_atoms" in ds:
        has_forces = bool(ds["first_atoms"]) and all("forces" in d for d in ds["first_atoms"])
    else:
        has_forces = ds.get("forces") is not None
    return data.force_constants is not None, has_forces, data


def _first(directory: Path, names) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def conf_supercell_matrix(directory: Path):
    """The ``DIM`` of the phonopy ``*.conf`` files in ``directory`` (3 or 9 integers), or None.

    Raises ValueError (naming the files) when they give different or malformed ``DIM`` values."""
    found = {}
    for conf in sorted(directory.glob("*.conf")):
        for line in conf.read_text(errors="replace").splitlines():
            key, _, value = line.split("#")[0].partition("=")
            if key.strip().upper() != "DIM":
                continue
            try:
                dim = [int(x) for x in value.split()]
            except ValueError:
                dim = []
            if len(dim) not in (3, 9):
                raise ValueError(f"{conf}: DIM must be 3 or 9 integers, got {value.strip()!r}")
            found[conf] = dim
    if len({tuple(v) for v in found.values()}) > 1:
        raise ValueError(f"{directory}: the phonopy .conf files disagree on DIM: "
                         + "; ".join(f"{c.name}: {v}" for c, v in found.items())
                         + "; give the supercell matrix (supercell_matrix=..., --supercell)")
    if not found:
        return None
    dim = next(iter(found.values()))
    return np.diag(dim) if len(dim) == 3 else np.reshape(dim, (3, 3))


def check_supercell(value, name: str = "supercell"):
    """``value`` (3 or 9 integers, or None) as a tuple, or ValueError naming ``name`` and what it takes."""
    if value is None:
        return None
    flat = np.ravel(np.asarray(value, dtype=object))
    try:
        ints = [int(v) for v in flat]
    except (TypeError, ValueError):
        ints = []
    if len(ints) not in (3, 9) or any(i != v for i, v in zip(ints, flat)) \
            or round(np.linalg.det(np.diag(ints) if len(ints) == 3 else np.reshape(ints, (3, 3)))) < 1:
        raise ValueError(f"{name} takes 3 integers (a diagonal supercell matrix) or 9 (a 3 × 3 matrix) "
                         f"with a positive determinant, got {list(flat)}")
    return tuple(ints)


def read_born(born: Path, primitive, symprec: float = 1e-5) -> dict:
    """NAC parameters of a ``BORN`` file for ``primitive``, written with the symmetry-independent atoms
    (phonopy's default) or with every atom of the primitive cell (``is_symmetry=False``)."""
    from phonopy.file_IO import parse_BORN

    try:
        return parse_BORN(primitive, symprec=symprec, filename=born)
    except Exception as exc:  # BORNFileParseError and friends: maybe written with all atoms
        try:
            return parse_BORN(primitive, symprec=symprec, is_symmetry=False, filename=born)
        except Exception as exc2:
            raise ValueError(f"{born}: cannot read as a BORN file of the {len(primitive)}-atom primitive "
                             f"cell, with symmetry ({exc}) or listing every atom ({exc2}); fix the file or "
                             f"move it away to load without the non-analytical correction") from exc2


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
        For ``FORCE_CONSTANTS`` / ``FORCE_SETS`` with a ``POSCAR`` (else the ``DIM`` of a phonopy
        ``*.conf`` beside it); overrides the matrix of a yaml.
    primitive_matrix : optional
        phonopy primitive matrix; default ``"P"`` (the unit cell, atom order kept).
    symprec : float, optional
        Symmetry tolerance passed to phonopy.

    Returns ``phonopy.Phonopy`` with full force constants, shape (N_sc, N_sc, 3, 3), eV/Å²; raises
    ValueError naming the file or directory when it does not exist, cannot be read, or the files
    needed for a route are missing.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{p}: no such file or directory")
    directory = p if p.is_dir() else p.parent
    if supercell_matrix is not None and np.size(supercell_matrix) == 9:
        supercell_matrix = np.reshape(supercell_matrix, (3, 3)).astype(int)
    cache: dict = {}  # every yaml is parsed once (a 16 MB phonopy_params.yaml takes seconds)
    yaml, fc_file, sets_file = _pick_files(p, directory, cache)
    cell_src, cell, smat, data, fc_file, sets_file = _route(yaml, fc_file, sets_file, directory,
                                                            supercell_matrix, cache)
    used = [str(f) for f in (cell_src, fc_file, sets_file) if f is not None]
    try:
        phonon = _build(cell, smat, data, fc_file, sets_file, primitive_matrix, symprec)
    except Exception as exc:  # phonopy raises many kinds; say which files were used
        raise ValueError(f"phonopy could not load {', '.join(used)}: "
                         f"{type(exc).__name__}: {exc}") from exc
    if phonon.force_constants is None:
        raise ValueError(f"{p}: phonopy produced no force constants from these files")
    _set_nac(phonon, _first(directory, ["BORN"]), data, symprec)
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


def _build(cell, smat, data, fc_file, sets_file, primitive_matrix, symprec: float):
    """phonopy object of the cell (a POSCAR path, or a parsed yaml's unit cell) with its force constants:
    read from ``fc_file`` or the yaml as they are, or produced (symmetrised) from FORCE_SETS / yaml forces."""
    import phonopy
    from phonopy.cui import load_helper
    from phonopy.structure.dataset import forces_in_dataset

    kwargs = dict(supercell_matrix=smat, primitive_matrix=primitive_matrix, is_nac=False, produce_fc=False,
                  is_compact_fc=False, symprec=symprec, log_level=0,
                  force_constants_filename=fc_file, force_sets_filename=sets_file)
    if isinstance(cell, Path):
        phonon = phonopy.load(unitcell_filename=cell, **kwargs)
    else:
        phonon = phonopy.load(unitcell=cell, calculator=data.calculator, **kwargs)
    if phonon.force_constants is None and fc_file is None and sets_file is None and data is not None:
        if data.force_constants is not None:
            phonon.force_constants = data.force_constants
        elif data.dataset is not None:
            phonon.dataset = data.dataset
    if phonon.force_constants is None and forces_in_dataset(phonon.dataset):
        load_helper.produce_force_constants(phonon, symmetrize_fc=True, is_compact_fc=False,
                                            use_symfc_projector=True, log_level=0)
    return phonon


def _set_nac(phonon, born: Path | None, data, symprec: float) -> None:
    """Non-analytical correction from a BORN file beside the data, else from the yaml's NAC parameters."""
    from phonopy.cui import load_helper
    from phonopy.physical_units import get_calculator_physical_units

    nac = read_born(born, phonon.primitive, symprec) if born is not None else \
        (None if data is None else data.nac_params)
    if nac is None:
        return
    units = get_calculator_physical_units(phonon.calculator)
    phonon.nac_params = load_helper.get_nac_params(primitive=phonon.primitive, nac_params=nac, is_nac=True,
                                                   nac_factor=units.nac_factor, log_level=0)


def _pick_files(p: Path, directory: Path, cache: dict):
    """(phonopy yaml, force-constants file, FORCE_SETS file), each or None, for the path given (a file names
    its route; in a directory ``phonopy_params.yaml`` is preferred, then ``FORCE_CONSTANTS``, then ``FORCE_SETS``)."""
    name = p.name if p.is_file() else None
    yaml = None
    fc_file = sets_file = None
    if name is None:
        yaml = _first(directory, [PARAMS_YAML, "phonopy.yaml"])
        if yaml is not None and not any(_yaml_holds(yaml, cache)[:2]):
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


def _yaml_cell(yaml: Path, supercell_matrix, cache: dict):
    """(unit cell, supercell matrix, parsed data) of a phonopy yaml; ``supercell_matrix`` overrides its own."""
    data = _yaml_holds(yaml, cache)[2]
    if data.unitcell is None:
        raise ValueError(f"{yaml}: holds no unit cell")
    smat = supercell_matrix if supercell_matrix is not None else data.supercell_matrix
    return data.unitcell, (np.eye(3, dtype=int) if smat is None else smat), data


def _poscar_cell(what: Path, directory: Path, supercell_matrix):
    """(POSCAR path, supercell matrix) for a FORCE_CONSTANTS / FORCE_SETS file without a phonopy yaml."""
    poscar = _first(directory, POSCAR_NAMES)
    if poscar is None and what.name.startswith("FORCE_SETS"):
        raise ValueError(f"{what}: needs phonopy_disp.yaml (displacements and supercell), or a POSCAR (unit "
                         f"cell) with the supercell matrix, in {directory}: not found")
    if poscar is None:
        raise ValueError(f"{what}: no unit cell beside it: need a POSCAR (with the supercell matrix) or a "
                         f"phonopy yaml ({', '.join(YAML_NAMES)}) in {directory}")
    smat = supercell_matrix if supercell_matrix is not None else conf_supercell_matrix(directory)
    if smat is None:
        raise ValueError(f"{what}: the supercell matrix is unknown: give it (supercell_matrix=..., "
                         f"--supercell N N N), or put a phonopy .conf with DIM = ... or a "
                         f"phonopy_disp.yaml in {directory}")
    return poscar, smat


def _route(yaml, fc_file, sets_file, directory: Path, supercell_matrix, cache: dict):
    """(file of the unit cell, unit cell: parsed cell or POSCAR path, supercell matrix, parsed yaml or None, force-constants file,
    FORCE_SETS file) of the route."""
    if yaml is not None:  # route 1, or a yaml holding only the cell + dataset
        has_fc, has_forces, _ = _yaml_holds(yaml, cache)
        fc_file = _first(directory, [HDF5_NAME])  # exact copy of what the yaml holds
        if not (has_fc or has_forces) and fc_file is None:
            fc_file = _first(directory, ["FORCE_CONSTANTS"])
            sets_file = None if fc_file else _first(directory, ["FORCE_SETS"])
            if fc_file is None and sets_file is None:
                raise ValueError(f"{yaml}: holds no force constants and no forces, and there "
                                 f"is no FORCE_CONSTANTS or FORCE_SETS beside it")
        return (yaml, *_yaml_cell(yaml, supercell_matrix, cache), fc_file, sets_file)
    what = fc_file if fc_file is not None else sets_file
    names = YAML_NAMES if fc_file is not None else ("phonopy_disp.yaml", "phonopy.yaml", PARAMS_YAML)
    cell_yaml = _first(directory, names)
    poscar = _first(directory, POSCAR_NAMES)
    if cell_yaml is not None and not (poscar is not None and supercell_matrix is not None):
        cell, smat, data = _yaml_cell(cell_yaml, supercell_matrix, cache)
        return cell_yaml, cell, smat, _no_data(data), fc_file, sets_file
    cell, smat = _poscar_cell(what, directory, supercell_matrix)
    return cell, cell, smat, None, fc_file, sets_file


def _no_data(data):
    """The parsed cell yaml of route 2 / 3: its calculator and NAC parameters count, not its dataset."""
    return dataclasses.replace(data, dataset=None, force_constants=None)


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
