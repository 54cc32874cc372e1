"""``run_sites(SitesConfig) -> SitesRun``: O_e / O_c / O_n classes of the anions of one structure.

O_e: anion of a mobile-ion polyhedron shared with a framework polyhedron that shares an edge with it; O_c:
shared through a corner only; O_n: framework anion bonded to no mobile ion
(:func:`phonion.mdma.sites.classify_oxygens`). ``to_dict()`` is the JSON of ``phonion sites``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phonion.workflows.common import dump_json
from phonion.workflows.result import Result

__all__ = ["SitesConfig", "SitesRun", "run_sites", "DEFAULT_STRUCTURE"]

#: the structure classified when none is given
DEFAULT_STRUCTURE = "LiGa_SeO3_2"


@dataclass(frozen=True)
class SitesConfig:
    """Settings of ``phonion sites``."""

    structure: str | None = None
    mobile: str = "Li"
    anion: str = "O"
    framework: tuple | None = None
    bond_tolerance: float = 0.25

    def __post_init__(self):
        if self.framework is not None:
            object.__setattr__(self, "framework", tuple(self.framework))
        if not self.bond_tolerance >= 0:  # the message of phonion.mdma.sites, which checks it after reading
            raise ValueError(f"tolerance must be >= 0, got {self.bond_tolerance}")


@dataclass
class SitesRun(Result):
    """The structure and its :class:`phonion.mdma.sites.SiteClasses`."""

    atoms: object
    classes: object

    def to_dict(self) -> dict:
        """The ``phonion sites`` JSON: index lists, counts, per-mobile-ion classes, coordination numbers."""
        return self.classes.to_dict()

    def save(self, directory) -> dict[str, Path]:
        """``sites.json`` (the JSON above) into ``directory`` (the command itself writes no file)."""
        return {"sites_json": dump_json(Path(directory) / "sites.json", self.to_dict())}


def run_sites(cfg: SitesConfig) -> SitesRun:
    """Classify the anions of ``cfg.structure`` (default the bundled LiGa(SeO3)2); nothing is written."""
    from phonion.core.structures import load_structure
    from phonion.mdma.sites import classify_oxygens

    atoms = load_structure(cfg.structure or DEFAULT_STRUCTURE)
    classes = classify_oxygens(atoms, mobile=cfg.mobile, anion=cfg.anion,
                               framework=None if cfg.framework is None else list(cfg.framework),
                               tolerance=cfg.bond_tolerance)
    return SitesRun(atoms=atoms, classes=classes)
