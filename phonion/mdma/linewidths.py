"""Mode-resolved spectra: the power spectrum of each Γ-mode velocity Q̇_n(t) and its Lorentzian fit
(renormalised peak frequency and linewidth, FWHM, with errors). Pure functions of arrays (DESIGN.md,
"Anharmonicity, three ways" (3)).

Q̇_n(t) = Σ_i √m_i e_{i,n}·v_i(t) is the projection ``phonion mdma`` uses (:func:`modal_velocities` reuses
:func:`phonion.mdma.mdma_estimator.modal_velocities` and the same eigenvector sources).

Spectrum. The run is cut into ``n_segments`` contiguous segments of n frames (T = nΔ); each gives the
periodogram P_j = (Δ/n) |Σ_t x_t e^{−2πi jt/n}|² at f_j = j/T (one bin per 1/T: ``frequency_resolution_THz``,
neighbouring bins independent), averaged over segments.

Model. A mode whose velocity autocorrelation is C(τ) = A e^{−πΓ|τ|} cos(2π f₀ τ) has a Lorentzian spectrum of
FWHM Γ centred on f₀ (for harmonic Langevin dynamics with friction γ, Γ = γ/2π exactly: the half-maximum points
of γω²/((ω₀²−ω²)² + γ²ω²) are γ apart). A periodogram of n frames does not see that Lorentzian but its
expectation E[P_j] = Δ Σ_{|k|<n} (1 − |k|/n) C(kΔ) e^{−2πi f_j kΔ} (the Lorentzian broadened by the segment's
Fejér window and aliased by the sampling). The fit uses that expectation in closed form (geometric sums), so a
line only a few bins wide is not biased wide by the finite run. Written by hand because no maintained library
fits this windowed Lorentzian (DynaPhoPy fits a plain Lorentzian to its own spectra and is not a library
dependency); the least-squares step is scipy's ``curve_fit``, weighted with the model itself (a periodogram
averaged over K segments scatters as the model × χ²_{2K}/2K, σ_j = model_j/√K), iterated once.
Against DynaPhoPy 1.19 on the same EMT Cu runs (scripts/dynaphopy_compare.py): identical projection and spectrum;
DynaPhoPy fits the degenerate modes' mean spectrum unweighted over its whole frequency range, which on a 50-ps run
scatters up to ~2.5× more than this fit while its covariance errors are 10–20× smaller than that scatter; on 400-ps
runs the two agree within 2σ (scripts/results/anharmonicity_dynaphopy.json).

Flags (``status`` per mode): ``fitted``; ``not Lorentzian`` (fitted, but 5-bin averages within ±FWHM of the peak
deviate from the fit by χ²/point > :data:`MAX_SHAPE_CHI2`: several peaks or a shoulder, so one FWHM does not describe
the line); ``not resolved`` (the line spans fewer than
:data:`MIN_LINE_BINS` bins, or the fitted FWHM is below one bin: a longer run is needed, no linewidth is
given); ``above Nyquist`` (the harmonic frequency exceeds 1/(2Δ): frames too far apart); ``acoustic``
(|f| below :data:`phonion.mdma.mdma_core.ACOUSTIC_THRESHOLD_THZ`: no peak to fit); ``imaginary``;
``fit failed``.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["modal_velocities", "power_spectra", "window_lorentzian", "fit_mode", "fit_modes",
           "MIN_LINE_BINS", "STATUSES"]

#: a line must span at least this many frequency bins above half maximum to be fitted
MIN_LINE_BINS = 3
STATUSES = ("fitted", "not Lorentzian", "not resolved", "above Nyquist", "acoustic", "imaginary", "fit failed")
#: a fitted line whose spectrum near the peak deviates from the Lorentzian by more than this χ² per point is flagged
MAX_SHAPE_CHI2 = 4.0


def modal_velocities(velocities, masses, eigenvectors, block: int = 512) -> np.ndarray:
    """Q̇_n(t) = Σ_i √m_i e_{i,n}·v_i(t), shape (F, M), √amu·Å/fs — the MDMA (Gordiz) projection.

    ``velocities`` (F, N, 3) Å/fs; ``masses`` (N,) amu; ``eigenvectors`` a (3N, M) array or a column source
    ``cols(start, stop)`` (:class:`phonion.mdma.modes.SupercellModeColumns`), taken ``block`` columns at a time.
    """
    from phonion.mdma.mdma_core import _columns
    from phonion.mdma.mdma_estimator import modal_velocities as project

    v = np.asarray(velocities, float)
    w = np.sqrt(np.asarray(masses, float))
    n_dof = 3 * v.shape[1]
    n_modes = eigenvectors.n_modes if callable(eigenvectors) else np.shape(eigenvectors)[1]
    out = np.empty((len(v), n_modes))
    for a in range(0, n_modes, block):
        b = min(n_modes, a + block)
        out[:, a:b] = project(v, _columns(eigenvectors, a, b, n_dof), w)
    return out


def power_spectra(qdot, dt_fs: float, n_segments: int = 1):
    """(frequencies_THz (J,), power (J, M), resolution_THz): segment-averaged periodograms of each column.

    ``qdot`` (F, M); segments of n = F // n_segments frames (the last F mod n_segments frames unused);
    J = n//2 + 1 bins at f_j = j/(nΔ); power in (input unit)²·ps.
    """
    x = np.asarray(qdot, float)
    if x.ndim == 1:
        x = x[:, None]
    n = len(x) // int(n_segments)
    if n < 8:
        raise ValueError(f"{len(x)} frames in {n_segments} segment(s) leave {n} frames per segment; at least 8 "
                         "are needed for a spectrum (use fewer segments or a longer run)")
    dt_ps = dt_fs * 1e-3
    segs = x[: n * n_segments].reshape(n_segments, n, -1)
    spec = np.fft.rfft(segs, axis=1)
    power = (np.abs(spec) ** 2).mean(axis=0) * dt_ps / n
    return np.fft.rfftfreq(n, d=dt_ps), power, 1.0 / (n * dt_ps)


def _windowed_sum(rate, omega, n: int):
    """Σ_{|k|<n} (1 − |k|/n) e^{(−rate + iω) k} = 2 Re S − 1 with S = Σ_{k=0}^{n−1} (1 − k/n) r^k, r = e^{−rate+iω}."""
    r = np.exp(-rate + 1j * omega)
    rn = r ** n
    one = 1.0 - r
    s0 = (1.0 - rn) / one
    s1 = r * (1.0 - n * rn / r + (n - 1) * rn) / one ** 2
    return 2.0 * (s0 - s1 / n).real - 1.0


def window_lorentzian(f_THz, f0_THz, fwhm_THz, area, background, n: int, dt_ps: float):
    """Expected periodogram (n frames Δ = ``dt_ps`` apart) of C(τ) = area·e^{−πΓ|τ|} cos(2πf₀τ), plus a flat
    ``background``; for nΓΔ ≫ 1 and f₀ ≫ Γ it is the Lorentzian (area/2)·(Γ/2π)/((f − f₀)² + Γ²/4)."""
    f = np.asarray(f_THz, float)
    rate = np.pi * fwhm_THz * dt_ps
    plus = _windowed_sum(rate, 2 * np.pi * (f0_THz - f) * dt_ps, n)
    minus = _windowed_sum(rate, 2 * np.pi * (-f0_THz - f) * dt_ps, n)
    return 0.5 * area * dt_ps * (plus + minus) + background


def _width_estimate(f: np.ndarray, sm: np.ndarray, peak: int, reach_THz: float) -> float:
    """FWHM guess (THz) of a Lorentzian with the area and (smoothed) height of the line: Γ = 2·area/(π·height);
    area over ±``reach_THz`` of the peak above the median level there (robust to the periodogram's noise)."""
    df = f[1] - f[0]
    near = np.abs(f - f[peak]) <= reach_THz
    base = float(np.median(sm[near])) if near.sum() > 8 else 0.0
    area = float(np.clip(sm[near] - base, 0.0, None).sum() * df)
    height = float(sm[peak] - base)
    return 2.0 * area / (np.pi * height) if height > 0 else 0.0


def _smooth(p: np.ndarray, width: int) -> np.ndarray:
    return np.convolve(p, np.ones(width) / width, mode="same") if 1 < width and len(p) > 2 * width else p


def _status(harmonic_THz: float, nyquist: float) -> str | None:
    from phonion.mdma.mdma_core import ACOUSTIC_THRESHOLD_THZ

    if abs(harmonic_THz) < ACOUSTIC_THRESHOLD_THZ:
        return "acoustic"
    if harmonic_THz < 0:
        return "imaginary"
    if harmonic_THz > nyquist:
        return "above Nyquist"
    return None


def fit_mode(freqs_THz, power, harmonic_THz: float, n: int, dt_ps: float, n_segments: int = 1) -> dict:
    """Fit one mode's spectrum. Returns ``{status, peak_frequency_THz, peak_frequency_err_THz, linewidth_THz,
    linewidth_err_THz, reason}`` (None where not determined). ``n``: frames per segment."""
    from scipy.optimize import curve_fit

    df = 1.0 / (n * dt_ps)
    out = {"status": None, "peak_frequency_THz": None, "peak_frequency_err_THz": None, "linewidth_THz": None,
           "linewidth_err_THz": None, "reason": None}
    status = _status(harmonic_THz, 0.5 / dt_ps)
    if status is not None:
        out.update(status=status, reason={
            "acoustic": "zero-frequency (translation) mode: no peak",
            "imaginary": "imaginary harmonic frequency: no oscillation to fit",
            "above Nyquist": f"harmonic {harmonic_THz:.2f} THz is above the Nyquist frequency {0.5 / dt_ps:.2f} "
                             f"THz of frames {dt_ps * 1e3:g} fs apart: its spectrum is aliased"}[status])
        return out
    f, p = np.asarray(freqs_THz, float), np.asarray(power, float)
    reach = max(0.5 * harmonic_THz, 3 * df)
    # smooth over ~1/20 of the search range (1 bin for a short run, up to 9 for a long one): a guide for the peak
    # and the width guess, never for the fitted values
    sm = _smooth(p, int(np.clip(reach / df / 20, 1, 9)) | 1)
    near = np.flatnonzero(np.abs(f - harmonic_THz) <= reach)
    peak = int(near[np.argmax(p[near])]) if near.size else int(np.argmax(p))   # the highest bin: a narrow line stays one
    g0 = _width_estimate(f, sm, peak, reach)
    out["peak_frequency_THz"], out["peak_frequency_err_THz"] = float(f[peak]), 0.5 * df
    if g0 < MIN_LINE_BINS * df:
        out.update(status="not resolved",
                   reason=f"line narrower than {MIN_LINE_BINS} frequency bins of {df:.4g} THz (segments of "
                          f"{n * dt_ps:g} ps): a longer run is needed for a linewidth; peak = highest bin")
        return out
    half = max(5.0 * g0, 8 * df)
    sel = np.flatnonzero(np.abs(f - f[peak]) <= half)
    model = lambda x, f0, g, a, b: window_lorentzian(x, f0, g, a, b, n, dt_ps)  # noqa: E731
    p0 = [f[peak], min(g0, 2 * half), max(float(p[sel].sum() * df), 1e-300), max(float(np.median(p[sel])) * 0.01, 0.0)]
    lock = max(g0, 3 * df)          # the centre stays on the line found, not on other modes' content in the window
    bounds = ([max(f[sel].min(), f[peak] - lock), 1e-3 * df, 0.0, 0.0],
              [min(f[sel].max(), f[peak] + lock), 4 * half, np.inf, np.inf])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            par, _ = curve_fit(model, f[sel], sm[sel], p0=p0, bounds=bounds)   # first pass: on the guide
            # σ_j = (model_j + floor)/√K: the floor (median of the window) keeps the far tails, where other modes'
            # spectral content lives and the model is ~0, from dominating the fit
            floor = float(np.median(p[sel]))
            sigma = (model(f[sel], *par) + max(floor, 1e-12 * p[sel].max())) / np.sqrt(n_segments)
            par, cov = curve_fit(model, f[sel], p[sel], p0=par, sigma=sigma, absolute_sigma=True, bounds=bounds)
    except (RuntimeError, ValueError) as exc:
        out.update(status="fit failed", reason=f"Lorentzian fit did not converge ({exc})")
        return out
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    out.update(peak_frequency_THz=float(par[0]), peak_frequency_err_THz=float(err[0]))
    if par[1] < df:
        out.update(status="not resolved", reason=f"fitted FWHM {par[1]:.3g} THz is below the resolution "
                                                 f"{df:.3g} THz: a longer run is needed for a linewidth")
        return out
    out.update(status="fitted", linewidth_THz=float(par[1]), linewidth_err_THz=float(err[1]),
               line_shape_chi2=_shape_chi2(f, p, model, par, n_segments))
    if out["line_shape_chi2"] > MAX_SHAPE_CHI2:
        out.update(status="not Lorentzian",
                   reason=f"the spectrum within ±FWHM of the peak is not one Lorentzian (χ²/point "
                          f"{out['line_shape_chi2']:.1f} > {MAX_SHAPE_CHI2}: several peaks or a shoulder); the FWHM "
                          "given describes the whole feature, not one line")
    return out


def _shape_chi2(f, p, model, par, n_segments: int) -> float:
    """χ² per point of 5-bin averages of the spectrum against the model within ±FWHM of the fitted peak: ≈ 1 when the
    line is one Lorentzian (each average scatters by model/√(5K)), ≫ 1 for several peaks or a shoulder."""
    core = np.flatnonzero(np.abs(f - par[0]) <= max(par[1], 5 * (f[1] - f[0])))
    n = len(core) // 5 * 5
    if n < 5:
        return 0.0
    idx = core[:n].reshape(-1, 5)
    data, mod = p[idx].mean(axis=1), model(f[idx], *par).mean(axis=1)
    return float(np.mean(((data - mod) / (mod / np.sqrt(5 * n_segments))) ** 2))


def fit_modes(qdot, dt_fs: float, harmonic_THz, n_segments: int = 1, modes=None) -> dict:
    """Spectra of every column of ``qdot`` (F, M) and the fit of each mode in ``modes`` (default all).

    Returns ``{frequencies_THz (J,), power (J, M), frequency_resolution_THz, nyquist_THz, segment_ps,
    fits: list of fit_mode dicts with "index" and "harmonic_frequency_THz"}``.
    """
    freqs, power, df = power_spectra(qdot, dt_fs, n_segments)
    n = len(np.asarray(qdot)) // int(n_segments)
    dt_ps = dt_fs * 1e-3
    h = np.asarray(harmonic_THz, float)
    fits = []
    for m in (range(power.shape[1]) if modes is None else modes):
        fit = fit_mode(freqs, power[:, m], float(h[m]), n, dt_ps, n_segments)
        fits.append({"index": int(m), "harmonic_frequency_THz": float(h[m]), **fit})
    return {"frequencies_THz": freqs, "power": power, "frequency_resolution_THz": df, "nyquist_THz": 0.5 / dt_ps,
            "segment_ps": n * dt_ps, "fits": fits}
