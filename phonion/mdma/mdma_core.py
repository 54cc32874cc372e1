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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from ase import units
from scipy import fft as sfft

#: 1 Å²/fs = 1e-16 cm² / 1e-15 s = 0.1 cm²/s
A2_PER_FS_TO_CM2_PER_S = 0.1
#: kinetic-energy unit of Q̇² (amu Å²/fs²) in eV: 1/units.fs² ≈ 103.6427
AMU_A2_PER_FS2_TO_EV = 1.0 / units.fs ** 2
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


# ---- estimator ---------------------------------------------------------------------------------
def padded_length(n_frames: int, n_lags: int | None = None) -> int:
    """FFT length L ≥ F + K (fast size): the circular correlation is exact for lags 0 … K.

    A circular correlation of length L mixes lag k with lag k − L; for 0 ≤ k ≤ K it never reaches a
    negative lag of the data (|k − L| ≥ F) when L ≥ F + K. ``n_lags=None`` gives L ≥ 2F − 1 (every lag).
    """
    k = int(n_frames) - 1 if n_lags is None else min(int(n_lags), int(n_frames) - 1)
    return sfft.next_fast_len(int(n_frames) + k, real=True)


def lag_weights(n_frames: int, n_lags: int, dt_fs: float) -> np.ndarray:
    """a_k = Δt w_k/(F−k), k = 0 … K, shape=(K+1,), fs: trapezoid × unbiased normalisation."""
    if not 0 <= n_lags < n_frames:
        raise MDMAError(f"window of {n_lags} lags needs at least {n_lags + 1} frames, got {n_frames}")
    w = np.ones(n_lags + 1)
    w[0] = w[-1] = 0.5
    if n_lags == 0:
        w[:] = 0.0
    return dt_fs * w / (n_frames - np.arange(n_lags + 1))


