"""The results of :mod:`phonion.mdma.mdma` (re-exported there): :class:`MDMAResult` and :class:`BinnedMDMA`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from phonion.mdma.mdma_core import ACOUSTIC_THRESHOLD_THZ

O_CLASSES = ("O_e", "O_c", "O_n")


@dataclass(frozen=True, eq=False)
class MDMAResult:
    """Result of :func:`run_mdma`. Arrays: (M,) per mode in input order, cm²/s unless named otherwise.

    ``*_err`` are standard errors from ``n_blocks`` contiguous blocks (std(ddof=1)/√n_blocks; NaN if
    n_blocks < 2); the values themselves are from the whole run. ``matrix_cm2_s`` (M, M) is D_{n,n'}
    (row n at time τ, column n' at time 0), or None when not kept. ``running_*`` (K+1,) are cumulative over
    ``tau_ps`` of Σ D and of its diagonal; their last values are ``mdma_total_cm2_s`` and its harmonic part.
    ``modal_equipartition`` is ⟨Q̇_n²⟩/k_BT with the Gordiz (mass-weighted) Q̇ in any convention (1 for a
    classical harmonic mode; velocities from central differences lower it by sinc²(2πf_nΔ), see
    ``phonion.md.velocities.central_difference_damping``; acoustic modes carry ~0 when total momentum is conserved).
    """

    convention: str
    tau_max_ps: float
    frame_interval_fs: float
    temperature_K: float
    n_frames: int
    n_mobile: int
    n_blocks: int
    frequencies_THz: np.ndarray
    kept: np.ndarray
    contributions_cm2_s: np.ndarray
    diagonal_cm2_s: np.ndarray
    modal_equipartition: np.ndarray
    tau_ps: np.ndarray
    running_total_cm2_s: np.ndarray
    running_harmonic_cm2_s: np.ndarray
    collective_diffusivity_cm2_s: float
    collective_diffusivity_err: float
    reference_cm2_s: float
    mdma_total_cm2_s: float
    mdma_total_err: float
    sum_rule_relative_error: float
    completeness_relative_error: float
    harmonic_fraction: float
    harmonic_fraction_err: float
    equal_time_anharmonic_fraction: float
    equal_time_anharmonic_fraction_err: float
    mean_frequency_THz: float
    oe_mean_frequency_THz: float = float("nan")
    oe_mean_frequency_err: float = float("nan")
    #: (lowest, highest) frequency of the O_e modes, THz: a contribution-weighted mean outside it means
    #: contributions of both signs cancel, and the "mean" is no frequency of those modes
    oe_frequency_range_THz: tuple | None = None
    class_fractions: Mapping[str, float] | None = None
    class_fractions_err: Mapping[str, float] | None = None
    mode_class_labels: np.ndarray | None = None
    matrix_cm2_s: np.ndarray | None = None
    bin_edges_THz: np.ndarray | None = None
    binned_matrix_cm2_s: np.ndarray | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)

    @property
    def anharmonic_fraction(self) -> float:
        return 1.0 - self.harmonic_fraction

    def top_modes(self, n: int = 5) -> list[dict]:
        """The n modes with the largest contribution: index, frequency, class, contribution, fraction."""
        order = np.argsort(-self.contributions_cm2_s, kind="stable")[:n]
        return [{"mode_index": int(k), "frequency_THz": float(self.frequencies_THz[k]),
                 "class": None if self.mode_class_labels is None else str(self.mode_class_labels[k]),
                 "contribution_cm2_s": float(self.contributions_cm2_s[k]),
                 "fraction": float(self.contributions_cm2_s[k] / self.mdma_total_cm2_s)} for k in order]

    def to_dict(self, n_top: int = 5) -> dict:
        """JSON-ready summary (the command's keys)."""
        eq = self.modal_equipartition[np.abs(self.frequencies_THz) >= ACOUSTIC_THRESHOLD_THZ]
        return {
            "convention": self.convention, "tau_max_ps": self.tau_max_ps,
            "frame_interval_fs": self.frame_interval_fs, "temperature_K": self.temperature_K,
            "n_frames": self.n_frames, "n_mobile": self.n_mobile, "n_blocks": self.n_blocks,
            "collective_diffusivity_cm2_s": self.collective_diffusivity_cm2_s,
            "collective_diffusivity_cm2_s_err": self.collective_diffusivity_err,
            "mdma_total_cm2_s": self.mdma_total_cm2_s, "mdma_total_cm2_s_err": self.mdma_total_err,
            "reference_cm2_s": self.reference_cm2_s,
            "sum_rule_relative_error": self.sum_rule_relative_error,
            "completeness_relative_error": self.completeness_relative_error,
            "harmonic_fraction": self.harmonic_fraction, "harmonic_fraction_err": self.harmonic_fraction_err,
            "anharmonic_fraction": self.anharmonic_fraction,
            "anharmonic_fraction_err": self.harmonic_fraction_err,
            "class_fractions": None if self.class_fractions is None else dict(self.class_fractions),
            "class_fractions_err": None if self.class_fractions_err is None else dict(self.class_fractions_err),
            "oe_mean_frequency_THz": self.oe_mean_frequency_THz,
            "oe_mean_frequency_THz_err": self.oe_mean_frequency_err,
            "oe_frequency_range_THz": None if self.oe_frequency_range_THz is None else list(self.oe_frequency_range_THz),
            "mean_frequency_THz": self.mean_frequency_THz,
            "equal_time_anharmonic_fraction": self.equal_time_anharmonic_fraction,
            "equal_time_anharmonic_fraction_err": self.equal_time_anharmonic_fraction_err,
            "modal_equipartition": {"mean": float(eq.mean()) if eq.size else float("nan"),
                                    "std": float(eq.std()) if eq.size else float("nan"),
                                    "min": float(eq.min(initial=np.inf)), "max": float(eq.max(initial=-np.inf)),
                                    "n_modes": int(eq.size),
                                    "excluded": f"|f| < {ACOUSTIC_THRESHOLD_THZ} THz (acoustic)"},
            "top_modes": self.top_modes(n_top),
        }


@dataclass(frozen=True, eq=False)
class BinnedMDMA:
    """Result of :func:`mdma_binned`: D_{bb'} (B, B) and per-mode sums (M,), cm²/s."""

    convention: str
    tau_max_ps: float
    bin_edges_THz: np.ndarray
    matrix_cm2_s: np.ndarray
    contributions_cm2_s: np.ndarray
    diagonal_cm2_s: np.ndarray
    reference_cm2_s: float
    total_cm2_s: float
    sum_rule_relative_error: float
    completeness_relative_error: float
