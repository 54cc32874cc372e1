"""Exact MDMA on a harmonic crystal integrated exactly in normal coordinates (DESIGN.md "MDMA").

The crystal: random masses (3 Li), translation-invariant random positive semi-definite force constants
(3 zero modes), each normal mode an exactly integrated Langevin oscillator at T (seeded rng), so
equipartition and vanishing modal cross-correlations hold by construction within sampling error.
"""

import numpy as np
import pytest
from ase import units
from scipy.linalg import eigh, expm

from phonion.md.trajectory import TrajectoryError
from phonion.mdma.mdma import MDMAError, cumulative_contributions, mdma_binned, run_mdma
from phonion.mdma.mdma_core import (A2_PER_FS_TO_CM2_PER_S, AMU_A2_PER_FS2_TO_EV, cross_spectral_integral, green_kubo,
                            lag_domain_integral, lag_weights, spectra, spectral_kernel)
from phonion.mdma.mdma_report import load_mdma, mdma_tables, save_mdma

T_K = 300.0


def harmonic_modes(rng, n_atoms=10, n_li=3, f_max_THz=15.0):
    """Symbols, masses (amu), frequencies (THz, 3 exact zeros) and orthonormal eigenvectors (3N, 3N)."""
    masses = np.concatenate([np.full(n_li, 6.94), rng.uniform(12.0, 80.0, n_atoms - n_li)])
    phi = np.zeros((3 * n_atoms, 3 * n_atoms))
    for a in range(n_atoms):
        for b in range(a + 1, n_atoms):
            A = rng.normal(size=(3, 3))
            S = A @ A.T  # a random PSD pair block; Φ_aa = Σ_b S_ab keeps translation invariance
            for i, j, sign in ((a, b, -1), (b, a, -1), (a, a, 1), (b, b, 1)):
                phi[3 * i:3 * i + 3, 3 * j:3 * j + 3] += sign * S
    mw = np.repeat(masses, 3)
    w2, E = eigh(phi / np.sqrt(np.outer(mw, mw)))
    w2 = w2 * (2 * np.pi * f_max_THz * 1e-3) ** 2 / w2.max()
    w2[:3] = 0.0
    return ["Li"] * n_li + ["O"] * (n_atoms - n_li), masses, np.sqrt(w2) / (2 * np.pi) * 1e3, E


def langevin_velocities(rng, masses, freq_THz, E, n_frames, dt_fs=1.0, gamma_per_fs=0.02):
    """Velocities (F, N, 3) Å/fs: every mode an exactly discretised Langevin oscillator at T_K."""
    kt = units.kB * T_K / AMU_A2_PER_FS2_TO_EV  # amu Å²/fs²
    omega = 2 * np.pi * np.asarray(freq_THz) * 1e-3
    M = len(omega)
    prop, chol = np.zeros((M, 2, 2)), np.zeros((M, 2, 2))
    for n, w in enumerate(omega):
        prop[n] = expm(np.array([[0.0, 1.0], [-w * w, -gamma_per_fs]]) * dt_fs)
        if w > 0:
            s = np.diag([kt / w ** 2, kt])
            chol[n] = np.linalg.cholesky(s - prop[n] @ s @ prop[n].T)
        else:  # free particle: the velocity is an Ornstein–Uhlenbeck process
            chol[n, 1, 1] = np.sqrt(kt * (1 - np.exp(-2 * gamma_per_fs * dt_fs)))
    x = np.zeros((M, 2))
    x[:, 1] = rng.normal(size=M) * np.sqrt(kt)
    x[omega > 0, 0] = rng.normal(size=(omega > 0).sum()) * np.sqrt(kt) / omega[omega > 0]
    qdot = np.empty((n_frames, M))
    xi = rng.normal(size=(n_frames, M, 2))
    for t in range(n_frames):
        x = np.einsum("nab,nb->na", prop, x) + np.einsum("nab,nb->na", chol, xi[t])
        qdot[t] = x[:, 1]
    return ((qdot @ E.T) / np.sqrt(np.repeat(masses, 3))).reshape(n_frames, len(masses), 3)


@pytest.fixture(scope="module")
def crystal():
    """Read-only: (symbols, masses, freq, E, velocities 20,000 × 1 fs, labels)."""
    rng = np.random.default_rng(20240611)
    symbols, masses, freq, E = harmonic_modes(rng)
    v = langevin_velocities(rng, masses, freq, E, 20000)
    labels = np.array(["O_e", "O_c", "O_n"] * 10)
    return symbols, masses, freq, E, v, labels


