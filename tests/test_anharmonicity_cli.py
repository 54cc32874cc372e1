"""``phonion anharmonicity``: the command contract (JSON keys, files), σ_A of an exactly harmonic run through the
whole command path, and bad input (issue 16): a trajectory without forces (σ_A null, spectra still computed, said
so), frames too far apart for the highest mode (flagged per mode), a run too short to resolve any linewidth
(flagged per mode, not fitted), unknown options and missing phonons (one error line, exit code 2)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "mdma"))

from phonion.cli.main import main  # noqa: E402

MODE_KEYS = {"index", "class", "harmonic_frequency_THz", "peak_frequency_THz", "linewidth_THz", "linewidth_err_THz",
             "status"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(harmonic Langevin H5MD with forces, the same without forces, phonon dir) of the LiO3 spring network."""
    from mdma_systems import l12_phonons

    from phonion.md.io import read_trajectory
    from phonion.md.io.h5md import H5MDWriter
    from phonion.mdma.harmonic import ForceConstantCalculator, langevin_to_h5md
    from phonion.mdma.phonon_io import save_phonons
    from phonion.mdma.phonons import to_ase_atoms

    d = tmp_path_factory.mktemp("anh")
    phonon = l12_phonons()
    save_phonons(phonon, d / "phonons")
    atoms = to_ase_atoms(phonon.supercell)
    langevin_to_h5md(atoms, ForceConstantCalculator.from_phonopy(phonon), d / "md.h5", 300.0, 2.0, 6000,
                     friction_per_fs=0.004, interval=2, seed=2)
    t = read_trajectory([d / "md.h5"])
    with H5MDWriter(d / "noforces.h5", list(t.symbols), t.masses, timestep_fs=t.timestep_fs, stride=t.stride) as w:
        w.append(t.positions, t.cells, velocities=t.velocities)
    return d / "md.h5", d / "noforces.h5", d / "phonons"


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_contract_and_harmonic_sigma(run, tmp_path, capsys):
    md, _, phon = run
    out = tmp_path / "out"
    d = _json(capsys, ["anharmonicity", str(md), "--phonons", str(phon), "-o", str(out), "--json"])
    for key in ("sigma_A", "sigma_A_by_species", "sigma_A_by_class", "sigma_A_time_series", "modes",
                "frequency_resolution_THz", "hopping", "linewidth_summary", "mdma_anharmonic_fraction"):
        assert key in d
    assert d["sigma_A"] <= 1e-6 and max(d["sigma_A_by_species"].values()) <= 1e-6
    assert d["hopping"]["handling"] == "reanchor" and "nearest Li site" in d["hopping"]["text"]
    assert d["hopping"]["n_atom_frames_reanchored"] == 0
    assert len(d["modes"]) == 96 and all(MODE_KEYS <= set(m) for m in d["modes"])
    assert d["frequency_resolution_THz"] == pytest.approx(1 / (d["n_frames"] * 4e-3), rel=1e-6)
    assert sum(m["status"] == "fitted" for m in d["modes"]) > 60
    series = np.loadtxt(d["sigma_A_time_series"], delimiter=",", skiprows=1)
    assert series.shape[0] == d["n_frames_with_forces"] and np.nanmax(series[:, 1]) <= 1e-6
    for name in ("result.json", "modes.csv", "spectra.npz", "linewidths.png", "mode_spectra.png", "sigma_A.png"):
        assert (out / name).is_file()
    assert json.loads((out / "result.json").read_text())["sigma_A"] == d["sigma_A"]


def test_no_forces_sigma_null_spectra_kept(run, tmp_path, capsys):
    _, noforces, phon = run
    d = _json(capsys, ["anharmonicity", str(noforces), "--phonons", str(phon), "-o", str(tmp_path / "o"), "--json",
                       "--no-mdma", "--no-plots"])
    assert d["sigma_A"] is None and d["sigma_A_by_species"] is None and d["sigma_A_by_class"] is None
    assert d["sigma_A_time_series"] is None
    assert any("no forces" in n for n in d["notes"])
    assert sum(m["status"] == "fitted" for m in d["modes"]) > 60


def test_frames_too_far_apart_and_too_short(run, tmp_path, capsys):
    md, _, phon = run
    d = _json(capsys, ["anharmonicity", str(md), "--phonons", str(phon), "-o", str(tmp_path / "a"), "--json",
                       "--every", "8", "--no-mdma", "--no-plots"])                  # 32 fs: Nyquist 15.6 THz
    high = [m for m in d["modes"] if m["harmonic_frequency_THz"] > d["nyquist_THz"]]
    assert high and all(m["status"] == "above Nyquist" and m["linewidth_THz"] is None for m in high)
    assert any("above Nyquist" in n for n in d["notes"])
    assert d["sigma_A"] <= 1e-6                                                     # σ_A needs no velocities
    d = _json(capsys, ["anharmonicity", str(md), "--phonons", str(phon), "-o", str(tmp_path / "b"), "--json",
                       "--n-segments", "30", "--no-mdma", "--no-plots"])            # 0.4 ps segments
    optical = [m for m in d["modes"] if m["status"] != "acoustic"]
    assert all(m["status"] == "not resolved" and m["linewidth_THz"] is None for m in optical)
    assert d["linewidth_summary"]["all"]["n_fitted"] == 0


def test_bad_input_one_line(run, tmp_path, capsys):
    md, _, phon = run
    assert main(["anharmonicity", str(md), "--phonons", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("phonion anharmonicity: error:") and "nope" in err[0]
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        main(["anharmonicity", str(md), "--phonons", str(phon), "-o", str(tmp_path / "o"), "--hopping", "ignore"])
    assert main(["anharmonicity", str(md), "--phonons", str(phon), "-o", str(tmp_path / "o"),
                 "--species", "Na"]) == 2
    assert "no 'Na' atoms" in capsys.readouterr().err
