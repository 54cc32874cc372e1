"""phonion series: substitution, relaxation, the paper's numbers, rank correlation, the series plumbing."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from phonion.core import paper
from phonion.chain.series import CHAIN_KEYS, SeriesConfig, compound_label, run_series
from phonion.chain.series_report import rank_correlation
from phonion.core.structures import load_structure
from phonion.chain.substitution import (SHANNON_RADII_A, SubstitutionError, prescale_factor, relax,
                                  space_group, substitute)

DESIGN = Path("/work/shared/DESIGN.md")


@pytest.fixture(scope="module")
def liga():
    return load_structure("LiGa_SeO3_2")


# --- substitution ---------------------------------------------------------------------------

def test_substitute_replaces_every_atom_and_prescales(liga):
    al = substitute(liga, "Ga", "Al")
    symbols = al.get_chemical_symbols()
    assert symbols.count("Al") == 8 and "Ga" not in symbols
    assert [s for s in symbols if s != "Al"] == [s for s in liga.get_chemical_symbols() if s != "Ga"]
    # half the relative Al-O / Ga-O bond change goes into each lattice vector
    bond = (0.535 + 1.40) / (0.62 + 1.40)
    factor = 1 + 0.5 * (bond - 1)
    assert al.get_volume() == pytest.approx(liga.get_volume() * factor ** 3, rel=1e-12)
    np.testing.assert_allclose(al.get_scaled_positions(), liga.get_scaled_positions(), atol=1e-12)
    assert space_group(al)["number"] == space_group(liga)["number"] == 122  # I-42d kept
    la = substitute(liga, "Ga", "La")
    assert la.get_volume() > liga.get_volume() > al.get_volume()
    plain = substitute(liga, "Ga", "La", prescale=False)
    np.testing.assert_allclose(plain.cell, liga.cell)
    assert liga.get_chemical_symbols().count("Ga") == 8  # parent untouched


def test_shannon_table_matches_pymatgen():
    from pymatgen.core import Species

    for element, radius in SHANNON_RADII_A.items():
        assert Species(element, 3).get_shannon_radius("VI", radius_type="ionic") == pytest.approx(radius)
    # an element outside the table falls back on the same source (Cr3+ VI: 0.615 Å)
    assert prescale_factor("Ga", "Cr", damping=1.0) == pytest.approx((0.615 + 1.40) / (0.62 + 1.40))


@pytest.mark.parametrize("old,new,match", [("Ga", "Xx", "unknown element"), ("Fe", "Al", "holds no Fe"),
                                           ("Ga", "He", "no Shannon radius")])
def test_substitute_bad_input_is_one_clear_error(liga, old, new, match):
    with pytest.raises(SubstitutionError, match=match):
        substitute(liga, old, new)


def test_compound_label(liga):
    assert compound_label(liga, "Ga", "Al") == "LiAl(SeO3)2"
    assert compound_label(liga, "Ga", "Ga") == "LiGa(SeO3)2"


# --- relaxation (EMT) -------------------------------------------------------------------------

def _strained_alloy():
    """Cu7Al in a 2×1×1 fcc cell, strained by 3 %: P4/mmm with free z coordinates, so it has forces."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms[0].symbol = "Al"
    atoms.set_cell(atoms.cell * 1.03, scale_atoms=True)
    return atoms


def test_relax_lowers_force_and_stress_keeps_space_group_and_resumes(tmp_path):
    from ase.calculators.emt import EMT

    start = _strained_alloy()
    start.calc = EMT()
    f0 = np.linalg.norm(start.get_forces(), axis=1).max()
    s0 = np.abs(start.get_stress()).max()
    assert f0 > 0.05 and s0 > 0.01
    relaxed, summary = relax(start, "emt", fmax_eV_A=0.01, max_steps=200, output_dir=tmp_path)
    assert summary["converged"] and not summary["reused"]
    assert summary["max_residual_force_eV_A"] < 0.01 < f0
    assert summary["max_residual_stress_GPa"] * 0.00624151 < 0.1 * s0  # GPa -> eV/Å^3
    assert summary["volume_change"] < 0  # a stretched cell shrinks back
    sg = space_group(start)
    assert summary["space_group_before"]["number"] == summary["space_group_after"]["number"] == sg["number"]
    for name in ("relaxed.cif", "relaxed.extxyz", "relax.log", "relax.json"):
        assert (tmp_path / name).is_file()
    # the written structure holds the relaxed energy / forces / stress (round trip)
    again, summary2 = relax(start, "emt", fmax_eV_A=0.01, max_steps=200, output_dir=tmp_path)
    assert summary2["reused"] and summary2["steps"] == summary["steps"]
    np.testing.assert_allclose(again.get_positions(), relaxed.get_positions(), atol=1e-6)
    assert again.get_potential_energy() == pytest.approx(relaxed.get_potential_energy(), abs=1e-6)
    # a tighter threshold is not satisfied by the stored one: it relaxes again
    _, summary3 = relax(start, "emt", fmax_eV_A=0.005, max_steps=200, output_dir=tmp_path)
    assert not summary3["reused"]


