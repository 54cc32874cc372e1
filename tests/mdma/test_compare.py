"""``phonion compare`` (issue 7): contracts and physics on small real runs.

Data: short Langevin runs of the bundled LiGa(SeO3)2 with an exactly harmonic framework and free Li
(``compare_systems``), at 600 and 900 K plus 900 K runs with O_e and with O_c held fixed, written as H5MD
with phonion's run metadata (``temperature_K_setting``, ``fix``, ``calculator_spec``, "surrogate reference").
Known answers: each free Li diffuses with D = k_B T / (m γ) (Haven ratio 1, unchanged by freezing any O);
the phonons that compare computes by finite displacements are the force constants that drove the MD; the
"model" used for the parity is the calculator that made the frames (errors zero); the MDMA sum rule holds
to round-off. Truth rules: a run whose run.json is not complete changes no number; a failed ``phonion
validate`` makes every MLIP number not converged; with two temperatures the Arrhenius line passes exactly
through both points at the *measured* temperatures.
"""

import io
import json
import math
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from compare_systems import FAILED_VALIDATION, SPEC, expected_li_diffusivity_cm2_s, free_li_harmonic, make_run, \
    structure, write_extxyz_copy, write_run_record
from phonion.compare.run import CompareConfig, CompareError, run_compare

FIELDS = ("value", "uncertainty", "unit", "side", "source", "converged", "note")
SECTIONS = {"parity", "rdf", "vdos", "diffusion", "phonons", "mdma", "pfc", "fixed"}
STEPS = 2000  # 4 ps at 2 fs, frames every 10 fs: 401 frames


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for t in (600, 900):
        make_run(root, t, n_steps=STEPS)
    make_run(root, 900, fix="O_e", n_steps=STEPS, seed=1)
    make_run(root, 900, fix="O_c", n_steps=STEPS, seed=2)
    return root


@pytest.fixture(scope="module")
def same(runs, tmp_path_factory):
    """reference = the runs, mlip = an identical copy of them in another directory."""
    copy = tmp_path_factory.mktemp("copy") / "runs"
    shutil.copytree(runs, copy)
    out = tmp_path_factory.mktemp("same")
    result = run_compare(CompareConfig(reference=str(runs), mlip=str(copy), output=str(out), model=SPEC),
                         progress=False)
    return out, result


def test_identical_inputs_give_identical_numbers_and_zero_differences(same):
    out, r = same
    ref, mlip = r["reference"]["numbers"], r["mlip"]["numbers"]
    parity = {k for k in mlip if k.startswith("parity_")}
    assert parity and set(ref) == set(mlip) - parity  # parity (model on the reference frames) is the MLIP's
    assert len(ref) > 40
    for key, a in ref.items():
        b = mlip[key]
        assert (a["value"], a["uncertainty"], a["unit"], a["converged"]) == \
               (b["value"], b["uncertainty"], b["unit"], b["converged"]), key
    diffs = r["differences"]
    assert set(diffs) == {k for k, n in ref.items() if n["value"] is not None}
    assert all(d["value"] == 0.0 for d in diffs.values())
    assert json.loads((out / "numbers.json").read_text()) == r
    assert "shared" in r["mlip"]["phonons"]["cached"]  # one phonon computation for both sides
    assert r["invalid_runs"] == [] and r["mlip_validation"] is None
    assert "not validated" in (out / "report.html").read_text(encoding="utf-8")
    shifts = r["rdf_first_peak_shifts"]  # every set-point both sides ran, identical runs: zero shift
    assert set(shifts["by_temperature"]) == {"600K", "900K"}
    compared = [s for t in shifts["by_temperature"].values() for s in t["shifts"].values()]
    assert compared and all(s["shift_A"] == 0.0 for s in compared)
    assert shifts["max_abs_shift_A"] == 0.0 and shifts["passed"]
    coord = r["coordination"]  # the same runs: the same counts, compared at the same measured temperature
    assert coord["shells"] and set(coord["by_temperature"]) == {"600K", "900K"}
    assert coord["max_abs_difference"] == 0.0 and coord["passed"] and coord["limit"] == 0.2
    assert not any(w.startswith("coordination:") for w in r["warnings"])


