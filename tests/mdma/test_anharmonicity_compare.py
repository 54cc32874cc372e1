"""σ_A and linewidths as ``phonion compare`` numbers (issue 16), on the compare tests' system: the bundled
LiGa(SeO3)2 with an exactly harmonic framework and free Li (compare_systems), whose force constants are the ones
that drove the MD. Known answers: σ_A of all atoms and of the O classes ≈ 0; the keys the report shows are the
keys made here; a side whose phonons cannot be read loses these numbers with a warning, not the comparison.
(≈ 0: ≤ 1e-5, not round-off: phonopy's symmetrisation leaves Li–framework force constants of ≤ 5e-7 eV/Å² in the
network, and a free Li re-anchored to the nearest Li site has a u that differs from the MD's by Ångströms.)"""

import json

import numpy as np
import pytest
from phonopy import Phonopy

from compare_systems import free_li_harmonic, make_run, structure
from phonion.compare.anharmonicity import KEYS, anharmonicity_numbers
from phonion.compare.report import HEADLINE_KEYS
from phonion.compare.runs import discover_runs
from phonion.mdma.phonon_io import save_phonons
from phonion.mdma.phonons import to_phonopy_atoms


@pytest.fixture(scope="module")
def side(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    make_run(root, 900, n_steps=1500)
    calc = free_li_harmonic()
    phonon = Phonopy(to_phonopy_atoms(structure()), np.eye(3, dtype=int), primitive_matrix="P")
    phonon.force_constants = calc.fc.reshape(80, 3, 80, 3).transpose(0, 2, 1, 3)
    save_phonons(phonon, root / "phonons")
    (run,) = discover_runs(str(root), "reference")
    return run, root


def test_numbers_of_a_harmonic_framework_with_free_li(side, tmp_path):
    run, root = side
    caught = []
    n = anharmonicity_numbers(run, root / "phonons", tmp_path / "anh", "reference", mobile="Li", anion="O",
                              velocities="file", unit=structure(), caught=caught)
    assert not caught
    assert set(KEYS) <= set(n) and set(KEYS) <= set(HEADLINE_KEYS)
    assert n["sigma_A"]["value"] <= 1e-5
    assert n["sigma_A_O_e"]["value"] <= 1e-5 and n["sigma_A_O_c"]["value"] <= 1e-5
    assert "atom-frames" in n["sigma_A"]["note"]
    assert all(0.0 <= n[k]["uncertainty"] <= 1e-5 for k in ("sigma_A", "sigma_A_Li", "sigma_A_O_e", "sigma_A_O_c"))
    assert "over the Li atoms" in n["sigma_A_Li"]["note"]
    for c in ("O_e", "O_c"):
        lw = n[f"linewidth_{c}_mean_THz"]
        assert lw["unit"] == "THz" and ("fitted of" in lw["note"])
    assert n["linewidth_resolution_THz"]["value"] == pytest.approx(1 / (300 * 10e-3), rel=0.02)
    assert (tmp_path / "anh" / "result.json").is_file()
    res = json.loads((tmp_path / "anh" / "result.json").read_text())     # the error keys beside the values
    assert set(res["sigma_A_by_species_err"]) == set(res["sigma_A_by_species"])
    assert set(res["sigma_A_by_class_err"]) == set(res["sigma_A_by_class"])
    assert res["sigma_A_error"]["block_frames"] >= 1 and isinstance(res["sigma_A"], float)


def test_failure_is_a_warning_not_a_crash(side, tmp_path):
    run, root = side
    caught = []
    assert anharmonicity_numbers(run, root / "missing", tmp_path / "x", "mlip", mobile="Li", anion="O",
                                 velocities="file", caught=caught) == {}
    assert caught and caught[0].startswith("mlip: no σ_A / linewidths:")
