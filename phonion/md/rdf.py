"""Partial radial distribution functions g_AB(r) of a trajectory (minimum image, any triclinic cell).

g_AB(r) = V / (N_pairs · 4/3 π (r_hi³ − r_lo³)) · (pairs A–B in the shell), averaged over frames; pairs
of one species counted once (N_A(N_A−1)/2 pairs). Up to half the shortest cell width every pair has one
image in range (minimum image); beyond it, up to the full width, the 27 nearest images of every pair are
counted (:func:`rdf_range`), so a small cell's RDF still reaches its second shells: the 80-atom
LiGa(SeO3)2 cell is 10 Å wide, and its Se–Se shell near 4.4 Å would otherwise be cut at 5.0 Å. Written by hand: ASE's ``ase.geometry.rdf`` builds a
neighbour list per frame and per pair, far slower over the thousands of frames of an MD run, and its
partial-RDF normalisation differs; the tests check an ideal gas (g = 1) and a crystal's shells.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["partial_rdf", "half_width", "rdf_range", "RDF_MAX_A", "first_peak", "first_peaks", "peak_shifts", "PEAK"]

#: largest r of the RDFs phonion reports, Å (and at most half the cell width)
RDF_MAX_A = 8.0


def half_width(cell) -> float:
    """Half the shortest perpendicular width of a cell (rows are lattice vectors), Å."""
    cell = np.asarray(cell, float)
    return float(0.5 * (abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]),
                                                                   axis=1)).min())


def rdf_range(cells) -> float:
    """The largest r (Å) phonion's RDFs reach for these cells: ``RDF_MAX_A``, at most just below the
    shortest perpendicular cell width of any frame (where the 27 nearest images still hold every pair)."""
    return min(RDF_MAX_A, 2.0 * min(half_width(c) for c in np.asarray(cells, float).reshape(-1, 3, 3)) - 1e-6)


_IMAGES = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float)


def partial_rdf(positions, cells, symbols, r_max_A: float, bin_A: float = 0.05, chunk: int = 262144):
    """Partial radial distribution functions (module docstring).

    Parameters
    ----------
    positions : ndarray, shape=(F, N, 3), Å (any wrapping)
    cells : ndarray, shape=(F, 3, 3), Å, rows are lattice vectors
    symbols : N element symbols
    r_max_A : float, ≤ the shortest perpendicular cell width (checked); above half of it the images
        of every pair are counted
    bin_A : histogram bin width, Å
    chunk : pair-images handled at once (bounds memory)

    Returns
    -------
    r_A : ndarray (B,) bin centres, Å;  g : dict "A-B" → ndarray (B,) (species in first-appearance order)
    """
    pos, cells = np.asarray(positions, float), np.asarray(cells, float)
    species = list(dict.fromkeys(symbols))
    sid = np.array([species.index(s) for s in symbols])
    ns, nb = len(species), int(math.floor(r_max_A / bin_A))
    if nb < 2:
        raise ValueError(f"r_max {r_max_A} Å is too small for bins of {bin_A} Å")
    edges = np.arange(nb + 1) * bin_A
    counts = np.zeros((ns, ns, nb))
    n = len(symbols)
    na = np.bincount(sid, minlength=ns).astype(float)
    pairs = np.outer(na, na)
    pairs[np.diag_indices(ns)] = na * (na - 1) / 2
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    ii, jj = np.triu_indices(n, 1)
    for f in range(len(pos)):
        cell = cells[f]
        hw = half_width(cell)
        if r_max_A > 2.0 * hw + 1e-9:
            raise ValueError(f"r_max {r_max_A} Å exceeds the cell width {2 * hw:.3f} Å")
        images = _IMAGES if r_max_A > hw + 1e-9 else np.zeros((1, 3))  # minimum image suffices below hw
        frac = pos[f] @ np.linalg.inv(cell)
        hist = np.zeros(ns * ns * nb)
        step = max(1, chunk // len(images))
        for a in range(0, ii.size, step):
            i, j = ii[a:a + step], jj[a:a + step]
            d = frac[j] - frac[i]
            d -= np.round(d)
            r = np.linalg.norm((d[:, None, :] + images[None]) @ cell, axis=2)  # (pairs, images)
            hit_pair, _ = np.nonzero(r < edges[-1])
            rr = r[r < edges[-1]]
            lo = np.minimum(sid[i], sid[j])[hit_pair]
            hi = np.maximum(sid[i], sid[j])[hit_pair]
            b = np.minimum((rr / bin_A).astype(int), nb - 1)
            hist += np.bincount((lo * ns + hi) * nb + b, minlength=ns * ns * nb)
        hist = hist.reshape(ns, ns, nb)
        with np.errstate(divide="ignore", invalid="ignore"):
            counts += hist * abs(np.linalg.det(cell)) / (pairs[:, :, None] * shell[None, None, :])
    counts /= len(pos)
    r = 0.5 * (edges[1:] + edges[:-1])
    g = {f"{species[a]}-{species[b]}": counts[a, b] for a in range(ns) for b in range(a, ns) if pairs[a, b] > 0}
    return r, g


# ---- first peaks: the one definition phonion uses (compare, validate, the chain's gate) -----------------
#: How a first peak is found and when it counts (Å unless said):
#:   ``smooth_A``  Gaussian smoothing of g(r) before the shell is looked for (merges noise humps);
#:   ``close``     the first shell starts where the smoothed g first exceeds 0.5 and closes where it
#:                 falls below ``close`` × its running maximum (its first real minimum). A shell that
#:                 does not close inside r_max is not compared: its top may lie beyond the range;
#:   ``top``       the position is the g-weighted centroid of the contiguous part of the shell around its
#:                 maximum where the smoothed g is ≥ ``top`` × that maximum (0.5: the FWHM region).
#:                 Why half and not the top 80 %: shells with sub-structure (Se–Se 4.4 Å with a shoulder,
#:                 Ga–Ga 5.0–6.6 Å with two humps in LiGa(SeO3)2) have a flat top whose highest hump
#:                 changes with noise; the top-80 % centroid then jumps by 0.2–0.3 Å between blocks of
#:                 one run (Ga–Ga, 0.6-ps CHGNet runs: block σ 0.05–0.14 Å), the FWHM centroid does not
#:                 (0.01–0.07 Å). For one symmetric peak both equal the peak position;
#:   ``bin_A``     histogram bin; ``blocks``: the frames are cut into this many consecutive blocks
#:                 and the position's uncertainty is the standard error of the block positions;
#:   ``min_height`` a coordination shell needs a smoothed peak g ≥ this (a minority pair such as Li–Li,
#:                 8 atoms, has no clear first peak in a short run);
#:   ``resolved_A`` a shell's position counts for a comparison only when its uncertainty is ≤ this
#:                 (a 0.1 Å limit can only be judged when the position is known to ~0.05 Å).
PEAK = {"smooth_A": 0.15, "close": 0.5, "top": 0.5, "bin_A": 0.02, "blocks": 4, "min_height": 2.0,
        "resolved_A": 0.05}


def first_peak(r_A, g, smooth_A: float = PEAK["smooth_A"], top: float = PEAK["top"],
               close: float = PEAK["close"]):
    """(position Å, smoothed height, r where the shell closes or None) of the first shell of one g(r),
    or None (the smoothed g never exceeds 0.5).

    The shell runs from where g smoothed by a Gaussian of ``smooth_A`` first exceeds 0.5 to where it
    falls below ``close`` × its running maximum; the position is the g-weighted centroid of the
    contiguous bins around that maximum where the smoothed g is ≥ ``top`` × the maximum, so a broad or
    split shell has one stable position instead of the argmax of its noise. A shell still open at the
    end of the range gets the centroid of what is there and ``None`` as its closing radius.
    """
    from scipy.ndimage import gaussian_filter1d

    r, g = np.asarray(r_A, float), np.asarray(g, float)
    gs = gaussian_filter1d(g, smooth_A / (r[1] - r[0]))
    above = np.flatnonzero(gs > 0.5)
    if not above.size:
        return None
    k = kmax = int(above[0])
    end = None
    while k + 1 < gs.size:
        k += 1
        if gs[k] > gs[kmax]:
            kmax = k
        if gs[k] < close * gs[kmax]:
            end = k
            break
    lo = hi = kmax
    while lo > 0 and gs[lo - 1] >= top * gs[kmax]:
        lo -= 1
    while hi + 1 < gs.size and gs[hi + 1] >= top * gs[kmax]:
        hi += 1
    w = np.clip(g[lo:hi + 1], 0.0, None)
    pos = float((r[lo:hi + 1] * w).sum() / w.sum()) if w.sum() > 0 else float(r[kmax])
    return pos, float(gs[kmax]), None if end is None else float(r[end])


def first_peaks(positions, cells, symbols, max_frames: int = 200, settings: dict | None = None) -> dict:
    """First peaks of every partial RDF of a run, with block uncertainties (``PEAK``).

    Returns ``{"r_A", "g" (all frames used), "r_max_A", "n_frames", "peaks": {pair: None or {"r_A",
    "height", "err_A", "shell" (bool), "why" (why not a shell / not resolved, or None)}}}``.
    """
    p = {**PEAK, **(settings or {})}
    pos, cells = np.asarray(positions, float), np.asarray(cells, float)
    step = max(1, int(math.ceil(len(pos) / max_frames)))
    pos, cells = pos[::step], cells[::step]
    r_max = rdf_range(cells)
    r, g = partial_rdf(pos, cells, symbols, r_max, p["bin_A"])
    n, nb = len(pos), int(p["blocks"])
    blocks = []
    if n >= 2 * nb:
        for b in range(nb):
            sl = slice(b * n // nb, (b + 1) * n // nb)
            blocks.append(partial_rdf(pos[sl], cells[sl], symbols, r_max, p["bin_A"])[1])
    peaks = {}
    for pair, gp in g.items():
        pk = first_peak(r, gp, p["smooth_A"], p["top"], p["close"])
        if pk is None:
            peaks[pair] = None
            continue
        vals = [first_peak(r, bg[pair], p["smooth_A"], p["top"], p["close"]) for bg in blocks]
        vals = [v[0] for v in vals if v is not None]
        err = float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) >= 2 else None
        why = None
        if pk[1] < p["min_height"]:
            why = f"no coordination shell (smoothed g = {pk[1]:.2f} < {p['min_height']:g} at {pk[0]:.2f} Å)"
        elif pk[2] is None:
            why = f"the shell near {pk[0]:.2f} Å does not close inside r_max {r_max:.2f} Å"
        peaks[pair] = {"r_A": pk[0], "height": pk[1], "err_A": err, "shell": why is None, "why": why}
    return {"r_A": r, "g": g, "r_max_A": r_max, "n_frames": n, "peaks": peaks}


def peak_shifts(ref: dict, mlip: dict, resolved_A: float = PEAK["resolved_A"]) -> dict:
    """MLIP − reference first-peak positions of two :func:`first_peaks` results.

    A pair is compared when the reference has a coordination shell whose position is resolved
    (block uncertainty ≤ ``resolved_A``; unknown with fewer than 2 blocks: then compared); the
    MLIP's own noise is not an excuse: a compared pair whose MLIP run has no peak is a failure.
    Returns ``{"shifts": {pair: {"shift_A" (None = no MLIP peak), "err_A", "reference_A", "mlip_A"}},
    "not_compared": {pair: reason}, "max_abs_shift_A": largest |shift| (None if none compared or
    any compared pair lost its peak)}``.
    """
    shifts, skipped = {}, {}
    for pair, a in ref["peaks"].items():
        if a is None or not a["shell"]:
            skipped[pair] = "no first peak in the reference" if a is None else a["why"]
            continue
        if a["err_A"] is not None and a["err_A"] > resolved_A:
            skipped[pair] = (f"reference position {a['r_A']:.2f} ± {a['err_A']:.2f} Å not resolved to "
                             f"{resolved_A:g} Å (a longer reference run resolves it)")
            continue
        b = mlip["peaks"].get(pair)
        errs = [e for e in (a["err_A"], None if b is None else b["err_A"]) if e is not None]
        shifts[pair] = {"reference_A": a["r_A"], "mlip_A": None if b is None else b["r_A"],
                        "shift_A": None if b is None else b["r_A"] - a["r_A"],
                        "err_A": float(math.sqrt(sum(e * e for e in errs))) if errs else None}
    vals = [s["shift_A"] for s in shifts.values()]
    worst = None if not vals or any(v is None for v in vals) else max(abs(v) for v in vals)
    return {"shifts": shifts, "not_compared": skipped, "max_abs_shift_A": worst}


#: how far (fraction of T) outside the MLIP runs' measured temperatures a reference run's may lie and
#: still be compared by linear extrapolation (beyond: at the set-point, said so)
RDF_EXTRAPOLATE = 0.03


#: |MLIP − reference| first-peak limit, Å (the fit-for-MD gate's ``max_rdf_shift_A``)
RDF_SHIFT_LIMIT_A = 0.1


def bracket(measured: dict, t_K: float | None, what: str = "MLIP") -> tuple:
    """Two runs to take a quantity at temperature ``t_K`` from, linear in their measured temperatures.

    ``measured`` maps a run key to its measured mean T (None: unknown). Returns (k1, k2, w, how) with
    value(t_K) = (1 − w) value[k1] + w value[k2]: the two runs that bracket ``t_K``, or, within
    ``RDF_EXTRAPOLATE`` × t_K of the nearest, the two nearest (extrapolation); (None, None, None, why)
    when neither applies; ``how`` is (word, T1, T2) for :func:`bracket_text`.
    """
    pts = sorted((v, k) for k, v in measured.items() if v is not None)
    if t_K is None or len(pts) < 2:
        return None, None, None, f"at the set-point (measured temperatures unknown or one {what} run)"
    below = [q for q in pts if q[0] <= t_K]
    above = [q for q in pts if q[0] > t_K]
    if below and above:
        (t1, k1), (t2, k2), how = below[-1], above[0], "interpolated"
    else:
        (t1, k1), (t2, k2) = (pts[-2], pts[-1]) if below else (pts[0], pts[1])
        if abs(t_K - (t2 if below else t1)) > RDF_EXTRAPOLATE * t_K:
            return None, None, None, (f"at the set-point (the reference's {t_K:.0f} K is outside the {what} "
                                      f"runs' {pts[0][0]:.0f}–{pts[-1][0]:.0f} K)")
        how = "extrapolated"
    return k1, k2, 0.5 if t2 == t1 else (t_K - t1) / (t2 - t1), (how, t1, t2)  # two runs at one T: their mean


def bracket_text(how: tuple, t_K: float, name1: str, name2: str) -> str:
    """The sentence saying how a value at ``t_K`` was taken from two runs (``bracket``'s ``how``)."""
    word, t1, t2 = how
    return f"{word} to the reference's measured {t_K:.1f} K between {name1} ({t1:.1f} K) and {name2} ({t2:.1f} K)"


def mlip_peaks_at(mlip: dict, t_K: float, setpoint) -> tuple[dict, str, float | None]:
    """MLIP first peaks at the measured temperature ``t_K`` of a reference run: linear in the MLIP runs'
    own measured temperatures (:func:`bracket`). Returns (peaks, how, weight of the hotter run). With
    no usable pair of runs everything is the MLIP run at the same set-point (``how`` says so); a pair
    one of the two runs has no shell for keeps the set-point run's position.

    A 0.6-ps reference run can average 5 % off its set-point (80 atoms); shell positions move by
    ~4e-4 Å/K, so comparing at the set-point would charge the thermostat's noise to the potential.
    """
    same = mlip[setpoint]["peaks"]
    k1, k2, w, how = bracket({k: v.get("measured_K") for k, v in mlip.items()}, t_K)
    if k1 is None:
        return same, how, None
    how = bracket_text(how, t_K, f"MLIP {mlip[k1]['run']}", f"MLIP {mlip[k2]['run']}")
    out = {}
    for pair, pk in same.items():
        a, b = mlip[k1]["peaks"].get(pair), mlip[k2]["peaks"].get(pair)
        if a is None or b is None or not (a["shell"] and b["shell"]):
            out[pair] = pk
            continue
        errs = (a["err_A"], b["err_A"])
        out[pair] = {**b, "r_A": (1 - w) * a["r_A"] + w * b["r_A"],
                     "err_A": None if None in errs else math.hypot((1 - w) * errs[0], w * errs[1])}
    return out, how, w
