"""Tracer and collective diffusion, Green–Kubo and the Haven ratio, exactly as ../DESIGN.md defines them.

Pure functions of arrays; :mod:`phonion.md.diffusion_run` feeds them from a Trajectory or an H5MD file.

Definitions (lags m = 0 … F−1 frames, t = m Δ, Δ the frame interval; all time origins):

* tracer MSD(t) = ⟨|r_i(t₀+t) − r_i(t₀)|²⟩ over atoms i of one species and all origins t₀,
  per direction x, y, z (the FFT algorithm, Calandrini et al. / nMoldyn, exact to round-off);
  D* = slope / 6 (slope / 2 per direction).
* collective MSD(t) = ⟨|Σ_i Δr_i(t)|²⟩ / N_c over all origins; D_σ = slope / 6 = slope_total / (6 N_c).
* Green–Kubo D_σ = (1/(3 N_c)) ∫₀^τ ⟨V(τ')·V(0)⟩ dτ', V = Σ_i v_i; the running integral
  I(τ) = ½ d MSD_total/dτ is averaged over one octave [τ_a, 2τ_a] (clipped to the MSD window),
  τ_a = the MSD fit start but at least 2 frames (central-difference velocities correlate over
  ±1 frame, so the trapezoid integral is complete only from 2 frames on); ``gk_window_ps``
  overrides it.
* Haven ratio H = D* / D_σ, σ_H = H √((σ*/D*)² + (σ_σ/D_σ)²) (errors taken as independent).

FIT-WINDOW RULE. The window ends at ``fit_fraction`` (default ½) of the run, so every lag in it
averages over at least half the run's frames as time origins. It starts at the first lag t at which
the local log–log slope α = d ln MSD / d ln t (least-squares over the lags in [t/2, t]) lies within
1 ± ``tolerance`` (default 0.1) at every lag from t to 2t — i.e. the MSD has been linear for a
factor of two in time (past the ballistic and caging regimes). The rule is applied to the tracer
MSD of the carrier; the collective MSD uses the same window (Green–Kubo: see above). If no such t exists
(before half the window end) the fit starts at ⅕ of the window end (10 % of the run), with a
warning, and the result says so; ``fit_range_ps`` overrides the rule. Fewer than 3 lags in the
window is an error.

UNCERTAINTY. The MSD noise model is the covariance of the all-origins MSD of an ideal Gaussian
random walk with the fitted slope b — exact discrete overlap sums, RW_ij = 2 Σ_s mult(s) ov(s)² /
(n_i n_j) for lags m_i ≤ m_j, n = F − m origins — times g b²Δ²/(d N_p), g the observed
non-Gaussian factor var(|Δr|²) / (2⟨|Δr|²⟩²/d) averaged over the window's lags that have ≥ 30
independent windows (g = 1 where none, e.g. the collective MSD at long lags). The line
MSD = a + b t is fitted by weighted least squares with the model's variances (``estimator="wls"``,
default) and its covariance is the full-model sandwich L Σ Lᵀ. (``"gls"``, kinisi-style, uses the
full inverse covariance: ~2× smaller errors when the MSD really is a random walk, but it fits
lag-to-lag increments and is biased when it is not: on the Li6PS5I 700 K AIMD it gives the caged
I atoms, whose MSD is flat at 0.4 Å², D = 5e-6 cm²/s; WLS gives ≈ 0.)
For the collective MSD the slope in the noise scale is never taken below the tracer slope (its
value when the ions are uncorrelated), so a noisy collective slope near zero or below cannot
shrink its own error bar.
Two errors are computed and the larger is reported (``error_method="max"``):
(1) the model error σ_b above; (2) block averaging: the run is cut into ``n_blocks`` (default 5)
contiguous blocks, D is fitted in each (same estimator) over the window clipped to half a block,
σ = std(D_blocks, ddof=1) / √n_blocks; omitted (None) when that clipped window has < 3 lags.
Green–Kubo errors are block errors only, with as many blocks as hold twice the GK window
(at least ``n_blocks``, at most 20: five blocks give an error that is itself ±35 % uncertain).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from phonion.core.signal import autocorrelation
from phonion.core.units import A2_FS_TO_CM2_S  # Å²/fs → cm²/s; re-exported (in __all__)

DIMS = {"xyz": [0, 1, 2], "x": [0], "y": [1], "z": [2]}
#: least number of independent windows (particles × F / lag) for a lag to enter the factor g
MIN_G_SAMPLES = 30
#: most blocks for the Green–Kubo error (as many as hold twice its window, at least n_blocks)
MAX_GK_BLOCKS = 20
#: origins per lag (at most, spaced ≥ lag/8 apart) used to estimate the spread of |Δr|² for g
MAX_G_ORIGINS = 2048


# ---- MSD over all time origins ----------------------------------------------------------------
def _msd_atom_sum(x: np.ndarray) -> np.ndarray:
    """Σ over atoms of the all-origins MSD, per direction: (F, n, 3) Å → (F, 3) Å²."""
    n_frames = x.shape[0]
    x = x - x.mean(axis=0)  # a constant shift leaves the MSD unchanged and cuts round-off
    m = np.arange(n_frames)
    out = np.empty((n_frames, 3))
    for d in range(3):
        xd = x[:, :, d]
        ac = autocorrelation(xd, workers=-1).sum(axis=1)
        cs = np.concatenate([[0.0], np.cumsum((xd**2).sum(axis=1))])
        out[:, d] = (cs[n_frames - m] + cs[n_frames] - cs[m] - 2.0 * ac) / (n_frames - m)
    out[0] = 0.0
    return out


def msd_fft(positions: np.ndarray) -> np.ndarray:
    """Mean squared displacement over all atoms and all time origins, per direction.

    Parameters
    ----------
    positions : ndarray, shape=(F, n, 3), unwrapped, Å

    Returns
    -------
    ndarray, shape=(F, 3), Å²: MSD_d(m) = mean_i mean_{k<F−m} (x_id(k+m) − x_id(k))², m = 0…F−1.
    """
    positions = np.asarray(positions, dtype=float)
    return _msd_atom_sum(positions) / positions.shape[1]


def variance_lags(n_frames: int) -> np.ndarray:
    """Lags (frames) at which the spread of squared displacements is sampled: ~100, log + linear."""
    top = max(1, n_frames - 1)
    grid = np.concatenate([np.geomspace(1, top, 48), np.linspace(1, top, 48)])
    return np.unique(np.round(grid).astype(int))


class MSDAccumulator:
    """Sums, over chunks of atoms, what the MSD fits need (bounded memory: O(F) per accumulator).

    ``add(x)`` takes positions of n atoms, shape=(F, n, 3), Å (any origin, unwrapped).
    Attributes after adding: ``msd_sum`` (F, 3) Σ_atoms MSD; ``block_sum`` (n_blocks, F_b, 3);
    ``disp_sum`` (F, 3) Σ_atoms r(t) − r(0); ``n``; moments of s = Σ_d Δx_d² at ``lags``:
    ``s1``, ``s2`` (L, 4) for dims [xyz, x, y, z], ``count`` (L,).
    """

    def __init__(self, n_frames: int, n_blocks: int = 5):
        self.n_frames, self.n_blocks = int(n_frames), int(n_blocks)
        self.block_len = self.n_frames // self.n_blocks if self.n_blocks else 0
        self.msd_sum = np.zeros((n_frames, 3))
        self.block_sum = np.zeros((self.n_blocks, self.block_len, 3))
        self.disp_sum = np.zeros((n_frames, 3))
        self.lags = variance_lags(n_frames)
        self.s1 = np.zeros((self.lags.size, 4))
        self.s2 = np.zeros((self.lags.size, 4))
        self.count = np.zeros(self.lags.size)
        self.n = 0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=float)
        f = self.n_frames
        self.msd_sum += _msd_atom_sum(x)
        self.disp_sum += (x - x[0]).sum(axis=1)
        for b in range(self.n_blocks if self.block_len >= 2 else 0):
            self.block_sum[b] += _msd_atom_sum(x[b * self.block_len:(b + 1) * self.block_len])
        for k, m in enumerate(self.lags):
            step = max(1, m // 8, (f - m) // MAX_G_ORIGINS)
            d2 = x[m::step] - x[: f - m: step]  # origins 0, step, 2 step, … (same count both sides)
            np.square(d2, out=d2)
            for j, s in enumerate((d2.sum(axis=-1), d2[..., 0], d2[..., 1], d2[..., 2])):
                self.s1[k, j] += s.sum()
                self.s2[k, j] += (s * s).sum()
            self.count[k] += d2.shape[0] * d2.shape[1]
        self.n += x.shape[1]


@dataclass(frozen=True)
class MSDCurve:
    """MSD of one group of particles, per particle, all origins.

    times_fs : (F,) lag times, fs; msd_A2 : (F, 3) per direction, Å²; block_msd_A2 : (n_blocks, F_b, 3);
    n_particles : int (1 for the collective); g_lags : (L,) frames; g_factor : (L, 4) non-Gaussian
    factor var(s)/(2⟨s⟩²/d) for dims [xyz, x, y, z]; frame_interval_fs : float.
    """

    times_fs: np.ndarray
    msd_A2: np.ndarray
    block_msd_A2: np.ndarray
    n_particles: int
    g_lags: np.ndarray
    g_factor: np.ndarray
    frame_interval_fs: float


def curve_from(acc: MSDAccumulator, dt_fs: float, correction=None, scale: float = 1.0,
               n_particles: int | None = None) -> MSDCurve:
    """An MSDCurve from an accumulator; ``correction`` (full, blocks) is added to the per-particle MSD."""
    msd = acc.msd_sum / acc.n
    blocks = acc.block_sum / acc.n
    if correction is not None:
        msd, blocks = msd + correction[0], blocks + correction[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = acc.s1 / acc.count[:, None]
        var = acc.s2 / acc.count[:, None] - mean**2
        g = var / (2.0 * mean**2 / np.array([3.0, 1.0, 1.0, 1.0]))
    return MSDCurve(np.arange(acc.n_frames) * dt_fs, msd * scale, blocks * scale,
                    int(n_particles or acc.n), acc.lags, g, float(dt_fs))


def drift_correction_terms(mean_disp: np.ndarray, drift: np.ndarray, n_blocks: int):
    """Exact change of a group's mean MSD when the drift ``drift`` (F, 3) is subtracted from every atom.

    Σ_i MSD(x_i − D) = Σ_i MSD(x_i) + n [MSD(X̄ − D) − MSD(X̄)], X̄ = ``mean_disp`` (F, 3), the
    group's mean displacement: the cross term is linear in x_i. Returns (full (F, 3), blocks).
    """
    def both(y):
        f = y.shape[0]
        bl = f // n_blocks if n_blocks else 0
        full = _msd_atom_sum(y[:, None])
        blocks = np.array([_msd_atom_sum(y[b * bl:(b + 1) * bl, None]) for b in range(n_blocks)]
                          ) if bl >= 2 else np.zeros((n_blocks, bl, 3))
        return full, blocks

    a, ab = both(mean_disp - drift)
    b, bb = both(mean_disp)
    return a - b, ab - bb


# ---- the fit window -----------------------------------------------------------------------------
def local_slope(msd: np.ndarray) -> np.ndarray:
    """α(m) = least-squares slope of ln MSD vs ln m over lags [⌈m/2⌉, m]; shape=(F,), α[0] = NaN.

    ``msd`` is the total MSD, shape=(F,); lags with MSD ≤ 0 give NaN.
    """
    f = msd.size
    m = np.arange(f, dtype=float)
    x = np.log(np.maximum(m, 1.0))
    tiny = np.finfo(float).tiny
    y = np.log(np.maximum(np.nan_to_num(msd, nan=tiny), tiny))  # lag 0 is never in a window
    cx, cy, cxx, cxy = (np.concatenate([[0.0], np.cumsum(v)]) for v in (x, y, x * x, x * y))
    hi = np.arange(f)
    lo = np.minimum(np.maximum(1, (hi + 1) // 2), hi)
    lo[2] = 1
    n = (hi - lo + 1).astype(float)
    sx, sy = cx[hi + 1] - cx[lo], cy[hi + 1] - cy[lo]
    sxx, sxy = cxx[hi + 1] - cxx[lo], cxy[hi + 1] - cxy[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    alpha[:2] = np.nan
    if f > 2:
        alpha[1] = alpha[2]
    return alpha


def choose_fit_window(msd: np.ndarray, fit_fraction: float = 0.5, tolerance: float = 0.1,
                      source: str = ""):
    """(first lag, last lag, rule) by the module's FIT-WINDOW RULE; ``msd`` shape=(F,) total MSD."""
    if not 0 < fit_fraction <= 1:
        raise ValueError(f"fit_fraction must be in (0, 1], got {fit_fraction}")
    f = msd.size
    end = int(np.floor(fit_fraction * (f - 1)))
    if end < 3:
        raise ValueError(f"{source or 'trajectory'}: {f} frames are too few for a diffusion fit: the "
                         f"window (lags up to {fit_fraction:g} of the run) holds {max(end, 0)} lags, "
                         "at least 3 are needed")
    alpha = local_slope(msd)
    bad = ~(np.abs(alpha - 1.0) <= tolerance)
    idx = np.where(bad[: end + 1], np.arange(end + 1), end + 1)
    next_bad = np.minimum.accumulate(idx[::-1])[::-1]  # first bad lag ≥ m
    m = np.arange(end + 1)
    ok = (m >= 1) & (2 * m <= end) & (next_bad > 2 * m)
    if ok.any():
        return int(m[ok][0]), end, "local-slope"
    start = max(1, int(round(end / 5)))
    warnings.warn(f"{source or 'trajectory'}: the MSD never becomes linear (local log-log slope within "
                  f"1 ± {tolerance:g} over a factor of 2 in time) before {end // 2} frames; fitting from "
                  f"lag {start} (10 % of the run): the diffusivity is uncertain", stacklevel=3)
    return start, end, "fallback-10%-of-run"


