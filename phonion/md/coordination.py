"""Coordination numbers of the bonded shells a reference keeps, and their drift within a run.

A first-peak position can stay right while a framework comes apart: in the quick demo's MLIP run at
1150 K two GaO6 octahedra lost one or two O (the 5th/6th O at 3.0–3.4 Å instead of ≤ 2.7 Å) and the
Ga–O first peak still sat within 0.02 Å of the reference's; the shell's *count* is what changed.

Shells (:func:`bonded_shells`), from the reference's partial RDFs (``phonion.md.rdf.first_peaks``):
a pair A–B (A ≠ B) whose first shell is a coordination shell, lies at a bonding distance (position
≤ ``COORD["bond_factor"]`` = 1.2 × the sum of ASE's covalent radii: Ga–O 1.06, Se–O 0.94, Li–O 1.06;
not the Li–Ga / Li–Se second neighbours at 1.25–1.28, whose counts change with every Li hop) and is well separated from the next
(the smoothed g at its first minimum < ``COORD["depth"]``, i.e. less than half the ideal-gas density
between the shells; Li–O in LiGa(SeO3)2 is not, g_min ≈ 0.8, so its count has no meaning). The cutoff
is that first minimum; the centre is the less numerous species (Ga by O, Se by O), the other one its
neighbour.

:func:`coordination_numbers` counts, per frame, the neighbours of every centre atom within the cutoff
(``ase.neighborlist.neighbor_list``) and returns the mean per centre atom with a block error, and the
drift: last quarter − first quarter of the run (a framework that transforms during a run). The limit
``COORD["limit"]`` = 0.2 neighbours per centre atom is one bond gained or lost for every five centres.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["COORD", "bonded_shells", "coordination_numbers", "coordination_series", "first_frames",
           "first_minimum", "reference_shells"]

#: settings of the shells and of the comparison (module docstring)
COORD = {"bond_factor": 1.2, "depth": 0.5, "smooth_A": 0.15, "blocks": 4, "limit": 0.2, "max_frames": 200}


def first_minimum(r_A, g, peak_A: float, smooth_A: float = COORD["smooth_A"]) -> tuple[float, float] | None:
    """(r, smoothed g) of the first local minimum of g after its first peak at ``peak_A``, or None."""
    from scipy.ndimage import gaussian_filter1d

    r = np.asarray(r_A, float)
    gs = gaussian_filter1d(np.asarray(g, float), smooth_A / (r[1] - r[0]))
    k = int(np.searchsorted(r, peak_A)) + 1
    while k + 1 < gs.size:
        if gs[k] <= gs[k - 1] and gs[k] < gs[k + 1]:
            return float(r[k]), float(gs[k])
        k += 1
    return None


def bonded_shells(rdf: dict, symbols, settings: dict | None = None) -> dict:
    """Shells whose count a potential must keep, from one ``first_peaks`` result of the reference.

    Returns ``{pair: {"centre", "neighbour", "cutoff_A", "peak_A", "g_min"}}`` (pair as in the RDF, "A-B").
    """
    from ase.data import atomic_numbers, covalent_radii

    p = {**COORD, **(settings or {})}
    counts = {s: list(symbols).count(s) for s in set(symbols)}
    out = {}
    for pair, pk in rdf["peaks"].items():
        a, b = pair.split("-")
        if a == b or pk is None or not pk["shell"]:
            continue
        bond = p["bond_factor"] * (covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])
        low = first_minimum(rdf["r_A"], rdf["g"][pair], pk["r_A"], p["smooth_A"])
        if pk["r_A"] > bond or low is None or low[1] >= p["depth"]:
            continue
        centre, neighbour = (a, b) if counts[a] <= counts[b] else (b, a)
        out[pair] = {"centre": centre, "neighbour": neighbour, "cutoff_A": round(low[0], 3),
                     "peak_A": round(pk["r_A"], 3), "g_min": round(low[1], 3)}
    return out


def coordination_series(positions, cells, symbols, shells: dict) -> dict:
    """{pair: mean neighbour count per centre atom, one value per frame}; one neighbour list a frame."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    sym = np.asarray(symbols)
    masks = {pair: (sym == sh["centre"], sym == sh["neighbour"], sh["cutoff_A"]) for pair, sh in shells.items()}
    cutoff = max(sh["cutoff_A"] for sh in shells.values())
    out = {pair: np.empty(len(positions)) for pair in shells}
    atoms = Atoms(symbols=list(sym), pbc=True)
    for f, (pos, cell) in enumerate(zip(positions, cells)):
        atoms.positions, atoms.cell = pos, cell
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        for pair, (centre, neighbour, rc) in masks.items():
            n = np.count_nonzero(centre)
            out[pair][f] = np.count_nonzero(centre[i] & neighbour[j] & (d < rc)) / n if n else np.nan
    return out


