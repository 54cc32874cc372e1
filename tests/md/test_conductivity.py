"""Nernst–Einstein and Arrhenius against hand-computed and synthetic answers."""

import argparse
import json

import numpy as np
import pytest

from phonion.md.conductivity import (
    K_B_EV_K, arrhenius_fit, carrier_density_cm3, diffusivity_from_conductivity_cm2_s,
    nernst_einstein_conductivity_mS_cm,
)


def test_nernst_einstein_ligaseo3_check():
    """DESIGN.md: 8 Li in 1154.418 Å³, D = 3.14e-9 cm²/s, 300 K → σ ≈ 0.135 mS/cm (paper: 0.13)."""
    n = carrier_density_cm3(8, 1154.418)
    assert n == pytest.approx(6.9299e21, rel=1e-4)
    sigma = nernst_einstein_conductivity_mS_cm(3.14e-9, 300.0, n)
    assert sigma == pytest.approx(0.135, rel=0.01)
    # by hand in SI: n e² D / (k_B T) = 6.9299e27 m⁻³ · (1.602e-19 C)² · 3.14e-13 m²/s / (1.381e-23 J/K · 300 K)
    assert sigma == pytest.approx(6.9299e27 * 1.602176634e-19**2 * 3.14e-13 / (1.380649e-23 * 300) * 10, rel=1e-4)
    assert diffusivity_from_conductivity_cm2_s(sigma, 300.0, n) == pytest.approx(3.14e-9, rel=1e-12)
    assert nernst_einstein_conductivity_mS_cm(3.14e-9, 300.0, n, charge=2) == pytest.approx(4 * sigma)


def test_nernst_einstein_on_the_bundled_structure():
    structures = pytest.importorskip("phonion.core.structures")
    from phonion.md.conductivity import carrier_density_from_atoms

    atoms = structures.load_structure("LiGa_SeO3_2")
    n = carrier_density_from_atoms(atoms, "Li")
    assert nernst_einstein_conductivity_mS_cm(3.14e-9, 300.0, n) == pytest.approx(0.135, rel=0.01)
    with pytest.raises(ValueError, match="no Na atoms"):
        carrier_density_from_atoms(atoms, "Na")


@pytest.mark.parametrize("bad", [0.0, -10.0, np.nan])
def test_non_positive_temperature_is_an_error(bad):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nernst_einstein_conductivity_mS_cm(1e-6, bad, 1e22)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        arrhenius_fit([bad, 600.0], [1e-6, 2e-6], [1e-7, 1e-7])


def test_arrhenius_exact_data_recovers_parameters():
    ea, d0 = 0.31, 2e-3
    t = np.array([500.0, 700.0, 900.0, 1100.0])
    d = d0 * np.exp(-ea / (K_B_EV_K * t))
    fit = arrhenius_fit(t, d, 0.05 * d)
    assert fit.activation_energy_eV == pytest.approx(ea, rel=1e-10)
    assert fit.prefactor_cm2_s == pytest.approx(d0, rel=1e-10)
    d300, lo, hi, s = fit.predict(300.0)
    assert d300 == pytest.approx(d0 * np.exp(-ea / (K_B_EV_K * 300)), rel=1e-10)
    assert lo < d300 < hi and s > 0


def test_arrhenius_noisy_recovers_activation_energy_within_error():
    ea, d0 = 0.30, 1e-3
    t = np.array([600.0, 800.0, 1000.0, 1200.0])
    truth = d0 * np.exp(-ea / (K_B_EV_K * t))
    z, z300 = [], []
    for seed in range(200):
        rel = np.random.default_rng(seed).normal(scale=0.08, size=t.size)
        fit = arrhenius_fit(t, truth * np.exp(rel), 0.08 * truth * np.exp(rel))
        z.append((fit.activation_energy_eV - ea) / fit.activation_energy_err_eV)
        d300, _, _, s = fit.predict(300.0)
        z300.append(np.log(d300 / (d0 * np.exp(-ea / (K_B_EV_K * 300)))) / s)
    z, z300 = np.array(z), np.array(z300)
    assert np.mean(np.abs(z) < 3) > 0.98 and np.std(z) == pytest.approx(1.0, abs=0.15)
    assert np.std(z300) == pytest.approx(1.0, abs=0.15)  # the extrapolation band is calibrated