def test_numbers_json_contract(same):
    _, r = same
    assert r["phonion_version"] and isinstance(r["warnings"], list)
    assert r["velocities"]["policy"] == "file"
    assert r["headline_temperature_K"] == {"reference": 900.0, "mlip": 900.0}
    for side in ("reference", "mlip"):
        s = r[side]
        assert s["label"] and s["runs"]
        assert sorted((run["temperature_K"], run["fix"]) for run in s["runs"]) == \
               [(600.0, "none"), (900.0, "O_c"), (900.0, "O_e"), (900.0, "none")]
        assert all(run["temperature_source"] == "metadata temperature_K_setting" for run in s["runs"])
        for run in s["runs"]:  # measured mean of the file's temperatures beside the set-point
            assert run["temperature_K_setpoint"] == run["temperature_K"] and run["status"] is None
            assert run["temperature_measured_source"] == "mean of the file's temperatures"
            assert abs(run["temperature_K_measured"] / run["temperature_K"] - 1) < 0.1
        for key, n in s["numbers"].items():
            assert set(FIELDS) <= set(n), key
            assert n["side"] == side and n["source"] and isinstance(n["converged"], bool), key
            assert n["value"] is None or isinstance(n["value"], (int, float)), key
            assert n["uncertainty"] is None or n["uncertainty"] >= 0, key
            if not n["converged"]:
                assert n["note"], key  # says why
    keys = ("E_a_meV", "D0_cm2_s", "D_300K_cm2_s", "sigma_300K_mS_cm", "haven_ratio_600K", "haven_ratio_900K",
            "D_tracer_900K_cm2_s", "D_sigma_900K_cm2_s", "mdma_D_sigma_cm2_s", "mdma_harmonic_share",
            "mdma_anharmonic_share", "mdma_O_e_share", "mdma_O_c_share", "mdma_O_n_share",
            "mdma_O_e_mode_mean_frequency_THz", "mdma_sum_rule_residual", "mdma_temperature_K",
            "pfc_Li_O_e_mpfc_eV_A2", "pfc_Li_O_c_mpfc_eV_A2", "delta_pfc_eV_A2", "D_fixed_O_e_900K_cm2_s",
            "D_fixed_O_c_900K_cm2_s", "rdf_first_peak_Ga_O_A", "vdos_mean_frequency_O_e_THz",
            "phonon_lowest_optical_frequency_THz", "phonon_n_imaginary_modes")
    assert not [k for k in keys if k not in r["reference"]["numbers"]]
    assert {"parity_force_rmse_meV_A", "parity_energy_mae_meV_atom"} <= set(r["mlip"]["numbers"])
    d = r["reference"]["numbers"]["D_tracer_600K_cm2_s"]
    assert d["converged"] or "not converged" in d["note"]
    h = r["reference"]["numbers"]["mdma_anharmonic_share"]
    assert h["unit"] == "" and abs(h["value"] + r["reference"]["numbers"]["mdma_harmonic_share"]["value"] - 1) < 1e-12


