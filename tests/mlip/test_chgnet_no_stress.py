"""``chgnet?stress=false``: the same energy and forces as CHGNet's own calculator, no stress pass;
the reference stage records no stress with it; bad options are one clear error."""

import numpy as np
import pytest

from phonion.core.calculators import CalculatorSpecError, resolve_calculator
from phonion.core.structures import load_structure


@pytest.fixture(scope="module")
def atoms():
    a = load_structure("LiGa_SeO3_2")
    a.positions += np.random.default_rng(0).normal(0, 0.05, a.positions.shape)
    return a


def test_same_energy_and_forces_without_stress(atoms):
    full, fast = resolve_calculator("chgnet", device="cpu"), resolve_calculator("chgnet?stress=false", device="cpu")
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = full, fast
    np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-6)
    assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-6)
    assert "stress" in full.results and "stress" not in fast.results
    assert "stress" not in fast.implemented_properties  # the MD driver then stores no stress


@pytest.mark.parametrize("spec, match", [("chgnet?stress=maybe", "stress must be true or false"),
                                         ("chgnet?stres=false", "unknown CHGNet option")])
def test_bad_options(spec, match):
    with pytest.raises(CalculatorSpecError, match=match):
        resolve_calculator(spec, device="cpu")


def test_reference_config_stress_false():
    from phonion.mlip.reference import ReferenceConfig

    cfg = ReferenceConfig(calculator="chgnet?device=cpu", stress=False, temperatures_K=[900], steps=10,
                          sample_every=2)
    assert cfg.calculator == "chgnet?device=cpu&stress=false"
    assert cfg.md_config(0).calculator == cfg.calculator  # the run records what made its frames
    with pytest.raises(ValueError, match="stress=false is a CHGNet option"):
        ReferenceConfig(calculator="emt", stress=False, temperatures_K=[900], steps=10, sample_every=2)
