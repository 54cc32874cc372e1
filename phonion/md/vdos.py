"""Vibrational density of states (VDOS) from the mass-weighted velocity autocorrelation.

Pure functions of arrays (no file I/O, no plotting). Definitions:

* C_G(τ) = Σ_{i∈G} m_i ⟨v_i(t₀+τ)·v_i(t₀)⟩ over all time origins (FFT, unbiased 1/(F−τ)), for a
  group G of atoms (a species, an O class, ...), amu Å²/fs².
* S_G(f) = Δ [C_G(0) + 2 Σ_{τ=1}^{M−1} w(τ) C_G(τ) cos(2π f τ Δ)], the cosine transform of the
  correlation up to the window M frames (default half the run), tapered by w (Hann,
  w(τ) = ½(1 + cos πτ/M), or none), on f_k = k / (2 M Δ), k = 0…M, in THz (cycles, not rad).
  The frequency bin is 1 / (2 M Δ); the highest frequency is the Nyquist 1 / (2Δ).
* g_G(f) = 3 n_G S_G(f) / ∫ S_G df: each group's spectrum integrates (trapezoid on f_k) to 3 × its
  atom count. The total VDOS is the sum of the per-species spectra, so it integrates to 3N exactly.
  Mass weighting fixes the relative weight of atoms of different mass inside one group;
  C_G(0) / (3 n_G k_B) is the group's kinetic temperature (an equipartition check), reported.
  A tapered transform can dip slightly below zero between peaks; it is not clipped.

Anharmonicity measure (the Li VDOS shift used by Xu et al.; here exactly):
  centroid ⟨f⟩ = ∫ f g df / ∫ g df (THz), rms ⟨f²⟩^½, peak (the arg-max), and the fraction of
  spectral weight below ``cutoff_THz`` (default 3 THz), ∫₀^cut g / ∫ g. :func:`compare_spectra`
  reports coupled − decoupled differences of these: coupled = the full MD, decoupled = a run with
  the framework held fixed, or the harmonic reference :func:`harmonic_vdos` (phonon frequencies with
  the group's eigenvector weights, Gaussian-broadened). A negative centroid shift and a positive
  low-frequency gain mean the coupled Li motion is softer (more anharmonic) than the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft

from phonion.core.signal import autocorrelation
from phonion.core.units import AMU_A2_PER_FS2_TO_EV, K_B_EV_K


def mass_weighted_vacf(velocities: np.ndarray, masses: np.ndarray, indices, max_lag: int,
                       chunk_atoms: int = 64) -> np.ndarray:
    """C(τ) = Σ_{i∈indices} m_i ⟨v_i(t₀+τ)·v_i(t₀)⟩, all origins, τ = 0 … max_lag−1 frames.

    Parameters
    ----------
    velocities : ndarray, shape=(F, N, 3), Å/fs
    masses : ndarray, shape=(N,), amu
    indices : int array, atoms of the group
    max_lag : int ≤ F

    Returns
    -------
    ndarray, shape=(max_lag,), amu Å²/fs²
    """
    f = velocities.shape[0]
    idx = np.asarray(indices, dtype=int)
    out = np.zeros(max_lag)
    for a in range(0, idx.size, chunk_atoms):
        part = idx[a:a + chunk_atoms]
        ac = autocorrelation(velocities[:, part].reshape(f, -1), max_lag)
        out += ac @ np.repeat(masses[part], 3)
    return out / (f - np.arange(max_lag))


def spectrum_from_vacf(vacf: np.ndarray, dt_fs: float, n_atoms: int, taper: str = "hann"):
    """(frequencies_THz (M+1,), g (M+1,) normalised to 3 n_atoms, in 1/THz) from C(τ), shape=(M,)."""
    m = vacf.size
    w = 0.5 * (1.0 + np.cos(np.pi * np.arange(m) / m)) if taper == "hann" else np.ones(m)
    if taper not in ("hann", "none"):
        raise ValueError(f"taper must be 'hann' or 'none', got {taper!r}")
    c = vacf * w
    even = np.concatenate([c, [0.0], c[:0:-1]])  # length 2M, symmetric about τ = 0
    s = sfft.rfft(even).real * dt_fs
    freqs = np.arange(m + 1) / (2.0 * m * dt_fs) * 1e3  # fs⁻¹ → THz
    norm = np.trapezoid(s, freqs)
    if not np.isfinite(norm) or norm <= 0:
        raise ValueError("the velocity autocorrelation has no positive spectral weight (zero velocities?)")
    return freqs, 3.0 * n_atoms * s / norm


@dataclass(frozen=True)
class VDOS:
    """frequencies_THz (K,); spectra {group: (K,) 1/THz, ∫ = 3 n_group}; n_atoms {group: int};
    kinetic_temperature_K {group: float}; window_fs, taper, dt_fs."""

    frequencies_THz: np.ndarray
    spectra: dict
    n_atoms: dict
    kinetic_temperature_K: dict
    window_fs: float
    dt_fs: float
    taper: str = "hann"
    notes: list = field(default_factory=list)


def vdos(velocities: np.ndarray, masses: np.ndarray, dt_fs: float, groups: dict, *,
         window_fs: float | None = None, taper: str = "hann", total_of=None) -> VDOS:
    """VDOS of each group of atoms (module definitions).

    Parameters
    ----------
    velocities : ndarray, shape=(F, N, 3), Å/fs
    masses : ndarray, shape=(N,), amu
    dt_fs : float, time between frames, fs
    groups : dict name → int index array (may overlap: species and O classes together)
    window_fs : correlation window, fs (default: half the run); sets the bin 1/(2 window)
    taper : "hann" (default) or "none"
    total_of : names of groups that partition all atoms (e.g. the species); their sum is added
        as ``"total"`` (∫ = 3N)
    """
    velocities = np.asarray(velocities, dtype=float)
    f = velocities.shape[0]
    if f < 8:
        raise ValueError(f"{f} frames are too few for a VDOS (need ≥ 8)")
    if not np.isfinite(velocities).all():
        raise ValueError("velocities contain NaN (frames without velocities); derive them from positions")
    m = f // 2 if window_fs is None else int(round(window_fs / dt_fs))
    if not 4 <= m <= f:
        raise ValueError(f"correlation window {window_fs} fs is {m} frames; it must be 4 … {f} frames")
    spectra, counts, temps = {}, {}, {}
    freqs = None
    for name, idx in groups.items():
        idx = np.asarray(idx, dtype=int)
        if idx.size == 0:
            continue
        c = mass_weighted_vacf(velocities, masses, idx, m)
        freqs, spectra[name] = spectrum_from_vacf(c, dt_fs, idx.size, taper)
        counts[name] = int(idx.size)
        temps[name] = float(c[0] * AMU_A2_PER_FS2_TO_EV / (3 * idx.size * K_B_EV_K))
    if total_of:
        names = [n for n in total_of if n in spectra]
        spectra["total"] = np.sum([spectra[n] for n in names], axis=0)
        counts["total"] = int(sum(counts[n] for n in names))
    return VDOS(freqs, spectra, counts, temps, m * dt_fs, dt_fs, taper)


def spectral_summary(frequencies_THz: np.ndarray, g: np.ndarray, cutoff_THz: float = 3.0) -> dict:
    """Centroid, rms and peak frequency (THz) and the weight fraction below ``cutoff_THz``."""
    f, g = np.asarray(frequencies_THz, float), np.asarray(g, float)
    total = np.trapezoid(g, f)
    below = f <= cutoff_THz
    low = np.trapezoid(g[below], f[below]) if below.sum() > 1 else 0.0
    if below.sum() > 0 and not below.all():  # add the partial bin up to the cutoff
        k = int(np.flatnonzero(below)[-1])
        frac = (cutoff_THz - f[k]) / (f[k + 1] - f[k])
        gc = g[k] + frac * (g[k + 1] - g[k])
        low += 0.5 * (g[k] + gc) * (cutoff_THz - f[k])
    return {"integral": float(total), "centroid_THz": float(np.trapezoid(f * g, f) / total),
            "rms_frequency_THz": float(np.sqrt(max(np.trapezoid(f * f * g, f) / total, 0.0))),
            "peak_THz": float(f[int(np.argmax(g))]), "cutoff_THz": float(cutoff_THz),
            "low_frequency_fraction": float(low / total)}


def compare_spectra(freqs_coupled, g_coupled, freqs_decoupled, g_decoupled, cutoff_THz: float = 3.0) -> dict:
    """Coupled − decoupled shifts of the spectral summary (the decoupled one interpolated if needed)."""
    fc, fd = np.asarray(freqs_coupled, float), np.asarray(freqs_decoupled, float)
    gd = np.asarray(g_decoupled, float)
    if fc.shape != fd.shape or not np.allclose(fc, fd):
        gd = np.interp(fc, fd, gd, right=0.0)
    a = spectral_summary(fc, g_coupled, cutoff_THz)
    b = spectral_summary(fc, gd, cutoff_THz)
    return {"coupled": a, "decoupled": b,
            "centroid_shift_THz": a["centroid_THz"] - b["centroid_THz"],
            "rms_frequency_shift_THz": a["rms_frequency_THz"] - b["rms_frequency_THz"],
            "low_frequency_fraction_change": a["low_frequency_fraction"] - b["low_frequency_fraction"]}


def harmonic_vdos(mode_frequencies_THz, weights, frequencies_THz, n_atoms: int,
                  sigma_THz: float = 0.2) -> np.ndarray:
    """Harmonic reference: Σ_n w_n δ(f − f_n), Gaussian-broadened (σ in THz), ∫ = 3 n_atoms.

    Parameters
    ----------
    mode_frequencies_THz : (M,) phonon frequencies (imaginary as negative: those are dropped)
    weights : (M,) the group's share of each mode, e.g. Σ_{i∈Li} |e_{i,n}|²
    frequencies_THz : (K,) grid to evaluate on
    n_atoms : atoms in the group
    """
    fm, w = np.asarray(mode_frequencies_THz, float), np.asarray(weights, float)
    keep = fm > 0
    grid = np.asarray(frequencies_THz, float)
    g = (w[keep][None, :] * np.exp(-0.5 * ((grid[:, None] - fm[keep][None, :]) / sigma_THz) ** 2)).sum(axis=1)
    norm = np.trapezoid(g, grid)
    if norm <= 0:
        raise ValueError("no positive-frequency mode with weight inside the frequency grid")
    return 3.0 * n_atoms * g / norm


__all__ = ["VDOS", "compare_spectra", "harmonic_vdos", "mass_weighted_vacf", "spectral_summary",
           "spectrum_from_vacf", "vdos"]
