"""The one first-peak definition (phonion.md.rdf.first_peaks / peak_shifts) used by compare and the
fit-for-MD gate: positions of known shells, block uncertainties, expansion shows as a shift, and the
contract of which pairs are compared."""

import numpy as np
import pytest
from ase.build import bulk

from phonion.md.rdf import PEAK, first_peak, first_peaks, partial_rdf, peak_shifts


def _thermal(atoms, n_frames, sigma, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    pos = atoms.positions * scale + rng.normal(0.0, sigma, (n_frames, len(atoms), 3))
    cells = np.broadcast_to(atoms.cell.array * scale, (n_frames, 3, 3))
    return pos, cells


@pytest.fixture(scope="module")
def nacl():
    return bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 2, 2))  # Na–Cl 2.82 Å, Na–Na 3.99 Å


def test_shell_positions_and_uncertainties_of_a_thermal_crystal(nacl):
    pos, cells = _thermal(nacl, 80, 0.08, 0)
    res = first_peaks(pos, cells, nacl.get_chemical_symbols())
    na_cl, na_na = res["peaks"]["Na-Cl"], res["peaks"]["Na-Na"]
    assert na_cl["shell"] and na_na["shell"]
    # Gaussian displacements of 0.08 Å: the shell is centred at the lattice distance (to ~σ²/r)
    assert abs(na_cl["r_A"] - 2.82) < 0.02 and abs(na_na["r_A"] - 5.64 / np.sqrt(2)) < 0.02
    assert 0 < na_cl["err_A"] < 0.01  # 4 blocks of 20 frames of a sharp shell: well resolved
    assert res["n_frames"] == 80


def test_an_expanded_crystal_shows_as_a_shift_and_the_same_crystal_as_none(nacl):
    sym = nacl.get_chemical_symbols()
    a = first_peaks(*_thermal(nacl, 60, 0.08, 1), sym)
    same = first_peaks(*_thermal(nacl, 60, 0.08, 2), sym)  # other noise, same structure
    big = first_peaks(*_thermal(nacl, 60, 0.08, 3, scale=1.04), sym)
    s0, s1 = peak_shifts(a, same), peak_shifts(a, big)
    for pair, sh in s0["shifts"].items():
        assert abs(sh["shift_A"]) < 3 * sh["err_A"] + 0.01, pair
    assert s1["shifts"]["Na-Cl"]["shift_A"] == pytest.approx(0.04 * 2.82, abs=0.02)
    assert s1["max_abs_shift_A"] == pytest.approx(max(abs(v["shift_A"]) for v in s1["shifts"].values()))
    assert s1["max_abs_shift_A"] > 0.1 > s0["max_abs_shift_A"]


def test_which_pairs_are_compared():
    def pk(r, err=0.01, shell=True, why=None):
        return {"r_A": r, "height": 3.0, "err_A": err, "shell": shell, "why": why}

    ref = {"peaks": {"A-A": pk(2.0), "A-B": pk(3.0, err=0.2), "B-B": pk(4.0, shell=False, why="no shell"),
                     "C-C": None, "A-C": pk(2.5)}}
    mlip = {"peaks": {"A-A": pk(2.05), "A-B": pk(3.5), "B-B": pk(1.0), "C-C": pk(1.0), "A-C": None}}
    res = peak_shifts(ref, mlip)
    assert set(res["shifts"]) == {"A-A", "A-C"}  # a shell resolved in the reference
    assert res["shifts"]["A-A"]["shift_A"] == pytest.approx(0.05)
    assert res["shifts"]["A-A"]["err_A"] == pytest.approx(np.hypot(0.01, 0.01))
    assert res["shifts"]["A-C"]["shift_A"] is None  # the MLIP lost a peak the reference has: a failure
    assert res["max_abs_shift_A"] is None
    assert "not resolved" in res["not_compared"]["A-B"] and res["not_compared"]["B-B"] == "no shell"
    assert set(res["not_compared"]) == {"A-B", "B-B", "C-C"}


def test_a_broad_two_hump_shell_has_one_position():
    """The argmax of a flat-topped shell jumps between its humps with noise; the centroid of the shell above half its maximum does not."""
    r = np.arange(0.01, 6.0, PEAK["bin_A"])
    g = 2.5 * np.exp(-0.5 * ((r - 4.2) / 0.12) ** 2) + 2.5 * np.exp(-0.5 * ((r - 4.5) / 0.12) ** 2)
    rng = np.random.default_rng(0)
    pos = [first_peak(r, g * (1 + rng.normal(0, 0.08, r.size)))[0] for _ in range(40)]
    assert abs(np.mean(pos) - 4.35) < 0.03 and np.std(pos) < 0.03


