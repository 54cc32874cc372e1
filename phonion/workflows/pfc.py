"""``run_pfc(PFCConfig) -> PFCRun``: projected force constants of mobile ion–O_e / O_c bonds.

Flow: load the phonons → O classes on phonopy's supercell → migration directions (the structure's nearest
mobile-ion sites, or the hops seen in a trajectory) → bond- and migration-projected force constants
(:func:`phonion.mdma.pfc.projected_force_constants`). ``PFCRun.to_dict()`` is the JSON of ``phonion pfc``;
``PFCRun.save(dir)`` writes ``pfc.json`` with every ion–anion record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phonion.core.jsonutil import clean
from phonion.workflows.result import Result, write_json

__all__ = ["PFCConfig", "PFCRun", "run_pfc"]


@dataclass(frozen=True)
class PFCConfig:
    """Settings of ``phonion pfc`` (``configs/pfc.yaml``)."""

    phonons: str = ""
    trajectory: tuple | None = None
    mobile: str = "Li"
    anion: str = "O"
    framework: tuple | None = None
    k_nearest: int | None = None
    hop_threshold_A: float = 1.0
    hop_window: int = 50
    site_tolerance_A: float = 0.5
    timestep_fs: float | None = None
    file_stride: int | None = None
    fmt: str | None = None
    #: supercell matrix of phonons given as FORCE_SETS / FORCE_CONSTANTS + POSCAR (3 or 3 × 3 integers)
    supercell: tuple | None = None
    #: the directory the results go to (checked before any work); None: not checked
    output: str | None = None

    def __post_init__(self):
        from phonion.mdma.phonon_io import check_supercell

        from phonion.workflows.common import check_output_dir

        object.__setattr__(self, "supercell", check_supercell(self.supercell, "supercell (--supercell)"))
        if self.output is not None:
            check_output_dir(self.output)
        if self.k_nearest is not None and not (isinstance(self.k_nearest, int) and self.k_nearest >= 1):
            raise ValueError(f"k_nearest must be an integer ≥ 1, got {self.k_nearest!r}")
        if not self.hop_threshold_A > 0:
            raise ValueError(f"hop_threshold_A must be > 0, got {self.hop_threshold_A!r}")


@dataclass
class PFCRun(Result):
    """The ``phonion pfc`` summary and every ion–anion record."""

    summary: dict
    records: list
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = dict(self.summary)
        if self.files:
            out["files"] = {k: str(v) for k, v in self.files.items()}
        return out

    def save(self, directory) -> dict[str, Path]:
        """``pfc.json``: the summary plus ``records`` (every ion–anion pair)."""
        path = write_json(Path(directory) / "pfc.json", dict(self.summary, records=clean(self.records)))
        self.files = {"pfc_json": path}
        return dict(self.files)


def _hop_directions(cfg: "PFCConfig", phonon, sc_atoms):
    """m̂ per mobile ion of phonopy's supercell from hops seen in a trajectory, matched by primitive site."""
    from phonion.md.io import read_trajectory
    from phonion.md.trajectory import TrajectoryError
    from phonion.mdma.modes import map_to_primitive
    from phonion.mdma.pfc import _unit, detect_hops
    from phonion.workflows.mdma import SITE_TOLERANCE_HINT, md_sites

    files, mobile = cfg.trajectory, cfg.mobile
    threshold_A, window = cfg.hop_threshold_A, cfg.hop_window
    src = ", ".join(str(f) for f in files)
    traj = read_trajectory([Path(f) for f in files], fmt=cfg.fmt, timestep_fs=cfg.timestep_fs,
                           stride=cfg.file_stride)
    prim = phonon.primitive
    A, fprim, psym = np.array(prim.cell), np.array(prim.scaled_positions), list(prim.symbols)
    atoms0, _ = md_sites(traj, mobile, files)  # the mapping of phonion mdma and phonion compare
    try:
        kappa_md, _, _ = map_to_primitive(A, fprim, psym, atoms0, cfg.site_tolerance_A)
    except ValueError as exc:
        raise ValueError(f"{src}: the trajectory (first frame) does not match the phonons: {exc}; "
                         + SITE_TOLERANCE_HINT.format(tol=cfg.site_tolerance_A)) from exc
    kappa_sc, _, _ = map_to_primitive(A, fprim, psym, sc_atoms, 1e-3)
    ions = traj.indices_of(mobile)
    if ions.size == 0:
        raise TrajectoryError(f"{src}: no {mobile!r} atoms")
    try:
        hops = detect_hops(traj.positions, ions, threshold_A=threshold_A, window=window)
    except ValueError as exc:
        raise TrajectoryError(f"{src}: {exc}") from exc
    if not hops:
        raise TrajectoryError(f"{src}: no {mobile} hops found ({traj.n_frames} frames, threshold "
                              f"{threshold_A} Å, window {window} frames); omit --trajectory to take the "
                              f"directions from the structure, or use a longer / hotter run")
    by_site: dict[int, list] = {}
    for h in hops:
        by_site.setdefault(int(kappa_md[h.ion]), []).append(h.vector_A)
    directions = {int(i): _unit(np.array(by_site[int(kappa_sc[i])]))
                  for i in np.flatnonzero(np.array(sc_atoms.get_chemical_symbols()) == mobile)
                  if int(kappa_sc[i]) in by_site}
    info = {"n_hops": len(hops), "n_hopping_ions": len({h.ion for h in hops}),
            "n_sites_with_hops": len(by_site), "trajectory": [str(f) for f in files]}
    return directions, info


