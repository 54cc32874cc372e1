"""Make LiM(SeO3)2 from LiGa(SeO3)2: substitute the framework cation, then relax cell and positions.

``substitute`` swaps every atom of one element for another and prescales the cell as a starting
guess; ``relax`` relaxes cell and positions with the reference calculator (CHGNet by default),
keeping the space group, and writes what it did to a folder (restartable: a finished relaxation
is read back, not redone).

Prescale. The linear factor is ``1 + damping · (q − 1)`` with ``q = (r_new + r_O) / (r_old + r_O)``
the ratio of M–O bond lengths from Shannon ionic radii (octahedral, 3+). Only part of the cell is
M–O bonds (the SeO3 pyramids and LiO4 tetrahedra are stiff and barely change), so the bond
change is damped: by default half of it goes into the cell (``damping = 0.5``). It is only a
starting guess for the relaxation, which sets the real volume. (Measured: for Ga -> Al the
guess is −6.2 % in volume; CHGNet relaxes LiAl(SeO3)2 to −3.5 % of the bundled LiGa(SeO3)2 cell,
i.e. an effective damping nearer 0.3 for that pair.)
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["SHANNON_RADII_A", "R_O_A", "SubstitutionError", "RelaxationError", "ionic_radius_A",
           "prescale_factor", "substitute", "space_group", "relax"]

#: Shannon effective ionic radii (Å), octahedral (CN VI), charge 3+.
#: R. D. Shannon, Acta Cryst. A 32, 751–767 (1976), doi:10.1107/S0567739476001551.
SHANNON_RADII_A: dict[str, float] = {"Al": 0.535, "Ga": 0.62, "In": 0.80, "Sc": 0.745,
                                     "Y": 0.900, "La": 1.032}
#: O2− ionic radius (Å), Shannon 1976 (CN II; the usual reference value).
R_O_A = 1.40

RELAX_FILES = ("relaxed.cif", "relaxed.extxyz", "relax.log", "relax.json")


class SubstitutionError(ValueError):
    """A substitution that cannot be made (unknown element, element absent, no radius)."""


class RelaxationError(RuntimeError):
    """A relaxation that went wrong (diverged, lost its atoms); the message says how."""


def ionic_radius_A(element: str) -> float:
    """Shannon ionic radius (Å) of ``element`` as a 3+ ion in octahedral coordination.

    Uses :data:`SHANNON_RADII_A`, else pymatgen's Shannon table (same source).

    Raises
    ------
    SubstitutionError
        If ``element`` is not an element or has no tabulated 3+ octahedral radius.
    """
    if element in SHANNON_RADII_A:
        return SHANNON_RADII_A[element]
    _check_element(element)
    from pymatgen.core import Species

    for spin in ("", "High Spin"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(Species(element, 3).get_shannon_radius("VI", spin=spin, radius_type="ionic"))
        except (KeyError, ValueError):
            continue
    raise SubstitutionError(f"no Shannon radius for {element}3+ in octahedral coordination; "
                            "substitute without prescaling (--no-prescale)")


def prescale_factor(old: str, new: str, damping: float = 0.5) -> float:
    """Linear cell factor guessed for replacing ``old`` by ``new`` (see the module docstring).

    Parameters
    ----------
    old, new : str
        Element symbols (3+ octahedral cations).
    damping : float
        Fraction of the relative M–O bond-length change that goes into the cell length, 0–1.

    Returns
    -------
    float
        Factor applied to every lattice vector (1 = no change).
    """
    if not 0.0 <= damping <= 1.0:
        raise SubstitutionError(f"prescale damping must be in [0, 1], got {damping}")
    q = (ionic_radius_A(new) + R_O_A) / (ionic_radius_A(old) + R_O_A)
    return 1.0 + damping * (q - 1.0)


def substitute(atoms, old: str = "Ga", new: str = "Al", *, prescale: bool = True,
               damping: float = 0.5):
    """Replace every ``old`` atom by ``new`` and (optionally) prescale the cell.

    Parameters
    ----------
    atoms : ase.Atoms
        Parent structure (not modified).
    old, new : str
        Element symbols. ``old`` must be present in ``atoms``.
    prescale : bool
        Scale the cell (atoms follow, fractional coordinates kept) by :func:`prescale_factor`.
    damping : float
        See :func:`prescale_factor`.

    Returns
    -------
    ase.Atoms
        A new structure without calculator or constraints; ``info["substitution"]`` records
        old, new, the count and the linear factor.

    Raises
    ------
    SubstitutionError
        Unknown element, ``old`` absent from the structure, or no radius for prescaling.
    """
    _check_element(old)
    _check_element(new)
    symbols = atoms.get_chemical_symbols()
    count = symbols.count(old)
    if count == 0:
        raise SubstitutionError(f"cannot substitute {old} -> {new}: the structure "
                                f"({atoms.get_chemical_formula()}) holds no {old}")
    factor = prescale_factor(old, new, damping) if (prescale and old != new) else 1.0
    out = atoms.copy()
    out.calc = None
    out.set_constraint()
    out.set_chemical_symbols([new if s == old else s for s in symbols])
    out.set_cell(np.asarray(atoms.cell) * factor, scale_atoms=True)
    out.info = {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool))}
    out.info["substitution"] = json.dumps({"old": old, "new": new, "count": count,
                                           "linear_prescale": factor, "damping": damping})
    return out


def space_group(atoms, symprec: float = 1e-3) -> dict:
    """Space group of ``atoms`` from spglib: ``{"symbol", "number", "symprec"}`` (None if none found)."""
    import spglib

    with warnings.catch_warnings():  # spglib 2.x: a deprecation note about its error handling
        warnings.simplefilter("ignore")
        data = spglib.get_symmetry_dataset((np.asarray(atoms.cell), atoms.get_scaled_positions(),
                                            atoms.numbers), symprec=symprec)
    if data is None:
        return {"symbol": None, "number": None, "symprec": symprec}
    return {"symbol": str(data.international), "number": int(data.number), "symprec": symprec}


def relax(atoms, calculator_spec="chgnet", *, fmax_eV_A: float = 0.05, max_steps: int = 200,
          output_dir: str | os.PathLike | None = None, device: str | None = None,
          symprec: float = 1e-3, max_volume_change: float = 0.35, optimizer: str = "BFGS") -> tuple:
    """Relax cell and positions, keeping the space group.

    ``FixSymmetry`` (ASE) holds the space group, ``FrechetCellFilter`` exposes the cell, the
    optimiser (BFGS by default; FIRE relaxed the LiAl(SeO3)2 cell far more slowly) moves both
    until every generalised force (atomic forces and stress × volume) is below ``fmax_eV_A`` or
    ``max_steps`` is reached. spglib checks the space group before and after. A relaxation that
    ends at ``max_steps`` is returned with ``converged: False`` (not an error).

    Parameters
    ----------
    atoms : ase.Atoms
        Start structure (not modified).
    calculator_spec : str or ase Calculator
        A calculator SPEC (``phonion.core.calculators``), or a calculator object.
    fmax_eV_A : float
        Convergence threshold on the largest generalised force, eV/Å.
    max_steps : int
        Most optimiser steps.
    output_dir : path, optional
        Where to write ``relaxed.cif``, ``relaxed.extxyz`` (energy, forces, stress),
        ``relax.log`` (optimiser log) and ``relax.json`` (written last). If it already holds a
        finished relaxation by the same SPEC to the same or a tighter ``fmax_eV_A``, that is read
        back and nothing is computed.
    device : str, optional
        Device for the SPEC's calculator.
    symprec : float
        spglib / FixSymmetry tolerance, Å.
    max_volume_change : float
        A relative volume change beyond this counts as a diverged relaxation.
    optimizer : str
        ``"BFGS"`` or ``"FIRE"`` (ASE optimisers).

    Returns
    -------
    (ase.Atoms, dict)
        Relaxed structure (with a single-point calculator holding energy, forces, stress) and the
        summary written to ``relax.json``: volumes, lattice parameters, space groups before and
        after, max residual force (eV/Å) and stress (GPa), steps, ``converged``, ``reused``.

    Raises
    ------
    RelaxationError
        Non-finite energy or forces, or a volume change beyond ``max_volume_change``.
    """
    from ase.constraints import FixSymmetry
    from ase.optimize import BFGS, FIRE

    optimizers = {"BFGS": BFGS, "FIRE": FIRE}
    if optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(optimizers)}")
    out = Path(output_dir) if output_dir is not None else None
    reused = _reused(out, calculator_spec, fmax_eV_A)
    if reused is not None:
        return reused
    work = atoms.copy()
    work.calc = _calculator(calculator_spec, device)
    before = space_group(atoms, symprec)
    volume0 = atoms.get_volume()
    work.set_constraint(FixSymmetry(work, symprec=symprec))
    guard = _guard(work, volume0, max_volume_change)
    converged, opt = _optimise(work, optimizers[optimizer], out, guard, fmax_eV_A, max_steps)
    energy, forces, stress, relaxed = _freeze(work)
    after = space_group(relaxed, symprec)
    summary = {
        "finished": True, "converged": converged, "steps": int(opt.nsteps),
        "fmax_eV_A": fmax_eV_A, "max_steps": max_steps, "optimizer": f"{optimizer} + FrechetCellFilter + FixSymmetry",
        "calculator": calculator_spec if isinstance(calculator_spec, str) else type(calculator_spec).__name__,
        **_structure_summary(atoms, relaxed, volume0, (energy, forces, stress), before, after), "reused": False,
    }
    if out is not None:
        _write_outputs(out, relaxed, summary)
    return relaxed, summary


def _reused(out: Path | None, calculator_spec, fmax_eV_A: float):
    """(relaxed, summary) of a finished relaxation in ``out`` by the same SPEC to the same or a tighter fmax,
    else None."""
    import ase.io

    if out is not None and (out / "relax.json").is_file():
        summary = json.loads((out / "relax.json").read_text())
        same_calc = not isinstance(calculator_spec, str) or summary.get("calculator") == calculator_spec
        if summary.get("finished") and same_calc and summary.get("fmax_eV_A", np.inf) <= fmax_eV_A:
            relaxed = ase.io.read(out / "relaxed.extxyz")
            return relaxed, {**summary, "reused": True}
    return None


def _optimise(work, optimizer_class, out: Path | None, guard, fmax_eV_A: float, max_steps: int):
    """Run the optimiser on cell and positions (FrechetCellFilter), checked by ``guard`` every step; it logs to
    ``out/relax.log`` (``out`` is created) or to stdout."""
    from ase.filters import FrechetCellFilter

    logfile = "-" if out is None else str(out / "relax.log")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    opt = optimizer_class(FrechetCellFilter(work), logfile=logfile)
    opt.attach(guard, interval=1)
    with warnings.catch_warnings():  # CHGNet converts to pymatgen, which cannot carry FixSymmetry
        warnings.filterwarnings("ignore", message="Only FixAtoms and FixCartesian")
        converged = bool(opt.run(fmax=fmax_eV_A, steps=max_steps))
    return converged, opt


def _freeze(work):
    """(energy, forces, stress, a copy without constraints holding them in a single-point calculator)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    energy = work.get_potential_energy()
    forces = work.get_forces()      # symmetrised by FixSymmetry
    stress = work.get_stress()      # Voigt, eV/Å^3
    work.set_constraint()
    relaxed = work.copy()
    relaxed.calc = SinglePointCalculator(relaxed, energy=energy, forces=forces, stress=stress)
    return energy, forces, stress, relaxed


