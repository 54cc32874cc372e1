"""phonion.core.mace_graph: mace's graph kept between MD steps gives mace's own numbers, and is rebuilt
exactly when the Verlet criterion (an atom moved half the skin), a cell, the atoms or a wrap demand it.

The model is an untrained tiny MACE with ZBL pair repulsion (tests/md/test_batched.py) on the bundled
80-atom LiGa(SeO3)2 cell, in float64: the kept graph must reproduce mace's per-call graph to round-off."""

import numpy as np
import pytest

from phonion.core.calculators import CalculatorSpecError, check_mace_options, parse_spec, resolve_calculator
from phonion.core.structures import load_structure
from test_batched import tiny_mace


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    import torch

    path = tmp_path_factory.mktemp("mg") / "m.model"
    torch.save(tiny_mace(0), path)
    return str(path)


def walk(atoms, steps: int, size: float, seed: int = 0):
    """A random walk of the positions (MD-like small moves) yielding after every move."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        atoms.positions = atoms.positions + rng.normal(0, size, atoms.positions.shape)
        yield atoms


def test_kept_graph_equals_mace_at_every_step_and_rebuilds_only_when_needed(model):
    """Energy, forces and stress equal mace's MACECalculator (graph rebuilt every call) to 1e-10 over a walk
    with rebuilds, a wrap of all atoms into the cell, a strained cell and a swapped species."""
    kept = resolve_calculator(f"mace:{model}?dtype=float64", device="cpu")
    plain = resolve_calculator(f"mace:{model}?dtype=float64&skin=0", device="cpu")
    assert hasattr(kept, "graph") and not hasattr(plain, "graph")
    assert kept.graph.skin == 0.5
    atoms, twin = load_structure("LiGa_SeO3_2"), load_structure("LiGa_SeO3_2")
    atoms.calc, twin.calc = kept, plain
    start = atoms.positions.copy()

    def same():
        twin.positions, twin.cell, twin.numbers = atoms.positions, atoms.cell, atoms.numbers
        assert atoms.get_potential_energy() == pytest.approx(twin.get_potential_energy(), abs=1e-10)
        assert np.abs(atoms.get_forces() - twin.get_forces()).max() < 1e-10
        assert np.abs(atoms.get_stress() - twin.get_stress()).max() < 1e-10

    for _ in walk(atoms, 40, 0.02):
        same()
        moved = np.linalg.norm(atoms.positions - start, axis=1).max()
    # 40 moves of 0.035 Å rms: rebuilt several times, far fewer than 40
    assert 2 <= kept.graph.n_builds < 20 and moved > 0.25
    # a fresh calculator at these positions (as after a restart from a checkpoint) builds its graph here,
    # not where the walk's last rebuild was: the canonical edge order makes the forces bit-identical
    fresh = atoms.copy()
    fresh.calc = resolve_calculator(f"mace:{model}?dtype=float64", device="cpu")
    np.testing.assert_array_equal(fresh.get_forces(), atoms.get_forces())
    n = kept.graph.n_builds
    atoms.positions = atoms.positions + 0.01   # a small rigid move: the graph is kept
    same()
    assert kept.graph.n_builds == n
    atoms.wrap()                                # atoms jump by a cell vector: rebuilt, same numbers
    same()
    assert kept.graph.n_builds == n + 1
    atoms.set_cell(atoms.cell * 1.02, scale_atoms=True)   # a new cell: rebuilt
    same()
    assert kept.graph.n_builds == n + 2
    numbers = atoms.numbers.copy()
    numbers[[0, -1]] = numbers[[-1, 0]]          # swapped species (same count): rebuilt
    atoms.numbers = numbers
    same()
    assert kept.graph.n_builds == n + 3


def test_a_pair_coming_within_the_cutoff_between_rebuilds_is_counted(model):
    """Two atoms of a dimer in a big box moved toward each other in steps of skin/5: the pair enters the
    cutoff between two rebuilds, and the kept graph's energy follows mace's at every step (it would miss
    the pair if candidates were not ``r_max + skin`` or the criterion were wrong)."""
    from ase import Atoms

    kept = resolve_calculator(f"mace:{model}?dtype=float64&skin=0.5", device="cpu")
    plain = resolve_calculator(f"mace:{model}?dtype=float64&skin=0", device="cpu")
    energies = []
    for d in np.arange(5.0, 2.9, -0.1):   # r_max is 4 Å; each atom moves 0.05 Å a step
        a = Atoms("LiO", positions=[[10, 10, 10 - d / 2], [10, 10, 10 + d / 2]], cell=[20, 20, 20], pbc=True)
        b = a.copy()
        if not energies:
            atoms = a
            atoms.calc = kept
        else:
            atoms.positions = a.positions
        b.calc = plain
        e = atoms.get_potential_energy()
        assert e == pytest.approx(b.get_potential_energy(), abs=1e-12)
        assert np.abs(atoms.get_forces() - b.get_forces()).max() < 1e-12
        energies.append(e)
    outside = energies[:10]                 # d = 5.0 ... 4.1 Å: no pair within r_max
    assert np.ptp(outside) == 0 and abs(energies[-1] - outside[0]) > 1e-4   # inside: it interacts
    # one build, then one each time an atom has moved 0.25 Å (5 steps of 0.05, 6 when the sum rounds below)
    assert kept.graph.n_builds in (4, 5)


def test_batched_engine_keeps_its_graph_too(model):
    """BatchedMACE over 3 systems: forces equal mace's per system along a walk, with few rebuilds."""
    from phonion.md.batched_forces import BatchedMACE

    plain = resolve_calculator(f"mace:{model}?dtype=float64&skin=0", device="cpu")
    bm = BatchedMACE(f"mace:{model}?dtype=float64", device="cpu")
    systems = [load_structure("LiGa_SeO3_2") for _ in range(3)]
    walks = [walk(a, 15, 0.02, seed=i) for i, a in enumerate(systems)]
    for _ in range(15):
        for w in walks:
            next(w)
        out = bm.compute(systems)
        for a, (e, f, var) in zip(systems, out):
            b = a.copy()
            b.calc = plain
            assert e == pytest.approx(b.get_potential_energy(), abs=1e-10)
            assert np.abs(f - b.get_forces()).max() < 1e-10 and var is None
    assert 2 <= bm.n_graph_builds < 15