@pytest.fixture(scope="module")
def gordiz(crystal):
    symbols, masses, freq, E, v, labels = crystal
    return run_mdma(v, masses, symbols, freq, E, 1.0, T_K, tau_max_ps=0.5, n_blocks=4,
                    mode_class_labels=labels, bin_edges_THz=[-0.01, 5.0, 10.0, 15.01])


# ---- (a) the harmonic crystal -----------------------------------------------------------------------
def test_sum_rule_and_completeness_to_round_off(gordiz):
    assert gordiz.sum_rule_relative_error < 1e-10
    assert gordiz.completeness_relative_error < 1e-10
    assert gordiz.mdma_total_cm2_s == pytest.approx(gordiz.collective_diffusivity_cm2_s, rel=1e-10)
    assert gordiz.contributions_cm2_s.sum() == pytest.approx(gordiz.collective_diffusivity_cm2_s, rel=1e-10)
    # the running integrals end on the matrix sums
    D = gordiz.matrix_cm2_s
    assert gordiz.running_total_cm2_s[-1] == pytest.approx(D.sum(), rel=1e-10)
    assert gordiz.running_harmonic_cm2_s[-1] == pytest.approx(np.trace(D), rel=1e-10)
    np.testing.assert_allclose(gordiz.diagonal_cm2_s, np.diag(D), rtol=1e-9, atol=1e-12 * np.abs(D).max())
    np.testing.assert_allclose(gordiz.contributions_cm2_s, 0.5 * (D.sum(0) + D.sum(1)),
                               atol=1e-10 * np.abs(D).max())


def test_modal_equipartition(gordiz):
    ratio = gordiz.modal_equipartition
    # per mode: time average over ~400 relaxation times, σ ≈ 0.07
    assert np.all(np.abs(ratio - 1) < 0.3), ratio
    assert gordiz.to_dict()["modal_equipartition"]["mean"] == pytest.approx(1.0, abs=0.05)
    assert gordiz.to_dict()["modal_equipartition"]["n_modes"] == 27  # 3 acoustic modes excluded


def test_equal_time_cross_terms_vanish_for_gordiz_not_for_notebook(crystal, gordiz):
    symbols, masses, freq, E, v, labels = crystal
    g, g_err = gordiz.equal_time_anharmonic_fraction, gordiz.equal_time_anharmonic_fraction_err
    assert abs(g) < 4 * g_err + 0.01
    nb = run_mdma(v, masses, symbols, freq, E, 1.0, T_K, n_blocks=4, convention="notebook")
    assert nb.convention == "notebook" and nb.tau_max_ps == pytest.approx(0.001)
    assert nb.equal_time_anharmonic_fraction > 0.1
    assert nb.equal_time_anharmonic_fraction > 5 * nb.equal_time_anharmonic_fraction_err
    diff = nb.equal_time_anharmonic_fraction - g
    assert diff > 3 * np.hypot(g_err, nb.equal_time_anharmonic_fraction_err)
    assert not nb.kept[:3].any() and nb.kept[3:].all()  # acoustic modes dropped


def test_notebook_convention_matches_a_literal_pair_loop(crystal):
    """Per pair: V_n = Q̇ⁿᵇ_n · mean_Li e_{i,n}; unbiased ⟨V_i(t)·V_j(t+k)⟩, k = 0, 1; D_ij = Δt(C0+C1)/2/3."""
    symbols, masses, freq, E, v, labels = crystal
    v = v[:2000]
    li = np.array([0, 1, 2])
    e_li = E.reshape(len(masses), 3, -1)[li]  # (N_Li, 3, M)
    q = np.einsum("tia,iam->tm", v[:, li], e_li)
    V = q[:, :, None] * e_li.mean(axis=0).T[None]  # (F, M, 3)
    keep = np.flatnonzero(freq > 0)
    F = len(V)
    D = np.zeros((len(freq), len(freq)))
    for i in keep:
        for j in keep:
            c0 = np.sum(V[:, i] * V[:, j]) / F
            c1 = np.sum(V[:-1, i] * V[1:, j]) / (F - 1)
            D[i, j] = 1.0 * (c0 + c1) / 2 / 3 * A2_PER_FS_TO_CM2_PER_S
    nb = run_mdma(v, masses, li, freq, E, 1.0, T_K, n_blocks=1, convention="notebook")
    np.testing.assert_allclose(nb.contributions_cm2_s, D.sum(axis=1), atol=1e-12 * np.abs(D).max())
    assert nb.harmonic_fraction == pytest.approx(np.trace(D) / D.sum(), rel=1e-10)
    assert nb.mdma_total_cm2_s == pytest.approx(D.sum(), rel=1e-10)


