"""Diffusivity fits and Green–Kubo: the line fit with the random-walk noise model, block errors, the Haven ratio.

Pure functions of arrays, defined in the :mod:`phonion.md.diffusion` docstring (UNCERTAINTY, Green–Kubo), which
re-exports everything here; :mod:`phonion.md.diffusion` itself holds the MSD accumulators and the fit window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from phonion.core.signal import autocorrelation
from phonion.core.units import A2_FS_TO_CM2_S

if TYPE_CHECKING:
    from phonion.md.diffusion import MSDCurve

DIMS = {"xyz": [0, 1, 2], "x": [0], "y": [1], "z": [2]}
#: least number of independent windows (particles × F / lag) for a lag to enter the factor g
MIN_G_SAMPLES = 30
#: most blocks for the Green–Kubo error (as many as hold twice its window, at least n_blocks)
MAX_GK_BLOCKS = 20


# ---- fits -----------------------------------------------------------------------------------------
def _fit_lags(i0: int, i1: int, max_points: int = 200) -> np.ndarray:
    """All lags of the window if ≤ ``max_points``, else its first 64, 96 log- and 40 evenly spaced."""
    if i1 - i0 + 1 <= max_points:
        return np.arange(i0, i1 + 1)
    grid = np.concatenate([np.arange(i0, i0 + 64), np.geomspace(i0, i1, 96), np.linspace(i0, i1, 40)])
    return np.unique(np.round(grid).astype(int))


def _power_sums(a, b):
    """Σ_{w=a}^{b} w² and Σ w³ (zero where b < a), elementwise for integer arrays."""
    def s2(k):
        return k * (k + 1) * (2 * k + 1) / 6.0

    def s3(k):
        return (k * (k + 1) / 2.0) ** 2

    empty = b < a
    lo = np.maximum(a, 1) - 1
    return np.where(empty, 0.0, s2(b) - s2(lo)), np.where(empty, 0.0, s3(b) - s3(lo))


def random_walk_msd_covariance(lags: np.ndarray, n_frames: int) -> np.ndarray:
    """Covariance of the all-origins 1D MSD estimator of a unit-step Gaussian random walk.

    cov(m_i, m_j) = 2 Σ_s mult(s) ov(s)² / (n_i n_j): s the shift between origins, ov the number of
    steps the two windows share, mult the number of origin pairs with that shift, n = F − m
    origins. Summed in closed form: for n ≤ m lags, c = F − n − m, w₀ = max(1, 1 − c),
    Σ = 2 Σ_{w=w₀}^{n−1} (c + w) w² + (c + n) n² + (m − n)(F − m) n². Exact; shape=(L, L).
    """
    lags = np.asarray(lags, dtype=np.int64)
    n = np.minimum.outer(lags, lags).astype(float)
    m = np.maximum.outer(lags, lags).astype(float)
    f = float(n_frames)
    c = f - n - m
    w0 = np.maximum(1.0, 1.0 - c)
    p2, p3 = _power_sums(w0, n - 1)
    total = 2.0 * (c * p2 + p3) + (c + n) * n**2 + (m - n) * (f - m) * n**2
    return 2.0 * total / ((f - n) * (f - m))


class _LineFit:
    """MSD = a + b t as a linear estimator β = L y, with covariance k · L RW Lᵀ (module doc).

    ``estimator="wls"``: weights 1/RW_ii (the model's variances), full-covariance (sandwich) errors;
    ``"gls"``: L = (Xᵀ RW⁻¹ X)⁻¹ Xᵀ RW⁻¹ (kinisi-style). k = g (b Δ)² / (d N_p) is a scalar, so the
    estimate does not depend on it and no iteration is needed.
    """

    def __init__(self, t, lags, n_frames, estimator="wls"):
        rw = random_walk_msd_covariance(lags, n_frames)
        x = np.column_stack([np.ones_like(t), t / t[-1]])  # scaled time: better conditioned
        if estimator == "gls":
            sc = np.sqrt(np.diag(rw))
            wx = np.linalg.solve(rw / np.outer(sc, sc) + 1e-12 * np.eye(t.size), x / sc[:, None]) / sc[:, None]
        elif estimator == "wls":
            wx = x / np.diag(rw)[:, None]
        else:
            raise ValueError(f"estimator must be 'wls' or 'gls', got {estimator!r}")
        self.lmat = np.linalg.solve(x.T @ wx, wx.T) * np.array([[1.0], [1.0 / t[-1]]])
        self.unit_cov = self.lmat @ rw @ self.lmat.T
        self.var = np.diag(rw)
        self.t = t

    def fit(self, y, g, dt_fs, d, n_particles, slope_floor=0.0):
        beta = self.lmat @ y
        # the noise scale uses the slope, but never less than ``slope_floor`` (for the collective
        # MSD: the tracer slope, its value when ions are uncorrelated), so that a noisy collective
        # slope near zero cannot shrink its own error bar
        slope = max(beta[1], slope_floor)
        if slope > 0:
            return beta, g * (slope * dt_fs) ** 2 / (d * n_particles) * self.unit_cov
        # not diffusive (slope ≤ 0): no random-walk scale; weighted residual scatter instead
        r = y - beta[0] - beta[1] * self.t
        s2 = np.sum(r * r / self.var) / max(1, self.t.size - 2)
        return beta, s2 * (self.lmat * self.var) @ self.lmat.T


@dataclass(frozen=True)
class DiffusivityFit:
    """One diffusivity with its uncertainty (cm²/s); ``error_cm2_s`` is the reported one.

    error_model_cm2_s : error from the MSD noise model; error_block_cm2_s : block error or None;
    block_values_cm2_s : list of the per-block D; slope_A2_fs, intercept_A2 : the fitted line
    (Å²/fs, Å²); g_factor : the non-Gaussian factor used.
    """

    diffusivity_cm2_s: float
    error_cm2_s: float
    error_model_cm2_s: float
    error_block_cm2_s: float | None
    block_values_cm2_s: list
    slope_A2_fs: float
    intercept_A2: float
    g_factor: float


def fit_diffusivity(curve: MSDCurve, window, dims: str = "xyz", error_method: str = "max",
                    estimator: str = "wls", slope_floor_A2_fs: float = 0.0) -> DiffusivityFit:
    """D = slope / (2 d), cm²/s, over the lags ``window`` = (first, last[, rule]) of ``curve``.

    ``dims``: "xyz" (d = 3) or one direction; ``error_method``: "max" | "model" | "block";
    ``estimator``: "wls" | "gls" (module doc, UNCERTAINTY); ``slope_floor_A2_fs``: lower bound on
    the slope used for the noise scale (the collective fit passes the tracer slope).
    """
    if error_method not in ("max", "model", "block"):
        raise ValueError(f"error_method must be 'max', 'model' or 'block', got {error_method!r}")
    i0, i1 = window[0], window[1]
    comps = DIMS[dims]
    d = len(comps)
    col = {"xyz": 0, "x": 1, "y": 2, "z": 3}[dims]
    f = curve.msd_A2.shape[0]
    gl = ((curve.g_lags >= i0) & (curve.g_lags <= i1) & np.isfinite(curve.g_factor[:, col])
          & (curve.n_particles * (f - 1) / np.maximum(curve.g_lags, 1) >= MIN_G_SAMPLES))
    g = float(np.mean(curve.g_factor[gl, col])) if gl.any() else 1.0
    g = g if np.isfinite(g) and g > 0 else 1.0
    lags = _fit_lags(i0, i1)
    y = curve.msd_A2[lags][:, comps].sum(axis=1)
    dt = curve.frame_interval_fs
    beta, cov = _LineFit(curve.times_fs[lags], lags, f, estimator).fit(
        y, g, dt, d, curve.n_particles, slope_floor_A2_fs)
    scale = A2_FS_TO_CM2_S / (2 * d)
    blocks, err_block = [], None
    nb, bl = curve.block_msd_A2.shape[:2]
    j1 = min(i1, (bl - 1) // 2)
    if nb >= 2 and j1 - i0 + 1 >= 3:
        bl_lags = _fit_lags(i0, j1)
        gls = _LineFit(curve.times_fs[bl_lags], bl_lags, bl, estimator)
        for b in range(nb):
            yb = curve.block_msd_A2[b][bl_lags][:, comps].sum(axis=1)
            blocks.append(float(gls.fit(yb, g, dt, d, curve.n_particles, slope_floor_A2_fs)[0][1] * scale))
        err_block = float(np.std(blocks, ddof=1) / np.sqrt(nb))
    err_model = float(np.sqrt(max(cov[1, 1], 0.0))) * scale
    err = {"model": err_model, "block": err_block if err_block is not None else err_model,
           "max": max(err_model, err_block or 0.0)}[error_method]
    return DiffusivityFit(float(beta[1] * scale), float(err), float(err_model), err_block, blocks,
                          float(beta[1]), float(beta[0]), g)


# ---- Green–Kubo ------------------------------------------------------------------------------------
def velocity_autocorrelation(v: np.ndarray) -> np.ndarray:
    """⟨v(t₀+t)·v(t₀)⟩ over all origins (unbiased, 1/(F−m)), summed over the last axis: (F, 3) → (F,)."""
    f = v.shape[0]
    ac = autocorrelation(v).sum(axis=1)
    return ac / (f - np.arange(f))


@dataclass(frozen=True)
class GreenKubo:
    """times_fs (M,), running_cm2_s (M,) the running integral / (3 N_c), cm²/s; the value (its mean
    over ``window`` = (first lag, last lag, rule)) and its block error (None if blocks are too short)."""

    times_fs: np.ndarray
    running_cm2_s: np.ndarray
    diffusivity_cm2_s: float
    error_cm2_s: float | None
    block_values_cm2_s: list
    window: tuple


def green_kubo(velocity_sum: np.ndarray, dt_fs: float, n_carriers: int, window,
               n_blocks: int = 5) -> GreenKubo:
    """Collective D_σ (cm²/s) from the carrier velocity sum V, shape=(F, 3), Å/fs, frames ``dt_fs`` apart:
    the mean of the running integral over the lags ``window`` = (first, last[, rule]); block errors."""
    def run(v):
        c = velocity_autocorrelation(v)
        integral = np.concatenate([[0.0], np.cumsum(0.5 * (c[1:] + c[:-1]))]) * dt_fs
        return integral / (3.0 * n_carriers) * A2_FS_TO_CM2_S

    i0, i1 = window[0], window[1]
    running = run(velocity_sum)
    i1v = min(i1, running.size - 1)
    value = float(np.mean(running[i0:i1v + 1]))
    n_blocks = min(MAX_GK_BLOCKS, max(n_blocks, velocity_sum.shape[0] // (2 * (i1 + 1))))
    bl = velocity_sum.shape[0] // n_blocks if n_blocks else 0
    j1 = min(i1, (bl - 1) // 2)
    blocks, err = [], None
    if n_blocks >= 2 and j1 - i0 + 1 >= 3:
        blocks = [float(np.mean(run(velocity_sum[b * bl:(b + 1) * bl])[i0:j1 + 1]))
                  for b in range(n_blocks)]
        err = float(np.std(blocks, ddof=1) / np.sqrt(n_blocks))
    return GreenKubo(np.arange(running.size) * dt_fs, running, value, err, blocks, (i0, i1v, *window[2:]))


def haven_ratio(tracer_cm2_s, tracer_err, collective_cm2_s, collective_err):
    """H = D*/D_σ and its error, propagated as if the two errors were independent."""
    if not collective_cm2_s:
        return float("nan"), float("nan")
    h = tracer_cm2_s / collective_cm2_s
    rel = np.hypot(tracer_err / tracer_cm2_s if tracer_cm2_s else np.nan,
                   collective_err / collective_cm2_s)
    return float(h), float(abs(h) * rel)
