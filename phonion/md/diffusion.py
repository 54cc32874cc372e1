"""Tracer and collective diffusion, Green–Kubo and the Haven ratio, exactly as ../DESIGN.md defines them.

Pure functions of arrays; :mod:`phonion.md.diffusion_run` feeds them from a Trajectory or an H5MD file.
The MSD accumulators and the fit window are here; the fits and Green–Kubo are in
:mod:`phonion.md.diffusion_fit` (re-exported here).

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
from phonion.md.diffusion_fit import (  # noqa: F401  (re-exported: fits and Green–Kubo)
    DIMS, MAX_GK_BLOCKS, MIN_G_SAMPLES, DiffusivityFit, GreenKubo, fit_diffusivity, green_kubo, haven_ratio,
    random_walk_msd_covariance, velocity_autocorrelation,
)

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


__all__ = ["A2_FS_TO_CM2_S", "DiffusivityFit", "GreenKubo", "MSDAccumulator", "MSDCurve",
           "choose_fit_window", "curve_from", "drift_correction_terms", "fit_diffusivity", "green_kubo",
           "haven_ratio", "local_slope", "msd_fft", "random_walk_msd_covariance", "variance_lags",
           "velocity_autocorrelation", "window_from_ps"]
