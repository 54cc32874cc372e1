"""MDMA's units, error type and conventions (:mod:`phonion.mdma.mdma_core` re-exports them; it documents them).

Conventions say how modal velocities are built and integrated: ``"gordiz"`` (mass-weighted, all modes) and
``"notebook"`` (the published notebook's variant); see :mod:`phonion.mdma.mdma`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from phonion.core.units import A2_FS_TO_CM2_S
from phonion.core.units import AMU_A2_PER_FS2_TO_EV as _AMU_A2_PER_FS2_TO_EV

#: 1 Å²/fs = 1e-16 cm² / 1e-15 s = 0.1 cm²/s (phonion.core.units)
A2_PER_FS_TO_CM2_PER_S = A2_FS_TO_CM2_S
#: kinetic-energy unit of Q̇² (amu Å²/fs²) in eV, ≈ 103.6427 (phonion.core.units; was ASE's 1/units.fs²,
#: CODATA 2014, 8e-9 relative apart: one value for MDMA, VDOS and every temperature phonion computes)
AMU_A2_PER_FS2_TO_EV = _AMU_A2_PER_FS2_TO_EV
#: modes with |f| below this (THz) are the acoustic (translation) modes of the cell
ACOUSTIC_THRESHOLD_THZ = 0.1

#: eigenvector source: an array (3N, M) or a callable (start, stop) -> (3N, stop - start) columns
EigenvectorSource = np.ndarray | Callable[[int, int], np.ndarray]


class MDMAError(ValueError):
    """Bad or inconsistent MDMA input; the message names the problem."""


@dataclass(frozen=True)
class Convention:
    """How modal velocities are built and integrated (see module docstring).

    Attributes
    ----------
    name : str
    mass_weighted : bool
        True: Q̇_n = Σ_{all i} √m_i e_{i,n}·v_i and s_n = Σ_{i∈mobile} e_{i,n}/√m_i (Gordiz).
        False: Q̇_n = Σ_{i∈mobile} e_{i,n}·v_i and s_n = (1/N_c) Σ_{i∈mobile} e_{i,n} (notebook).
    per_ion : bool
        prefactor 1/(3 N_c) (True) or 1/3 (False).
    first_trapezoid_only : bool
        window fixed to one frame: I = Δt (C(0) + C(1)) / 2.
    drop_acoustic : bool
        modes with f ≤ ACOUSTIC_THRESHOLD_THZ are removed (their Q̇ set to zero).
    column_sums : bool
        per-mode contribution c_n = Σ_n' D_{n',n} (the notebook's row sums of ⟨V_n(0)·V_n'(τ)⟩)
        instead of the symmetrised row sums Σ_n' (D + Dᵀ)_{n,n'} / 2.
    """

    name: str
    mass_weighted: bool
    per_ion: bool
    first_trapezoid_only: bool
    drop_acoustic: bool
    column_sums: bool


CONVENTIONS = {
    "gordiz": Convention("gordiz", True, True, False, False, False),
    "notebook": Convention("notebook", False, False, True, True, True),
}


def get_convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise MDMAError(f"unknown MDMA convention {name!r}; choose one of {sorted(CONVENTIONS)}") from None
