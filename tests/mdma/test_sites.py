"""Tests for phonion.mdma.sites: automatic O_e / O_c / O_n classification."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import spglib
from ase import Atoms

from phonion.mdma.sites import SiteClasses, classify_oxygens, coordination, polyhedral_sharing
from phonion.core.structures import bundled_structure_path, load_structure

CLASSES = ("O_e", "O_c", "O_n")


def _spglib_dataset(atoms, symprec=1e-3):
    """spglib dataset field access that works for dict (spglib < 2.5) and object results."""
    ds = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers),
                                     symprec=symprec)
    return (lambda k: ds[k]) if isinstance(ds, dict) else (lambda k: getattr(ds, k))


@pytest.fixture(scope="module")
def ligaseo():
    return load_structure("LiGa_SeO3_2")


@pytest.fixture(scope="module")
def classes(ligaseo):
    return classify_oxygens(ligaseo)


# --------------------------------------------------------------------------- bundled structure


def test_bundled_structure_reads_like_the_source(ligaseo):
    path = bundled_structure_path()
    assert path.is_file() and path.suffix == ".cif"
    text = path.read_text()
    assert "Materials Project" in text and "CC BY 4.0" in text and "Jun et al." in text
    atoms = ase.io.read(path)
    assert len(atoms) == 80
    assert atoms.get_chemical_formula(mode="metal") == "Ga8Li8O48Se16"
    symbols = atoms.get_chemical_symbols()
    assert symbols == ["Li"] * 8 + ["Ga"] * 8 + ["Se"] * 16 + ["O"] * 48
    np.testing.assert_allclose(atoms.cell.lengths(), [10.733948, 10.733948, 10.019458])
    # first atoms of each species as in the Materials Project coordinates (atom order kept)
    frac = atoms.get_scaled_positions()
    np.testing.assert_allclose(frac[0], [0.564228, 0.25, 0.875], atol=1e-8)
    np.testing.assert_allclose(frac[8], [0.287674, 0.25, 0.875], atol=1e-8)
    np.testing.assert_allclose(frac[16], [0.9464855, 0.7252665, 0.6592845], atol=1e-8)
    assert _spglib_dataset(atoms)("number") == 122


def test_load_structure_errors(tmp_path):
    with pytest.raises(ValueError, match="nope.cif"):
        load_structure(tmp_path / "nope.cif")
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a structure\n")
    with pytest.raises(ValueError, match="bad.cif"):
        load_structure(bad)
    with pytest.raises(ValueError, match="unknown bundled structure"):
        bundled_structure_path("NoSuchThing")


def test_load_structure_any_ase_format(tmp_path, ligaseo):
    for name in ("POSCAR", "s.extxyz"):
        p = tmp_path / name
        ase.io.write(p, ligaseo, format="vasp" if name == "POSCAR" else "extxyz")
        back = load_structure(p)
        assert back.get_chemical_symbols() == ligaseo.get_chemical_symbols()
        np.testing.assert_allclose(back.positions, ligaseo.positions, atol=1e-5)


# --------------------------------------------------------------------------- LiGa(SeO3)2


def test_coordination_numbers(ligaseo, classes):
    assert classes.coordination_numbers == {"Li": (4,), "Ga": (6,), "Se": (3,)}
    symbols = np.array(ligaseo.get_chemical_symbols())
    li = np.flatnonzero(symbols == "Li")
    coord = coordination(ligaseo, li, "O")
    for i, ligs in coord.items():
        d = [np.linalg.norm(ligaseo.positions[j] + np.array(S) @ ligaseo.cell
                            - ligaseo.positions[i]) for j, S in ligs]
        np.testing.assert_allclose(sorted(d), [2.015, 2.015, 2.030, 2.030], atol=2e-3)


def test_connectivity_matches_source(ligaseo):
    """Each LiO4: one edge + two corners with GaO6, corners with four SeO3 (SOURCE.md)."""
    sharing = polyhedral_sharing(ligaseo)
    assert len(sharing) == 8
    for li, polys in sharing.items():
        kinds = sorted((p.symbol, p.kind) for p in polys)
        assert kinds == [("Ga", "corner")] * 2 + [("Ga", "edge")] + [("Se", "corner")] * 4
        for p in polys:
            d = np.linalg.norm(ligaseo.positions[p.centre] + np.array(p.image) @ ligaseo.cell
                               - ligaseo.positions[li])
            expected = {("Ga", "edge"): 2.969, ("Ga", "corner"): 3.227}.get((p.symbol, p.kind))
            if expected is None:  # Li–Se 3.11–3.13 Å
                assert 3.10 < d < 3.14
            else:
                assert d == pytest.approx(expected, abs=2e-3)


def test_automatic_framework_and_counts(ligaseo, classes):
    assert classes.framework == ("Ga", "Se")  # both share corners with LiO4
    for c in CLASSES:
        assert len(getattr(classes, c)) == 16
    assert len(classes.other) == 0 and len(classes.conflicts) == 0
    sets = [set(getattr(classes, c).tolist()) for c in CLASSES]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    oxygens = set(np.flatnonzero(np.array(ligaseo.get_chemical_symbols()) == "O").tolist())
    assert set.union(*sets) == oxygens
    ga_only = classify_oxygens(ligaseo, framework=["Ga"])
    assert ga_only.framework == ("Ga",)
    for c in CLASSES:
        np.testing.assert_array_equal(getattr(ga_only, c), getattr(classes, c))


def test_each_class_is_one_symmetry_orbit(ligaseo, classes):
    equiv = np.asarray(_spglib_dataset(ligaseo)("equivalent_atoms"))
    orbits = [set(equiv[getattr(classes, c)].tolist()) for c in CLASSES]
    assert all(len(o) == 1 for o in orbits)
    assert len(set.union(*orbits)) == 3
    for c, o in zip(CLASSES, orbits):  # and each orbit is exactly the class
        np.testing.assert_array_equal(np.flatnonzero(equiv == next(iter(o))), getattr(classes, c))


def test_every_li_has_two_oe_and_two_oc(ligaseo, classes):
    li = np.flatnonzero(np.array(ligaseo.get_chemical_symbols()) == "Li")
    assert sorted(classes.per_mobile) == li.tolist()
    for m, d in classes.per_mobile.items():
        assert len(d["O_e"]) == 2 and len(d["O_c"]) == 2
        assert set(d["O_e"]) <= set(classes.O_e.tolist())
        assert set(d["O_c"]) <= set(classes.O_c.tolist())


def test_to_dict_is_json(classes):
    d = json.loads(json.dumps(classes.to_dict()))
    counts = (d["n_O_e"], d["n_O_c"], d["n_O_n"], d["n_other"], d["n_conflicts"])
    assert counts == (16, 16, 16, 0, 0)
    assert d["framework"] == ["Ga", "Se"] and d["mobile"] == "Li" and d["anion"] == "O"
    assert len(d["per_mobile"]) == 8


def _map_to_primitive(prim: Atoms, atoms: Atoms) -> np.ndarray:
    """Index of the primitive atom at each atom's position (modulo the primitive lattice)."""
    frac = np.linalg.solve(prim.cell[:].T, atoms.positions.T).T
    pfrac = prim.get_scaled_positions()
    diff = frac[:, None, :] - pfrac[None, :, :]
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ prim.cell[:], axis=2)
    idx = dist.argmin(axis=1)
    assert np.all(dist[np.arange(len(atoms)), idx] < 1e-6)
    return idx


