"""VDOS against harmonic oscillators (known frequencies), sum rules and equipartition."""

import argparse
import json

import numpy as np
import pytest

from phonion.md.trajectory import Trajectory
from phonion.md.vdos import compare_spectra, harmonic_vdos, spectral_summary, vdos

AMU_A2_FS2_EV = 103.642696  # 1 amu Å²/fs² in eV
K_B = 8.617333262e-5


def _oscillators(rng, freqs_THz, n_frames, dt_fs, amp=0.05):
    """Positions and exact velocities of independent 3D harmonic oscillators, one frequency per atom."""
    t = np.arange(n_frames)[:, None, None] * dt_fs
    w = 2 * np.pi * np.asarray(freqs_THz)[None, :, None] * 1e-3  # rad/fs
    phase = rng.uniform(0, 2 * np.pi, size=(1, len(freqs_THz), 3))
    return amp * np.sin(w * t + phase), amp * w * np.cos(w * t + phase)


def test_harmonic_oscillator_peaks_and_sum_rules():
    rng = np.random.default_rng(0)
    freqs = np.array([4.0, 9.37, 15.25])
    dt = 1.0
    _, v = _oscillators(rng, freqs, 4000, dt)
    masses = np.array([6.94, 16.0, 69.7])
    groups = {"Li": [0], "O": [1], "Ga": [2]}
    res = vdos(v, masses, dt, groups, total_of=list(groups))
    df = res.frequencies_THz[1] - res.frequencies_THz[0]
    assert df == pytest.approx(1e3 / (2 * 2000 * dt))  # bin 1/(2 M Δ), M = half the run
    for name, f0 in zip(groups, freqs):
        g = res.spectra[name]
        assert abs(res.frequencies_THz[np.argmax(g)] - f0) <= df  # within one bin
        assert np.trapezoid(g, res.frequencies_THz) == pytest.approx(3.0, rel=1e-12)
    assert np.trapezoid(res.spectra["total"], res.frequencies_THz) == pytest.approx(9.0, rel=1e-12)  # 3N
    # equipartition check: C(0) = Σ m ⟨v²⟩ = m (A ω)² · 3/2 per atom → the reported kinetic temperature
    w = 2 * np.pi * freqs * 1e-3
    expect = masses * (0.05 * w) ** 2 * 1.5 * AMU_A2_FS2_EV / (3 * K_B)
    for name, t in zip(groups, expect):
        assert res.kinetic_temperature_K[name] == pytest.approx(t, rel=0.02)


def test_white_noise_is_flat_and_gives_the_temperature():
    rng = np.random.default_rng(1)
    masses = np.array([6.94] * 10 + [16.0] * 10)
    t_K = 600.0
    sigma = np.sqrt(K_B * t_K / (masses * AMU_A2_FS2_EV))  # Å/fs: m⟨v_x²⟩ = k_B T
    v = rng.normal(size=(2000, 20, 3)) * sigma[None, :, None]
    res = vdos(v, masses, 2.0, {"Li": np.arange(10), "O": np.arange(10, 20)}, total_of=["Li", "O"])
    assert res.kinetic_temperature_K["Li"] == pytest.approx(t_K, rel=0.03)
    assert res.kinetic_temperature_K["O"] == pytest.approx(t_K, rel=0.03)
    g = res.spectra["total"]
    assert np.trapezoid(g, res.frequencies_THz) == pytest.approx(60.0, rel=1e-12)
    plateau = 60.0 / res.frequencies_THz[-1]
    assert np.median(g) == pytest.approx(plateau, rel=0.05)


def test_overlapping_groups_each_integrate_to_three_per_atom():
    rng = np.random.default_rng(2)
    _, v = _oscillators(rng, [3.0, 5.0, 7.0, 11.0], 1200, 2.0)
    res = vdos(v, np.full(4, 16.0), 2.0, {"O": [0, 1, 2, 3], "O_e": [0, 1], "O_c": [2], "none": []},
               window_fs=800.0, taper="none")
    assert res.window_fs == 800.0 and "none" not in res.spectra
    for name, n in (("O", 4), ("O_e", 2), ("O_c", 1)):
        assert np.trapezoid(res.spectra[name], res.frequencies_THz) == pytest.approx(3.0 * n, rel=1e-12)


def test_spectral_summary_and_coupled_vs_decoupled_shift():
    f = np.linspace(0, 20, 2001)
    g = np.exp(-0.5 * ((f - 8.0) / 1.0) ** 2)
    s = spectral_summary(f, g, cutoff_THz=8.0)
    assert s["centroid_THz"] == pytest.approx(8.0, abs=1e-6)
    assert s["low_frequency_fraction"] == pytest.approx(0.5, abs=1e-4)
    assert s["peak_THz"] == pytest.approx(8.0)
    soft = np.exp(-0.5 * ((f - 5.0) / 1.0) ** 2)
    cmp = compare_spectra(f, soft, f[::2], g[::2], cutoff_THz=6.0)  # different grids: interpolated
    assert cmp["centroid_shift_THz"] == pytest.approx(-3.0, abs=1e-3)
    assert cmp["low_frequency_fraction_change"] > 0.8


