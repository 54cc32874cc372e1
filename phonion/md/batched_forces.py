"""MACE forces for many systems in one model call: the force engine of ``phonion md --engine batched``.

Why mace's own batching and not TorchSim
----------------------------------------
torch-sim-atomistic 0.3.0 (the newest release on the registry used here, not installed in this
environment; it would add tables, blosc2, vesin and six more packages) offers a batched state,
integrators and a ``MaceModel`` wrapper. Of these, the batched engine could use only the wrapper:
its integrators drop ASE ``FixAtoms`` silently, have no Bussi (CSVR) thermostat and take one
temperature for all systems, so the integrator, thermostat and constraints would be written here
anyway. The wrapper itself is a thin layer over the same mace model call as below, and it does
not load a ``.model`` file. mace-torch already does every part of a batched evaluation: its
loader (through :func:`phonion.core.calculators.resolve_calculator`, the same models, dtype and
device as the ASE path), ``config_from_atoms`` / ``AtomicData.from_config`` (the graph and
neighbour list of one system, exactly as ``MACECalculator`` builds it), the torch_geometric
``Batch`` that concatenates graphs, and the model forward with forces by autograd, which works
per graph. The batch is kept between steps (phonion.core.mace_graph: built with r_max + skin, rebuilt
when an atom moved half the skin, the edges within r_max taken at every step; SPEC ``skin=0`` builds
it at every step). So nothing of the force evaluation is written by hand here; only the split of the
outputs by graph and the committee mean / variance (the same reduction as ``MACECalculator``).
Forces and committee variances of a batch equal ``MACECalculator``'s to < 1e-12 eV/Å
(tests/md/test_batched.py); on the demo model the batched and ASE engines, same seed, stay within
1e-13 Å of each other over 20 steps (scripts/results/bench_md_cpu.json has the longer comparison).

Out of memory
-------------
A batch whose evaluation raises a (CUDA) out-of-memory error is split in two halves and each
half is evaluated again (recursively); a single system that does not fit raises a ValueError
naming the system size and what to do. Nothing is lost: the integrator state is untouched until
all forces of a step are in.
"""

from __future__ import annotations

import numpy as np

from phonion.core.calculators import parse_spec
from phonion.core.mace_graph import DEFAULT_SKIN_A, VerletGraph

__all__ = ["BatchedMACE", "BatchResults", "check_batched_spec", "is_out_of_memory"]


def check_batched_spec(spec: str) -> None:
    """Refuse (ValueError naming the SPEC) a calculator the batched engine cannot batch."""
    from phonion.core.calculators import parse_spec

    parsed = parse_spec(spec)
    if parsed.kind != "mace":
        raise ValueError(f"calculator {spec!r}: --engine batched batches MACE models only "
                         f"(SPEC mace:MODEL or mace:a,b,c); run this calculator with --engine ase")
    if parsed.options.get("compile_mode"):
        # tried: batches of changing edge counts recompile, were no faster than eager on 2 CPU cores
        # (34 s vs 31 s for 4 × 700 steps), and a resumed compiled batch died in torch 2.13's inductor
        # ("double free or corruption")
        raise ValueError(f"calculator {spec!r}: --engine batched runs eager models; drop compile_mode, or "
                         f"run the compiled model with --engine ase")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's out-of-memory errors (CUDA, MPS, or a CPU allocation failure)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


class BatchResults:
    """What the guards and frame writer of one system read, in the shape of an ASE calculator's
    ``results`` (``energy`` eV, ``forces`` (N, 3) eV/Å, committee: ``forces_var`` (N, 3) eV²/Å²).
    It is never called: the batched engine fills it after every step."""

    implemented_properties = ("energy", "forces")

    def __init__(self, num_models: int):
        self.num_models = num_models
        self.results: dict = {}
        if num_models > 1:
            self.implemented_properties = ("energy", "forces", "forces_var")