def run_pfc(cfg: PFCConfig, *, phonon=None) -> PFCRun:
    """Bond- and migration-projected force constants from ``cfg.phonons`` (or an already loaded ``phonon``)."""
    from phonion.mdma.pfc import migration_directions_from_sites, projected_force_constants
    from phonion.mdma.phonon_io import load_phonons
    from phonion.mdma.phonons import to_ase_atoms
    from phonion.mdma.sites import classify_oxygens

    phonons, mobile, anion = cfg.phonons, cfg.mobile, cfg.anion
    phonon = load_phonons(phonons, supercell_matrix=cfg.supercell) if phonon is None else phonon
    sc = to_ase_atoms(phonon.supercell)
    fc = np.asarray(phonon.force_constants)
    try:
        classes = classify_oxygens(sc, mobile=mobile, anion=anion, framework=cfg.framework)
    except ValueError as exc:
        raise ValueError(f"{phonons}: cannot classify the {anion} sites around {mobile}: {exc}") from exc
    if not any(cl.get("O_e") or cl.get("O_c") for cl in classes.per_mobile.values()):
        raise ValueError(f"{phonons}: no O_e or O_c neighbours around {mobile} (framework cations found: "
                         f"{list(classes.framework) or 'none'}); pFC needs {mobile}–{anion} polyhedra sharing "
                         f"edges or corners with framework polyhedra")
    pos, cell = sc.get_positions(), np.array(sc.cell.array)
    if cfg.trajectory:
        directions, dir_info = _hop_directions(cfg, phonon, sc)
        how = "hops in the trajectory (by primitive site)"
    else:
        mob = sorted(classes.per_mobile)
        directions = migration_directions_from_sites(pos, cell, mob, k=cfg.k_nearest)
        how = ("structure: the whole first shell of other mobile-ion sites" if cfg.k_nearest is None
               else f"structure: the {cfg.k_nearest} nearest other mobile-ion sites")
        dir_info = {}
    res = projected_force_constants(fc, pos, cell, classes, directions)
    keys = ("mpfc_Oe_eV_A2", "mpfc_Oc_eV_A2", "bond_pfc_Oe_eV_A2", "bond_pfc_Oc_eV_A2",
            "bond_vector_norm_Oe_eV_A2", "bond_vector_norm_Oc_eV_A2")
    out = {k: res[k]["mean"] for k in keys}
    out.update({f"{k}_err": res[k]["sem"] for k in keys})
    out["delta_pfc_eV_A2"] = res["delta_pfc_eV_A2"]["value"]
    out["delta_pfc_eV_A2_err"] = res["delta_pfc_eV_A2"]["err"]
    out["spreads"] = {k: res[k] for k in keys}
    out.update({"directions_source": how, **dir_info,
                "n_mobile": len(classes.per_mobile), "n_mobile_with_directions": len(directions),
                "n_directions": int(sum(len(np.atleast_2d(d)) for d in directions.values())),
                "phonons": str(phonons), "supercell_atoms": len(sc), "mobile": mobile, "anion": anion,
                "framework": list(classes.framework),
                "sign_convention": "Φ_AB = ∂²E/∂u_A∂u_B, b̂ from mobile ion to anion; a central spring k gives -k"})
    return PFCRun(summary=clean(out), records=res["records"])
