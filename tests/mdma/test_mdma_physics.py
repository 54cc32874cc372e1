"""MDMA on real molecular dynamics, through the ``phonion mdma`` command path (issue 4, "Must show").

Systems (tests/mdma/mdma_systems.py): a 32-atom LiO3 spring network (L1_2, rattled, 8 Li), its force constants
from phonopy by finite displacements, and ASE Langevin MD (1 fs steps, 20,000 steps, every step saved as H5MD):

(a) harmonic crystal: MD driven by the force constants themselves (phonion.mdma.harmonic.ForceConstantCalculator):
    modal equipartition ≈ 1 and equal-time cross terms ≈ 0 with the Gordiz projection, while the published
    notebook's projection gives a large spurious share (a geometric constant of the structure, ≈ 1/3 here);
(b) Li as free Langevin particles in a harmonic framework: Green–Kubo D_σ = k_B T/(m_Li γ), sum rule;
(c) the same network with anharmonic (FPU-α-β) springs, same force constants, same temperature: the
    off-diagonal share of Σ D_{n,n'} is clearly non-zero, while the harmonic control's is zero within noise.
    In a solid without diffusion D_σ(τ → ∞) = 0 and D_σ(τ) oscillates through zero, so a share exists only
    for a finite window; 0.05 ps here (the EMT test, marked slow, uses 0.1 ps);
(d) the sum rule against a straightforward lag-sum Green–Kubo of the same file velocities, ≤ 1e-8;
plus the per-pair FFT reference against the cross-spectral matrix (≤ 1e-10) and, marked slow, EMT Cu3Au.

Note: at equal time ⟨v_i v_j⟩ = k_B T/m_i δ_ij in *any* classical equilibrium (the momentum distribution is
Maxwellian whatever the potential), so the Gordiz equal-time anharmonic share vanishes for anharmonic systems
too: it checks the projection, not harmonicity. Anharmonicity shows in the time-lagged cross-correlations.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from ase import units

from phonion.md.io import read_trajectory
from phonion.mdma.harmonic import ForceConstantCalculator, langevin_to_h5md
from phonion.cli.mdma import add_mdma_parsers
from phonion.mdma.mdma_core import (A2_PER_FS_TO_CM2_PER_S, AMU_A2_PER_FS2_TO_EV, all_pairs_integral, lag_weights,
                            padded_length)
from phonion.mdma.modes import modes_for_supercell
from phonion.mdma.phonon_io import save_phonons
from phonion.mdma.phonons import to_ase_atoms
from mdma_systems import PairSpringCalculator, l12_phonons

STEPS = 20000
T_HOT = 900.0
GAMMA_HOT = 0.005     # 1/fs: weak, so anharmonic mode coupling, not the bath, dominates
TAU_SHORT_PS = 0.05   # short window: a non-diffusive solid has D_σ(τ → ∞) = 0, so shares need finite τ
ALPHA, BETA = -12.0, 25.0  # FPU springs, eV/Å³ and eV/Å⁴
T_FREE, GAMMA_FREE, TAU_FREE_PS = 300.0, 0.05, 0.2


def mdma_cli(*argv) -> dict:
    parser = argparse.ArgumentParser(prog="phonion")
    add_mdma_parsers(parser.add_subparsers(dest="command"), argparse.HelpFormatter)
    args = parser.parse_args(["mdma", *map(str, argv)])
    assert args.func(args) == 0
    return json.loads((Path(args.output) / "result.json").read_text())


def report(capsys, title, values: dict):
    with capsys.disabled():
        print(f"\n[{title}] " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                         for k, v in values.items()))


def direct_green_kubo(path, species="Li", tau_ps=None, n_lags=None) -> float:
    """D_σ = (1/(3 N_c)) ∫₀^τ ⟨V(t+s)·V(t)⟩ ds with V = Σ_Li v_i, unbiased lag sums, trapezoid (plain loop)."""
    traj = read_trajectory(path)
    li = traj.indices_of(species)
    V = traj.velocities[:, li].sum(axis=1)
    dt = traj.frame_interval_fs
    k = n_lags if n_lags is not None else int(round(tau_ps * 1000 / dt))
    F = len(V)
    C = np.array([np.sum(V[lag:] * V[:F - lag]) / (F - lag) for lag in range(k + 1)])
    integral = dt * (C.sum() - 0.5 * (C[0] + C[-1]))
    return A2_PER_FS_TO_CM2_PER_S * integral / (3 * len(li))


@pytest.fixture(scope="module")
def lattice(tmp_path_factory):
    phonon = l12_phonons()
    d = tmp_path_factory.mktemp("phonons")
    save_phonons(phonon, d)
    return phonon, d


def _md(tmp_path_factory, name, atoms, calc, temperature, gamma, fixcm, seed=11):
    path = tmp_path_factory.mktemp(name) / f"{name}.h5"
    langevin_to_h5md(atoms, calc, path, temperature, 1.0, STEPS, friction_per_fs=gamma, seed=seed, fixcm=fixcm)
    return path


@pytest.fixture(scope="module")
def harmonic_md(lattice, tmp_path_factory):
    phonon, _ = lattice
    return _md(tmp_path_factory, "harmonic", to_ase_atoms(phonon.supercell),
               ForceConstantCalculator.from_phonopy(phonon), T_HOT, GAMMA_HOT, True)


@pytest.fixture(scope="module")
def harmonic_gordiz(lattice, harmonic_md, tmp_path_factory):
    out = tmp_path_factory.mktemp("harmonic_gordiz")
    return mdma_cli(harmonic_md, "--phonons", lattice[1], "--tau-max-ps", TAU_SHORT_PS, "-o", out), out


# ---- (a) harmonic crystal ---------------------------------------------------------------------------------
def test_harmonic_crystal_equipartition_and_no_cross_terms(harmonic_gordiz, capsys):
    r, out = harmonic_gordiz
    eq = r["modal_equipartition"]
    report(capsys, "harmonic crystal, gordiz", {
        "T_K": r["temperature_K"], "modal_equipartition_mean": eq["mean"], "equipartition_std": eq["std"],
        "equipartition_min": eq["min"],
        "equipartition_max": eq["max"], "equal_time_anharmonic_fraction": r["equal_time_anharmonic_fraction"],
        "equal_time_err": r["errors"]["equal_time_anharmonic_fraction"],
        "anharmonic_fraction(0.05 ps)": r["anharmonic_fraction"], "anharmonic_err": r["errors"]["anharmonic_fraction"],
        "sum_rule_relative_error": r["sum_rule_relative_error"]})
    assert r["temperature_source"].startswith("file")
    assert r["temperature_K"] == pytest.approx(T_HOT, rel=0.03)
    assert eq["n_modes"] == 93                                  # 3 acoustic modes excluded
    assert eq["mean"] == pytest.approx(1.0, abs=0.03)           # σ(mean) ≈ 0.01
    assert 0.6 < eq["min"] and eq["max"] < 1.4                  # per mode, σ ≈ 0.1
    # the mean is T_kinetic/T (≈ 1 by construction with T from the same run): the per-mode check is that
    # low- and high-frequency modes share the energy equally
    with np.load(out / "mdma.npz") as z:
        f, ratio = z["frequencies_THz"], z["modal_equipartition"]
    finite = np.flatnonzero(f > 0.1)
    low, high = ratio[finite[: len(finite) // 2]], ratio[finite[len(finite) // 2:]]
    report(capsys, "harmonic crystal, equipartition by frequency half", {
        "lower_half_mean": float(low.mean()), "upper_half_mean": float(high.mean())})
    assert low.mean() == pytest.approx(1.0, abs=0.04) and high.mean() == pytest.approx(1.0, abs=0.04)
    g, g_err = r["equal_time_anharmonic_fraction"], r["errors"]["equal_time_anharmonic_fraction"]
    assert abs(g) < 4 * g_err + 0.01
    assert abs(r["anharmonic_fraction"]) < 4 * r["errors"]["anharmonic_fraction"] + 0.02
    assert r["sum_rule_relative_error"] < 1e-8
    for name in ("result.json", "mdma.npz", "mdma.json", "modes.csv", "running_integral.png",
                 "cumulative.png", "per_mode.png", "heatmap.png"):
        assert (out / name).is_file(), name


def test_notebook_convention_gives_a_large_spurious_share_on_the_same_data(lattice, harmonic_md, harmonic_gordiz,
                                                                          tmp_path, capsys):
    phonon, ph_dir = lattice
    nb = mdma_cli(harmonic_md, "--phonons", ph_dir, "--convention", "notebook", "--no-plots", "-o", tmp_path)
    # in equilibrium ⟨v_i·v_j⟩ = 3k_BT/m δ_ij, so the notebook's equal-time share is a constant of the structure:
    # Σ_{n≠n'} P_nn' ē_n·ē_n' / Σ_{nn'} P_nn' ē_n·ē_n', P = Li block of EᵀE, ē_n the Li-mean eigenvector
    m = modes_for_supercell(phonon, to_ase_atoms(phonon.supercell))
    li = np.array(m.symbols) == "Li"
    keep = m.frequencies_THz > 0.1
    e = m.eigenvectors.reshape(len(li), 3, -1)[li][:, :, keep]
    G = np.einsum("iam,ian->mn", e, e) * (e.mean(0).T @ e.mean(0))
    expected = 1 - np.trace(G) / G.sum()
    gordiz = harmonic_gordiz[0]
    report(capsys, "harmonic crystal, notebook vs gordiz", {
        "notebook_equal_time_anharmonic_fraction": nb["equal_time_anharmonic_fraction"],
        "notebook_expected_from_geometry": float(expected),
        "notebook_anharmonic_fraction": nb["anharmonic_fraction"],
        "gordiz_equal_time_anharmonic_fraction": gordiz["equal_time_anharmonic_fraction"]})
    assert nb["convention"] == "notebook"
    assert nb["equal_time_anharmonic_fraction"] > 0.25              # about a third, spurious
    assert nb["equal_time_anharmonic_fraction"] == pytest.approx(expected, abs=0.01)
    assert nb["equal_time_anharmonic_fraction"] - gordiz["equal_time_anharmonic_fraction"] > \
        20 * gordiz["errors"]["equal_time_anharmonic_fraction"]


# ---- (d) sum rule on a real run ------------------------------------------------------------------------------
def test_sum_rule_against_a_direct_green_kubo_of_the_file_velocities(harmonic_md, harmonic_gordiz, capsys):
    r = harmonic_gordiz[0]
    direct = direct_green_kubo(harmonic_md, tau_ps=TAU_SHORT_PS)
    rel = abs(r["mdma_total_cm2_s"] - direct) / abs(direct)
    report(capsys, "sum rule, harmonic run", {"direct_GK_cm2_s": direct, "mdma_total_cm2_s": r["mdma_total_cm2_s"],
                                             "relative_difference": rel})
    assert r["collective_diffusivity_cm2_s"] == pytest.approx(direct, rel=1e-10)
    assert rel < 1e-8


# ---- (b) free Li in a harmonic framework ---------------------------------------------------------------------
def test_free_li_green_kubo_equals_langevin_diffusivity(tmp_path_factory, capsys):
    phonon = l12_phonons(free_li=True)
    fc = phonon.force_constants
    li = [i for i, s in enumerate(phonon.supercell.symbols) if s == "Li"]
    assert np.abs(fc[li]).max() < 1e-10 and np.abs(fc[:, li]).max() < 1e-10  # zero rows: zero modes
    ph_dir = tmp_path_factory.mktemp("free_phonons")
    save_phonons(phonon, ph_dir)
    path = _md(tmp_path_factory, "free", to_ase_atoms(phonon.supercell), ForceConstantCalculator.from_phonopy(phonon),
               T_FREE, GAMMA_FREE, False)
    r = mdma_cli(path, "--phonons", ph_dir, "--tau-max-ps", TAU_FREE_PS, "--no-plots", "--n-blocks", 5,
                 "-o", tmp_path_factory.mktemp("free_out"))
    m_li = 6.94
    exact = units.kB * T_FREE / (m_li * AMU_A2_PER_FS2_TO_EV) / GAMMA_FREE * A2_PER_FS_TO_CM2_PER_S
    d, err = r["collective_diffusivity_cm2_s"], r["errors"]["collective_diffusivity_cm2_s"]
    z = r["zero_frequency_modes"]
    report(capsys, "free Li in a harmonic framework", {
        "D_sigma_GK_cm2_s": d, "block_err": err, "kT/(m gamma)_cm2_s": exact, "deviation_in_err": (d - exact) / err,
        "sum_rule_relative_error": r["sum_rule_relative_error"], "n_zero_modes": z["n"],
        "zero_mode_share": z["contribution_fraction"],
        "equipartition_mean(non-zero modes)": r["modal_equipartition"]["mean"]})
    assert abs(d - exact) < 3 * err and err < 0.15 * exact
    assert r["sum_rule_relative_error"] < 1e-8
    assert z["n"] == 3 * len(li) + 3       # free Li + the framework's translations
    assert z["contribution_fraction"] == pytest.approx(1.0, abs=0.05)  # the diffusion lives in the zero modes
    assert r["modal_equipartition"]["mean"] == pytest.approx(1.0, abs=0.03)


# ---- (c) anharmonic springs, same force constants ----------------------------------------------------------
def _off_diagonal_ratio(out_dir) -> float:
    with np.load(out_dir / "mdma.npz") as z:
        D = z["matrix_cm2_s"]
    return float(np.abs(D - np.diag(np.diag(D))).sum() / np.abs(np.diag(D)).sum())


def test_anharmonic_springs_give_a_clearly_nonzero_off_diagonal_share(lattice, harmonic_md, harmonic_gordiz,
                                                                     tmp_path_factory, capsys):
    phonon, ph_dir = lattice
    sc = to_ase_atoms(phonon.supercell)
    path = _md(tmp_path_factory, "anharmonic", sc, PairSpringCalculator(sc, alpha=ALPHA, beta=BETA), T_HOT,
               GAMMA_HOT, True)
    out = tmp_path_factory.mktemp("anharmonic_out")
    r = mdma_cli(path, "--phonons", ph_dir, "--tau-max-ps", TAU_SHORT_PS, "--no-plots", "-o", out)
    h, h_out = harmonic_gordiz
    a, a_err = r["anharmonic_fraction"], r["errors"]["anharmonic_fraction"]
    h_a, h_err = h["anharmonic_fraction"], h["errors"]["anharmonic_fraction"]
    ratio_a, ratio_h = _off_diagonal_ratio(out), _off_diagonal_ratio(h_out)
    direct = direct_green_kubo(path, tau_ps=TAU_SHORT_PS)
    report(capsys, f"anharmonic vs harmonic, {T_HOT:.0f} K, tau_max {TAU_SHORT_PS} ps", {
        "anharmonic_fraction": a, "err": a_err, "harmonic_control": h_a, "control_err": h_err,
        "sum|offdiag|/sum|diag| anharmonic": ratio_a, "harmonic_control_ratio": ratio_h,
        "equal_time_anharmonic_fraction (anharmonic run)": r["equal_time_anharmonic_fraction"],
        "sum_rule_relative_error": r["sum_rule_relative_error"],
        "vs_direct_GK": abs(r["mdma_total_cm2_s"] - direct) / abs(direct)})
    assert abs(a) > 3 * a_err and abs(a) > 0.05
    assert abs(h_a) < 4 * h_err + 0.02
    assert ratio_a > 3 * ratio_h  # the off-diagonal weight of D_{n,n'} itself, far above the control's noise
    # equal time: Maxwellian velocities whatever the potential -> ≈ 0 here too (see module docstring)
    assert abs(r["equal_time_anharmonic_fraction"]) < 4 * r["errors"]["equal_time_anharmonic_fraction"] + 0.01
    assert r["sum_rule_relative_error"] < 1e-8                                     # (d) on an anharmonic run
    assert abs(r["mdma_total_cm2_s"] - direct) < 1e-8 * abs(direct)


# ---- reference implementation: one FFT per pair ----------------------------------------------------------------
def per_pair_fft_reference(q, n_lags, dt):
    """I_nm = Σ_k a_k Σ_t q_n(t+k) q_m(t): for every pair its own zero-padded FFTs, product, inverse FFT."""
    F, M = q.shape
    L = padded_length(F)
    a = lag_weights(F, n_lags, dt)
    out = np.empty((M, M))
    for n in range(M):
        for m in range(M):
            corr = np.fft.irfft(np.fft.rfft(q[:, n], L) * np.conj(np.fft.rfft(q[:, m], L)), L)[: n_lags + 1]
            out[n, m] = a @ corr
    return out


def test_per_pair_fft_reference_agrees_with_the_cross_spectral_matrix():
    rng = np.random.default_rng(5)
    q = rng.normal(size=(700, 24)) @ rng.normal(size=(24, 24))  # correlated modes
    for k in (1, 37, 350):
        ref = per_pair_fft_reference(q, k, 0.5)
        fast = all_pairs_integral(q, k, 0.5)
        assert np.abs(fast - ref).max() <= 1e-10 * np.abs(ref).max()
        assert not np.allclose(ref, ref.T)  # the antisymmetric part is reproduced too


# ---- EMT metal at high temperature (slow) ------------------------------------------------------------------------
@pytest.mark.slow
def test_emt_cu3au_at_high_temperature_has_off_diagonal_terms(tmp_path, capsys):
    """Cu3Au (L1_2) with EMT, its own phonopy force constants (2×2×2, 32 atoms), 1100 K, Au as the 'mobile'
    species; against MD driven by those force constants at the same temperature (~3 min)."""
    from ase import Atoms
    from ase.calculators.emt import EMT
    from ase.filters import StrainFilter
    from ase.optimize import BFGS

    from phonion.mdma.phonons import compute_force_constants

    unit = Atoms("AuCu3", scaled_positions=[[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]], cell=[3.75] * 3,
                 pbc=True)
    unit.calc = EMT()
    BFGS(StrainFilter(unit), logfile=None).run(fmax=1e-4)
    phonon = compute_force_constants(unit, EMT(), (2, 2, 2), progress=False)
    save_phonons(phonon, tmp_path / "ph")
    sc = to_ase_atoms(phonon.supercell)
    res = {}
    for name, calc in (("emt", EMT()), ("harmonic", ForceConstantCalculator.from_phonopy(phonon))):
        path = tmp_path / f"{name}.h5"
        langevin_to_h5md(sc, calc, path, 1100.0, 2.0, 8000, friction_per_fs=0.002, seed=3, fixcm=True)
        res[name] = mdma_cli(path, "--phonons", tmp_path / "ph", "--species", "Au", "--tau-max-ps", 0.1,
                             "--no-plots", "-o", tmp_path / f"out_{name}")
    report(capsys, "EMT Cu3Au 1100 K, tau_max 0.1 ps", {
        "anharmonic_fraction_emt": res["emt"]["anharmonic_fraction"],
        "err": res["emt"]["errors"]["anharmonic_fraction"],
        "anharmonic_fraction_harmonic_control": res["harmonic"]["anharmonic_fraction"],
        "control_err": res["harmonic"]["errors"]["anharmonic_fraction"],
        "sum_rule_relative_error_emt": res["emt"]["sum_rule_relative_error"]})
    e, h = res["emt"], res["harmonic"]
    assert abs(e["anharmonic_fraction"]) > 3 * e["errors"]["anharmonic_fraction"]
    assert abs(h["anharmonic_fraction"]) < 4 * h["errors"]["anharmonic_fraction"] + 0.02
    assert e["sum_rule_relative_error"] < 1e-8