class BatchedMACE:
    """A MACE model (or committee) evaluated on a list of ``ase.Atoms`` in one forward pass.

    Parameters
    ----------
    spec : str, ``mace:MODEL[,MODEL...][?device=..&dtype=..]`` as for the ASE path
    device : str or None, overrides the SPEC's device
    calculator : an already built ``MACECalculator`` (tests); default: built from ``spec``
    """

    def __init__(self, spec: str, device: str | None = None, calculator=None):
        check_batched_spec(spec)
        if calculator is None:
            from phonion.core.calculators import resolve_calculator

            calculator = resolve_calculator(spec, device=device)
        import mace.data as mace_data
        import torch

        c = calculator
        self.models, self.device, self.z_table = c.models, c.device, c.z_table
        self.r_max, self.heads, self.head = c.r_max, c.available_heads, c.head
        self.dtype = next(c.models[0].parameters()).dtype
        self.e_unit, self.f_unit = c.energy_units_to_eV, c.energy_units_to_eV / c.length_units_to_A
        self.keyspec = mace_data.KeySpecification(info_keys=c.info_keys,
                                                  arrays_keys={**c.arrays_keys, c.charges_key: "charges"})
        self.num_models = len(self.models)
        self._torch = torch
        #: systems per model call after out-of-memory splits (None: never split)
        self.max_batch: int | None = None
        #: the kept graph of each chunk of systems (phonion.core.mace_graph), by (first system, size);
        #: the SPEC's ``skin`` (default 0.5 Å, 0: mace's graph at every step)
        self.skin = float(parse_spec(spec).options.get("skin", DEFAULT_SKIN_A))
        self._graphs: dict[tuple[int, int], VerletGraph] = {}
        self._builds_dropped = 0

    def _graph(self, atoms, cutoff: float):
        import mace.data as mace_data
        from mace.tools import torch_tools

        with torch_tools.default_dtype(self.dtype):
            config = mace_data.config_from_atoms(atoms, key_specification=self.keyspec, head_name=self.head)
            return mace_data.AtomicData.from_config(config, z_table=self.z_table, cutoff=cutoff,
                                                    heads=self.heads)

    def _build(self, atoms_list: list, cutoff: float):
        from mace.tools import torch_geometric

        return torch_geometric.Batch.from_data_list([self._graph(a, cutoff) for a in atoms_list]).to(self.device)

    def _batch(self, atoms_list: list, first: int):
        if self.skin <= 0:
            return self._build(atoms_list, self.r_max)
        key = (first, len(atoms_list))
        if key not in self._graphs:
            self._graphs[key] = VerletGraph(self._build, self.r_max, self.skin)
        return self._graphs[key](atoms_list)

    @property
    def n_graph_builds(self) -> int:
        """How many times a kept graph was (re)built, over every chunk since this engine was made."""
        return self._builds_dropped + sum(g.n_builds for g in self._graphs.values())

    def _forward(self, atoms_list: list, first: int = 0) -> list[tuple[float, np.ndarray, np.ndarray | None]]:
        """(energy eV, forces (N, 3) eV/Å, forces_var or None) of each system, one model call per member."""
        torch = self._torch
        batch = self._batch(atoms_list, first)
        energies, forces = [], []
        for model in self.models:
            b = batch.clone()
            out = model(b.to_dict(), compute_stress=False, training=False)
            energies.append(out["energy"].detach())
            forces.append(out["forces"].detach())
        e, f = torch.stack(energies), torch.stack(forces)   # (M, B), (M, sum N, 3)
        e_mean = (e.mean(0) * self.e_unit).cpu().numpy()
        f_mean = (f.mean(0) * self.f_unit).cpu().numpy()
        f_var = (f.var(0, unbiased=False) * self.f_unit ** 2).cpu().numpy() if self.num_models > 1 else None
        ptr = batch.ptr.cpu().numpy()
        return [(float(e_mean[i]), f_mean[ptr[i]:ptr[i + 1]].astype(np.float64),
                 None if f_var is None else f_var[ptr[i]:ptr[i + 1]].astype(np.float64))
                for i in range(len(atoms_list))]

    def compute(self, atoms_list: list) -> list[tuple[float, np.ndarray, np.ndarray | None]]:
        """Energies, forces and committee variances of every system, in order.

        Evaluated in chunks of at most :attr:`max_batch` systems; an out-of-memory error halves the
        chunk (and remembers it) until it fits. Raises ValueError when one system alone does not fit.
        """
        out, i, used = [], 0, set()
        while i < len(atoms_list):
            size = min(self.max_batch or len(atoms_list), len(atoms_list) - i)
            try:
                out.extend(self._forward(atoms_list[i:i + size], i))
                used.add((i, size))
                i += size
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(exc):
                    raise
                dropped = self._graphs.pop((i, size), None)  # the chunk's kept graph goes before the retry
                self._builds_dropped += dropped.n_builds if dropped else 0
                self._free()
                if size == 1:
                    raise ValueError(f"out of memory evaluating one system of {len(atoms_list[i])} atoms on "
                                     f"{self.device}: use a smaller supercell, dtype=float32 "
                                     f"(mace:MODEL?dtype=float32) or another device; the runs are "
                                     f"checkpointed, rerun with --resume") from exc
                self.max_batch = max(1, size // 2)
        for key in set(self._graphs) - used:  # chunks of an earlier batch (a run left, a split): free them
            self._builds_dropped += self._graphs.pop(key).n_builds
        return out

    def _free(self) -> None:
        torch = self._torch
        if str(self.device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
