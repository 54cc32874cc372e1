"""MACE's input graph kept between MD steps (a Verlet neighbour list with a skin).

Why this is written here
------------------------
mace-torch's ``MACECalculator`` builds the whole input graph on every call: ``config_from_atoms``,
``AtomicData.from_config`` with a fresh matscipy neighbour list, and a torch_geometric ``Batch``.
For the 80-atom LiGa(SeO3)2 cell that is 2.2-2.4 ms of an 8 ms compiled force call
(scripts/results/mace_call_profile.json) — a quarter of MLIP MD. Neither mace nor ASE keeps a
graph between steps (ASE's ``NeighborList`` has a skin, but mace does not take one), so the one
missing piece — *when* a graph must be rebuilt — is written here, and everything else is mace's
own code:

- at a (re)build, mace's own graph of the system(s) is built with the cutoff ``r_max + skin``
  (the candidate pairs, with their periodic shifts);
- at every call only the positions change; the edges kept are the candidates closer than
  ``r_max`` *now* — exactly the pairs mace's neighbour list would give, so energies, forces and
  stress equal ``MACECalculator``'s to round-off (tests/md/test_mace_graph.py), whatever the
  model does with an edge;
- a rebuild happens when any atom moved ≥ skin / 2 since the last build (then a pair outside
  ``r_max + skin`` at the build may have come within ``r_max``: the Verlet criterion), or when the
  cell, the atomic numbers, the number of systems or anything but the positions changed. The kept
  candidates serve any positions within skin / 2 of the build's, whichever system they belong to.
- a system that is not periodic in all three directions is not kept (mace sizes its cell from the
  positions): mace's own graph at every call.

Measured on 1 core with the demo's model at 1300 K (skin 0.5 Å, a rebuild every ~8 steps):
float64 eager 16.5 → 14.6 ms a step; float32 eager 12.9 → 11.1; float32 compiled 8.6 → 5.9.
A compiled model sees a different edge count at every call: torch.compile then builds one
dynamic-shape graph (cached on disk by inductor) instead of mace's padding to a fixed edge count,
which computes 25 % phantom edges on every call.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["DEFAULT_SKIN_A", "VerletGraph", "graph_note", "verlet_mace_calculator"]

#: skin (Å) of the kept graph: the candidates reach r_max + skin. 0.5 Å is the usual MD choice
#: (LAMMPS' default for metal units is 2 Å for pair styles with no cost per extra pair; here every
#: candidate costs a distance, not a model evaluation, so a smaller skin only means more rebuilds)
DEFAULT_SKIN_A = 0.5


class VerletGraph:
    """The mace input batch of a list of systems, rebuilt only when the Verlet criterion says so.

    Parameters
    ----------
    build : ``build(atoms_list, cutoff) -> torch_geometric Batch`` — mace's own graph of the
        systems with the given cutoff (edges ``edge_index``, ``shifts``, ``unit_shifts``)
    r_max : the model's cutoff (Å)
    skin : Å, > 0
    """

    def __init__(self, build: Callable, r_max: float, skin: float = DEFAULT_SKIN_A):
        if not skin > 0:
            raise ValueError(f"skin must be > 0 Å, got {skin!r}")
        self.build, self.r_max, self.skin = build, float(r_max), float(skin)
        #: how many times the candidate graph was built (a test and benchmark figure)
        self.n_builds = 0
        self._c: dict | None = None

    def reset(self) -> None:
        """Forget the kept graph: the next call builds a new one."""
        self._c = None

    def _stale(self, atoms_list: list, pos: np.ndarray) -> bool:
        c = self._c
        if c is None or len(atoms_list) != len(c["cells"]) or pos.shape != c["pos"].shape:
            return True
        for a, cell, z in zip(atoms_list, c["cells"], c["numbers"]):  # (pbc: always all True when kept)
            if not (np.array_equal(a.cell.array, cell) and np.array_equal(a.numbers, z)):
                return True
        moved2 = np.einsum("ij,ij->i", pos - c["pos"], pos - c["pos"])
        return bool(moved2.max(initial=0.0) >= (self.skin / 2) ** 2)

    def _rebuild(self, atoms_list: list, pos: np.ndarray) -> None:
        import torch

        batch = self.build(atoms_list, self.r_max + self.skin)
        self.n_builds += 1
        ei, us = batch["edge_index"].cpu().numpy(), batch["unit_shifts"].detach().cpu().numpy().astype(np.float64)
        # one canonical edge order (sender, receiver, periodic image), whatever positions the build saw:
        # the kept edges then come in the same order after every rebuild, so a run resumed from a
        # checkpoint (a fresh graph) sums the messages in the same order: bit-identical restarts
        order = np.lexsort((us[:, 2], us[:, 1], us[:, 0], ei[1], ei[0]))
        idx = torch.from_numpy(order).to(batch["edge_index"].device)
        edge_index, shifts = batch["edge_index"][:, idx], batch["shifts"][idx]
        ei, us = ei[:, order], us[order]
        # the shifts in float64 (a float32 model's batch holds them rounded): unit shifts × the edge's cell
        first_atom = np.cumsum([0] + [len(a) for a in atoms_list])
        system = np.searchsorted(first_atom, ei[0], side="right") - 1
        cells = np.stack([a.cell.array for a in atoms_list])
        self._c = {"batch": batch, "pos": pos, "cells": cells, "numbers": [a.numbers.copy() for a in atoms_list],
                   "edge_index": edge_index, "shifts": shifts, "unit_shifts": batch["unit_shifts"][idx],
                   "ei": ei, "sh": np.einsum("ei,eij->ej", us, cells[system])}

    def __call__(self, atoms_list: list):
        """The batch for the systems' current positions, edges exactly those within ``r_max``."""
        import torch

        if not all(a.pbc.all() for a in atoms_list):
            # mace replaces a non-periodic cell vector by one sized from the positions (and stress, volume
            # and rcell follow it): such a graph cannot be kept; mace's own graph at every call
            self._c = None
            return self.build(atoms_list, self.r_max)
        pos = np.concatenate([a.positions for a in atoms_list])  # a copy: the kept graph owns it
        if self._stale(atoms_list, pos):
            self._rebuild(atoms_list, pos)
        c = self._c
        batch, ei = c["batch"], c["ei"]
        # mace's edge vector: positions[receiver] - positions[sender] + shifts (edge_index = sender, receiver)
        v = pos[ei[1]] - pos[ei[0]] + c["sh"]
        keep = np.flatnonzero(np.einsum("ij,ij->i", v, v) < self.r_max ** 2)
        keep_t = torch.from_numpy(keep).to(c["edge_index"].device)  # one host-to-device copy a call
        batch["edge_index"] = c["edge_index"].index_select(1, keep_t)
        batch["shifts"] = c["shifts"].index_select(0, keep_t)
        batch["unit_shifts"] = c["unit_shifts"].index_select(0, keep_t)
        old = batch["positions"]
        batch["positions"] = torch.tensor(pos, dtype=old.dtype, device=old.device)  # a copy, never the atoms' array
        return batch