# ---- (b) cross-spectral form == direct lag sums -----------------------------------------------------------
def test_cross_spectral_matrix_equals_brute_force_pair_loop(crystal):
    symbols, masses, freq, E, v, labels = crystal
    v, k, dt = v[:300], 40, 1.0
    r = run_mdma(v, masses, symbols, freq, E, dt, T_K, tau_max_ps=k * dt / 1000, n_blocks=1)
    q = (v * np.sqrt(masses)[None, :, None]).reshape(len(v), -1) @ E
    s = np.einsum("iam->ma", (E.reshape(len(masses), 3, -1) / np.sqrt(masses)[:, None, None])[:3])
    a = lag_weights(len(v), k, dt)
    D = np.zeros((len(freq), len(freq)))
    for n in range(len(freq)):
        for m in range(len(freq)):
            integral = sum(a[lag] * np.dot(q[lag:, n], q[:len(v) - lag, m]) for lag in range(k + 1))
            D[n, m] = s[n] @ s[m] / (3 * 3) * integral * 0.1
    assert np.abs(r.matrix_cm2_s - D).max() < 1e-10 * np.abs(D).max()
    assert not np.allclose(D, D.T)  # the odd kernel matters: D is not symmetric


def test_kernel_on_vector_series_and_short_windows():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(57, 4, 3))
    for k in (1, 5, 56):
        L, g = spectral_kernel(57, k, 0.7)
        X = spectra(x, L)
        np.testing.assert_allclose(cross_spectral_integral(X, X, g), lag_domain_integral(x, x, k, 0.7),
                                   atol=1e-12 * 57)


# ---- (c) binned == block sums of the full matrix ---------------------------------------------------------
def test_binned_equals_block_sums_and_total(crystal, gordiz):
    symbols, masses, freq, E, v, labels = crystal
    edges = np.array([-0.01, 5.0, 10.0, 15.01])
    D = gordiz.matrix_cm2_s
    b = np.searchsorted(edges, freq, side="right") - 1
    blocks = np.array([[D[np.ix_(b == i, b == j)].sum() for j in range(3)] for i in range(3)])
    scale = np.abs(D).sum()
    np.testing.assert_allclose(gordiz.binned_matrix_cm2_s, blocks, atol=1e-12 * scale)
    # streamed: eigenvector columns come from a callable, 7 at a time, never the whole matrix
    streamed = mdma_binned(v, masses, symbols, freq, lambda a, c: E[:, a:c], edges, 1.0, tau_max_ps=0.5,
                           column_block=7)
    np.testing.assert_allclose(streamed.matrix_cm2_s, blocks, atol=1e-12 * scale)
    assert streamed.total_cm2_s == pytest.approx(D.sum(), rel=1e-10)
    assert streamed.sum_rule_relative_error < 1e-10
    np.testing.assert_allclose(streamed.contributions_cm2_s, gordiz.contributions_cm2_s, atol=1e-12 * scale)


# ---- (d) units -----------------------------------------------------------------------------------------
def test_units():
    assert A2_PER_FS_TO_CM2_PER_S == pytest.approx(1e-16 / 1e-15)  # Å² = 1e-16 cm², fs = 1e-15 s
    assert AMU_A2_PER_FS2_TO_EV == pytest.approx(1.66053906660e-27 * 1e-20 / 1e-30 / 1.602176634e-19, rel=1e-6)
    # one ion at constant velocity: ∫₀^τ ⟨V·V⟩ = |v|² τ, D_σ = |v|² τ / 3
    v = np.full((100, 3), 0.01)  # Å/fs
    assert green_kubo(v, 1, 10, 1.0) == pytest.approx(3e-4 * 10 / 3 * 0.1)


# ---- (e) block errors ----------------------------------------------------------------------------------
def test_block_error_positive_and_shrinks_with_more_data(crystal):
    symbols, masses, freq, E, v, labels = crystal
    # blocks of the same length (500 frames) in both, so that five times the data is five times
    # the blocks: with 8 blocks of 2500 frames the slow modes' equal-time fluctuations make the
    # 8-sample spread itself too noisy to order the two estimates (seen: 0.042 vs 0.033)
    short = run_mdma(v[:4000], masses, symbols, freq, E, 1.0, T_K, tau_max_ps=0.2, n_blocks=8)
    long = run_mdma(v, masses, symbols, freq, E, 1.0, T_K, tau_max_ps=0.2, n_blocks=40)
    for r in (short, long):
        assert r.mdma_total_err > 0 and r.collective_diffusivity_err > 0 and r.harmonic_fraction_err > 0
    assert long.mdma_total_err < short.mdma_total_err
    assert long.equal_time_anharmonic_fraction_err < short.equal_time_anharmonic_fraction_err