def _structure_summary(atoms, relaxed, volume0: float, labels: tuple, before: dict, after: dict) -> dict:
    """The structure part of ``relax.json``: energy, residual force and stress (``labels`` = (energy, forces,
    stress) of ``relaxed``), volumes, lattices and space groups before and after."""
    from ase.units import GPa

    energy, forces, stress = labels
    return {
        "formula": relaxed.get_chemical_formula(), "n_atoms": len(relaxed),
        "energy_eV": float(energy), "energy_per_atom_eV": float(energy) / len(relaxed),
        "max_residual_force_eV_A": float(np.linalg.norm(forces, axis=1).max()),
        "max_residual_stress_GPa": float(np.abs(stress).max() / GPa),
        "volume_before_A3": float(volume0), "volume_after_A3": float(relaxed.get_volume()),
        "volume_change": float(relaxed.get_volume() / volume0 - 1.0),
        "lattice_before": _cellpar(atoms), "lattice_after": _cellpar(relaxed),
        "space_group_before": before, "space_group_after": after,
        "space_group_kept": before["number"] == after["number"],
    }


def _check_element(symbol: str) -> None:
    from ase.data import atomic_numbers

    if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
        raise SubstitutionError(f"unknown element {symbol!r} (use a chemical symbol such as Al, In, Sc)")