def _mean_err(x: np.ndarray, blocks: int) -> tuple[float, float | None]:
    parts = [b.mean() for b in np.array_split(x, blocks) if b.size]
    err = float(np.std(parts, ddof=1) / math.sqrt(len(parts))) if len(parts) >= 2 and x.size >= 2 * blocks else None
    return float(x.mean()), err


def coordination_numbers(positions, cells, symbols, shells: dict, settings: dict | None = None) -> dict:
    """Per shell: mean neighbours per centre atom ± block error, and the drift (last − first quarter).

    ``positions`` (F, N, 3) and ``cells`` (F, 3, 3) of one run (at most ``COORD["max_frames"]`` are used,
    evenly spaced). Returns ``{pair: {"cn", "err", "drift", "drift_err", "n_frames"}}``.
    """
    p = {**COORD, **(settings or {})}
    pos = np.asarray(positions, float)
    cells = np.broadcast_to(np.asarray(cells, float), (len(pos), 3, 3))
    step = max(1, int(math.ceil(len(pos) / int(p["max_frames"]))))
    pos, cells = pos[::step], cells[::step]
    out = {}
    series = coordination_series(pos, cells, symbols, shells) if shells else {}
    for pair, x in series.items():
        cn, err = _mean_err(x, int(p["blocks"]))
        q = max(1, x.size // 4)
        first, last = _mean_err(x[:q], 2), _mean_err(x[-q:], 2)
        errs = [e for e in (first[1], last[1]) if e is not None]
        out[pair] = {"cn": cn, "err": err, "drift": last[0] - first[0],
                     "drift_err": math.hypot(*errs) if len(errs) == 2 else None, "n_frames": int(x.size)}
    return out


def reference_shells(runs: list) -> tuple[dict, str]:
    """(shells, where from) of a reference: :func:`bonded_shells` of g averaged over its runs (one r grid;
    a pair is a shell when it is one in every run), else of its first run.

    ``runs``: dicts with ``"run"`` (name), ``"rdf"`` (``phonion.md.rdf.first_peaks``) and ``"symbols"``.
    """
    from phonion.md.rdf import PEAK, first_peak

    base = runs[0]["rdf"]
    if len({len(r["rdf"]["r_A"]) for r in runs}) > 1:
        return bonded_shells(base, runs[0]["symbols"]), f"shells from the reference run {runs[0]['run']}"
    g = {pair: np.mean([r["rdf"]["g"][pair] for r in runs], axis=0) for pair in base["g"]}
    peaks = {}
    for pair, gp in g.items():
        pk = first_peak(base["r_A"], gp, PEAK["smooth_A"], PEAK["top"], PEAK["close"])
        shell = all((r["rdf"]["peaks"].get(pair) or {}).get("shell") for r in runs)
        peaks[pair] = None if pk is None else {"r_A": pk[0], "shell": shell}
    return (bonded_shells({"r_A": base["r_A"], "g": g, "peaks": peaks}, runs[0]["symbols"]),
            "shells from the reference's RDF" + (f" averaged over its {len(runs)} runs" if len(runs) > 1 else ""))


def first_frames(n_frames: int, frame_interval_fs: float | None, duration_fs: float | None) -> int:
    """How many frames from the start cover ``duration_fs`` (all when either is unknown).

    Counts are compared over the same stretch of both runs from their start: a run that transforms
    after the reference's run has ended is not charged for it in the comparison (its drift says so).
    """
    if not frame_interval_fs or duration_fs is None:
        return n_frames
    return int(min(n_frames, max(2, math.floor(duration_fs / frame_interval_fs + 1e-9) + 1)))