def test_batched_graphs_follow_a_changed_batch(model):
    """The batched engine's kept graphs: a changed species, a run leaving the batch, and two equal-size systems
    trading chunks under max_batch=2 each give mace's forces (rebuilt where the graph is no longer valid)."""
    from phonion.md.batched_forces import BatchedMACE

    plain = resolve_calculator(f"mace:{model}?dtype=float64&skin=0", device="cpu")
    bm = BatchedMACE(f"mace:{model}?dtype=float64", device="cpu")
    systems = [load_structure("LiGa_SeO3_2") for _ in range(3)]
    for i, a in enumerate(systems):
        a.rattle(0.2, seed=i)   # 0.2 Å rms apart: each system's atoms lie ≥ skin / 2 from another's

    def check(atoms_list):
        for a, (e, f, _) in zip(atoms_list, bm.compute(atoms_list)):
            b = a.copy()
            b.calc = plain
            assert e == pytest.approx(b.get_potential_energy(), abs=1e-10)
            assert np.abs(f - b.get_forces()).max() < 1e-10

    check(systems)
    n = bm.n_graph_builds
    numbers = systems[1].numbers.copy()
    numbers[[0, -1]] = numbers[[-1, 0]]
    systems[1].numbers = numbers            # same positions, other species: rebuilt
    check(systems)
    assert bm.n_graph_builds == n + 1
    check(systems[::2])                     # a run left the batch: a new chunk, the old one freed
    assert bm.n_graph_builds == n + 2 and len(bm._graphs) == 1
    bm.max_batch = 2
    check(systems)                          # chunks (0, 2) and (2, 1)
    n = bm.n_graph_builds
    check([systems[0], systems[2], systems[1]])   # systems 1 and 2 trade chunks: both rebuilt, not reused
    assert bm.n_graph_builds == n + 2 and len(bm._graphs) == 2


def test_the_kept_edges_do_not_depend_on_where_the_graph_was_built(model):
    """Two graphs built at different positions (within skin / 2 of the query) give the same edges in the same
    order: the canonical order that makes a resumed run bit-identical."""
    a = load_structure("LiGa_SeO3_2")
    b, query = a.copy(), a.copy()
    b.rattle(0.05, seed=1)
    query.rattle(0.05, seed=2)
    graphs = []
    for start in (a, b):
        calc = resolve_calculator(f"mace:{model}?dtype=float64", device="cpu")
        calc._atoms_to_batch(start)
        graphs.append(calc._atoms_to_batch(query))
        assert calc.graph.n_builds == 1
    for key in ("edge_index", "shifts", "unit_shifts", "positions"):
        assert graphs[0][key].shape == graphs[1][key].shape
        assert bool((graphs[0][key] == graphs[1][key]).all()), key


def test_run_json_says_how_the_graph_is_built_and_open_cells_are_not_kept(model):
    from ase import Atoms
    from ase.calculators.emt import EMT

    from phonion.core.mace_graph import graph_note
    from phonion.md.batched_forces import BatchedMACE

    kept = resolve_calculator(f"mace:{model}?dtype=float64&skin=0.3", device="cpu")
    assert "Verlet skin 0.3 Å" in graph_note(kept) and "0.15 Å" in graph_note(kept)
    assert graph_note(resolve_calculator(f"mace:{model}?skin=0", device="cpu")) == "mace's own graph built at every step"
    assert graph_note(EMT()) is None
    assert "Verlet skin 0.5" in graph_note(BatchedMACE(f"mace:{model}", device="cpu"))
    assert graph_note(BatchedMACE(f"mace:{model}?skin=0", device="cpu")) == "mace's own graph built at every step"
    # a molecule (no periodic cell): mace sizes its cell from the positions, so nothing is kept
    mol = Atoms("LiO", positions=[[0, 0, 0], [0, 0, 1.7]])
    twin = mol.copy()
    mol.calc, twin.calc = kept, resolve_calculator(f"mace:{model}?dtype=float64&skin=0", device="cpu")
    for _ in range(3):
        mol.positions = twin.positions = mol.positions + 0.01
        assert np.abs(mol.get_forces() - twin.get_forces()).max() < 1e-12
    assert kept.graph.n_builds == 0


@pytest.mark.parametrize("value", ["-1", "abc", "4", "nan"])
def test_a_bad_skin_is_one_clear_error(value):
    with pytest.raises(CalculatorSpecError, match="skin is the Verlet skin"):
        check_mace_options(parse_spec(f"mace:m.model?skin={value}"))