def window_from_ps(fit_range_ps, dt_fs: float, n_frames: int, source: str = ""):
    """Lag indices (first, last) for a user window (A, B) in ps."""
    a, b = (float(v) for v in fit_range_ps)
    total_ps = (n_frames - 1) * dt_fs / 1e3
    if not 0 <= a < b:
        raise ValueError(f"--fit-range-ps needs 0 ≤ A < B, got {a:g} {b:g}")
    if b > total_ps + 1e-9:
        raise ValueError(f"{source or 'trajectory'}: fit range ends at {b:g} ps but the run lasts "
                         f"{total_ps:g} ps ({n_frames} frames of {dt_fs:g} fs)")
    i0, i1 = max(1, int(np.ceil(a * 1e3 / dt_fs - 1e-9))), int(np.floor(b * 1e3 / dt_fs + 1e-9))
    if i1 - i0 + 1 < 3:
        raise ValueError(f"{source or 'trajectory'}: the fit range {a:g}–{b:g} ps holds {max(i1 - i0 + 1, 0)} "
                         f"lags of {dt_fs:g} fs; at least 3 are needed")
    return i0, i1, "user"


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


__all__ = ["A2_FS_TO_CM2_S", "DiffusivityFit", "GreenKubo", "MSDAccumulator", "MSDCurve",
           "choose_fit_window", "curve_from", "drift_correction_terms", "fit_diffusivity", "green_kubo",
           "haven_ratio", "local_slope", "msd_fft", "random_walk_msd_covariance", "variance_lags",
           "velocity_autocorrelation", "window_from_ps"]
