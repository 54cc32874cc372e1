"""σ_A, the anharmonicity measure of Knoop, Purcell, Scheffler & Carbogno, Phys. Rev. Materials 4, 083809
(2020): pure functions of arrays (DESIGN.md, "Anharmonicity, three ways" (2)).

    σ_A = sqrt( Σ_{t,i,α} (F_{t,iα} − F^harm_{t,iα})² / Σ_{t,i,α} F_{t,iα}² ),   F^harm = −Φ·u,

summed over atoms i (all, one species, or one O class: σ_A^I restricts both sums to the atoms of I) and frames t
(σ_A(t): one frame). u_i(t) is the displacement of atom i from its ideal site, minimum image.

Force constants. Φ is the MD cell's own force-constant matrix (periodic images summed), the matrix whose Γ modes
``phonion mdma`` projects on: from phonopy's D(q) at the MD cell's commensurate q-points
(:func:`phonion.mdma.modes.modes_for_supercell`), Φ = M^½ E Λ Eᵀ M^½ with λ_n = sign(f_n)(f_n / 15.633302)²
eV/(Å² amu). For an MD cell equal to phonopy's supercell this is phonopy's ``force_constants`` in the MD atom
order (tests/mdma/test_anharmonicity.py checks it); for a larger cell it is their exact Bloch extension. Applied
as −M^½ E (λ ⊙ Eᵀ M^½ u), so a cell too large for a (3N, 3N) matrix uses streamed eigenvector columns.

Hopping mobile ions (no well-defined u). With ``hopping="reanchor"`` (default) a mobile ion's u is its
displacement from the *nearest* site of its species (minimum image) in each frame, so an ion that hopped into a
neighbouring vacant site is measured from that site; the atom-frames where that site is not the ion's own are
counted. ``hopping="exclude"`` uses the same u for the neighbours' F^harm but leaves those atom-frames out of
both sums. Written by hand (this sum and :func:`displacements`): no maintained library computes σ_A from a
trajectory and phonopy force constants (FHI-vibes does, inside its own FHI-aims workflow and file formats).

Uncertainty (:func:`sigma_a_error`). Frames are correlated, so the standard error comes from block averaging
(Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989)): the frames are cut into n_b blocks of b frames, each block's
σ_A is the ratio of its own sums sqrt(Σ_block ΔF² / Σ_block F²) (σ_A is a ratio of sums, so never a mean of
per-frame ratios), and SE_b = std(block σ_A)/√n_b. b doubles while n_b ≥ :data:`MIN_BLOCKS`; the error given is SE_b
at the first b from which no larger b gives a larger SE beyond twice that SE's own scatter SE_b/√(2(n_b − 1)) (the
plateau); when only the largest b qualifies the plateau is not reached and the error is a lower bound. Written by
hand: pyblock and similar packages block a mean, not a ratio of sums.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HOPPING", "MIN_BLOCKS", "displacements", "harmonic_forces", "sigma_a", "sigma_a_series",
           "sigma_a_sums", "sigma_a_error", "eigenvalues_from_frequencies"]

HOPPING = ("reanchor", "exclude")
#: block averaging stops at this many blocks (fewer make the scatter of the block values itself too uncertain)
MIN_BLOCKS = 16


def eigenvalues_from_frequencies(frequencies_THz) -> np.ndarray:
    """λ = sign(f)(f / 15.633302)², eV/(Å² amu): the inverse of :func:`phonion.mdma.modes.frequencies_from_eigenvalues`."""
    from phonion.mdma.modes import THZ_PER_SQRT_EV_A2_AMU

    f = np.asarray(frequencies_THz, float)
    return np.sign(f) * (f / THZ_PER_SQRT_EV_A2_AMU) ** 2


def displacements(positions, cells, sites, symbols, mobile: str | None = None):
    """(u, reanchored): displacements from the ideal sites and where a mobile ion was re-anchored.

    Parameters
    ----------
    positions : (F, N, 3) Å, unwrapped (continuous in time, as phonion's readers give them)
    cells : (F, 3, 3) or (3, 3) Å; sites : (N, 3) Å, ideal sites in the MD atom order
    symbols : N str; mobile : species whose ions are re-anchored to the nearest site of that species (None: none)

    Returns
    -------
    u : (F, N, 3) Å; reanchored : (F, N) bool, True where the nearest site of a mobile ion is not its own.

    The crystal may drift as a whole (a thermostat without momentum conservation): the framework's (non-mobile
    atoms') mean displacement c(t) is followed continuously from the first frame (minimum image there), and each
    u_i = c(t) + minimum image of (r_i − site_i − c(t)), so a drift never moves an atom onto another image or a
    mobile ion onto another site. A uniform c(t) adds no force (acoustic sum rule).
    """
    from phonion.core.geometry import minimum_image

    pos = np.asarray(positions, float)
    sites = np.asarray(sites, float)
    cells = np.broadcast_to(np.asarray(cells, float), (len(pos), 3, 3))
    symbols = np.asarray(symbols)
    mob = np.flatnonzero(symbols == mobile) if mobile is not None else np.zeros(0, int)
    frame = np.flatnonzero(symbols != mobile) if mob.size < len(symbols) else np.arange(len(symbols))
    drift = minimum_image(pos[0] - sites, cells[0])[frame].mean(axis=0) + (pos - pos[:1])[:, frame].mean(axis=1)
    u = np.empty_like(pos)
    reanchored = np.zeros(pos.shape[:2], bool)
    for t in range(len(pos)):
        u[t] = drift[t] + minimum_image(pos[t] - sites - drift[t], cells[t])
        if mob.size:
            d = minimum_image(pos[t, mob][:, None, :] - sites[mob][None, :, :] - drift[t], cells[t])
            nearest = np.argmin((d ** 2).sum(axis=2), axis=1)
            u[t, mob] = drift[t] + d[np.arange(mob.size), nearest]
            reanchored[t, mob] = nearest != np.arange(mob.size)
    return u, reanchored


def harmonic_forces(u, masses, frequencies_THz, eigenvectors, block: int = 512) -> np.ndarray:
    """F^harm = −Φ·u = −M^½ E (λ ⊙ Eᵀ M^½ u), shape (F, N, 3), eV/Å.

    ``u`` (F, N, 3) Å; ``masses`` (N,) amu; ``frequencies_THz`` (M,); ``eigenvectors`` (3N, M) or a column source
    ``cols(start, stop)``, used ``block`` columns at a time.
    """
    from phonion.mdma.mdma_core import _columns

    u = np.asarray(u, float)
    n_frames, n_atoms = u.shape[:2]
    sqrt_m = np.repeat(np.sqrt(np.asarray(masses, float)), 3)
    x = u.reshape(n_frames, -1) * sqrt_m                        # M^½ u, (F, 3N)
    lam = eigenvalues_from_frequencies(frequencies_THz)
    acc = np.zeros_like(x)
    for a in range(0, len(lam), block):
        b = min(len(lam), a + block)
        e = _columns(eigenvectors, a, b, 3 * n_atoms)
        acc += ((x @ e) * lam[a:b]) @ e.T
    return -(acc * sqrt_m).reshape(n_frames, n_atoms, 3)


def _masked(forces, harmonic, atoms, exclude):
    f = np.asarray(forces, float)
    df = f - np.asarray(harmonic, float)
    num = (df ** 2).sum(axis=2)                                 # (F, N)
    den = (f ** 2).sum(axis=2)
    keep = np.ones(num.shape, bool)
    if atoms is not None:
        keep[:] = False
        keep[:, np.asarray(atoms, int)] = True
    if exclude is not None:
        keep &= ~np.asarray(exclude, bool)
    return np.where(keep, num, 0.0), np.where(keep, den, 0.0)


def sigma_a(forces, harmonic, atoms=None, exclude=None) -> float:
    """σ_A = sqrt(Σ (F − F^harm)² / Σ F²) over the ``atoms`` (default all) and all frames; ``exclude`` (F, N) bool
    drops atom-frames from both sums. NaN when the sums are empty or Σ F² = 0. ``forces``, ``harmonic``
    (F, N, 3) eV/Å."""
    num, den = _masked(forces, harmonic, atoms, exclude)
    d = float(den.sum())
    return float(np.sqrt(num.sum() / d)) if d > 0 else float("nan")


def sigma_a_series(forces, harmonic, atoms=None, exclude=None) -> np.ndarray:
    """σ_A(t) of each frame (the same sums over atoms only), shape (F,); NaN where Σ F² = 0."""
    num, den = _masked(forces, harmonic, atoms, exclude)
    d = den.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, np.sqrt(num.sum(axis=1) / np.where(d > 0, d, 1.0)), np.nan)


def sigma_a_sums(forces, harmonic, atoms=None, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame sums (Σ_i |F − F^harm|², Σ_i |F|²), each shape (F,), over the same atom-frames as :func:`sigma_a`."""
    num, den = _masked(forces, harmonic, atoms, exclude)
    return num.sum(axis=1), den.sum(axis=1)


def sigma_a_error(num_t, den_t, min_blocks: int = MIN_BLOCKS) -> dict:
    """Block-averaging standard error of σ_A = sqrt(Σ num_t / Σ den_t) from the per-frame sums of
    :func:`sigma_a_sums` (module docstring). Returns ``{error, block_frames, n_blocks, plateau, levels}``
    (``levels``: [(b, n_b, SE_b)]); error None when there are fewer than ``min_blocks`` frames."""
    num, den = np.asarray(num_t, float), np.asarray(den_t, float)
    levels = []
    b = 1
    while len(num) // b >= min_blocks:
        nb = len(num) // b
        bn, bd = num[: nb * b].reshape(nb, b).sum(axis=1), den[: nb * b].reshape(nb, b).sum(axis=1)
        ok = bd > 0
        if ok.sum() < 2:
            break
        vals = np.sqrt(bn[ok] / bd[ok])
        levels.append((b, int(ok.sum()), float(vals.std(ddof=1) / np.sqrt(ok.sum()))))
        b *= 2
    if not levels:
        return {"error": None, "block_frames": None, "n_blocks": None, "plateau": False, "levels": []}
    se = np.array([lv[2] for lv in levels])
    scatter = se / np.sqrt(2.0 * (np.array([lv[1] for lv in levels]) - 1))
    pick = next(k for k in range(len(levels)) if np.all(se[k + 1:] <= se[k] + 2 * scatter[k + 1:]))
    return {"error": float(se[pick]), "block_frames": levels[pick][0], "n_blocks": levels[pick][1],
            "plateau": pick < len(levels) - 1, "levels": levels}