@pytest.mark.parametrize("how", ["repeat", "make_supercell"])
def test_invariant_under_supercell(ligaseo, classes, how):
    if how == "repeat":
        sup = ligaseo.repeat((2, 1, 1))
    else:
        from ase.build import make_supercell
        sup = make_supercell(ligaseo, np.diag([2, 1, 1]))
    sc = classify_oxygens(sup)
    assert sc.framework == classes.framework
    assert sc.coordination_numbers == classes.coordination_numbers
    to_prim = _map_to_primitive(ligaseo, sup)
    for c in CLASSES:
        idx = getattr(sc, c)
        assert len(idx) == 32
        mapped = to_prim[idx]
        assert set(mapped.tolist()) == set(getattr(classes, c).tolist())
        assert np.all(np.bincount(mapped, minlength=80)[getattr(classes, c)] == 2)
    assert len(sc.other) == 0 and len(sc.conflicts) == 0


def test_invariant_under_permutation(ligaseo, classes):
    rng = np.random.default_rng(7)
    perm = rng.permutation(len(ligaseo))
    shuffled = ligaseo[perm]
    sc = classify_oxygens(shuffled)
    for c in CLASSES:
        np.testing.assert_array_equal(np.sort(perm[getattr(sc, c)]), getattr(classes, c))
    for m_new, d in sc.per_mobile.items():
        old = classes.per_mobile[int(perm[m_new])]
        assert sorted(perm[d["O_e"]].tolist()) == old["O_e"]
        assert sorted(perm[d["O_c"]].tolist()) == old["O_c"]


def test_errors(ligaseo):
    no_li = ligaseo[[a.index for a in ligaseo if a.symbol != "Li"]]
    with pytest.raises(ValueError, match="mobile species 'Li'"):
        classify_oxygens(no_li)
    with pytest.raises(ValueError, match="'Na'"):
        classify_oxygens(ligaseo, mobile="Na")
    with pytest.raises(ValueError, match="'S'"):
        classify_oxygens(ligaseo, anion="S")
    with pytest.raises(ValueError, match="'Al'"):
        classify_oxygens(ligaseo, framework=["Al"])
    with pytest.raises(ValueError, match="both"):
        classify_oxygens(ligaseo, mobile="O")


# --------------------------------------------------------------------------- toy structures


