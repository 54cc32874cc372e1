"""MDMA's estimator and projections, pure functions of arrays (:mod:`phonion.mdma.mdma_core` re-exports them).

The estimator (unbiased all-origins correlation, trapezoid to τmax, evaluated as one cross-spectral product) and
the projections Q̇_n, s_n, V_ref are derived in the :mod:`phonion.mdma.mdma_core` docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import fft as sfft

from phonion.mdma.mdma_conventions import A2_PER_FS_TO_CM2_PER_S, MDMAError

if TYPE_CHECKING:
    from phonion.mdma.mdma_conventions import Convention


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
