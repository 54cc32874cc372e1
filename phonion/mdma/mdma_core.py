"""Numerical core of the mass-diffusivity modal analysis (MDMA): pure functions of arrays.

Estimator (one for every quantity: D_{n,n'}, D_σ, binned D_{bb'}, running integrals)
----------------------------------------------------------------------------------
For real series x_n(t), y_p(t), t = 0 … F−1, frame interval Δt, and a window of K lags (τmax = KΔt)::

    C_np(k) = 1/(F−k) Σ_{t=0}^{F−1−k} x_n(t+k) y_p(t)          unbiased, all time origins
    I_np    = Σ_{k=0}^{K} a_k Σ_t x_n(t+k) y_p(t),  a_k = Δt w_k / (F−k),  w_0 = w_K = ½, else 1

so ``I_np`` is the trapezoid rule for ∫₀^τmax ⟨x_n(τ) y_p(0)⟩ dτ.

Cross-spectral form. Zero-pad to L ≥ F + K (the circular correlation then never wraps into lags 0 … K) and let
X_n(j) = Σ_t x_n(t) e^{−2πi jt/L}. Then Σ_t x_n(t+k) y_p(t) = (1/L) Σ_j X_n(j) Ȳ_p(j) e^{2πi jk/L}
for 0 ≤ k ≤ K, hence **I = Σ_j X_n(j) G(j) Ȳ_p(j) with G(j) = (1/L) Σ_k a_k e^{2πi jk/L}**, built once
(one FFT of a_k). Folding j and L−j onto the rfft bins (weight c_j = 2, or 1 at 0 and Nyquist) and
writing X = P + iR, Y = U + iV::

    I = Pᵀ diag(K_e) U + Rᵀ diag(K_e) V + Pᵀ diag(K_o) V − Rᵀ diag(K_o) U ,
    K_e(ω_j) = (c_j/L) Σ_k a_k cos(ω_j k),   K_o(ω_j) = (c_j/L) Σ_k a_k sin(ω_j k),   ω_j = 2πj/L.

Both kernels are real. With y = x the even kernel alone gives the symmetric part (I + Iᵀ)/2 (all that
sum rules and symmetrised per-mode sums need); the odd kernel adds the antisymmetric part, so the
non-symmetric lag-domain sum is reproduced exactly. It is one weighted product (two real BLAS products,
[P R]ᵀ times the kernel-weighted [U V]), J = L//2 + 1 bins (``cross_spectral_integral``).

Projections (DESIGN.md "MDMA"; conventions in ``CONVENTIONS``)
-------------------------------------------------------------
Q̇_n(t) = Σ_i w_i e_{i,n}·v_i(t),  s_n = Σ_i u_i e_{i,n},  V_n(t) = Q̇_n(t) s_n,
D_{n,n'} = prefactor (s_n·s_n') I[Q̇_n, Q̇_n'].
Completeness (E Eᵀ = 1) gives Σ_n V_n(t) = Σ_i u_i w_i v_i(t) =: V_ref(t) exactly, so
Σ_{n,n'} D_{n,n'} = prefactor I[V_ref, V_ref] (the sum rule) for the same estimator.

Units: velocities Å/fs, masses amu, Δt fs; integrals in Å²/fs, converted once to cm²/s (× 0.1).

Code: units, ``MDMAError`` and the conventions are in :mod:`phonion.mdma.mdma_conventions`, the estimator and the
projections in :mod:`phonion.mdma.mdma_estimator` (both re-exported here); the streaming engine is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from phonion.mdma.mdma_conventions import (  # noqa: F401  (re-exported)
    A2_PER_FS_TO_CM2_PER_S, ACOUSTIC_THRESHOLD_THZ, AMU_A2_PER_FS2_TO_EV, CONVENTIONS, Convention, EigenvectorSource,
    MDMAError, get_convention,
)
from phonion.mdma.mdma_estimator import (  # noqa: F401  (re-exported)
    _flatten_components, _rows, _weighted, all_pairs_integral, cross_spectral_integral, green_kubo,
    lag_domain_integral, lag_weights, mdma_matrix, mobile_vectors, modal_velocities, padded_length,
    projection_weights, reference_velocity, running_integral, spectra, spectral_kernel,
)


# ---- streaming engine (per-mode sums and binned matrices without an M × M matrix) ---------------
@dataclass
class SegmentSums:
    """Sums over one contiguous frame segment [start, stop), all in cm²/s unless stated.

    rows, cols, diag : (M,) Σ_n' D_{n,n'}, Σ_n' D_{n',n}, D_{n,n}
    msq : (M,) ⟨Q̇_n²⟩ of the convention's Q̇ (√amu Å/fs)² or (Å/fs)²
    reference : prefactor ∫⟨V_ref·V_ref⟩ (the sum-rule target);  total : Σ_n rows_n
    eq_total, eq_diag : Σ_{n,n'} ⟨V_n·V_n'⟩ and Σ_n ⟨V_n·V_n⟩ at equal time, (Å/fs)²
    running_total, running_diag : (K+1,) cumulative over τ of Σ D and of its diagonal
    binned : (B, B) or None;  completeness : max|Σ_n V_n − V_ref| / max|V_ref|
    kept : (M,) bool, modes not dropped by the convention
    """

    start: int
    stop: int
    rows: np.ndarray
    cols: np.ndarray
    diag: np.ndarray
    msq: np.ndarray
    reference: float = 0.0
    total: float = 0.0
    eq_total: float = 0.0
    eq_diag: float = 0.0
    running_total: np.ndarray = field(default_factory=lambda: np.zeros(0))
    running_diag: np.ndarray = field(default_factory=lambda: np.zeros(0))
    binned: np.ndarray | None = None
    completeness: float = 0.0
    kept: np.ndarray | None = None


def _columns(source: EigenvectorSource, start: int, stop: int, n_dof: int) -> np.ndarray:
    block = source(start, stop) if callable(source) else source[:, start:stop]
    block = np.asarray(block)
    if np.iscomplexobj(block):
        if np.abs(block.imag).max(initial=0.0) > 1e-8:
            raise MDMAError("Γ-point eigenvectors must be real; got complex ones with a non-zero imaginary part")
        block = block.real
    if block.shape != (n_dof, stop - start):
        raise MDMAError(f"eigenvector columns {start}:{stop} have shape {block.shape}, "
                        f"expected {(n_dof, stop - start)}")
    return block


@dataclass(frozen=True)
class SumSettings:
    """How :func:`modal_sums` integrates and bins.

    frame_interval_fs : fs between frames;  n_lags : the window K, lags;  segments : frame ranges [(start, stop), ...]
    convention : :class:`Convention`;  bin_index : (M,) frequency bin of every mode, or None;  n_bins : bins (0: none)
    column_block : eigenvector columns per block, or None for min(4e6 / F, 1.5e7 / 3N) (≈ 100 MB per work array)
    """

    frame_interval_fs: float
    n_lags: int
    segments: Sequence[tuple[int, int]]
    convention: Convention
    bin_index: np.ndarray | None = None
    n_bins: int = 0
    column_block: int | None = None


def modal_sums(velocities: np.ndarray, masses: np.ndarray, mobile_indices: Sequence[int],
               eigenvectors: EigenvectorSource, frequencies_THz: np.ndarray,
               settings: SumSettings) -> list[SegmentSums]:
    """Stream eigenvector columns in blocks and accumulate per-mode and binned MDMA sums per segment.

    Never forms the M × M matrix: row sums use Σ_n' V_n' = V_kept (F × 3), binned matrices use
    V_b(t) = Σ_{n∈b} V_n(t) (F × B × 3), both with the one cross-spectral kernel. Memory is
    O(F·(3N + column_block + 3B)); time is dominated by the projection F·3N·M. ``settings.column_block``
    (eigenvector columns per block) defaults to min(4e6 / F, 1.5e7 / 3N) (≈ 100 MB per work array).
    """
    cfg = settings
    v = np.asarray(velocities, float)
    F, N, _ = v.shape
    freq = np.asarray(frequencies_THz, float)
    M = len(freq)
    column_block = cfg.column_block or int(np.clip(min(4e6 // F, 1.5e7 // (3 * N)), 16, M))
    mobile = np.asarray(mobile_indices, int)
    w, u, pref = projection_weights(masses, mobile, cfg.convention)
    scale = pref * A2_PER_FS_TO_CM2_PER_S
    kept = freq > ACOUSTIC_THRESHOLD_THZ if cfg.convention.drop_acoustic else np.ones(M, bool)
    v_ref = reference_velocity(v, w, u)
    v_kept = v_ref.copy()  # V_kept = V_ref − Σ_{dropped} V_n (completeness)
    for n in np.flatnonzero(~kept):
        e = _columns(eigenvectors, n, n + 1, 3 * N)
        v_kept -= modal_velocities(v, e, w) @ mobile_vectors(e, u)
    segs = [_open_segment(a, b, v_kept, v_ref, kept, scale, cfg) for a, b in cfg.segments]
    v_sum = np.zeros((F, 3))
    vw, wrows = _weighted(v, w)
    for c0 in range(0, M, column_block):
        c1 = min(M, c0 + column_block)
        e = _columns(eigenvectors, c0, c1, 3 * N)
        qd = vw @ (e if wrows is None else e[wrows])
        s = mobile_vectors(e, u)
        v_sum += qd @ s
        qd[:, ~kept[c0:c1]] = 0.0
        _add_block(segs, qd, s, (c0, c1), scale, cfg)
    norm = max(np.abs(v_ref).max(), np.finfo(float).tiny)
    return [_close_segment(seg, v_sum, v_ref, norm, scale, cfg) for seg in segs]


def _open_segment(a: int, b: int, v_kept, v_ref, kept, scale: float, cfg: SumSettings) -> tuple:
    """The sums of frames [a, b) that need no mode (reference, equal-time and running totals), and the
    work state (sums, L, kernel g, spectra of V_kept, diagonal power (J,), binned velocities (b − a, 3B))."""
    M = len(kept)
    L, g = spectral_kernel(b - a, cfg.n_lags, cfg.frame_interval_fs)
    W = spectra(v_kept[a:b], L)
    ref = spectra(v_ref[a:b], L)
    out = SegmentSums(a, b, np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M), kept=kept)
    out.reference = scale * float(np.trace(cross_spectral_integral(ref, ref, g)))
    out.eq_total = float(np.mean(np.sum(v_kept[a:b] ** 2, axis=1)))
    out.running_total = scale * running_integral(np.sum(np.abs(W) ** 2, axis=1), b - a, L, cfg.n_lags,
                                                 cfg.frame_interval_fs)
    return out, L, g, W, np.zeros(len(g)), np.zeros((b - a, 3 * cfg.n_bins))


def _add_block(segs: list, qd: np.ndarray, s: np.ndarray, cols: tuple[int, int], scale: float,
               cfg: SumSettings) -> None:
    """Add the modes ``cols`` = (c0, c1) to every segment: Q̇ ``qd`` (F, c1 − c0; dropped modes 0), s_n ``s``."""
    c0, c1 = cols
    n_bins = cfg.n_bins
    s2 = np.sum(s ** 2, axis=1)
    wb = None
    if n_bins:
        wb = np.zeros((c1 - c0, n_bins, 3))
        wb[np.arange(c1 - c0), cfg.bin_index[c0:c1]] = s
        wb = wb.reshape(c1 - c0, 3 * n_bins)
    for out, L, g, W, pdiag, vb in segs:
        q = qd[out.start:out.stop]
        X = spectra(q, L)
        out.rows[c0:c1] = scale * np.einsum("na,na->n", cross_spectral_integral(X, W, g), s)
        out.cols[c0:c1] = scale * np.einsum("na,na->n", cross_spectral_integral(X, W, np.conj(g)), s)
        absx2 = np.abs(X) ** 2
        out.diag[c0:c1] = scale * s2 * (g.real @ absx2)
        out.msq[c0:c1] = np.mean(q ** 2, axis=0)
        out.eq_diag += float(s2 @ out.msq[c0:c1])
        pdiag += absx2 @ s2
        if wb is not None:
            vb += q @ wb


def _close_segment(seg: tuple, v_sum, v_ref, norm: float, scale: float, cfg: SumSettings) -> SegmentSums:
    """Totals, the diagonal running integral, completeness and the binned matrix of one segment."""
    out, L, g, W, pdiag, vb = seg
    out.total = float(out.rows.sum())
    out.running_diag = scale * running_integral(pdiag, out.stop - out.start, L, cfg.n_lags, cfg.frame_interval_fs)
    out.completeness = float(np.abs(v_sum - v_ref).max() / norm)
    if cfg.n_bins:
        Vb = spectra(vb.reshape(-1, cfg.n_bins, 3), L)
        out.binned = scale * cross_spectral_integral(Vb, Vb, g)
    return out


def frequency_bin_index(frequencies_THz: np.ndarray, bin_edges_THz: np.ndarray) -> np.ndarray:
    """Bin of every mode, shape=(M,), int; bins are [e_k, e_k+1), the last one closed.

    Every mode must fall inside the edges (the binned sum rule needs all of them).
    """
    f = np.asarray(frequencies_THz, float)
    edges = np.asarray(bin_edges_THz, float)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise MDMAError("bin_edges_THz must be an increasing 1-D array with at least two edges")
    if f.min() < edges[0] or f.max() > edges[-1]:
        raise MDMAError(f"modes span {f.min():.3f} … {f.max():.3f} THz but the bins only "
                        f"{edges[0]:.3f} … {edges[-1]:.3f} THz; widen the edges")
    return np.minimum(np.searchsorted(edges, f, side="right") - 1, len(edges) - 2)