def graph_note(calc) -> str | None:
    """How a MACE force engine builds its input graph, for run.json (``mace_graph``); None if not MACE."""
    graph = getattr(calc, "graph", None)
    skin = getattr(graph, "skin", getattr(calc, "skin", 0.0))
    if graph is None and not hasattr(calc, "models"):
        return None  # not a MACE calculator
    if skin and skin > 0:
        return (f"kept between steps (Verlet skin {skin:g} Å: rebuilt when an atom moved {skin / 2:g} Å; "
                f"the edges within r_max at every step)")
    return "mace's own graph built at every step"


def verlet_mace_calculator(skin: float = DEFAULT_SKIN_A, **kwargs):
    """mace's ``MACECalculator`` whose input graph is a :class:`VerletGraph` (same arguments, plus ``skin``).

    Identical results to ``MACECalculator`` (module docstring). With ``compile_mode`` the graph is not
    padded to a fixed edge count (torch.compile builds a dynamic-shape graph instead).
    """
    from mace.calculators import MACECalculator

    class VerletMACECalculator(MACECalculator):
        """``MACECalculator`` with its graph kept between calls (phonion.core.mace_graph)."""

        def __init__(self, **kw):
            super().__init__(**kw)
            # no padding to a fixed edge count (not even from MACE_ASE_PAD_NUM_*): the kept graph holds
            # the real atoms only, and a compiled model takes the changing edge count as a dynamic shape
            self.pad_num_atoms = self.pad_num_edges = 0
            self._padding_initialized = False
            if self.use_compile:
                import torch

                # trace the shapes as dynamic from the first call: one compilation instead of a static one
                # then a dynamic one at the second edge count (demo model, 1 core: first 30 MD steps 63 s
                # instead of 77 s with a cold inductor cache, 4.8 s instead of 10 s warm; 5.9 ms a step
                # either way). Process-wide, read when a graph is traced: phonion compiles only MACE models.
                torch._dynamo.config.assume_static_by_default = False
            self.graph = VerletGraph(self._build_graph, self.r_max, skin)

        def _build_graph(self, atoms_list: list, cutoff: float):
            # mace's own graph builder, with the candidate cutoff and without its compile padding
            r_max, compiled = self.r_max, self.use_compile
            self.r_max, self.use_compile = cutoff, False
            try:
                return MACECalculator._atoms_to_batch(self, atoms_list[0])
            finally:
                self.r_max, self.use_compile = r_max, compiled

        def _atoms_to_batch(self, atoms):
            return self.graph([atoms])

        def calculate(self, atoms=None, properties=None, system_changes=None):
            from ase.calculators.calculator import all_changes

            changes = all_changes if system_changes is None else system_changes
            if set(changes) - {"positions"}:
                self.graph.reset()  # cell, numbers, charges, info: mace's graph from scratch
            super().calculate(atoms, properties, changes)

        def reset(self):
            super().reset()
            if hasattr(self, "graph"):
                self.graph.reset()

    return VerletMACECalculator(**kwargs)