def _toy_cluster() -> tuple[Atoms, dict[str, int]]:
    """LiO4 tetrahedron with an AlO3 sharing an edge and a MgO2 sharing one corner.

    Li at the centre of a 20 Å box, Li–O = 2 Å. Al sits beyond the midpoint of the O1–O2 edge,
    2 Å from both, with a third O (O5) further out; Mg sits 2 Å outside O3 along Li→O3, with a
    second O (O6) further out. O4 is bonded to Li only.
    """
    c = np.array([10.0, 10.0, 10.0])
    a = 2.0 / np.sqrt(3.0)
    tet = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    o = c + a * tet
    al = c + np.array([a + np.sqrt(4.0 - 2 * a * a), 0.0, 0.0])
    o5 = al + np.array([2.0, 0.0, 0.0])
    u3 = tet[2] / np.sqrt(3.0)
    mg = o[2] + 2.0 * u3
    o6 = mg + 2.0 * u3
    symbols = ["Li", "Al", "Mg", "O", "O", "O", "O", "O", "O"]
    pos = [c, al, mg, o[0], o[1], o[2], o[3], o5, o6]
    atoms = Atoms(symbols, positions=pos, cell=[20.0] * 3, pbc=True)
    names = {"O1": 3, "O2": 4, "O3": 5, "O4": 6, "O5": 7, "O6": 8}
    return atoms, names


def test_toy_cluster_edge_and_corner():
    atoms, n = _toy_cluster()
    sc = classify_oxygens(atoms)
    assert sc.framework == ("Mg", "Al")  # sorted by atomic number
    assert sc.coordination_numbers == {"Li": (4,), "Mg": (2,), "Al": (3,)}
    assert sc.O_e.tolist() == [n["O1"], n["O2"]]
    assert sc.O_c.tolist() == [n["O3"]]
    assert sc.O_n.tolist() == [n["O5"], n["O6"]]
    assert sc.other.tolist() == [n["O4"]]  # bonded to Li, to no framework cation
    assert sc.per_mobile == {0: {"O_e": [n["O1"], n["O2"]], "O_c": [n["O3"]]}}
    # restricting the framework: without Al there is no edge, O1/O2 become "other"
    only_mg = classify_oxygens(atoms, framework="Mg")
    assert only_mg.O_e.tolist() == [] and only_mg.O_c.tolist() == [n["O3"]]
    assert only_mg.O_n.tolist() == [n["O6"]]
    assert only_mg.other.tolist() == [n["O1"], n["O2"], n["O4"], n["O5"]]
    assert isinstance(sc, SiteClasses)


def test_toy_cluster_tolerance_rule():
    """A ligand beyond d_min * (1 + tolerance) is not bonded."""
    atoms, n = _toy_cluster()
    atoms.positions[n["O4"]] += (atoms.positions[n["O4"]] - atoms.positions[0]) * 0.3  # 2.6 Å
    assert [j for j, _ in coordination(atoms, [0], "O")[0]] == [n["O1"], n["O2"], n["O3"]]
    assert len(coordination(atoms, [0], "O", tolerance=0.35)[0]) == 4


def test_chain_images_resolved():
    """Li–O_A–M–O_B–(Li image) chain along x with an 8 Å period.

    By index, LiO2 and MO2 share both O (an "edge"); by position, each M polyhedron touches the
    Li polyhedron at one corner only: O_A through M at image 0, O_B through M at image -1.
    """
    atoms = Atoms("LiOAlO", positions=[[0, 5, 5], [2, 5, 5], [4, 5, 5], [6, 5, 5]],
                  cell=[8.0, 10.0, 10.0], pbc=True)
    coord = coordination(atoms, [0, 2], "O")
    assert coord[0] == [(1, (0, 0, 0)), (3, (-1, 0, 0))]
    assert coord[2] == [(1, (0, 0, 0)), (3, (0, 0, 0))]
    sc = classify_oxygens(atoms)
    assert sc.O_e.tolist() == [] and sc.O_c.tolist() == [1, 3]
    kinds = sorted((p.centre, p.image, p.kind) for p in polyhedral_sharing(atoms)[0])
    assert kinds == [(2, (-1, 0, 0), "corner"), (2, (0, 0, 0), "corner")]


def test_same_index_through_two_images():
    """A 4 Å cell: Li bonded to the same O index through two images (x = +2 and x = -2)."""
    atoms = Atoms("LiO", positions=[[0, 5, 5], [2, 5, 5]], cell=[4.0, 10.0, 10.0], pbc=True)
    assert coordination(atoms, [0], "O")[0] == [(1, (-1, 0, 0)), (1, (0, 0, 0))]
    sc = classify_oxygens(atoms)
    assert sc.framework == () and sc.other.tolist() == [1]


def test_conflict_edge_wins():
    """An O that is edge-shared for one Li and corner-shared for another is O_e and a conflict."""
    atoms, n = _toy_cluster()
    # a second Li 2 Å beyond O1 (away from Al): for it, AlO3 shares the single corner O1
    o1, al = atoms.positions[n["O1"]], atoms.positions[1]
    li2 = o1 + 2.0 * (o1 - al) / np.linalg.norm(o1 - al)
    atoms += Atoms("Li", positions=[li2])
    sc = classify_oxygens(atoms)
    li2_idx = len(atoms) - 1
    assert n["O1"] in sc.per_mobile[li2_idx]["O_c"]
    assert n["O1"] in sc.O_e.tolist() and n["O1"] not in sc.O_c.tolist()
    assert sc.conflicts.tolist() == [n["O1"]]
