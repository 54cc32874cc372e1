"""Exact mass-diffusivity modal analysis (MDMA, Gordiz et al. 2021) and the published-notebook variant.

``run_mdma`` is a thin front over the pure numerics of :mod:`phonion.mdma.mdma_core`; ``mdma_binned`` is the path
for large cells (tens of thousands of modes): it streams eigenvector columns and never forms a 3N × 3N
matrix. Definitions are DESIGN.md "MDMA (Gordiz et al.)"; the estimator and the cross-spectral kernel are
derived in the :mod:`phonion.mdma.mdma_core` docstring.

Conventions (selected by name, ``"gordiz"`` is the default)
-----------------------------------------------------------
``"gordiz"``: Q̇_n = Σ_{all i} √m_i e_{i,n}·v_i, s_n = Σ_{i∈Li} e_{i,n}/√m_i, V_n = Q̇_n s_n,
D_{n,n'} = (s_n·s_n')/(3 N_c) ∫₀^τmax ⟨Q̇_n(τ) Q̇_n'(0)⟩ dτ over all 3N modes; Σ D = D_σ to round-off.
Per-mode contribution c_n = Σ_n' (D + Dᵀ)_{n,n'}/2 (symmetrised row sum; Σ_n c_n = Σ D either way, and the
symmetric part is what a finite, noisy window can resolve: the antisymmetric part integrates to 0 as τmax → ∞
for a time-reversible system).

``"notebook"``: what runxin123/Selenites ``codes/2022-11-29-dynaphopy.ipynb`` computes (function
``analyze_anharmonic_phonon_modes``, cell 6; ``acf``/``diffusion``, cell 9; the pair loop, cell 20; the
mode filter and normalisation, cell 21; harmonic share, cell 32):
  Q̇ⁿᵇ_n(t) = Σ_{i∈Li} e_{i,n}·v_i(t)              (Li atoms only, no √m weighting)
  Vⁿᵇ_n(t) = Q̇ⁿᵇ_n(t) (1/N_c) Σ_{i∈Li} e_{i,n}     (the mean over Li of Q̇ⁿᵇ_n e_{i,n})
  Dⁿᵇ_{n,n'} = (1/3) Δt [C(0) + C(1)]/2,  C(k) = ⟨Vⁿᵇ_n(t+k)·Vⁿᵇ_n'(t)⟩ unbiased (``integral[1]`` of a
  cumulative trapezoid: only the first trapezoid is kept), modes with f ≤ 0.1 THz dropped (the notebook
  keeps f > 0, which removes exactly the 3 acoustic modes of its cells; 0.1 THz is robust to ±round-off),
  no 1/N_c; c_n = Σ_n' Dⁿᵇ_{n',n} (its row sums of ⟨V_n(0)·V_n'(τ)⟩).
Completeness still gives Σ_n Vⁿᵇ_n = mean Li velocity, so its "reference" is (1/3) ∫⟨V̄·V̄⟩ over the same
one-trapezoid window and the only sum-rule defect is the dropped acoustic share. Its Q̇ⁿᵇ are not normal-mode
velocities: in a harmonic crystal ⟨Q̇ⁿᵇ_n Q̇ⁿᵇ_n'⟩ = (k_BT/m_Li) P_{nn'} with P the Li-subspace projector,
so the off-diagonal ("anharmonic") share is non-zero even there. Absolute values are D_σ/N_c-like and not
comparable with D_σ; the frame interval is whatever the caller passes (the notebook subsampled every 5th/10th frame).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from phonion.core.units import K_B_EV_K
from phonion.md.velocities import check_stride_for_modes
from phonion.mdma.mdma_core import (ACOUSTIC_THRESHOLD_THZ, AMU_A2_PER_FS2_TO_EV, CONVENTIONS,  # noqa: F401
                            EigenvectorSource, MDMAError, SumSettings, _columns, frequency_bin_index, get_convention,
                            green_kubo, mdma_matrix, modal_sums, modal_velocities, mobile_vectors, projection_weights)
from phonion.mdma.mdma_result import O_CLASSES, BinnedMDMA, MDMAResult

__all__ = ["MDMAResult", "BinnedMDMA", "run_mdma", "mdma_binned", "cumulative_contributions",
           "MDMAError", "CONVENTIONS", "O_CLASSES"]

#: largest mode count for which run_mdma keeps the full D_{n,n'} matrix by default
MAX_MATRIX_MODES = 3000


# ---- validation ---------------------------------------------------------------------------------
def _mobile_indices(mobile, n_atoms: int, mobile_species: str) -> np.ndarray:
    arr = np.asarray(mobile)
    if arr.dtype.kind in "USO":
        if len(arr) != n_atoms:
            raise MDMAError(f"{len(arr)} symbols for {n_atoms} atoms")
        idx = np.flatnonzero(arr == mobile_species)
    else:
        idx = np.unique(arr.astype(int).ravel())
        if idx.size and (idx.min() < 0 or idx.max() >= n_atoms):
            raise MDMAError(f"mobile indices out of range for {n_atoms} atoms")
    if idx.size == 0:
        raise MDMAError(f"no mobile atoms ({mobile_species!r}) to analyse")
    return idx


def _validate(velocities, masses, mobile, frequencies_THz, eigenvectors, frame_interval_fs, mobile_species):
    v = np.asarray(velocities, float)
    if v.ndim != 3 or v.shape[2] != 3:
        raise MDMAError(f"velocities must have shape (frames, atoms, 3), got {v.shape}")
    n = v.shape[1]
    m = np.asarray(masses, float)
    if m.shape != (n,):
        raise MDMAError(f"masses must have shape ({n},), got {m.shape}")
    f = np.asarray(frequencies_THz, float)
    if f.shape != (3 * n,):
        raise MDMAError(f"MDMA needs all 3N = {3 * n} modes of the cell; got frequencies of shape {f.shape}")
    if not callable(eigenvectors):
        eigenvectors = _columns(eigenvectors, 0, 3 * n, 3 * n) if np.shape(eigenvectors) == (3 * n, 3 * n) \
            else None
        if eigenvectors is None:
            raise MDMAError(f"eigenvectors must have shape ({3 * n}, {3 * n}) (columns e_n, rows 3i+α) for "
                            f"velocities of {n} atoms, got {np.shape(eigenvectors)}")
        if 3 * n <= MAX_MATRIX_MODES:
            err = np.abs(eigenvectors.T @ eigenvectors - np.eye(3 * n)).max()
            if err > 1e-6:
                raise MDMAError(f"eigenvectors are not orthonormal (max |EᵀE − 1| = {err:.2e})")
    if frame_interval_fs is None or not np.isfinite(frame_interval_fs) or frame_interval_fs <= 0:
        raise MDMAError(f"frame_interval_fs must be a positive number, got {frame_interval_fs}")
    check_stride_for_modes(frame_interval_fs, float(np.max(f)), "MDMA")
    return v, m, _mobile_indices(mobile, n, mobile_species), f, eigenvectors


def _n_lags(tau_max_ps, dt_fs, n_frames, block_frames, first_trapezoid_only=False) -> int:
    if first_trapezoid_only:
        k = 1
    elif tau_max_ps is None:
        k = max(1, block_frames // 2)
    else:
        k = int(round(tau_max_ps * 1000.0 / dt_fs))
        if k < 1:
            raise MDMAError(f"tau_max_ps = {tau_max_ps} is shorter than one frame ({dt_fs} fs)")
    if k >= n_frames:
        raise MDMAError(f"correlation window τmax = {k * dt_fs / 1000:g} ps is longer than the run "
                        f"({(n_frames - 1) * dt_fs / 1000:g} ps)")
    if k >= block_frames:
        raise MDMAError(f"correlation window τmax = {k * dt_fs / 1000:g} ps is longer than one of the blocks "
                        f"({(block_frames - 1) * dt_fs / 1000:g} ps); use fewer blocks or a shorter τmax")
    return k


# ---- summaries ------------------------------------------------------------------------------------
def _summary(seg, conv, freq, labels) -> dict:
    c = seg.cols if conv.column_sums else 0.5 * (seg.rows + seg.cols)
    total = float(c.sum())
    out = {"c": c, "total": total, "reference": seg.reference,
           "harmonic": float(seg.diag.sum() / total),
           "eq_anharmonic": 1.0 - seg.eq_diag / seg.eq_total,
           "mean_f": float(freq @ c / total)}
    if labels is not None:
        for cls in O_CLASSES:
            sel = labels == cls
            out[cls] = float(c[sel].sum() / total)
        sel = labels == "O_e"
        out["oe_f"] = float(freq[sel] @ c[sel] / c[sel].sum()) if sel.any() else float("nan")
        out["oe_range"] = (float(freq[sel].min()), float(freq[sel].max())) if sel.any() else None
    return out


def _err(blocks: list[dict], key: str) -> float:
    if len(blocks) < 2:
        return float("nan")
    vals = np.array([b[key] for b in blocks], float)
    return float(vals.std(ddof=1) / np.sqrt(len(vals)))


def cumulative_contributions(frequencies_THz, contributions_cm2_s, diagonal_cm2_s,
                             mode_class_labels=None, normalise: bool = True) -> dict[str, np.ndarray]:
    """Cumulative contributions vs frequency (modes sorted by frequency), each shape=(M,).

    Keys: ``frequency_THz``, ``total``, ``harmonic`` (diagonal D_nn), ``anharmonic`` (c_n − D_nn), and
    ``O_e``/``O_c``/``O_n`` (modes of that dominant class) when labels are given; fractions of Σ c_n when
    ``normalise`` (else cm²/s).
    """
    f = np.asarray(frequencies_THz, float)
    order = np.argsort(f, kind="stable")
    c = np.asarray(contributions_cm2_s, float)[order]
    d = np.asarray(diagonal_cm2_s, float)[order]
    norm = c.sum() if normalise else 1.0
    out = {"frequency_THz": f[order], "total": np.cumsum(c) / norm, "harmonic": np.cumsum(d) / norm,
           "anharmonic": np.cumsum(c - d) / norm}
    if mode_class_labels is not None:
        lab = np.asarray(mode_class_labels).astype(str)[order]
        for cls in O_CLASSES:
            out[cls] = np.cumsum(np.where(lab == cls, c, 0.0)) / norm
    return out


def _gordiz_msq(v, masses, eigenvectors, n_modes, block=512) -> np.ndarray:
    w, _, _ = projection_weights(masses, np.arange(len(masses)), CONVENTIONS["gordiz"])
    out = np.empty(n_modes)
    for c0 in range(0, n_modes, block):
        c1 = min(n_modes, c0 + block)
        out[c0:c1] = np.mean(modal_velocities(v, _columns(eigenvectors, c0, c1, 3 * len(masses)), w) ** 2, 0)
    return out


def _collective(sums, v, mobile_idx, conv, segments, tau_max_ps, dt_fs, block_frames) -> list:
    """Green–Kubo D_σ of the whole run and of each block, with the Gordiz estimator (for "gordiz" the sums'
    reference; the notebook convention's reference is not D_σ)."""
    if conv.name == "gordiz":
        return [s.reference for s in sums]
    k_gk = _n_lags(tau_max_ps, dt_fs, len(v), block_frames)
    v_li = v[:, mobile_idx].sum(axis=1)
    return [green_kubo(v_li[a:b], len(mobile_idx), k_gk, dt_fs) for a, b in segments]


def _matrix(v, masses, mobile_idx, evec, conv, kept, n_lags, dt_fs) -> np.ndarray:
    """The full D_{n,n'} (M, M), cm²/s, dropped modes zeroed (a callable ``evec`` is materialised)."""
    if callable(evec):
        evec = _columns(evec, 0, len(kept), 3 * len(masses))
    w, u, pref = projection_weights(masses, mobile_idx, conv)
    qd = modal_velocities(v, evec, w)
    qd[:, ~kept] = 0.0
    return mdma_matrix(qd, mobile_vectors(evec, u), n_lags, dt_fs, pref)


# ---- fronts -------------------------------------------------------------------------------------------
def run_mdma(velocities, masses, mobile, frequencies_THz, eigenvectors: EigenvectorSource,
             frame_interval_fs: float, temperature_K: float, tau_max_ps: float | None = None,
             n_blocks: int = 4, mode_class_labels: Sequence[str] | None = None, convention: str = "gordiz",
             *, mobile_species: str = "Li", bin_edges_THz=None, keep_matrix: bool | None = None,
             column_block: int | None = None) -> MDMAResult:
    """MDMA of one trajectory: D_{n,n'}, its sum rule against Green–Kubo D_σ, shares, classes, errors.

    Parameters
    ----------
    velocities : ndarray, shape=(F, N, 3), Å/fs (from the file or central differences)
    masses : ndarray, shape=(N,), amu
    mobile : sequence of N element symbols (mobile ions are those equal to ``mobile_species``) or of
        0-based mobile-ion indices
    frequencies_THz : ndarray, shape=(3N,), THz (imaginary as negative)
    eigenvectors : ndarray, shape=(3N, 3N), real orthonormal columns e_n (row 3i+α), or a callable
        (start, stop) -> columns start:stop (streamed; no full matrix is then kept)
    frame_interval_fs : float, fs between the velocity frames; refused if coarser than 1/(2 f_max)
    temperature_K : float, K (for modal equipartition)
    tau_max_ps : float or None, correlation window; None: half a block (ignored by "notebook": one frame)
    n_blocks : int, contiguous blocks for the standard errors
    mode_class_labels : sequence of M str ("O_e", "O_c", "O_n", other) or None
    convention : "gordiz" (default) or "notebook" (module docstring)
    bin_edges_THz : ndarray or None, frequency bins for the binned heat map (computed from V_b(t))
    keep_matrix : bool or None, keep D_{n,n'} (default: when 3N ≤ 3000 and eigenvectors is an array)
    """
    conv = get_convention(convention)
    v, masses, mobile_idx, freq, evec = _validate(velocities, masses, mobile, frequencies_THz, eigenvectors,
                                                  frame_interval_fs, mobile_species)
    if temperature_K is None or not temperature_K > 0:
        raise MDMAError(f"temperature_K must be > 0, got {temperature_K}")
    F, M = len(v), len(freq)
    n_blocks = max(1, int(n_blocks))
    fb = F // n_blocks
    k = _n_lags(tau_max_ps, frame_interval_fs, F, fb, conv.first_trapezoid_only)
    labels = None if mode_class_labels is None else np.asarray(mode_class_labels).astype(str)
    if labels is not None and labels.shape != (M,):
        raise MDMAError(f"mode_class_labels must have one label per mode ({M}), got {labels.shape}")
    segments = [(0, F)] + ([(b * fb, (b + 1) * fb) for b in range(n_blocks)] if n_blocks > 1 else [])
    bins = None if bin_edges_THz is None else frequency_bin_index(freq, bin_edges_THz)
    n_bins = 0 if bins is None else len(bin_edges_THz) - 1
    sums = modal_sums(v, masses, mobile_idx, evec, freq,
                      SumSettings(frame_interval_fs, k, segments, conv, bins, n_bins, column_block))
    summ = [_summary(s, conv, freq, labels) for s in sums]
    full, blocks = summ[0], summ[1:]
    gk = _collective(sums, v, mobile_idx, conv, segments, tau_max_ps, frame_interval_fs, fb)
    msq = sums[0].msq if conv.mass_weighted else _gordiz_msq(v, masses, evec, M)
    kt = K_B_EV_K * temperature_K
    keep_matrix = (M <= MAX_MATRIX_MODES and not callable(evec)) if keep_matrix is None else keep_matrix
    matrix = _matrix(v, masses, mobile_idx, evec, conv, sums[0].kept, k, frame_interval_fs) if keep_matrix else None
    total = float(matrix.sum()) if matrix is not None else full["total"]
    class_fr = None if labels is None else {c: full[c] for c in O_CLASSES}
    class_err = None if labels is None else {c: _err(blocks, c) for c in O_CLASSES}
    return MDMAResult(
        convention=conv.name, tau_max_ps=k * frame_interval_fs / 1000.0, frame_interval_fs=float(frame_interval_fs),
        temperature_K=float(temperature_K), n_frames=F, n_mobile=len(mobile_idx), n_blocks=n_blocks,
        frequencies_THz=freq, kept=sums[0].kept, contributions_cm2_s=full["c"],
        diagonal_cm2_s=sums[0].diag, modal_equipartition=msq * AMU_A2_PER_FS2_TO_EV / kt,
        tau_ps=np.arange(k + 1) * frame_interval_fs / 1000.0, running_total_cm2_s=sums[0].running_total,
        running_harmonic_cm2_s=sums[0].running_diag, collective_diffusivity_cm2_s=gk[0],
        collective_diffusivity_err=_err([{"d": g} for g in gk[1:]], "d"), reference_cm2_s=full["reference"],
        mdma_total_cm2_s=total, mdma_total_err=_err(blocks, "total"),
        sum_rule_relative_error=abs(total - full["reference"]) / abs(full["reference"]),
        completeness_relative_error=sums[0].completeness, harmonic_fraction=full["harmonic"],
        harmonic_fraction_err=_err(blocks, "harmonic"), equal_time_anharmonic_fraction=full["eq_anharmonic"],
        equal_time_anharmonic_fraction_err=_err(blocks, "eq_anharmonic"), mean_frequency_THz=full["mean_f"],
        oe_mean_frequency_THz=full.get("oe_f", float("nan")), oe_mean_frequency_err=_err(blocks, "oe_f")
        if labels is not None else float("nan"), oe_frequency_range_THz=full.get("oe_range"),
        class_fractions=class_fr, class_fractions_err=class_err,
        mode_class_labels=labels, matrix_cm2_s=matrix,
        bin_edges_THz=None if bins is None else np.asarray(bin_edges_THz, float),
        binned_matrix_cm2_s=sums[0].binned,
        metadata={"estimator": "unbiased all-origins correlation, trapezoid to tau_max, cross-spectral",
                  "contribution": "column sums (notebook row sums)" if conv.column_sums
                  else "symmetrised row sums (D + D^T)/2",
                  "errors": f"std(ddof=1)/sqrt(n) over {n_blocks} contiguous blocks of {fb} frames"})


def mdma_binned(velocities, masses, mobile, frequencies_THz, eigenvectors: EigenvectorSource, bin_edges_THz,
                frame_interval_fs: float, tau_max_ps: float | None = None, convention: str = "gordiz", *,
                mobile_species: str = "Li", column_block: int | None = None) -> BinnedMDMA:
    """D_{bb'} = prefactor ∫⟨V_b(τ)·V_b'(0)⟩ with V_b = Σ_{n∈b} V_n, streaming eigenvector columns.

    Exactly the block sums of D_{n,n'} (linearity), without a 3N × 3N matrix: ``eigenvectors`` may be a
    callable (start, stop) -> (3N, stop − start) columns (e.g. built from a small cell's modes at the
    commensurate q-points). Also returns the per-mode contributions and diagonal (M,).
    Parameters as :func:`run_mdma`; τmax defaults to half the run.
    """
    conv = get_convention(convention)
    v, masses, mobile_idx, freq, evec = _validate(velocities, masses, mobile, frequencies_THz, eigenvectors,
                                                  frame_interval_fs, mobile_species)
    F = len(v)
    k = _n_lags(tau_max_ps, frame_interval_fs, F, F, conv.first_trapezoid_only)
    bins = frequency_bin_index(freq, bin_edges_THz)
    (seg,) = modal_sums(v, masses, mobile_idx, evec, freq,
                        SumSettings(frame_interval_fs, k, [(0, F)], conv, bins, len(bin_edges_THz) - 1, column_block))
    c = seg.cols if conv.column_sums else 0.5 * (seg.rows + seg.cols)
    total = float(seg.binned.sum())
    return BinnedMDMA(conv.name, k * frame_interval_fs / 1000.0, np.asarray(bin_edges_THz, float), seg.binned,
                      c, seg.diag, seg.reference, total, abs(total - seg.reference) / abs(seg.reference),
                      seg.completeness)
