"""Diffusion against known answers: random walks with a set D, an Ornstein–Uhlenbeck (Langevin)
trajectory for Green–Kubo, brute-force MSDs, exact drift correction, H5MD chunking, the CLI."""

import argparse
import json
import warnings

import numpy as np
import pytest

from phonion.md.diffusion import (
    MSDAccumulator, choose_fit_window, curve_from, drift_correction_terms, fit_diffusivity,
    msd_fft, random_walk_msd_covariance,
)
from phonion.md.diffusion_run import analyse_h5md, analyse_trajectory
from phonion.md.trajectory import Trajectory, TrajectoryError

A2_FS = 0.1  # Å²/fs → cm²/s


def _walk(rng, n_frames, n_atoms, d_xyz, dt_fs):
    """Gaussian random walk with per-direction diffusivity d_xyz (Å²/fs): step var 2 D Δ."""
    steps = rng.normal(size=(n_frames, n_atoms, 3)) * np.sqrt(2 * np.asarray(d_xyz) * dt_fs)
    return np.cumsum(steps, axis=0)


def _traj(pos, symbols, dt_fs, velocities=None, cell=20.0):
    return Trajectory(symbols=symbols, positions=pos, cells=np.eye(3) * cell, timestep_fs=dt_fs,
                      velocities=velocities)


def _ou(rng, n_frames, n_atoms, sigma_v, tau_fs, dt_fs):
    """Ornstein–Uhlenbeck velocities (Å/fs), positions r(k+1) = r(k) + v(k) Δ, and the exact D (Å²/fs).

    With C(m) = σ_v² a^m, a = e^(−Δ/τ): D = Δ σ_v² (1 + a) / (2 (1 − a)) per direction, exactly,
    both for the MSD of these positions and for the trapezoid Green–Kubo integral.
    """
    a = np.exp(-dt_fs / tau_fs)
    v = np.empty((n_frames, n_atoms, 3))
    v[0] = rng.normal(scale=sigma_v, size=(n_atoms, 3))
    kick = rng.normal(scale=sigma_v * np.sqrt(1 - a * a), size=(n_frames, n_atoms, 3))
    for k in range(1, n_frames):
        v[k] = a * v[k - 1] + kick[k]
    pos = np.concatenate([np.zeros((1, n_atoms, 3)), np.cumsum(v[:-1] * dt_fs, axis=0)])
    return pos, v, dt_fs * sigma_v**2 * (1 + a) / (2 * (1 - a))


def test_msd_fft_equals_brute_force_all_origins():
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(37, 5, 3)), axis=0) + 100.0  # far from the origin: round-off
    brute = np.zeros((37, 3))
    for m in range(1, 37):
        brute[m] = ((x[m:] - x[:-m]) ** 2).mean(axis=(0, 1))
    np.testing.assert_allclose(msd_fft(x), brute, rtol=1e-10, atol=1e-10)


