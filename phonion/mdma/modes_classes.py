"""Which atoms a mode moves: per-mode amplitude on the O classes and species, dominant O class, participation
ratio (:mod:`phonion.mdma.modes` re-exports these)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from phonion.mdma.modes import Modes


@dataclass(frozen=True, eq=False)
class ModeClasses:
    """Per-mode share of the vibration amplitude Σ_{i∈group} |e_{i,n}|² (each shape (3N,)).

    Attributes
    ----------
    class_weights : dict of str to numpy.ndarray (3N,)
        For ``O_e``, ``O_c``, ``O_n`` (and ``other`` if given).
    species_weights : dict of str to numpy.ndarray (3N,)
    dominant : numpy.ndarray of str, shape (3N,)
        The O class with the largest weight among O_e, O_c, O_n (``""`` if all are 0).
    participation_ratio : numpy.ndarray, shape (3N,)
        PR_n = (Σ_i |e_{i,n}|²)² / (N Σ_i |e_{i,n}|⁴): 1/N for one atom, 1 for all equal.
    """

    class_weights: dict
    species_weights: dict
    dominant: np.ndarray
    participation_ratio: np.ndarray


O_CLASSES = ("O_e", "O_c", "O_n")


def mode_classes(modes: Modes, classes) -> ModeClasses:
    """Amplitude of each mode on each O class and species, dominant O class, participation ratio.

    Parameters
    ----------
    modes : Modes
    classes : SiteClasses or mapping
        ``O_e``, ``O_c``, ``O_n`` (optionally ``other``) as atom indices of the *MD cell* (the
        cell of ``modes``), e.g. ``phonion.mdma.sites.classify_oxygens(md_atoms)``.
    """
    w = modes.atom_weights()                                     # (N, 3N)
    n = modes.n_atoms

    def get(name):
        val = classes.get(name) if isinstance(classes, Mapping) else getattr(classes, name, None)
        return None if val is None else np.asarray(val, dtype=int)

    class_weights = {}
    for name in O_CLASSES + ("other",):
        idx = get(name)
        if idx is None:
            if name == "other":
                continue
            raise ValueError(f"classes has no {name!r}")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"class {name} has indices outside the {n}-atom cell of the modes")
        class_weights[name] = w[idx].sum(axis=0)
    stack = np.array([class_weights[c] for c in O_CLASSES])
    dominant = np.array(O_CLASSES)[stack.argmax(axis=0)]
    dominant = np.where(stack.max(axis=0) > 0, dominant, "")
    sym = np.array(modes.symbols)
    species = {s: w[sym == s].sum(axis=0) for s in dict.fromkeys(modes.symbols)}
    pr = w.sum(axis=0) ** 2 / (n * (w ** 2).sum(axis=0))
    return ModeClasses(class_weights, species, dominant, pr)
