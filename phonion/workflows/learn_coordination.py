"""Coordination numbers in active learning: frames whose bonded-shell counts leave the training data.

Used by ``phonion.workflows.learn_steps.harvest`` beside the committee spread and the closest approach.
"""

from __future__ import annotations

import numpy as np

from phonion.workflows.learn_config import data_files

__all__ = ["coordination_bounds", "coordination_outliers"]


def coordination_bounds(cfg: dict, frames: list) -> dict:
    """Bonded shells of the reference data (``phonion.md.coordination``) and the range of their per-frame
    neighbour counts over the training frames: ``{pair: {"shell", "lo", "hi"}}``.

    A frame whose count leaves that range by a whole bond lies outside the training distribution as
    surely as a pair closer than the data ever had it (a GaO6 octahedron that lost an O).
    """
    from phonion.md.coordination import coordination_series, reference_shells
    from phonion.md.io import read_trajectory
    from phonion.md.rdf import first_peaks

    runs = []
    for path in data_files(cfg):
        traj = read_trajectory(path)
        runs.append({"run": path, "symbols": list(traj.symbols),
                     "rdf": first_peaks(traj.positions, traj.cells, traj.symbols, 100)})
    shells, _ = reference_shells(runs) if runs else ({}, None)
    values: dict = {p: [] for p in shells}
    for atoms in frames:
        if not shells:
            break
        for pair, x in coordination_series([atoms.positions], [atoms.cell.array], atoms.get_chemical_symbols(),
                                           shells).items():
            values[pair].append(float(x[0]))
    return {p: {"shell": shells[p], "lo": min(v), "hi": max(v)} for p, v in values.items() if v}


def coordination_outliers(traj, bounds: dict) -> np.ndarray:
    """Per frame: True where a shell's count is a whole bond outside the training range."""
    from phonion.md.coordination import coordination_series

    bad = np.zeros(traj.n_frames, bool)
    if not bounds:
        return bad
    cells = np.broadcast_to(np.asarray(traj.cells, float), (traj.n_frames, 3, 3))
    series = coordination_series(traj.positions, cells, traj.symbols, {p: b["shell"] for p, b in bounds.items()})
    sym = list(traj.symbols)
    for pair, x in series.items():
        b = bounds[pair]
        step = 1.0 / max(1, sym.count(b["shell"]["centre"]))  # one bond of this cell (a supercell has more centres)
        bad |= (x < b["lo"] - step + 1e-9) | (x > b["hi"] + step - 1e-9)
    return bad