def test_random_walk_covariance_closed_form_equals_the_overlap_sum():
    f, lags = 23, np.array([1, 2, 5, 11, 12, 20, 22])
    brute = np.empty((lags.size, lags.size))
    for i, n in enumerate(lags):
        for j, m in enumerate(lags):
            n_, m_ = min(n, m), max(n, m)
            s = np.arange(-m_ + 1, n_)
            ov = np.minimum(n_, s + m_) - np.maximum(0, s)
            mult = np.clip(np.minimum(f - n_, f - m_ - s) - np.maximum(0, -s), 0, None)
            brute[i, j] = 2 * np.dot(mult, ov**2.0) / ((f - n_) * (f - m_))
    np.testing.assert_allclose(random_walk_msd_covariance(lags, f), brute, rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_walk_recovers_diffusivity_within_its_error(seed):
    rng = np.random.default_rng(seed)
    d_true, dt = 2e-3, 10.0  # Å²/fs, fs
    pos = _walk(rng, 1500, 32, [d_true] * 3, dt)
    res = analyse_trajectory(_traj(pos, ["Li"] * 32, dt), "Li", temperature_K=300.0)
    out = res.to_dict()
    for key in ("tracer", "collective"):
        d, err = out[f"{key}_diffusivity_cm2_s"], out[f"{key}_diffusivity_err_cm2_s"]
        assert abs(d - d_true * A2_FS) < 3 * err, (key, d, err)
        assert err / d < 0.3, (key, err / d)
    assert out["tracer_diffusivity_err_cm2_s"] / out["tracer_diffusivity_cm2_s"] < 0.05
    assert out["fit_start_rule"] == "local-slope" and out["fit_range_ps"][0] == pytest.approx(0.01)
    assert out["fit_range_ps"][1] == pytest.approx(749 * dt / 1e3)  # half the run
    # independent walkers: Haven ratio 1 within its error
    assert abs(out["haven_ratio"] - 1) < 3 * out["haven_ratio_err"]


def test_model_error_is_calibrated_over_seeds():
    """The spread of D over 24 independent runs matches the reported model error (±35 %)."""
    d_true, dt, vals, errs = 1e-3, 5.0, [], []
    for seed in range(24):
        pos = _walk(np.random.default_rng(100 + seed), 600, 16, [d_true] * 3, dt)
        fit = analyse_trajectory(_traj(pos, ["Li"] * 16, dt), "Li").tracer_fit
        vals.append(fit.diffusivity_cm2_s)
        errs.append(fit.error_model_cm2_s)
    assert np.std(vals, ddof=1) / np.mean(errs) == pytest.approx(1.0, abs=0.35)
    assert np.mean(vals) == pytest.approx(d_true * A2_FS, rel=0.02)


def test_anisotropic_walk_per_direction():
    rng = np.random.default_rng(7)
    d_xyz, dt = np.array([4e-3, 1e-3, 2.5e-4]), 10.0
    pos = _walk(rng, 1500, 40, d_xyz, dt)
    out = analyse_trajectory(_traj(pos, ["Li"] * 40, dt), "Li").to_dict()
    got, err = np.array(out["tracer_diffusivity_xyz_cm2_s"]), np.array(out["tracer_diffusivity_xyz_err_cm2_s"])
    assert np.all(np.abs(got - d_xyz * A2_FS) < 3 * err)
    assert out["tracer_diffusivity_cm2_s"] == pytest.approx(d_xyz.mean() * A2_FS, rel=0.05)


@pytest.mark.parametrize("from_file", [True, False])
def test_green_kubo_agrees_with_msd_on_langevin_trajectory(from_file):
    rng = np.random.default_rng(11)
    pos, v, d_true = _ou(rng, 20000, 16, sigma_v=0.01, tau_fs=20.0, dt_fs=1.0)
    res = analyse_trajectory(_traj(pos, ["Li"] * 16, 1.0, v if from_file else None), "Li")
    gk, msd = res.green_kubo, res.collective_fit
    assert res.metadata["velocities_source_green_kubo"] == ("file" if from_file else "central-difference")
    assert gk.error_cm2_s is not None and msd.error_block_cm2_s is not None
    both = np.hypot(gk.error_cm2_s, msd.error_cm2_s)
    assert abs(gk.diffusivity_cm2_s - msd.diffusivity_cm2_s) < 3 * both
    for value, err in ((gk.diffusivity_cm2_s, gk.error_cm2_s), (msd.diffusivity_cm2_s, msd.error_cm2_s),
                       (res.tracer_fit.diffusivity_cm2_s, res.tracer_fit.error_cm2_s)):
        assert abs(value - d_true * A2_FS) < 3 * err
    # the ballistic start (t < τ) is excluded by the local-slope rule: α → 1 only after ~10 τ
    assert res.window[2] == "local-slope" and res.window[0] * 1.0 > 5 * 20.0


def test_fit_window_rule_fallback_user_range_and_too_few_frames():
    t = np.arange(200.0)
    caged = 1 - np.exp(-t / 3) + 1e-4 * t  # plateau: never linear within 1 ± 0.1
    with pytest.warns(UserWarning, match="never becomes linear"):
        start, end, rule = choose_fit_window(caged)
    assert (start, end, rule) == (20, 99, "fallback-10%-of-run")
    pos = _walk(np.random.default_rng(0), 300, 8, [1e-3] * 3, 10.0)
    res = analyse_trajectory(_traj(pos, ["Li"] * 8, 10.0), "Li", fit_range_ps=(0.5, 1.2))
    assert res.window == (50, 120, "user") and res.fit_range_ps == pytest.approx((0.5, 1.2))
    with pytest.raises(ValueError, match="at least 3 are needed"):
        analyse_trajectory(_traj(pos, ["Li"] * 8, 10.0), "Li", fit_range_ps=(1.0, 1.01))
    with pytest.raises(ValueError, match="lasts"):
        analyse_trajectory(_traj(pos, ["Li"] * 8, 10.0), "Li", fit_range_ps=(1.0, 10.0))
    with pytest.raises(TrajectoryError, match="too few"):
        analyse_trajectory(_traj(pos[:6], ["Li"] * 8, 10.0), "Li")


def test_missing_species_and_bad_temperature_are_errors():
    pos = _walk(np.random.default_rng(0), 100, 4, [1e-3] * 3, 10.0)
    traj = _traj(pos, ["Na"] * 4, 10.0)
    with pytest.raises(TrajectoryError, match="no Li atoms; the file has Na4"):
        analyse_trajectory(traj, "Li")
    for t in (0.0, -300.0):
        with pytest.raises(ValueError, match="must be > 0"):
            analyse_trajectory(traj, "Na", temperature_K=t)
    with pytest.raises(TrajectoryError, match="timestep is unknown"):
        analyse_trajectory(Trajectory(symbols=["Na"] * 4, positions=pos, cells=np.eye(3) * 9), "Na")


def test_drift_correction_is_exact():
    """Subtracting the framework drift through the linear identity = subtracting it atom by atom."""
    rng = np.random.default_rng(5)
    x = _walk(rng, 200, 6, [1e-3] * 3, 1.0)
    drift = np.cumsum(rng.normal(scale=0.05, size=(200, 3)), axis=0)
    acc = MSDAccumulator(200, 4)
    acc.add(x)
    corr = drift_correction_terms(acc.disp_sum / acc.n, drift, 4)
    direct = MSDAccumulator(200, 4)
    direct.add(x - drift[:, None])
    a, b = curve_from(acc, 1.0, corr), curve_from(direct, 1.0)
    np.testing.assert_allclose(a.msd_A2, b.msd_A2, atol=1e-10)
    np.testing.assert_allclose(a.block_msd_A2, b.block_msd_A2, atol=1e-10)


def test_framework_drift_is_removed_from_the_carrier():
    rng = np.random.default_rng(2)
    li = _walk(rng, 800, 12, [1e-3] * 3, 10.0)
    fw = np.tile(rng.random((1, 20, 3)) * 10, (800, 1, 1)) + rng.normal(scale=0.05, size=(800, 20, 3))
    drift = np.cumsum(rng.normal(scale=0.3, size=(800, 3)), axis=0)  # whole cell drifts
    pos = np.concatenate([li, fw], axis=1) + drift[:, None]
    sym = ["Li"] * 12 + ["O"] * 20
    clean = analyse_trajectory(_traj(np.concatenate([li, fw], axis=1), sym, 10.0), "Li").tracer_fit
    fixed = analyse_trajectory(_traj(pos, sym, 10.0), "Li").tracer_fit
    raw = analyse_trajectory(_traj(pos, sym, 10.0), "Li", drift_correction=False).tracer_fit
    assert fixed.diffusivity_cm2_s == pytest.approx(clean.diffusivity_cm2_s, rel=0.02)
    assert raw.diffusivity_cm2_s > 3 * clean.diffusivity_cm2_s


def test_gls_estimator_and_block_errors_are_available():
    pos = _walk(np.random.default_rng(9), 1000, 16, [1e-3] * 3, 10.0)
    res = analyse_trajectory(_traj(pos, ["Li"] * 16, 10.0), "Li", estimator="gls")
    fit = res.tracer_fit
    assert len(fit.block_values_cm2_s) == 5 and fit.error_block_cm2_s > 0
    assert fit.error_cm2_s == max(fit.error_model_cm2_s, fit.error_block_cm2_s)
    assert abs(fit.diffusivity_cm2_s - 1e-4) < 3 * fit.error_cm2_s
    with pytest.raises(ValueError, match="error_method"):
        fit_diffusivity(res.tracer, res.window, error_method="nope")


def test_chunked_h5md_equals_in_memory(tmp_path):
    h5md = pytest.importorskip("phonion.md.io.h5md", reason="phonion.md.io.h5md (H5MD store) not available")
    rng = np.random.default_rng(4)
    li = _walk(rng, 400, 10, [1e-3] * 3, 10.0)
    fw = rng.random((1, 7, 3)) * 10 + np.cumsum(rng.normal(scale=0.02, size=(400, 7, 3)), axis=0)
    traj = Trajectory(symbols=["Li"] * 10 + ["S"] * 7, positions=np.concatenate([li, fw], axis=1),
                      cells=np.eye(3) * 15, timestep_fs=2.0, stride=5,
                      temperatures_K=np.full(400, 600.0), metadata={"source_files": ["synthetic"]})
    path = h5md.write_h5md(tmp_path / "run.h5", traj)
    a = analyse_trajectory(traj, "Li").to_dict()
    b = analyse_h5md(path, "Li", memory_mb=0.05).to_dict()  # tiny budget: one atom per read
    assert b["memory_mode"].startswith("chunked (1 atoms")
    for key in ("tracer_diffusivity_cm2_s", "tracer_diffusivity_err_cm2_s", "collective_diffusivity_cm2_s",
                "collective_diffusivity_err_cm2_s", "green_kubo_collective_diffusivity_cm2_s", "haven_ratio",
                "conductivity_mS_cm", "temperature_K"):
        assert b[key] == pytest.approx(a[key], rel=1e-8), key
    assert b["fit_range_ps"] == a["fit_range_ps"]


def test_real_li6ps5i_regression(data_dir):
    """Li6PS5I 1100 K AIMD (416 atoms, 100 frames, 2 fs × 50): numbers from a run of this code
    (2026-11, phonion 0.1.0); the MSD is still sub-diffusive, so the window falls back to 1.0–4.9 ps."""
    from phonion.md.io import read_trajectory

    path = data_dir / "vasp/li6ps5i_aimd_xdatcar/1100K/XDATCAR.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyse_trajectory(read_trajectory(path, timestep_fs=2.0), "Li", temperature_K=1100).to_dict()
    assert res["fit_range_ps"] == pytest.approx([1.0, 4.9])
    assert res["tracer_diffusivity_cm2_s"] == pytest.approx(3.2018e-5, rel=1e-3)
    assert res["tracer_diffusivity_err_cm2_s"] == pytest.approx(1.6745e-6, rel=1e-3)
    assert res["collective_diffusivity_cm2_s"] == pytest.approx(1.0375e-5, rel=1e-3)
    assert res["tracer_diffusivity_by_species_cm2_s"]["P"] < 0.02 * res["tracer_diffusivity_cm2_s"]


def _cli(argv):
    from phonion.cli.transport import add_transport_parsers

    parser = argparse.ArgumentParser(prog="phonion")
    add_transport_parsers(parser.add_subparsers(dest="command"), argparse.HelpFormatter)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_diffusion_contract_and_errors(tmp_path, capsys):
    h5md = pytest.importorskip("phonion.md.io.h5md", reason="phonion.md.io.h5md (H5MD store) not available")
    pos = _walk(np.random.default_rng(1), 600, 12, [1e-3] * 3, 10.0)
    traj = Trajectory(symbols=["Li"] * 12, positions=pos, cells=np.eye(3) * 12, timestep_fs=2.0, stride=5,
                      temperatures_K=np.full(600, 500.0))
    path = h5md.write_h5md(tmp_path / "walk.h5", traj)
    assert _cli(["diffusion", str(path), "--json", "-o", str(tmp_path / "out")]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("tracer_diffusivity_cm2_s", "tracer_diffusivity_err_cm2_s", "collective_diffusivity_cm2_s",
                "collective_diffusivity_err_cm2_s", "haven_ratio", "conductivity_mS_cm", "temperature_K",
                "fit_range_ps", "carrier_density_cm3"):
        assert key in out
    assert out["temperature_K"] == 500.0  # the trajectory's mean
    assert json.loads((tmp_path / "out/result.json").read_text()) == out
    assert (tmp_path / "out/msd.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="must be > 0"):
        _cli(["diffusion", str(path), "--temperature-K", "0"])
    with pytest.raises(TrajectoryError, match="no Na atoms"):
        _cli(["diffusion", str(path), "--species", "Na"])
    short = h5md.write_h5md(tmp_path / "short.h5", traj.select_frames(slice(0, 5)))
    with pytest.raises(TrajectoryError, match="too few"):
        _cli(["diffusion", str(short)])
    bare = h5md.write_h5md(tmp_path / "bare.h5", traj.replace(temperatures_K=None))
    with pytest.raises(ValueError, match="give --temperature-K"):
        _cli(["diffusion", str(bare)])