class _Report(HTMLParser):
    def __init__(self):
        super().__init__()
        self.section, self.images, self.links, self.scripts = None, {}, [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.section = a.get("data-section")
        elif tag == "img":
            self.images.setdefault(self.section, []).append(a.get("src", ""))
        elif tag == "script":
            self.scripts += 1
        for k in ("src", "href"):
            if a.get(k):
                self.links.append(a[k])

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None


def test_report_is_self_contained_with_every_figure(same):
    import matplotlib.image

    out, r = same
    text = (out / "report.html").read_text(encoding="utf-8")
    p = _Report()
    p.feed(text)
    assert p.scripts == 0 and not re.search(r"<script[^>]*src", text)
    assert not [u for u in p.links if re.match(r"(https?:)?//", u)]
    assert set(p.images) == SECTIONS  # no image outside a section, one section per analysis
    n = 0
    for sec, srcs in p.images.items():
        assert srcs, sec
        for src in srcs:
            assert src.startswith("data:image/png;base64,"), sec
            img = matplotlib.image.imread(io.BytesIO(__import__("base64").b64decode(src.split(",", 1)[1])),
                                          format="png")
            assert img.shape[0] > 50 and img.shape[1] > 50, sec
            n += 1
    assert n == len(list((out / "figures").glob("*.png"))) == sum(len(v) for v in r["figures"].values())
    assert "too short to be converged" in text.lower()


def test_surrogate_reference_is_labelled(same):
    out, r = same
    assert r["reference"]["label"] == f"surrogate reference ({SPEC})"
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "surrogate reference" in text and "not DFT" in text


def test_physics_free_li_in_a_harmonic_framework(same):
    from phonion.mdma.modes import modes_from_force_constants

    _, r = same
    ref, mlip = r["reference"]["numbers"], r["mlip"]["numbers"]
    assert ref["mdma_sum_rule_residual"]["value"] < 1e-10
    for t in (600, 900):  # free Langevin particles: D* = k_B T / (m γ), Haven ratio 1
        d, expected = ref[f"D_tracer_{t}K_cm2_s"], expected_li_diffusivity_cm2_s(t)
        assert abs(d["value"] - expected) < 4 * d["uncertainty"] and abs(d["value"] / expected - 1) < 0.4, (t, d)
        h = ref[f"haven_ratio_{t}K"]
        assert abs(h["value"] - 1) < 3 * h["uncertainty"] + 0.1, (t, h)
    for cls in ("O_e", "O_c"):  # Li do not feel the framework: freezing an O class changes nothing
        q = ref[f"D_fixed_{cls}_900K_over_free"]
        assert abs(q["value"] - 1) < 3 * q["uncertainty"] + 0.1, (cls, q)
    # D ∝ T: the apparent activation energy is k_B ln(T2/T1) / (1/T1 − 1/T2) = 62.9 meV
    ea = ref["E_a_meV"]
    assert abs(ea["value"] - 1e3 * 8.617333e-5 * math.log(1.5) / (1 / 600 - 1 / 900)) < 4 * ea["uncertainty"]
    # the parity "model" is the calculator that made the frames (left: the stored frames' precision)
    assert mlip["parity_force_rmse_meV_A"]["value"] < 0.05 and mlip["parity_energy_mae_meV_atom"]["value"] < 1e-3
    # the phonons compare computed are the force constants that drove the MD; Li has none
    calc = free_li_harmonic()
    exact = modes_from_force_constants(calc.fc, structure().get_masses()).frequencies_THz
    assert abs(ref["phonon_max_frequency_THz"]["value"] - exact.max()) < 1e-6
    assert ref["phonon_n_imaginary_modes"]["value"] == 0
    assert abs(ref["pfc_Li_O_e_mpfc_eV_A2"]["value"]) < 1e-6 and abs(ref["delta_pfc_eV_A2"]["value"]) < 1e-6


def test_aimd_like_reference_derives_both_sides_velocities_from_positions(runs, tmp_path):
    """Reference = the same runs as extxyz without velocities or metadata (like AIMD files): temperatures from
    the path, velocities of *both* sides from positions, so the same positions give the same numbers."""
    ref = tmp_path / "aimd"
    write_extxyz_copy(runs / "T900_seed0_fixnone" / "traj.h5", ref / "900K" / "run.extxyz")
    r = run_compare(CompareConfig(reference=str(ref), mlip=str(runs), output=str(tmp_path / "out"),
                                  reference_calculator=SPEC), progress=False)
    assert r["velocities"]["policy"] == "positions"
    assert r["reference"]["label"] == "reference (extxyz)"
    assert all(run["temperature_source"].startswith("path") for run in r["reference"]["runs"])
    a, b = r["reference"]["numbers"], r["mlip"]["numbers"]
    assert [run["temperature_K"] for run in r["reference"]["runs"]] == [900.0]
    for key in ("D_tracer_900K_cm2_s", "D_sigma_900K_cm2_s", "vdos_mean_frequency_Li_THz",
                "vdos_mean_frequency_O_e_THz", "rdf_first_peak_Se_O_A", "mdma_D_sigma_cm2_s"):
        assert a[key]["value"] == pytest.approx(b[key]["value"], rel=1e-6), key
    assert "parity_force_rmse_meV_A" not in b  # no model known: no parity, said so
    assert any("no force/energy parity" in w for w in r["warnings"])


def test_bad_inputs_give_one_clear_error_naming_the_directory(runs, tmp_path, data_dir):
    import ase.io
    from ase.build import bulk

    def compare(reference, mlip=runs):
        return run_compare(CompareConfig(reference=str(reference), mlip=str(mlip), output=str(tmp_path / "o")),
                           progress=False)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CompareError, match=re.escape(str(empty)) + ".*no trajectory files"):
        compare(empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a trajectory\n")
    with pytest.raises(CompareError, match=re.escape(str(junk)) + ".*no trajectory files"):
        compare(junk)
    with pytest.raises(CompareError, match="no such file or directory"):
        compare(tmp_path / "missing")
    xdatcar = tmp_path / "xdatcar"
    shutil.copytree(data_dir / "vasp" / "li6ps5i_aimd_xdatcar" / "700K", xdatcar)
    with pytest.raises(CompareError, match=re.escape(str(xdatcar)) + ".*give it with --timestep-fs"):
        compare(xdatcar)
    other = tmp_path / "other"
    other.mkdir()
    cu = bulk("Cu", cubic=True).repeat(2)
    cu.info["timestep_fs"] = 1.0
    ase.io.write(other / "cu.extxyz", [cu] * 10, format="extxyz")
    with pytest.raises(CompareError, match=re.escape(str(other)) + ".*not the same material"):
        compare(other)
    mixed = tmp_path / "mixed"
    shutil.copytree(runs / "T600_seed0_fixnone", mixed / "T600")
    shutil.copy(other / "cu.extxyz", mixed / "cu.extxyz")
    with pytest.raises(CompareError, match=re.escape(str(mixed)) + ".*different species"):
        compare(mixed)


def test_cli_error_and_help(tmp_path, capsys):
    from phonion.cli.main import main

    (tmp_path / "empty").mkdir()
    assert main(["compare", "--reference", str(tmp_path / "empty"), "--mlip", str(tmp_path / "empty"),
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "phonion compare: error:" in err and str(tmp_path / "empty") in err
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert "--reference-phonons" in out and "--validation" in out


def test_ideal_sites_maps_by_index_when_li_has_left_its_site():
    """MD built from the structure: Li 2 Å off its site still maps by index; a shuffled order does not."""
    from phonion.compare.modal import ideal_sites
    from phonion.core.structures import load_structure

    unit = load_structure("LiGa_SeO3_2")
    md = unit.repeat((2, 1, 1))
    rng = np.random.default_rng(3)
    md.positions += rng.normal(0.0, 0.15, md.positions.shape) + [0.3, -0.2, 0.1]  # thermal + drift
    li = [i for i, s in enumerate(md.get_chemical_symbols()) if s == "Li"]
    md.positions[li[:4]] += [2.0, 0.0, 0.0]  # hopped Li
    ideal = ideal_sites(unit, md, "Li")
    assert ideal is not None
    assert np.allclose(ideal.positions, unit.repeat((2, 1, 1)).positions, atol=1e-8)
    o = [i for i, s in enumerate(md.get_chemical_symbols()) if s == "O"]
    shuffled = md.copy()
    shuffled.positions[o] = md.positions[rng.permutation(o)]  # same symbols, wrong order
    assert ideal_sites(unit, shuffled, "Li") is None


# ---- compare tells the truth: invalid runs, the MLIP validation gate, limits, measured temperatures -------------
KB_EV = 8.617333262e-5


def test_invalid_runs_are_left_out_of_every_analysis(runs, same, tmp_path):
    """MLIP = the reference runs plus invalid ones (run.json): identical numbers to a comparison without them,
    every invalid run listed, and a fit whose only run is invalid gives a null number with a note."""
    dirty = tmp_path / "dirty"
    shutil.copytree(runs, dirty)
    shutil.copytree(runs / "T600_seed0_fixnone", dirty / "T600_seed1_fixnone")
    write_run_record(dirty / "T600_seed1_fixnone", status="invalid", invalid_step=1234,
            invalid_reason="atoms 3 and 7 are 1.2 Å apart (Li–Li; below 0.8 × the reference's closest approach)")
    shutil.copytree(runs / "T900_seed0_fixnone", dirty / "T900_seed5_fixnone")
    write_run_record(dirty / "T900_seed5_fixnone", status="failed",
            message="MD stopped at integrator step 345 (production step 45): force 51 eV/Å")
    write_run_record(dirty / "T900_seed1_fixO_e", status="running")
    r = run_compare(CompareConfig(reference=str(runs), mlip=str(dirty), output=str(tmp_path / "out"), model=SPEC),
                    progress=False)
    assert r["invalid_runs"] == [
        {"side": "mlip", "run": "T600_seed1_fixnone", "status": "invalid", "step": 1234,
         "reason": "atoms 3 and 7 are 1.2 Å apart (Li–Li; below 0.8 × the reference's closest approach)"},
        {"side": "mlip", "run": "T900_seed1_fixO_e", "status": "running", "step": None,
         "reason": "run.json says running: unfinished, or killed without a record"},
        {"side": "mlip", "run": "T900_seed5_fixnone", "status": "failed", "step": 345,
         "reason": "MD stopped at integrator step 345 (production step 45): force 51 eV/Å"}]
    assert sorted(run["name"] for run in r["mlip"]["runs"]) == ["T600_seed0_fixnone", "T900_seed0_fixnone",
                                                                 "T900_seed2_fixO_c"]
    ref, mlip, clean = r["reference"]["numbers"], r["mlip"]["numbers"], same[1]["reference"]["numbers"]
    for key in ("E_a_meV", "D0_cm2_s", "D_300K_cm2_s", "D_tracer_600K_cm2_s", "D_tracer_900K_cm2_s"):
        # the D fit from the remaining runs is the fit without the invalid runs
        assert (mlip[key]["value"], mlip[key]["uncertainty"]) == (clean[key]["value"], clean[key]["uncertainty"])
    lost = {k for k in ref if k.startswith("D_fixed_O_e_")}
    assert lost == {"D_fixed_O_e_900K_cm2_s", "D_fixed_O_e_900K_over_free"}
    for key in ref:
        if key in lost:  # its only run is invalid: null, with a note, never a number from invalid data
            assert mlip[key]["value"] is None and not mlip[key]["converged"], key
            assert "invalid" in mlip[key]["note"] and "T900_seed1_fixO_e" in mlip[key]["note"], key
            assert key not in r["differences"], key
        else:
            assert (mlip[key]["value"], mlip[key]["uncertainty"]) == (ref[key]["value"], ref[key]["uncertainty"]), key
    text = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    box = text.index("class=invalid")
    assert box < text.index("<h2>reference") and text.index("T600_seed1_fixnone", box) < text.index("<h2>Summary")


@pytest.fixture(scope="module")
def measured(runs, tmp_path_factory):
    """Set-points 600 and 900 K, run.json measured means 700 and 1300 K; the MLIP failed validation."""
    root = tmp_path_factory.mktemp("measured")
    for t, mean in ((600, 700.0), (900, 1300.0)):
        d = root / "runs" / f"T{t}_seed0_fixnone"
        shutil.copytree(runs / f"T{t}_seed0_fixnone", d)
        write_run_record(d, status="complete", mean_temperature_K=mean, steps_done=STEPS)
    (root / "validation.json").write_text(json.dumps(FAILED_VALIDATION))
    r = run_compare(CompareConfig(reference=str(root / "runs"), mlip=str(root / "runs"), output=str(root / "out"),
                                  model=SPEC, validation=str(root / "validation.json")), progress=False)
    return root / "out", r


def test_arrhenius_uses_measured_temperatures(measured):
    out, r = measured
    runs = {run["temperature_K_setpoint"]: run for run in r["reference"]["runs"]}
    assert {t: run["temperature_K_measured"] for t, run in runs.items()} == {600.0: 700.0, 900.0: 1300.0}
    assert all(run["temperature_measured_source"] == "run.json mean_temperature_K" for run in runs.values())
    n = r["reference"]["numbers"]
    d1, d2 = n["D_tracer_600K_cm2_s"]["value"], n["D_tracer_900K_cm2_s"]["value"]
    # two temperatures: the fit is the line through both points, at the measured T
    expected = 1e3 * KB_EV * math.log(d2 / d1) / (1 / 700 - 1 / 1300)
    assert n["E_a_meV"]["value"] == pytest.approx(expected, rel=1e-9)
    assert abs(n["E_a_meV"]["value"] - 1e3 * KB_EV * math.log(d2 / d1) / (1 / 600 - 1 / 900)) > 5
    assert "700, 1300 K (set-point 600, 900 K)" in n["E_a_meV"]["note"]
    # Nernst–Einstein σ ∝ D_σ / T with the measured T
    ratio = [n[f"sigma_{t}K_mS_cm"]["value"] * m / n[f"D_sigma_{t}K_cm2_s"]["value"]
             for t, m in ((600, 700), (900, 1300))]
    assert ratio[0] == pytest.approx(ratio[1], rel=1e-9)
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "T set-point" in text and "700 K" in text


def test_failed_validation_makes_every_mlip_number_untrustworthy(measured):
    out, r = measured
    assert r["mlip_validation"] == FAILED_VALIDATION
    mlip, ref = r["mlip"]["numbers"], r["reference"]["numbers"]
    assert len(mlip) > 40 and any(k.startswith("parity_") for k in mlip)
    for key, n in mlip.items():
        assert n["converged"] is False, key
        assert n["note"].startswith("MLIP failed validation: force_rmse_meV_A (219.7 vs limit 100.0), "
                                    "min_pair_distance_ratio (0.55 vs limit 0.8)"), key
    assert any(n["converged"] for n in ref.values())  # the reference keeps its own verdicts
    assert not any(d["converged"] for d in r["differences"].values())
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.index("MLIP fit for MD: FAILED") < text.index("<h2>reference")
    assert "no committee" in text and "<td class=no>fail</td>" in text


def test_limits_unphysical_numbers_are_never_converged():
    from phonion.compare.analyses import LIMITS, number
    from phonion.compare.checks import apply_limits, reference_rdf_bounds
    from phonion.compare.report import _row

    def n(value, unit="", unc=None):
        return number(value, unit, "mlip", "test", uncertainty=unc)

    nums = {"mdma_anharmonic_share": n(1.5, unc=0.01), "mdma_O_e_share_900K": n(-0.3, unc=0.01),
            "mdma_harmonic_share": n(0.6, unc=0.01), "haven_ratio_900K": n(2e25, unc=1e23),
            "haven_ratio_600K": n(0.8, unc=0.1), "D_tracer_900K_cm2_s": n(-1e-6, "cm²/s"),
            "D_sigma_900K_cm2_s": n(1e-5, "cm²/s", unc=2e-5), "E_a_meV": n(300.0, "meV", unc=20.0),
            "rdf_first_peak_Se_Se_A": n(1.525, "Å"), "rdf_first_peak_Ga_O_A": n(1.95, "Å"),
            "parity_force_rmse_meV_A": n(219.7, "meV/Å"), "parity_force_rmse_Li_meV_A": n(40.0, "meV/Å")}
    r = np.arange(0.025, 6.0, 0.05)
    g = {"Se-Se": np.where(r > 3.5, 1.0, 0.0), "Ga-O": np.where(r > 1.8, 1.0, 0.0)}
    ref = {"rdf_first_peak_Se_Se_A": n(4.075, "Å"), "rdf_first_peak_Ga_O_A": n(1.975, "Å")}
    apply_limits(nums, reference_rdf_bounds(ref, {"r_A": r, "g": g}))
    bad = {k for k, x in nums.items() if not x["converged"]}
    assert bad == {"mdma_anharmonic_share", "mdma_O_e_share_900K", "haven_ratio_900K", "D_tracer_900K_cm2_s",
                   "D_sigma_900K_cm2_s", "rdf_first_peak_Se_Se_A", "parity_force_rmse_meV_A"}
    assert "outside the physical range [-0.1, 1.1]" in nums["mdma_anharmonic_share"]["note"]
    assert "Haven ratio 2e+25 outside" in nums["haven_ratio_900K"]["note"]
    assert "≤ 0" in nums["D_tracer_900K_cm2_s"]["note"]
    assert "relative uncertainty 200 %" in nums["D_sigma_900K_cm2_s"]["note"]
    se = nums["rdf_first_peak_Se_Se_A"]["note"]
    assert "0.8 × the reference's 4.08 Å" in se and "closest approach 3.5 Å" in se
    assert f"limit {LIMITS['parity_force_rmse_max_meV_A']:g} meV/Å" in nums["parity_force_rmse_meV_A"]["note"]
    assert "class=no" in _row("parity_force_rmse_meV_A", None, nums["parity_force_rmse_meV_A"], None)
    assert "class=yes" in _row("parity_force_rmse_Li_meV_A", None, nums["parity_force_rmse_Li_meV_A"], None)