def _calculator(spec, device):
    if hasattr(spec, "get_forces") or hasattr(spec, "calculate"):
        return spec
    from phonion.core.calculators import resolve_calculator

    return resolve_calculator(spec, device=device)


def _guard(atoms, volume0: float, max_volume_change: float):
    def check():
        energy = atoms.get_potential_energy()
        if not np.isfinite(energy) or not np.all(np.isfinite(atoms.get_forces())):
            raise RelaxationError("relaxation diverged: non-finite energy or forces")
        change = atoms.get_volume() / volume0 - 1.0
        if abs(change) > max_volume_change:
            raise RelaxationError(f"relaxation diverged: volume changed by {100 * change:+.1f} % "
                                  f"(limit ±{100 * max_volume_change:.0f} %)")
    return check


def _cellpar(atoms) -> dict:
    a, b, c, alpha, beta, gamma = (float(x) for x in atoms.cell.cellpar())
    return {"a_A": a, "b_A": b, "c_A": c, "alpha_deg": alpha, "beta_deg": beta, "gamma_deg": gamma}


def _write_outputs(out: Path, relaxed, summary: dict) -> None:
    import ase.io

    for name, fmt in (("relaxed.cif", "cif"), ("relaxed.extxyz", "extxyz")):
        tmp = out / f".{name}.tmp"
        ase.io.write(tmp, relaxed, format=fmt)
        os.replace(tmp, out / name)
    tmp = out / ".relax.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "relax.json")  # last: its presence marks a finished relaxation