def spectral_kernel(n_frames: int, n_lags: int, dt_fs: float) -> tuple[int, np.ndarray]:
    """(L, g): g(j) = c_j G(j), shape=(L//2+1,), complex; Re g = K_e, Im g = K_o (module docstring)."""
    L = padded_length(n_frames, n_lags)
    G = np.conj(sfft.rfft(lag_weights(n_frames, n_lags, dt_fs), n=L)) / L
    c = np.full(L // 2 + 1, 2.0)
    c[0] = 1.0
    if L % 2 == 0:
        c[-1] = 1.0
    return L, c * G


def spectra(x: np.ndarray, L: int) -> np.ndarray:
    """rfft along time (axis 0) zero-padded to L: shape=(L//2+1, ...), complex."""
    return sfft.rfft(np.asarray(x, dtype=float), n=L, axis=0)


def _flatten_components(X: np.ndarray, g: np.ndarray):
    """(J, M, 3) spectra → (3J, M) with the kernel repeated: Σ over components becomes Σ over rows."""
    if X.ndim == 2:
        return X, g
    J = X.shape[0]
    ncomp = int(np.prod(X.shape[2:]))
    Xf = np.moveaxis(X.reshape(J, X.shape[1], ncomp), 2, 1).reshape(J * ncomp, X.shape[1])
    return Xf, np.repeat(g, ncomp)


def cross_spectral_integral(X: np.ndarray, Y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """I_np = Σ_k a_k Σ_t x_n(t+k)·y_p(t) for all pairs at once, shape=(M, P), real.

    Parameters
    ----------
    X : ndarray, shape=(J, M) or (J, M, 3), complex: ``spectra`` of x (a trailing component axis is
        contracted, i.e. x_n(t+k)·y_p(t) is a dot product over it)
    Y : ndarray, shape=(J, P) or (J, P, 3), complex: ``spectra`` of y
    g : ndarray, shape=(J,), complex: ``spectral_kernel``
    """
    Xf, gx = _flatten_components(X, g)
    Yf, _ = _flatten_components(Y, g)
    ge, go = gx.real[:, None], gx.imag[:, None]
    P, R = np.ascontiguousarray(Xf.real), np.ascontiguousarray(Xf.imag)  # contiguous: BLAS, not a loop
    U, V = (P, R) if Y is X else (np.ascontiguousarray(Yf.real), np.ascontiguousarray(Yf.imag))
    return P.T @ (ge * U + go * V) + R.T @ (ge * V - go * U)


def lag_domain_integral(x: np.ndarray, y: np.ndarray, n_lags: int, dt_fs: float) -> np.ndarray:
    """The same I_np summed directly over lags (O(K F M P)); reference for tests and tiny problems."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    F = x.shape[0]
    a = lag_weights(F, n_lags, dt_fs)
    x2 = x.reshape(F, x.shape[1], -1)
    y2 = y.reshape(F, y.shape[1], -1)
    out = np.zeros((x2.shape[1], y2.shape[1]))
    for k, ak in enumerate(a):
        out += ak * np.einsum("tnc,tpc->np", x2[k:], y2[:F - k])
    return out


def running_integral(power: np.ndarray, n_frames: int, L: int, n_lags: int, dt_fs: float) -> np.ndarray:
    """Cumulative trapezoid ∫₀^τ C(τ') dτ', τ = 0 … KΔt, shape=(K+1,), from a power spectrum.

    ``power`` (J,) is Σ_p |X_p(j)|² (any non-negative weights): its inverse FFT is Σ_p Σ_t x_p(t+k) x_p(t).
    The last value equals ``cross_spectral_integral`` summed over the same diagonal, to round-off.
    """
    R = sfft.irfft(power, n=L)[: n_lags + 1]
    C = R / (n_frames - np.arange(n_lags + 1))
    out = np.zeros(n_lags + 1)
    out[1:] = np.cumsum(0.5 * dt_fs * (C[1:] + C[:-1]))
    return out


# ---- projections -------------------------------------------------------------------------------
def projection_weights(masses: np.ndarray, mobile_indices: np.ndarray, convention: Convention):
    """(w, u, prefactor): Q̇_n = Σ_i w_i e_{i,n}·v_i, s_n = Σ_i u_i e_{i,n}; shapes (N,), (N,), float."""
    masses = np.asarray(masses, float)
    n_c = len(mobile_indices)
    w = np.zeros(len(masses))
    u = np.zeros(len(masses))
    if convention.mass_weighted:
        w[:] = np.sqrt(masses)
        u[mobile_indices] = 1.0 / np.sqrt(masses[mobile_indices])
    else:
        w[mobile_indices] = 1.0
        u[mobile_indices] = 1.0 / n_c
    return w, u, 1.0 / (3.0 * n_c) if convention.per_ion else 1.0 / 3.0


def _rows(atoms: np.ndarray) -> np.ndarray:
    return (3 * np.asarray(atoms)[:, None] + np.arange(3)).ravel()


def _weighted(velocities: np.ndarray, w: np.ndarray):
    """(w_i v_i flattened to (F, 3n), eigenvector rows of those n atoms or None for all atoms)."""
    atoms = np.flatnonzero(w)
    vw = (velocities[:, atoms] * w[atoms, None]).reshape(len(velocities), -1)
    return vw, None if len(atoms) == velocities.shape[1] else _rows(atoms)


def modal_velocities(velocities: np.ndarray, eigenvectors: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Q̇_n(t) = Σ_i w_i e_{i,n}·v_i(t), shape=(F, M); w_i = √m_i gives √amu·Å/fs (Gordiz)."""
    vw, rows = _weighted(velocities, w)
    return vw @ (eigenvectors if rows is None else eigenvectors[rows])


def mobile_vectors(eigenvectors: np.ndarray, u: np.ndarray) -> np.ndarray:
    """s_n = Σ_i u_i e_{i,n}, shape=(M, 3); u_i = 1/√m_i on mobile ions gives 1/√amu (Gordiz)."""
    atoms = np.flatnonzero(u)
    e = eigenvectors[_rows(atoms)].reshape(len(atoms), 3, -1)
    return np.einsum("i,iam->ma", u[atoms], e)


def reference_velocity(velocities: np.ndarray, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """V_ref(t) = Σ_i u_i w_i v_i(t) = Σ_n V_n(t) (completeness), shape=(F, 3), Å/fs."""
    return np.einsum("i,tia->ta", u * w, velocities)


def green_kubo(v_total: np.ndarray, n_mobile: int, n_lags: int, dt_fs: float) -> float:
    """Collective D_σ = (1/(3 N_c)) ∫₀^τmax ⟨V(τ)·V(0)⟩ dτ, cm²/s, V = Σ_{i∈mobile} v_i of shape (F, 3)."""
    L, g = spectral_kernel(len(v_total), n_lags, dt_fs)
    W = spectra(v_total, L)
    return A2_PER_FS_TO_CM2_PER_S * float(np.trace(cross_spectral_integral(W, W, g))) / (3.0 * n_mobile)


def all_pairs_integral(x: np.ndarray, n_lags: int, dt_fs: float, workers: int | None = -1) -> np.ndarray:
    """I_np = Σ_k a_k Σ_t x_n(t+k) x_p(t) for every pair of the M series x (F, M), shape=(M, M), real.

    The same numbers as ``cross_spectral_integral(spectra(x), spectra(x), g)``, laid out for speed: the
    series are transposed once to (M, F), transformed along the contiguous axis in one multi-threaded rfft,
    and with X = P + iR (M, J) the whole kernel-weighted product is one real GEMM over 2J interleaved
    columns, I = [P R] · [P K_e + R K_o, R K_e − P K_o]ᵀ, i.e. view(X) · view(X ∘ ḡ)ᵀ (no real/imaginary
    copies, one complex temporary). 4 M² J flops; memory ≈ 3 × M × L × 8 bytes.
    """
    F = len(x)
    L, g = spectral_kernel(F, n_lags, dt_fs)
    xt = np.ascontiguousarray(np.asarray(x, dtype=float).T)
    X = sfft.rfft(xt, n=L, axis=-1, workers=workers)
    del xt
    C = X * np.conj(g)
    return X.view(np.float64) @ C.view(np.float64).T


def mdma_matrix(qdot: np.ndarray, s: np.ndarray, n_lags: int, dt_fs: float, prefactor: float,
                workers: int | None = -1) -> np.ndarray:
    """D_{n,n'} = prefactor (s_n·s_n') ∫₀^τmax ⟨Q̇_n(τ) Q̇_n'(0)⟩ dτ, shape=(M, M), cm²/s.

    ``workers``: threads for the FFT (scipy.fft; −1 = all CPUs); the product uses the BLAS threads.
    """
    I = all_pairs_integral(qdot, n_lags, dt_fs, workers)
    I *= prefactor * A2_PER_FS_TO_CM2_PER_S
    I *= s @ s.T
    return I


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


def modal_sums(velocities: np.ndarray, masses: np.ndarray, mobile_indices: Sequence[int],
               eigenvectors: EigenvectorSource, frequencies_THz: np.ndarray, frame_interval_fs: float,
               n_lags: int, segments: Sequence[tuple[int, int]], convention: Convention,
               bin_index: np.ndarray | None = None, n_bins: int = 0,
               column_block: int | None = None) -> list[SegmentSums]:
    """Stream eigenvector columns in blocks and accumulate per-mode and binned MDMA sums per segment.

    Never forms the M × M matrix: row sums use Σ_n' V_n' = V_kept (F × 3), binned matrices use
    V_b(t) = Σ_{n∈b} V_n(t) (F × B × 3), both with the one cross-spectral kernel. Memory is
    O(F·(3N + column_block + 3B)); time is dominated by the projection F·3N·M. ``column_block``
    (eigenvector columns per block) defaults to min(4e6 / F, 1.5e7 / 3N) (≈ 100 MB per work array).
    """
    v = np.asarray(velocities, float)
    F, N, _ = v.shape
    freq = np.asarray(frequencies_THz, float)
    M = len(freq)
    column_block = column_block or int(np.clip(min(4e6 // F, 1.5e7 // (3 * N)), 16, M))
    mobile = np.asarray(mobile_indices, int)
    w, u, pref = projection_weights(masses, mobile, convention)
    scale = pref * A2_PER_FS_TO_CM2_PER_S
    kept = freq > ACOUSTIC_THRESHOLD_THZ if convention.drop_acoustic else np.ones(M, bool)
    v_ref = reference_velocity(v, w, u)
    v_kept = v_ref.copy()  # V_kept = V_ref − Σ_{dropped} V_n (completeness)
    for n in np.flatnonzero(~kept):
        e = _columns(eigenvectors, n, n + 1, 3 * N)
        v_kept -= modal_velocities(v, e, w) @ mobile_vectors(e, u)
    segs = []
    for a, b in segments:
        L, g = spectral_kernel(b - a, n_lags, frame_interval_fs)
        W = spectra(v_kept[a:b], L)
        ref = spectra(v_ref[a:b], L)
        out = SegmentSums(a, b, np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M), kept=kept)
        out.reference = scale * float(np.trace(cross_spectral_integral(ref, ref, g)))
        out.eq_total = float(np.mean(np.sum(v_kept[a:b] ** 2, axis=1)))
        out.running_total = scale * running_integral(np.sum(np.abs(W) ** 2, axis=1), b - a, L, n_lags,
                                                     frame_interval_fs)
        segs.append((out, L, g, W, np.zeros(len(g)), np.zeros((b - a, 3 * n_bins))))
    v_sum = np.zeros((F, 3))
    vw, wrows = _weighted(v, w)
    for c0 in range(0, M, column_block):
        c1 = min(M, c0 + column_block)
        e = _columns(eigenvectors, c0, c1, 3 * N)
        qd = vw @ (e if wrows is None else e[wrows])
        s = mobile_vectors(e, u)
        v_sum += qd @ s
        qd[:, ~kept[c0:c1]] = 0.0
        s2 = np.sum(s ** 2, axis=1)
        wb = None
        if n_bins:
            wb = np.zeros((c1 - c0, n_bins, 3))
            wb[np.arange(c1 - c0), bin_index[c0:c1]] = s
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
    norm = max(np.abs(v_ref).max(), np.finfo(float).tiny)
    result = []
    for out, L, g, W, pdiag, vb in segs:
        out.total = float(out.rows.sum())
        out.running_diag = scale * running_integral(pdiag, out.stop - out.start, L, n_lags, frame_interval_fs)
        out.completeness = float(np.abs(v_sum - v_ref).max() / norm)
        if n_bins:
            Vb = spectra(vb.reshape(-1, n_bins, 3), L)
            out.binned = scale * cross_spectral_integral(Vb, Vb, g)
        result.append(out)
    return result


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
