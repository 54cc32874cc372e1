"""Autocorrelation, in one place: the FFT sum behind the MSD, the Green–Kubo VACF and the VDOS."""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

__all__ = ["autocorrelation"]


def autocorrelation(x, n_lags: int | None = None, workers: int | None = None) -> np.ndarray:
    """Unnormalised autocorrelation along axis 0: A(τ) = Σ_{t=0}^{F−1−τ} x(t) x(t+τ), τ = 0 … n_lags−1.

    Exact to round-off (zero-padded to ``scipy.fft.next_fast_len(2F, real=True)`` points, so the
    circular correlation has no wrap-around); every other axis is a separate signal. Divide by
    F − τ for the all-origins mean.

    Parameters
    ----------
    x : array, shape=(F, ...), real
    n_lags : lags to return, 0 ≤ n_lags ≤ F (default F)
    workers : ``scipy.fft`` workers (None: scipy's default, -1: all cores)

    Returns
    -------
    ndarray, shape=(n_lags, ...)
    """
    x = np.asarray(x)
    f = x.shape[0]
    n_lags = f if n_lags is None else int(n_lags)
    if not 0 <= n_lags <= f:
        raise ValueError(f"n_lags must be 0 … {f} (the signal length), got {n_lags}")
    nfft = sfft.next_fast_len(2 * f, real=True)
    spec = sfft.rfft(x, nfft, axis=0, workers=workers)
    return sfft.irfft(spec.real**2 + spec.imag**2, nfft, axis=0, workers=workers)[:n_lags]