def test_relax_divergence_is_an_error_and_leaves_no_finished_marker(tmp_path):
    from phonion.chain.substitution import RelaxationError

    with pytest.raises(RelaxationError, match="volume changed"):
        relax(_strained_alloy(), "emt", fmax_eV_A=0.01, max_steps=200, output_dir=tmp_path,
              max_volume_change=0.01)  # the strained cell shrinks by ~9 %: "diverged" at 1 %
    assert not (tmp_path / "relax.json").exists()


# --- the paper's numbers and rank correlation -------------------------------------------------

def _design_table():
    text = DESIGN.read_text()
    section = text.split("## Paper numbers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")][1:]
    table = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0]] = dict(zip(header, (float(c) for c in cells[1:])))
    anharm = re.search(r"Anharmonic share of D_σ (\d+)–(\d+) %", section)
    return table, tuple(int(x) / 100 for x in anharm.groups())


@pytest.mark.skipif(not DESIGN.is_file(), reason="DESIGN.md not at hand")
def test_paper_numbers_match_design():
    table, anharm = _design_table()
    assert tuple(table["E_a (meV)"]) == paper.COMPOUNDS
    assert table["E_a (meV)"] == paper.ACTIVATION_ENERGY_meV
    assert table["D(300 K) (cm²/s)"] == paper.DIFFUSIVITY_300K_cm2_s
    assert table["σ(300 K) (mS/cm)"] == paper.CONDUCTIVITY_300K_mS_cm
    assert anharm == paper.ANHARMONIC_SHARE_RANGE


def test_paper_sigma_is_nernst_einstein_of_its_D(liga):
    """The paper's σ(300 K) follows from its D(300 K) for the Ga cell (DESIGN.md check: 0.135 mS/cm)."""
    from phonion.md.conductivity import carrier_density_from_atoms, nernst_einstein_conductivity_mS_cm

    sigma = nernst_einstein_conductivity_mS_cm(paper.DIFFUSIVITY_300K_cm2_s["Ga"], 300.0,
                                               carrier_density_from_atoms(liga))
    assert float(sigma) == pytest.approx(paper.CONDUCTIVITY_300K_mS_cm["Ga"], rel=0.1)


def test_rank_correlation_limits():
    ea = paper.ACTIVATION_ENERGY_meV
    same = rank_correlation(ea, ea)
    assert same["n"] == 6 and same["spearman_rho"] == pytest.approx(1) and same["kendall_tau"] == pytest.approx(1)
    assert same["spearman_p"] < 0.01
    reversed_ = rank_correlation({m: -v for m, v in ea.items()}, ea)
    assert reversed_["spearman_rho"] == pytest.approx(-1) and reversed_["kendall_tau"] == pytest.approx(-1)
    # the paper's D and σ rank the compounds alike but for two swapped pairs (Al/Sc, Y/La): ρ = 1 - 24/210
    d_vs_sigma = rank_correlation(paper.DIFFUSIVITY_300K_cm2_s, paper.CONDUCTIVITY_300K_mS_cm)
    assert d_vs_sigma["spearman_rho"] == pytest.approx(1 - 24 / 210)
    few = rank_correlation({"Al": 1.0, "Ga": 2.0, "In": None}, ea)
    assert few["n"] == 2 and few["spearman_rho"] is None and "at least 3" in few["note"]


# --- the series with a stand-in chain ---------------------------------------------------------

def _stand_in_chain(values, fail=(), calls=None):
    """A chain double: the paper's numbers per compound (from the label), or an MD-guard failure."""
    def chain(cfg, progress=False):
        element = re.match(r"Li([A-Z][a-z]?)\(", cfg.label).group(1)
        if calls is not None:
            calls.append(element)
        assert len(cfg.structure) == 80 and cfg.profile == "tiny"
        if element in fail:
            raise RuntimeError("MD guard: atoms closer than 0.5 Å at step 12")
        numbers = {key: {"value": values[key].get(element), "uncertainty": None, "unit": "", "converged": False}
                   for key in values}
        return {"compare": {"mlip": {"numbers": numbers}, "reference": {"numbers": numbers}}}
    return chain