def test_harmonic_reference_spectrum():
    grid = np.linspace(0, 20, 801)
    g = harmonic_vdos([-1.0, 3.0, 8.0], [5.0, 1.0, 3.0], grid, n_atoms=2, sigma_THz=0.2)
    assert np.trapezoid(g, grid) == pytest.approx(6.0, rel=1e-10)
    peak = grid[np.argmax(g)]
    assert peak == pytest.approx(8.0, abs=0.05)  # the heavier-weighted mode; −1 THz (imaginary) dropped
    assert g[np.argmin(abs(grid - 1.0))] < 1e-6


def test_vdos_input_errors():
    with pytest.raises(ValueError, match="too few"):
        vdos(np.zeros((5, 1, 3)), np.ones(1), 1.0, {"a": [0]})
    v = np.ones((20, 1, 3))
    v[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vdos(v, np.ones(1), 1.0, {"a": [0]})
    with pytest.raises(ValueError, match="window"):
        vdos(np.ones((20, 1, 3)), np.ones(1), 1.0, {"a": [0]}, window_fs=100.0)


def _cli(argv):
    from phonion.cli.transport import add_transport_parsers

    parser = argparse.ArgumentParser(prog="phonion")
    add_transport_parsers(parser.add_subparsers(dest="command"), argparse.HelpFormatter)
    args = parser.parse_args(argv)
    return args.func(args)


def _vibrating(atoms, freq_of, n_frames, dt_fs, rng):
    """Trajectory of ``atoms`` with every atom on its own harmonic oscillator (frequency by symbol)."""
    sym = atoms.get_chemical_symbols()
    x, v = _oscillators(rng, [freq_of(i, s) for i, s in enumerate(sym)], n_frames, dt_fs, amp=0.02)
    return Trajectory(symbols=sym, positions=atoms.positions[None] + x, cells=atoms.cell.array,
                      velocities=v, timestep_fs=dt_fs)


def test_cli_vdos_by_species_and_by_oclass_with_reference(tmp_path, capsys):
    h5md = pytest.importorskip("phonion.md.io.h5md", reason="phonion.md.io.h5md (H5MD store) not available")
    structures = pytest.importorskip("phonion.core.structures")
    pytest.importorskip("phonion.mdma.sites")
    atoms = structures.load_structure("LiGa_SeO3_2")
    rng = np.random.default_rng(3)
    base = {"Li": 4.0, "Ga": 6.0, "Se": 20.0, "O": 12.0}
    coupled = _vibrating(atoms, lambda i, s: base[s], 600, 2.0, rng)
    decoupled = _vibrating(atoms, lambda i, s: 7.0 if s == "Li" else base[s], 600, 2.0, rng)
    a = h5md.write_h5md(tmp_path / "coupled.h5", coupled)
    b = h5md.write_h5md(tmp_path / "decoupled.h5", decoupled)
    assert _cli(["vdos", str(a), "-o", str(tmp_path / "sp"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["groups"]) == {"Li", "Ga", "Se", "O", "total"}
    assert out["groups"]["total"]["integral"] == pytest.approx(3 * 80, rel=1e-9)
    bin_ = out["frequencies_THz"][1]
    assert abs(out["groups"]["Li"]["peak_THz"] - 4.0) <= bin_
    for name in ("vdos.json", "vdos.csv", "vdos.png"):
        assert (tmp_path / "sp" / name).exists()
    csv = np.loadtxt(tmp_path / "sp/vdos.csv", delimiter=",", skiprows=1)
    assert csv.shape == (len(out["frequencies_THz"]), 1 + len(out["groups"]))
    assert _cli(["vdos", str(a), "--by", "oclass", "--reference", str(b), "-o", str(tmp_path / "oc")]) == 0
    out = json.loads((tmp_path / "oc/vdos.json").read_text())
    assert [out["groups"][k]["n_atoms"] for k in ("O_e", "O_c", "O_n")] == [16, 16, 16]
    assert out["groups"]["O_e"]["integral"] == pytest.approx(48.0, rel=1e-9)
    shift = out["mobile_ion_shift"]
    assert shift["centroid_shift_THz"] == pytest.approx(-3.0, abs=0.3)
    assert shift["low_frequency_fraction_change"] > 0


def test_both_sides_vdos_share_one_frequency_grid():
    """Different frame intervals (4 fs reference, 10 fs MLIP): one window, a multiple of both intervals,
    so the two spectra have the same bins up to the lower Nyquist frequency."""
    from types import SimpleNamespace

    from phonion.compare.analyses import common_vdos_window_fs
    from phonion.md.vdos import vdos

    ref, mlip = SimpleNamespace(frame_interval_fs=4.0, n_frames=301), SimpleNamespace(frame_interval_fs=10.0, n_frames=161)
    w = common_vdos_window_fs([ref, mlip])
    assert w == 600.0  # half of min(1200, 1600) fs, a multiple of lcm(4, 10) = 20 fs
    rng = np.random.default_rng(0)
    g = {"all": np.arange(4)}
    a = vdos(rng.normal(size=(301, 4, 3)), np.ones(4), 4.0, g, window_fs=w).frequencies_THz
    b = vdos(rng.normal(size=(161, 4, 3)), np.ones(4), 10.0, g, window_fs=w).frequencies_THz
    n = min(a.size, b.size)
    np.testing.assert_allclose(a[:n], b[:n], atol=1e-12)
    assert common_vdos_window_fs([ref, SimpleNamespace(frame_interval_fs=None, n_frames=10)]) is None