def test_arrhenius_two_points_is_the_exact_line_with_propagated_error():
    t = np.array([700.0, 1100.0])
    d = np.array([5.0e-6, 3.2e-5])
    err = np.array([0.4e-6, 1.7e-6])
    fit = arrhenius_fit(t, d, err)
    slope = (np.log(d[1]) - np.log(d[0])) / (1 / t[1] - 1 / t[0])
    assert fit.activation_energy_eV == pytest.approx(-slope * K_B_EV_K, rel=1e-12)
    s_slope = np.hypot(err[0] / d[0], err[1] / d[1]) / abs(1 / t[1] - 1 / t[0])
    assert fit.activation_energy_err_eV == pytest.approx(s_slope * K_B_EV_K, rel=1e-10)
    assert np.isnan(fit.chi2_reduced) and fit.weighted
    unweighted = arrhenius_fit(t, d)
    assert np.isnan(unweighted.activation_energy_err_eV) and unweighted.notes


def test_arrhenius_input_errors():
    with pytest.raises(ValueError, match="2 distinct temperatures"):
        arrhenius_fit([600.0, 600.0], [1e-6, 2e-6])
    with pytest.raises(ValueError, match="positive diffusivities"):
        arrhenius_fit([600.0, 800.0], [1e-6, -2e-6])


def _cli(argv):
    from phonion.cli.transport import add_transport_parsers

    parser = argparse.ArgumentParser(prog="phonion")
    add_transport_parsers(parser.add_subparsers(dest="command"), argparse.HelpFormatter)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_arrhenius_and_conductivity(tmp_path, capsys):
    ea, d0, n = 0.25, 1e-3, 1.5e22
    paths = []
    for t in (600.0, 900.0, 1200.0):
        d = d0 * np.exp(-ea / (K_B_EV_K * t))
        p = tmp_path / f"{int(t)}.json"
        p.write_text(json.dumps({"temperature_K": t, "carrier_density_cm3": n, "tracer_diffusivity_cm2_s": d,
                                 "tracer_diffusivity_err_cm2_s": 0.05 * d, "charge": 1.0}))
        paths.append(str(p))
    assert _cli(["arrhenius", *paths, "--json", "-o", str(tmp_path / "arr")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["activation_energy_eV"] == pytest.approx(ea, rel=1e-9)
    d300 = d0 * np.exp(-ea / (K_B_EV_K * 300))
    assert out["diffusivity_300K_cm2_s"] == pytest.approx(d300, rel=1e-9)
    assert out["conductivity_300K_mS_cm"] == pytest.approx(nernst_einstein_conductivity_mS_cm(d300, 300, n))
    for key in ("activation_energy_err_eV", "prefactor_cm2_s"):
        assert key in out
    assert (tmp_path / "arr/arrhenius.png").exists()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not a `phonion diffusion` result"):
        _cli(["arrhenius", paths[0], str(tmp_path / "bad.json")])
    cif = pytest.importorskip("phonion.core.structures").bundled_structure_path("LiGa_SeO3_2")
    assert _cli(["conductivity", "--structure", str(cif), "--species", "Li", "--diffusivity-cm2-s", "3.14e-9",
                 "--temperature-K", "300", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["conductivity_mS_cm"] == pytest.approx(0.135, rel=0.01)
    assert out["carrier_density_cm3"] == pytest.approx(6.93e21, rel=1e-3)
    with pytest.raises(ValueError, match="must be > 0"):
        _cli(["conductivity", "--structure", str(cif), "--diffusivity-cm2-s", "1e-9", "--temperature-K", "-1"])