def test_series_table_correlation_resume_and_failure(tmp_path, monkeypatch):
    """Relaxation replaced by a no-op (the EMT test covers it); the chain by a double."""
    import phonion.chain.substitution as substitution

    def no_relax(atoms, spec, output_dir=None, **kw):
        summary = {"converged": True, "steps": 0, "volume_change": 0.0, "reused": False,
                   "space_group_before": space_group(atoms), "space_group_after": space_group(atoms)}
        return atoms.copy(), summary

    monkeypatch.setattr(substitution, "relax", no_relax)
    values = {"E_a_meV": {m: v * 1.1 for m, v in paper.ACTIVATION_ENERGY_meV.items()},
              "D_300K_cm2_s": dict(paper.DIFFUSIVITY_300K_cm2_s),
              "sigma_300K_mS_cm": {m: -v for m, v in paper.CONDUCTIVITY_300K_mS_cm.items()},
              "mdma_anharmonic_share": {m: 0.6 for m in paper.COMPOUNDS}}
    calls = []
    cfg = SeriesConfig(with_=("Al", "In", "Sc", "Y"), output=str(tmp_path), profile="tiny")
    report = run_series(cfg, chain=_stand_in_chain(values, fail=("Y",), calls=calls), progress=False)
    assert [r["element"] for r in report["compounds"]] == ["Ga", "Al", "In", "Sc", "Y"]
    failed = [r for r in report["compounds"] if r["status"] != "ok"]
    assert [r["element"] for r in failed] == ["Y"] and "MD guard" in failed[0]["error"]
    assert failed[0]["stage"] == "chain"
    corr = report["rank_correlation_vs_paper"]
    assert corr["E_a_meV"]["n"] == 4 and corr["E_a_meV"]["spearman_rho"] == pytest.approx(1)
    assert corr["D_300K_cm2_s"]["kendall_tau"] == pytest.approx(1)
    assert corr["sigma_300K_mS_cm"]["spearman_rho"] == pytest.approx(-1)
    ga = report["compounds"][0]
    assert ga["paper"]["E_a_meV"]["value"] == 314.3 and "arXiv:2402.12671" in ga["paper"]["E_a_meV"]["source"]
    assert ga["anharmonic_share_in_paper_range"] is True
    assert ga["ours"]["mdma_O_e_mode_mean_frequency_THz"]["value"] is None  # absent from the chain: no number
    assert ga["o_classes"] == {"O_e": 16, "O_c": 16, "O_n": 16}
    md = (tmp_path / "series.md").read_text()
    assert "LiY(SeO3)2" in md and "MD guard" in md and "surrogate reference, not DFT" in md
    assert "52–76 %" in md
    csv_rows = (tmp_path / "series.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 5
    assert json.loads((tmp_path / "series.json").read_text())["compounds"][1]["label"] == "LiAl(SeO3)2"
    # resume: finished compounds are skipped, the failed one is tried again
    calls.clear()
    again = run_series(cfg, chain=_stand_in_chain(values, fail=(), calls=calls), progress=False)
    assert calls == ["Y"]
    assert all(r["status"] == "ok" for r in again["compounds"])
    assert [r["resumed"] for r in again["compounds"]] == [True, True, True, True, False]
    assert again["rank_correlation_vs_paper"]["E_a_meV"]["n"] == 5


def test_series_bad_element_fails_before_any_work(tmp_path):
    cfg = SeriesConfig(with_=("Al", "Qq"), output=str(tmp_path / "out"), profile="tiny")
    with pytest.raises(SubstitutionError, match="Qq"):
        run_series(cfg, chain=lambda *a, **k: pytest.fail("chain must not run"), progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_series_real_chain_tiny(tmp_path):
    pytest.importorskip("phonion.chain.chain")
    cfg = SeriesConfig(with_=("Al",), include_parent=False, output=str(tmp_path), profile="tiny")
    report = run_series(cfg, progress=False)
    row = report["compounds"][0]
    assert row["status"] == "ok", row["error"]
    assert row["relax"]["space_group_after"]["number"] == 122
    assert all(key in row["ours"] for key in CHAIN_KEYS)
