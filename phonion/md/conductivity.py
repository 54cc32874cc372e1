"""Nernst–Einstein conductivity and Arrhenius fits of diffusivities, as ../DESIGN.md defines them.

Pure functions of numbers and arrays (no file I/O, no plotting).

Nernst–Einstein: σ = n (z e)² D / (k_B T), n the carrier density (carriers / cell volume).
Feeding it the collective diffusivity D_σ gives the conductivity with ion–ion correlations;
feeding it the tracer D* gives the Nernst–Einstein estimate (Haven ratio taken as 1), which is
what the paper reports. Check (DESIGN.md): 8 Li in 1154.418 Å³, D = 3.14e-9 cm²/s, 300 K →
0.1348 mS/cm.

Arrhenius: D = D₀ exp(−E_a / k_B T), fitted as the straight line ln D = ln D₀ − (E_a/k_B)(1/T)
by weighted least squares with σ_lnD = σ_D / D (first-order propagation). The parameter
covariance is (Xᵀ W X)⁻¹ with W = diag(1/σ_lnD²): it comes from the given uncertainties and is
*not* rescaled by the reduced χ² (which is reported, so a scatter larger than the errors shows).
With two temperatures the fit is the exact line through the two points and the same formula is
exact first-order error propagation from the two D's errors. Without errors (all σ_D missing)
the fit is unweighted and, with ≥ 3 points, the covariance is scaled by the residual variance;
with 2 points and no errors the uncertainties are NaN. The extrapolation ln D(T) has variance
var(a) + 2 cov(a,b)/T + var(b)/T², reported as a ±1σ band D·exp(±σ_lnD) (asymmetric in D).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phonion.core.units import E_CHARGE_C, K_B_EV_K, K_B_J_K  # re-exported (in __all__)


def _check_temperature(temperature_K) -> np.ndarray:
    t = np.asarray(temperature_K, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"temperature must be > 0 K, got {temperature_K}")
    return t


def carrier_density_cm3(n_carriers: int, volume_A3: float) -> float:
    """Carriers per cm³ from their count in a cell of ``volume_A3`` (Å³; 1 Å³ = 1e-24 cm³)."""
    if not volume_A3 or volume_A3 <= 0:
        raise ValueError(f"cell volume must be > 0 Å³, got {volume_A3}")
    if n_carriers <= 0:
        raise ValueError(f"need at least one carrier, got {n_carriers}")
    return float(n_carriers) / (float(volume_A3) * 1e-24)


def carrier_density_from_atoms(atoms, species: str = "Li") -> float:
    """Carrier density (cm⁻³) of ``species`` in an ASE Atoms cell: count / cell volume."""
    n = sum(1 for s in atoms.get_chemical_symbols() if s == species)
    if n == 0:
        present = sorted(set(atoms.get_chemical_symbols()))
        raise ValueError(f"no {species} atoms in the structure (it has {', '.join(present)})")
    return carrier_density_cm3(n, abs(atoms.cell.volume))


def nernst_einstein_conductivity_mS_cm(diffusivity_cm2_s, temperature_K, carrier_density_cm3,
                                       charge: float = 1.0):
    """σ = n (z e)² D / (k_B T) in mS/cm.

    Parameters
    ----------
    diffusivity_cm2_s : float or ndarray, cm²/s
    temperature_K : float or ndarray (broadcast with D), K, must be > 0
    carrier_density_cm3 : float, carriers per cm³
    charge : float, carrier charge in units of e (1 for Li⁺)

    Returns
    -------
    float or ndarray, mS/cm (1 S/m = 10 mS/cm)
    """
    t = _check_temperature(temperature_K)
    n_m3 = float(carrier_density_cm3) * 1e6
    d_m2_s = np.asarray(diffusivity_cm2_s, dtype=float) * 1e-4
    sigma_S_m = n_m3 * (charge * E_CHARGE_C) ** 2 * d_m2_s / (K_B_J_K * t)
    out = sigma_S_m * 10.0
    return float(out) if np.ndim(out) == 0 else out


def diffusivity_from_conductivity_cm2_s(conductivity_mS_cm, temperature_K, carrier_density_cm3,
                                        charge: float = 1.0):
    """Inverse of :func:`nernst_einstein_conductivity_mS_cm`: D (cm²/s) from σ (mS/cm)."""
    unit = nernst_einstein_conductivity_mS_cm(1.0, temperature_K, carrier_density_cm3, charge)
    return np.asarray(conductivity_mS_cm, dtype=float) / unit


@dataclass(frozen=True)
class ArrheniusFit:
    """Result of :func:`arrhenius_fit`.

    Attributes
    ----------
    activation_energy_eV, activation_energy_err_eV : float, eV (1σ)
    prefactor_cm2_s, prefactor_err_cm2_s : float, D₀ in cm²/s (error first-order: D₀ σ_lnD₀)
    ln_prefactor, slope_K : float, the line ln D = ln_prefactor + slope_K / T
    covariance : ndarray, shape=(2, 2), covariance of (ln_prefactor, slope_K)
    temperatures_K, diffusivities_cm2_s, diffusivity_errs_cm2_s : ndarray, shape=(n,), the data
    chi2_reduced : float, Σ r²/σ² / (n − 2) (NaN for n = 2 or unweighted fits)
    weighted : bool, whether the per-point errors were used
    """

    activation_energy_eV: float
    activation_energy_err_eV: float
    prefactor_cm2_s: float
    prefactor_err_cm2_s: float
    ln_prefactor: float
    slope_K: float
    covariance: np.ndarray
    temperatures_K: np.ndarray
    diffusivities_cm2_s: np.ndarray
    diffusivity_errs_cm2_s: np.ndarray
    chi2_reduced: float
    weighted: bool
    notes: list = field(default_factory=list)

    def predict(self, temperature_K):
        """D(T) and the ±1σ band: (D, D_low, D_high, σ_lnD), each float or ndarray (cm²/s)."""
        t = _check_temperature(temperature_K)
        inv = 1.0 / t
        ln_d = self.ln_prefactor + self.slope_K * inv
        c = self.covariance
        var = c[0, 0] + 2.0 * c[0, 1] * inv + c[1, 1] * inv**2
        s = np.sqrt(np.maximum(var, 0.0))
        d = np.exp(ln_d)
        out = (d, d * np.exp(-s), d * np.exp(s), s)
        return tuple(float(v) for v in out) if np.ndim(d) == 0 else out


def arrhenius_fit(temperatures_K, diffusivities_cm2_s, diffusivity_errs_cm2_s=None) -> ArrheniusFit:
    """Fit ln D vs 1/T, weighted by σ_lnD = σ_D / D (see the module docstring for the rules).

    Parameters
    ----------
    temperatures_K : array, shape=(n,), K, n ≥ 2 distinct temperatures
    diffusivities_cm2_s : array, shape=(n,), cm²/s, all > 0
    diffusivity_errs_cm2_s : array, shape=(n,), cm²/s (1σ), or None

    Returns
    -------
    ArrheniusFit
    """
    t = _check_temperature(np.atleast_1d(temperatures_K))
    d = np.atleast_1d(np.asarray(diffusivities_cm2_s, dtype=float))
    if t.shape != d.shape or t.ndim != 1:
        raise ValueError(f"{t.size} temperatures for {d.size} diffusivities")
    if np.unique(t).size < 2:
        raise ValueError(f"an Arrhenius fit needs at least 2 distinct temperatures, got {t.tolist()}")
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise ValueError(f"an Arrhenius fit needs positive diffusivities, got {d.tolist()}")
    err = None if diffusivity_errs_cm2_s is None else np.atleast_1d(
        np.asarray(diffusivity_errs_cm2_s, dtype=float))
    weighted = err is not None and np.all(np.isfinite(err)) and np.all(err > 0)
    notes = []
    if err is not None and not weighted:
        notes.append("some diffusivity errors are missing or ≤ 0: unweighted fit")
    x = np.column_stack([np.ones_like(t), 1.0 / t])
    y = np.log(d)
    sig = err / d if weighted else np.ones_like(y)
    w = 1.0 / sig**2
    a = x.T @ (w[:, None] * x)
    beta = np.linalg.solve(a, x.T @ (w * y))
    cov = np.linalg.inv(a)
    resid = y - x @ beta
    dof = t.size - 2
    chi2 = float(np.sum(w * resid**2) / dof) if dof > 0 else float("nan")
    if not weighted:
        if dof > 0:
            cov = cov * chi2
        else:
            cov = np.full((2, 2), np.nan)
            notes.append("two points without errors: exact line, uncertainties unknown (NaN)")
        chi2 = float("nan")
    ln_d0, slope = float(beta[0]), float(beta[1])
    return ArrheniusFit(
        activation_energy_eV=-slope * K_B_EV_K,
        activation_energy_err_eV=float(np.sqrt(cov[1, 1])) * K_B_EV_K,
        prefactor_cm2_s=float(np.exp(ln_d0)),
        prefactor_err_cm2_s=float(np.exp(ln_d0) * np.sqrt(cov[0, 0])),
        ln_prefactor=ln_d0, slope_K=slope, covariance=cov, temperatures_K=t,
        diffusivities_cm2_s=d,
        diffusivity_errs_cm2_s=err if err is not None else np.full_like(d, np.nan),
        chi2_reduced=chi2, weighted=bool(weighted), notes=notes)


__all__ = ["ArrheniusFit", "arrhenius_fit", "carrier_density_cm3", "carrier_density_from_atoms",
           "diffusivity_from_conductivity_cm2_s", "nernst_einstein_conductivity_mS_cm",
           "E_CHARGE_C", "K_B_EV_K", "K_B_J_K"]
