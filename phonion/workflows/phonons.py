"""``run_phonons(PhononsConfig) -> PhononsRun``: finite-displacement phonons of a structure with any calculator.

Flow: load the structure → build the calculator from its SPEC → force constants by phonopy finite
displacements (:func:`phonion.mdma.phonons.compute_force_constants`) → O classes around the mobile ion (when
the structure has them) → DOS, PDOS by species and O class, bands, band centres and a stability report
(:func:`phonion.mdma.phonons.phonon_summary`). ``PhononsRun`` keeps the phonopy object for callers that go on
in memory; ``to_dict()`` is the JSON of ``phonion phonons``; ``save(dir)`` writes its files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from phonion.workflows.common import check_output_dir
from phonion.workflows.result import Result

__all__ = ["PhononsConfig", "PhononsRun", "run_phonons"]



@dataclass(frozen=True)
class PhononsConfig:
    """Settings of ``phonion phonons`` (its options; ``configs/phonons.yaml``)."""

    structure: str
    calculator: str
    supercell: tuple = (2, 2, 2)
    displacement_A: float = 0.01
    mesh: tuple = (8, 8, 8)
    mobile: str = "Li"
    anion: str = "O"
    tolerance_THz: float = 0.05
    symprec: float = 1e-5
    device: str | None = None
    plots: bool = True
    #: the directory the results go to (checked before any force is computed); None: not checked
    output: str | None = None

    def __post_init__(self):
        from phonion.core.calculators import parse_spec

        supercell, mesh = tuple(self.supercell), tuple(self.mesh)
        object.__setattr__(self, "supercell", supercell)
        object.__setattr__(self, "mesh", mesh)
        for name, value in (("supercell", supercell), ("mesh", mesh)):
            if len(value) != 3:
                raise ValueError(f"--{name} takes 3 integers, got {list(value)}")
        if any(int(n) < 1 for n in supercell) or any(int(n) < 1 for n in mesh):
            raise ValueError(f"--supercell and --mesh need positive integers, got {list(supercell)} "
                             f"and {list(mesh)}")
        if not self.displacement_A > 0:  # the message of phonion.mdma.phonons, which checks it after the SPEC
            raise ValueError(f"displacement_A must be > 0, got {self.displacement_A}")
        if not self.symprec > 0:
            raise ValueError(f"--symprec must be > 0, got {self.symprec}")
        parse_spec(self.calculator)  # a SPEC that does not parse fails here, before any work
        if self.output is not None:  # before any force is computed (CHGNet: minutes)
            check_output_dir(self.output)


@dataclass
class PhononsRun(Result):
    """The phonopy object with force constants, :func:`phonion.mdma.phonons.phonon_summary` and provenance."""

    phonon: object
    summary: dict
    extra: dict
    plots: bool = True
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``phonion phonons`` JSON: the summary's scalars, provenance and, once saved, ``files``."""
        from phonion.mdma.phonon_io import summary_scalars

        out = summary_scalars(self.summary)
        out.update(self.extra)
        if self.files:
            out["files"] = {k: str(v) for k, v in self.files.items()}
        return out

    def save(self, directory, plots: bool | None = None) -> dict[str, Path]:
        """phonopy_params.yaml, FORCE_CONSTANTS, force_constants.hdf5, dos.csv, pdos.csv, band.csv,
        summary.json and (``plots``, default the config's) dos.png, band.png into ``directory``."""
        from phonion.mdma.phonon_io import save_phonons, write_phonon_results

        check_output_dir(directory)
        files = save_phonons(self.phonon, directory)
        files.update(write_phonon_results(self.summary, directory, self.extra))
        if self.plots if plots is None else plots:
            from phonion.mdma.phonon_plots import plot_phonon_results

            files.update(plot_phonon_results(self.summary, directory))
        self.files = files
        return dict(files)


def run_phonons(cfg: PhononsConfig, *, progress: bool = True) -> PhononsRun:
    """Force constants, DOS / PDOS / bands and stability of ``cfg.structure`` with ``cfg.calculator``;
    nothing is written. ``progress``: show phonopy's displacement progress bar."""
    from phonion.core.calculators import calculator_metadata, resolve_calculator
    from phonion.core.structures import load_structure
    from phonion.mdma.phonons import compute_force_constants, phonon_summary
    from phonion.mdma.sites import classify_oxygens

    if cfg.output is not None:  # again: it may have changed since the config was made
        check_output_dir(cfg.output)
    atoms = load_structure(cfg.structure)
    calc = resolve_calculator(cfg.calculator, device=cfg.device)
    t0 = time.perf_counter()
    phonon = compute_force_constants(atoms, calc, supercell_matrix=tuple(cfg.supercell),
                                     displacement_A=cfg.displacement_A, symprec=cfg.symprec, progress=progress)
    elapsed = time.perf_counter() - t0
    symbols = set(atoms.get_chemical_symbols())
    classes, note = None, None
    if cfg.mobile in symbols and cfg.anion in symbols:
        try:
            classes = classify_oxygens(atoms, mobile=cfg.mobile, anion=cfg.anion)
        except ValueError as exc:  # structure without the polyhedra: no class PDOS
            note = f"no O classes: {exc}"
    summary = phonon_summary(phonon, classes=classes, mesh=tuple(cfg.mesh), mobile=cfg.mobile,
                             tolerance_THz=cfg.tolerance_THz)
    extra = {"structure": str(cfg.structure), "n_atoms_unit_cell": len(atoms),
             "supercell": [int(n) for n in cfg.supercell],
             "n_displacements": len(phonon.supercells_with_displacements),
             "displacement_A": float(cfg.displacement_A), "force_constants_wall_s": round(elapsed, 2),
             **calculator_metadata(cfg.calculator)}
    if classes is not None:
        extra["o_classes"] = {c: [int(i) for i in getattr(classes, c)] for c in ("O_e", "O_c", "O_n")}
    if note:
        extra["note"] = note
    return PhononsRun(phonon=phonon, summary=summary, extra=extra, plots=cfg.plots)
