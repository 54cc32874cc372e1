"""The calculator SPEC resolver: every form builds a working ASE calculator, bad SPECs fail clearly."""

import numpy as np
import pytest
from ase.build import bulk

from phonion.core.calculators import CalculatorSpecError, calculator_metadata, parse_spec, resolve_calculator


def _numerical_forces(atoms, delta=1e-3):
    """Central finite differences of the energy, eV/Å."""
    forces = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            for sign in (1, -1):
                shifted = atoms.copy()
                shifted.calc = atoms.calc
                shifted.positions[i, k] += sign * delta
                forces[i, k] -= sign * shifted.get_potential_energy() / (2 * delta)
    return forces


@pytest.mark.parametrize("text,kind,target,options", [
    ("chgnet", "chgnet", None, {}),
    ("CHGNet", "chgnet", None, {}),
    ("emt", "emt", None, {}),
    ("mace:run/model.model", "mace", "run/model.model", {}),
    ("mace:m.model?device=cuda&dtype=float32", "mace", "m.model", {"device": "cuda", "dtype": "float32"}),
    ("ase.calculators.emt:EMT", "python", "ase.calculators.emt:EMT", {}),
])
def test_parse_spec_forms(text, kind, target, options):
    spec = parse_spec(text)
    assert (spec.kind, spec.target, spec.options) == (kind, target, options)


@pytest.mark.parametrize("bad", ["", "   ", "vasp", "mace:", "nonsense_without_colon"])
def test_bad_spec_is_one_clear_error(bad):
    with pytest.raises(CalculatorSpecError, match="SPEC|mace needs"):
        parse_spec(bad)


def test_missing_model_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.model"
    with pytest.raises(CalculatorSpecError, match="nope.model"):
        resolve_calculator(f"mace:{missing}")


def test_module_function_errors_name_the_module():
    with pytest.raises(CalculatorSpecError, match="no_such_module_xyz"):
        resolve_calculator("no_such_module_xyz:make")
    with pytest.raises(CalculatorSpecError, match="no function"):
        resolve_calculator("ase.calculators.emt:NoSuchThing")
    with pytest.raises(CalculatorSpecError, match="not an ASE calculator"):
        resolve_calculator("builtins:dict")


@pytest.mark.parametrize("spec", ["emt", "ase.calculators.emt:EMT"])
def test_emt_forces_are_minus_energy_gradient(spec):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = resolve_calculator(spec)
    np.testing.assert_allclose(atoms.get_forces(), _numerical_forces(atoms), atol=1e-5)


def test_mace_model_file_through_maceccalculator(tmp_path):
    """A tiny MACE model saved with torch.save loads through mace's own MACECalculator."""
    import mace.modules  # mace before e3nn (torch 2.13 weights-only unpickling)
    import torch
    from e3nn import o3

    torch.manual_seed(0)
    model = mace.modules.MACE(
        r_max=4.0, num_bessel=4, num_polynomial_cutoff=3, max_ell=1,
        interaction_cls=mace.modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=mace.modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=1, num_elements=1, hidden_irreps=o3.Irreps("8x0e + 8x1o"),
        MLP_irreps=o3.Irreps("8x0e"), gate=torch.nn.functional.silu,
        atomic_energies=np.array([-3.0]), avg_num_neighbors=12.0, atomic_numbers=[29],
        correlation=2, radial_type="bessel",
    ).double()
    path = tmp_path / "tiny.model"
    torch.save(model, path)

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=2)
    atoms.calc = resolve_calculator(f"mace:{path}?dtype=float64", device="cpu")
    forces = atoms.get_forces()
    np.testing.assert_allclose(forces, _numerical_forces(atoms, 1e-4), atol=1e-5)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)  # translation invariance


def test_chgnet_runs_offline_on_the_bundled_structure():
    from phonion.core.structures import load_structure

    atoms = load_structure("LiGa_SeO3_2")
    atoms.calc = resolve_calculator("chgnet", device="cpu")
    forces = atoms.get_forces()
    assert forces.shape == (80, 3) and np.isfinite(forces).all()
    # translation invariance: forces of an isolated periodic system sum to zero
    assert np.abs(forces.sum(axis=0)).max() < 1e-3
    # the MP-relaxed structure is near a minimum of CHGNet too (PBE-trained)
    assert np.abs(forces).max() < 0.5
    assert calculator_metadata("chgnet", surrogate_reference=True)["reference_kind"] == "surrogate reference"