# ---- outputs and round trip -----------------------------------------------------------------------------
def test_outputs_and_save_load_round_trip(gordiz, tmp_path):
    d = gordiz.to_dict()
    for key in ("collective_diffusivity_cm2_s", "mdma_total_cm2_s", "sum_rule_relative_error",
                "harmonic_fraction", "anharmonic_fraction", "class_fractions", "oe_mean_frequency_THz",
                "equal_time_anharmonic_fraction", "modal_equipartition", "top_modes", "tau_max_ps",
                "convention", "mdma_total_cm2_s_err", "harmonic_fraction_err"):
        assert key in d
    assert sum(d["class_fractions"].values()) == pytest.approx(1.0)
    assert d["harmonic_fraction"] + d["anharmonic_fraction"] == pytest.approx(1.0)
    top = d["top_modes"]
    assert [t["contribution_cm2_s"] for t in top] == sorted((t["contribution_cm2_s"] for t in top), reverse=True)
    cum = cumulative_contributions(gordiz.frequencies_THz, gordiz.contributions_cm2_s, gordiz.diagonal_cm2_s,
                                   gordiz.mode_class_labels)
    assert cum["total"][-1] == pytest.approx(1.0)
    assert cum["O_e"][-1] + cum["O_c"][-1] + cum["O_n"][-1] == pytest.approx(1.0)
    assert cum["harmonic"][-1] == pytest.approx(gordiz.harmonic_fraction)
    save_mdma(gordiz, tmp_path / "res")
    back = load_mdma(tmp_path / "res.json")
    assert back.to_dict() == d
    np.testing.assert_array_equal(back.matrix_cm2_s, gordiz.matrix_cm2_s)
    np.testing.assert_array_equal(back.mode_class_labels, gordiz.mode_class_labels)
    assert mdma_tables(back)["running"]["tau_ps"][-1] == pytest.approx(0.5)


# ---- (g) errors -----------------------------------------------------------------------------------------
def test_errors(crystal):
    symbols, masses, freq, E, v, labels = crystal
    v = v[:500]
    with pytest.raises(MDMAError, match="no mobile atoms"):
        run_mdma(v, masses, ["O"] * len(masses), freq, E, 1.0, T_K)
    with pytest.raises(MDMAError, match="masses"):
        run_mdma(v[:, :-1], masses, symbols[:-1], freq, E, 1.0, T_K)
    with pytest.raises(MDMAError, match="eigenvectors must have shape"):
        run_mdma(v, masses, symbols, freq, E[:, :-3], 1.0, T_K)
    with pytest.raises(MDMAError, match="longer than the run"):
        run_mdma(v, masses, symbols, freq, E, 1.0, T_K, tau_max_ps=0.6, n_blocks=1)
    with pytest.raises(MDMAError, match="longer than one of the blocks"):
        run_mdma(v, masses, symbols, freq, E, 1.0, T_K, tau_max_ps=0.2, n_blocks=4)
    with pytest.raises(TrajectoryError, match="resolves only up to"):
        run_mdma(v, masses, symbols, freq, E, 40.0, T_K)  # 12.5 THz Nyquist < 15 THz
    with pytest.raises(MDMAError, match="unknown MDMA convention"):
        run_mdma(v, masses, symbols, freq, E, 1.0, T_K, convention="paper")
    with pytest.raises(MDMAError, match="not orthonormal"):
        run_mdma(v, masses, symbols, freq, 2 * E, 1.0, T_K)


def test_an_o_e_mode_mean_frequency_outside_the_o_e_modes_is_not_converged():
    """Contributions of both signs cancel: Σ f c / Σ c can land far outside the modes (62 THz from modes
    of 2–25 THz in the quick demo); such a "mean" is marked, a mean inside the modes is not."""
    import numpy as np

    from phonion.compare.modal import _outside_modes

    rec = [{"s": {"oe_frequency_range_THz": [2.0, 25.0]}}]
    f, c = np.array([5.0, 20.0]), np.array([-0.95, 1.0])  # nearly cancelling contributions
    mean = float(f @ c / c.sum())
    assert mean > 25.0 and "outside the O_e modes' own frequencies (2–25 THz)" in _outside_modes(mean, rec)
    assert _outside_modes(float(f @ np.abs(c) / np.abs(c).sum()), rec) == ""
    assert _outside_modes(mean, [{"s": {}}]) == ""  # an older cached result without the range: no claim
