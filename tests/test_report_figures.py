"""The comparison report's figures and files say what they show (issue: legends, titles, order, paths,
warnings): legends name only the sides drawn, titles fit, runs in temperature order, paths relative."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from phonion.compare import plots
from phonion.compare.warn import ours
from phonion.core.paths import relative_paths

LABELS = {"reference": "surrogate reference (chgnet)",
          "mlip": "MLIP (MACE committee of 3 (/a/very/long/absolute/path/to/the/demo-out/learn/committee))"}


@pytest.fixture
def figures(monkeypatch, tmp_path):
    made = []

    def keep(fig, path, tight=True):
        made.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    return made


def _num(v, e=None):
    return {"value": v, "uncertainty": e}


def test_bar_legends_name_only_the_sides_drawn_as_bars(figures):
    only_mlip = {"reference": None, "mlip": {1300.0: {"none": _num(3e-5, 1e-5), "O_e": _num(2e-5, 1e-5),
                                                       "O_c": _num(1e-5, 5e-6)}}}
    plots.plot_fixed(only_mlip, LABELS, "x.png")
    legend = figures[-1].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["MLIP"]
    both = {s: {"pfc_Li_O_e_mpfc_eV_A2": _num(-0.1, 0.02), "pfc_Li_O_c_mpfc_eV_A2": _num(0.05, 0.01),
                "delta_pfc_eV_A2": _num(-0.15, 0.03), "pfc_Li_O_e_bond_eV_A2": _num(-1.0, 0.1),
                "pfc_Li_O_c_bond_eV_A2": _num(-0.8, 0.1)} for s in ("reference", "mlip")}
    plots.plot_pfc(both, LABELS, "Li", "y.png")
    legend = figures[-1].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["reference", "MLIP"]
    colours = [h.get_facecolor()[:3] for h in legend.legend_handles]  # bars (patches), in the sides' colours
    assert np.allclose(colours[0], (0, 0, 0)) and not np.allclose(colours[1], (0, 0, 0))


def test_titles_wrap_inside_the_figure_and_runs_are_in_temperature_order(figures):
    t = np.linspace(0, 1, 5)
    data = {s: [(T, f"T{T:g}", t, t * T / 1000) for T in (1000.0, 1150.0, 1300.0, 900.0)]
            for s in ("reference", "mlip")}
    plots.plot_msd(data, LABELS, "Li", "m.png")
    fig = figures[-1]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert [float(x.split()[0]) for x in labels] == [900.0, 1000.0, 1150.0, 1300.0]
    title = fig._suptitle.get_text()
    assert max(map(len, title.splitlines())) <= fig.get_figwidth() * 14
    plots.plot_fixed({"reference": None, "mlip": {1300.0: {"none": _num(3e-5, 1e-5)}}}, LABELS, "f.png")
    narrow = figures[-1]  # 4.2 inches wide: the two labels need three lines
    lines = narrow._suptitle.get_text().splitlines()
    assert len(lines) >= 2 and max(map(len, lines)) <= narrow.get_figwidth() * 14


def test_paths_inside_the_project_are_written_relative_to_the_output(tmp_path):
    out = tmp_path / "demo" / "compare"
    r = relative_paths({"dir": str(tmp_path / "demo" / "reference"),
                        "note": f"mlip T900: {tmp_path}/demo/mlip_md/T900/traj.h5: the MSD never ...",
                        "model": f"mace:{tmp_path}/demo/learn/a.model,{tmp_path}/demo/learn/b.model",
                        "elsewhere": "/opt/models/foundation.model", "n": 3.0}, out)
    assert r == {"dir": "../reference", "note": "mlip T900: ../mlip_md/T900/traj.h5: the MSD never ...",
                 "model": "mace:../learn/a.model,../learn/b.model", "elsewhere": "/opt/models/foundation.model",
                 "n": 3.0}


def test_report_keeps_phonion_warnings_and_shows_third_party_ones_once_elsewhere():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn_explicit("the MSD never becomes linear", UserWarning, plots.__file__, 10)
        warnings.warn_explicit("`torch.jit.load` is deprecated", DeprecationWarning, plots.__file__, 11)
        warnings.warn_explicit("cuequivariance not available", UserWarning, "/usr/lib/site-packages/mace/x.py", 3)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        kept = ours(caught, "mlip: ")
    assert kept == ["mlip: the MSD never becomes linear"]
    assert sorted(str(w.message) for w in shown) == ["`torch.jit.load` is deprecated", "cuequivariance not available"]
    assert {w.filename for w in shown} == {plots.__file__, "/usr/lib/site-packages/mace/x.py"}  # real origin kept


def test_why_not_converged_lists_each_reason_once_with_its_keys():
    from phonion.compare.report import _why_not

    result = {"reference": {"numbers": {"a": {"converged": False, "note": "too short"},
                                        "b": {"converged": True, "note": ""}}},
              "mlip": {"numbers": {"a": {"converged": False, "note": "MLIP failed validation"},
                                   "c": {"converged": False, "note": "MLIP failed validation"}}}}
    html = _why_not(result)
    assert "2 quantities did not pass" in html
    assert html.count("MLIP failed validation") == 1  # one line for both keys
    assert "<li><b>a, c</b> (mlip): MLIP failed validation</li>" in html
    assert "<li><b>a</b> (reference): too short</li>" in html
