"""The paper's numbers for LiM(SeO3)2, as data, with where each comes from.

Source: R. Ouyang, Y. Yang, C. Guan, H. Zhu, "Phonon-lithium ion interactions: a case study of
LiM(SeO3)2", arXiv:2402.12671 (DFT: PBE(+U), 2×1×1 cells, 2 fs timestep, 20,000 steps AIMD).
Tabulated in DESIGN.md, "Paper numbers"; ``tests/test_series.py`` checks the two agree.
"""

from __future__ import annotations

__all__ = ["CITATION", "METHOD", "COMPOUNDS", "ACTIVATION_ENERGY_meV", "DIFFUSIVITY_300K_cm2_s",
           "CONDUCTIVITY_300K_mS_cm", "ANHARMONIC_SHARE_RANGE", "EXPERIMENT_CONDUCTIVITY_300K_mS_cm",
           "LISC_TOP_MODE_FREQUENCIES_THz", "TRENDS", "paper_value", "anharmonic_share_text"]

CITATION = ("Ouyang, Yang, Guan, Zhu, 'Phonon-lithium ion interactions: a case study of LiM(SeO3)2', "
            "arXiv:2402.12671")
METHOD = "DFT AIMD, PBE(+U), 2x1x1 cells, 2 fs, 20,000 steps"

#: Compounds of the paper, in its order (M of LiM(SeO3)2).
COMPOUNDS: tuple[str, ...] = ("Al", "Ga", "In", "Sc", "Y", "La")

#: Arrhenius activation energy of Li diffusion, meV (paper section 3.1, "Stability and ionic
#: conductivity", Fig. S5).
ACTIVATION_ENERGY_meV: dict[str, float] = {
    "Al": 295.9, "Ga": 314.3, "In": 342.7, "Sc": 294.4, "Y": 375.9, "La": 529.5}

#: Li diffusivity extrapolated to 300 K (Arrhenius), cm²/s (same section).
DIFFUSIVITY_300K_cm2_s: dict[str, float] = {
    "Al": 6.65e-9, "Ga": 3.14e-9, "In": 1.99e-9, "Sc": 7.11e-9, "Y": 4.26e-11, "La": 1.38e-11}

#: Li ionic conductivity at 300 K (Nernst–Einstein from the above), mS/cm (same section).
CONDUCTIVITY_300K_mS_cm: dict[str, float] = {
    "Al": 0.30, "Ga": 0.13, "In": 0.07, "Sc": 0.27, "Y": 0.001, "La": 0.003}

#: Anharmonic (off-diagonal MDMA) share of D_sigma over the six compounds: only a range is given
#: ("ranges from 52%-76%", section 3.2, Fig. S9a); no per-compound values in the paper.
ANHARMONIC_SHARE_RANGE: tuple[float, float] = (0.52, 0.76)

#: Experiment quoted by the paper (ref. 25 there).
EXPERIMENT_CONDUCTIVITY_300K_mS_cm: dict[str, float] = {"Ga": 0.11}

#: Most contributing O_e / O_c / O_n-dominated modes of LiSc(SeO3)2 at 300 K, THz (Fig. 3e-g).
LISC_TOP_MODE_FREQUENCIES_THz: dict[str, float] = {"O_e": 6.73, "O_c": 4.56, "O_n": 11.1}

#: Trends the paper states across the series (sign of the rank correlation with E_a):
#: anharmonic share falls as E_a rises (Fig. 3b, S9); the mean O_e-mode frequency rises with E_a
#: (Fig. 4d; the paper gives no per-compound numbers).
TRENDS: dict[str, int] = {"mdma_anharmonic_share": -1, "mdma_O_e_mode_mean_frequency_THz": +1}

_TABLES = {"E_a_meV": ACTIVATION_ENERGY_meV, "D_300K_cm2_s": DIFFUSIVITY_300K_cm2_s,
           "sigma_300K_mS_cm": CONDUCTIVITY_300K_mS_cm}


def paper_value(key: str, element: str) -> float | None:
    """The paper's value of ``key`` (E_a_meV, D_300K_cm2_s, sigma_300K_mS_cm) for M = ``element``.

    Returns None when the paper has no number for that key or compound.
    """
    return _TABLES.get(key, {}).get(element)


def anharmonic_share_text() -> str:
    """The paper's anharmonic share as printed: a range over the series, e.g. '52–76 %'."""
    lo, hi = ANHARMONIC_SHARE_RANGE
    return f"{100 * lo:.0f}–{100 * hi:.0f} %"