def test_rdf_beyond_half_the_cell_counts_every_image_like_ase():
    """Above half the shortest cell width (the 27 nearest images): the same pair counts as ASE's
    neighbour list, for unlike and like species, on a triclinic cell."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    from phonion.md.rdf import half_width, partial_rdf

    rng = np.random.default_rng(1)
    cell = np.array([[7.0, 0, 0], [1.2, 6.5, 0], [0.5, 0.9, 7.2]])
    sym = ["Li"] * 10 + ["O"] * 14
    pos = rng.random((24, 3)) @ cell
    r_max, dr = 1.8 * half_width(cell), 0.1
    r, g = partial_rdf(pos[None], cell[None], sym, r_max, dr)
    i, j, d = neighbor_list("ijd", Atoms(sym, positions=pos, cell=cell, pbc=True), r_max)
    sid = np.array([s == "O" for s in sym], int)
    edges = np.arange(len(r) + 1) * dr
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    vol = abs(np.linalg.det(cell))
    for pair, (a, b), n_pairs, twice in (("Li-O", (0, 1), 10 * 14, 1), ("O-O", (1, 1), 14 * 13 / 2, 2)):
        h = np.histogram(d[(sid[i] == a) & (sid[j] == b)], bins=edges)[0] / twice
        np.testing.assert_allclose(g[pair], h * vol / (n_pairs * shell), atol=1e-12)


def test_partial_rdf_ideal_gas_and_crystal():
    rng = np.random.default_rng(0)
    cell = np.array([[9.0, 0.0, 0.0], [1.5, 8.5, 0.0], [0.7, 1.1, 9.5]])  # triclinic
    frac = rng.random((60, 120, 3))
    r, g = partial_rdf(frac @ cell, np.broadcast_to(cell, (60, 3, 3)), ["Li"] * 40 + ["O"] * 80, 3.9, 0.1)
    for pair, gp in g.items():  # uncorrelated atoms: g = 1, no first peak
        assert abs(gp[r > 1.5].mean() - 1) < 0.05, pair
    res = first_peaks(frac @ cell, np.broadcast_to(cell, (60, 3, 3)), ["Li"] * 40 + ["O"] * 80)
    assert all(p is None or not p["shell"] for p in res["peaks"].values())  # an ideal gas has no shell
    with pytest.raises(ValueError, match="exceeds the cell width"):
        partial_rdf(frac @ cell, np.broadcast_to(cell, (60, 3, 3)), ["Li"] * 40 + ["O"] * 80, 9.0)
    from phonion.core.structures import load_structure

    atoms = load_structure("LiGa_SeO3_2")  # a static crystal: the Ga–O first peak lies among the GaO6 bond lengths
    sym = np.array(atoms.get_chemical_symbols())
    r, g = partial_rdf(atoms.positions[None], atoms.cell.array[None], list(sym), 5.0, 0.02)
    ga, o = np.flatnonzero(sym == "Ga"), np.flatnonzero(sym == "O")
    bonds = atoms.get_all_distances(mic=True)[np.ix_(ga, o)]
    bonds = bonds[bonds < 2.5]
    peak, height, closed = first_peak(r, g["Ga-O"])
    assert bonds.min() - 0.03 <= peak <= bonds.max() + 0.03 and height > 2


def test_a_split_shell_whose_humps_swap_height_keeps_its_position_and_a_real_shift_shows_in_full():
    """LiGa(SeO3)2's Ga–Ga shell (humps near 5.5 and 6.3 Å of similar height): which hump is higher
    changes with noise between 0.6-ps runs. The FWHM centroid of the shell moves little when they swap
    (the top-80 % centroid would jump between the humps), yet a real shift of the whole shell shows
    undiminished (the window moves with the shell)."""
    r = np.arange(0.01, 8.0, PEAK["bin_A"])

    def shell(h1, h2, dx=0.0):
        g = h1 * np.exp(-0.5 * ((r - 5.5 - dx) / 0.25) ** 2) + h2 * np.exp(-0.5 * ((r - 6.3 - dx) / 0.25) ** 2)
        return g + 0.8 * (r > 7.5)  # a next shell beyond the minimum near 7 Å

    a, b = first_peak(r, shell(2.7, 2.3)), first_peak(r, shell(2.3, 2.7))
    assert a[2] is not None and 6.5 < a[2] < 7.5  # the shell closes at its first minimum
    assert abs(a[0] - b[0]) < 0.2
    top80 = [first_peak(r, shell(h1, h2), top=0.8)[0] for h1, h2 in ((2.7, 2.3), (2.3, 2.7))]
    assert abs(top80[0] - top80[1]) > 0.5  # what the old top-80 % definition did
    moved = first_peak(r, shell(2.7, 2.3, dx=0.12))
    assert moved[0] - a[0] == pytest.approx(0.12, abs=0.005)


def test_a_shell_that_does_not_close_inside_the_range_is_not_compared():
    r = np.arange(0.01, 6.0, PEAK["bin_A"])
    rising = 3.0 * np.clip((r - 4.0) / 1.5, 0, 1)  # still rising at the end of the range
    assert first_peak(r, rising)[2] is None
    na = bulk("Na", "bcc", a=4.23, cubic=True).repeat((2, 2, 2))
    res = first_peaks(*_thermal(na, 40, 0.3, 5), na.get_chemical_symbols(),
                      settings={"close": 0.05})  # g never falls to 5 % of its maximum between shells
    assert not res["peaks"]["Na-Na"]["shell"] and "does not close" in res["peaks"]["Na-Na"]["why"]


def test_mlip_peaks_at_the_reference_runs_measured_temperature():
    """Shells expanding linearly with T: the comparison at the reference run's measured T recovers
    zero shift where the set-point comparison charges the thermostat's 5 % to the potential."""
    from phonion.md.rdf import RDF_EXTRAPOLATE, mlip_peaks_at

    def pk(r, err=0.01, shell=True):
        return {"r_A": r, "height": 3.0, "err_A": err, "shell": shell, "why": None}

    def r_of(t):  # a shell at 4.0 Å + 4e-4 Å/K
        return 4.0 + 4e-4 * (t - 900.0)

    mlip = {t: {"run": f"T{t:g}", "measured_K": m, "peaks": {"A-A": pk(r_of(m)), "A-B": pk(2.0, shell=t != 1000.0)}}
            for t, m in ((900.0, 898.0), (1000.0, 999.0), (1150.0, 1139.0))}
    ref = {"peaks": {"A-A": pk(r_of(946.0)), "A-B": pk(2.0)}}  # the 1000 K reference run averaged 946 K
    peaks, how, w = mlip_peaks_at(mlip, 946.0, 1000.0)
    assert how.startswith("interpolated") and "T900" in how and "T1000" in how
    assert w == pytest.approx((946.0 - 898.0) / (999.0 - 898.0))
    assert peaks["A-A"]["r_A"] == pytest.approx(r_of(946.0), abs=1e-12)
    assert peaks["A-A"]["err_A"] == pytest.approx(np.hypot((1 - w) * 0.01, w * 0.01))
    assert peaks["A-B"] is mlip[1000.0]["peaks"]["A-B"]  # one side has no shell: the set-point run's
    at_t = peak_shifts(ref, {"peaks": peaks})["shifts"]["A-A"]["shift_A"]
    at_setpoint = peak_shifts(ref, {"peaks": mlip[1000.0]["peaks"]})["shifts"]["A-A"]["shift_A"]
    assert at_t == pytest.approx(0.0, abs=1e-12) and at_setpoint == pytest.approx(4e-4 * 53.0)
    # just outside the runs: extrapolated from the two nearest; far outside: the set-point, said so
    peaks, how, w = mlip_peaks_at(mlip, 890.0, 900.0)
    assert how.startswith("extrapolated") and w < 0 and peaks["A-A"]["r_A"] == pytest.approx(r_of(890.0))
    far = 898.0 * (1 - 2 * RDF_EXTRAPOLATE)
    peaks, how, w = mlip_peaks_at(mlip, far, 900.0)
    assert w is None and how.startswith("at the set-point") and peaks is mlip[900.0]["peaks"]
    assert mlip_peaks_at({900.0: mlip[900.0]}, 946.0, 900.0)[2] is None  # one MLIP run: nothing to interpolate
