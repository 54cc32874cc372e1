"""Small data for the tests of ``phonion validate`` and ``phonion learn`` (EMT: milliseconds per step).

``tests/`` is on sys.path while the tests run, so ``gate_helpers:flaky_emt`` is a valid
``module:function`` calculator SPEC there (a stand-in for a user's DFT that fails on one frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: every configuration a FlakyEMT computed (positions bytes), in order, over all instances
FRAMES: list[bytes] = []


def cual_structure(path: Path) -> str:
    """A 32-atom fcc Cu cell with every 4th atom Al (EMT knows both), written as extxyz."""
    import ase.io
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    symbols = atoms.get_chemical_symbols()
    for i in range(0, len(atoms), 4):
        symbols[i] = "Al"
    atoms.set_chemical_symbols(symbols)
    ase.io.write(path, atoms, format="extxyz")
    return str(path)


def emt_reference(out: Path, temperatures_K=(300, 600), steps: int = 200) -> list[str]:
    """``phonion reference`` with EMT on the Cu/Al cell: ``out/<T>K/traj.h5``, 51 frames each (~1 s per T)."""
    from phonion.mlip.reference import ReferenceConfig, run_reference

    out.mkdir(parents=True, exist_ok=True)
    structure = cual_structure(out / "cual.extxyz")
    summary = run_reference(ReferenceConfig(structure=structure, calculator="emt", temperatures_K=temperatures_K,
                                            steps=steps, sample_every=4, equilibration_steps=20, seed=3,
                                            output=str(out)), progress=False)
    assert all(r["status"] == "complete" for r in summary["runs"])
    return [r["file"] for r in summary["runs"]]


#: a MACE model small enough for 2 CPU cores (one epoch: ~5 s; deliberately bad)
TINY_MODEL = {"r_max": 4.0, "num_channels": 8, "max_L": 0, "max_ell": 1, "correlation": 2,
              "num_interactions": 2, "num_radial_basis": 6, "radial_MLP": [16, 16]}


def train_tiny(out: Path, files: list[str], seed: int, epochs: int = 1, **model) -> str:
    """Train a tiny MACE model with ``phonion.mlip.train`` on ``files``; returns its model file."""
    import mace  # noqa: F401  (mace before e3nn)

    from phonion.mlip.train import config_from_dict, run

    run(config_from_dict({
        "output": str(out), "seed": seed, "dtype": "float64",
        "data": {"files": list(files), "gap_frames": 2},
        "model": {**TINY_MODEL, **model},
        "trainer": {"max_epochs": epochs, "batch_size": 8, "patience": 0, "progress_bar": False,
                    "num_threads": 1, "accelerator": "cpu"},
        "wandb": {"mode": "disabled"}, "export": {"parity_plots": False}}))
    return str(out / "model.model")


def flaky_emt(marker: str = "", fail_on_frame: str = "3"):
    """EMT that raises on its ``fail_on_frame``-th configuration while the file ``marker`` exists.

    Options arrive as strings (SPEC ``gate_helpers:flaky_emt?marker=/tmp/x&fail_on_frame=3``).
    """
    from ase.calculators.emt import EMT

    class FlakyEMT(EMT):
        def __init__(self):
            super().__init__()
            self.seen: set[bytes] = set()

        def calculate(self, atoms=None, *args, **kwargs):
            key = np.round(atoms.positions, 8).tobytes()
            if key not in self.seen:
                self.seen.add(key)
                FRAMES.append(key)
                if marker and Path(marker).exists() and len(self.seen) == int(fail_on_frame):
                    raise RuntimeError("SCF did not converge (test calculator)")
            super().calculate(atoms, *args, **kwargs)

    return FlakyEMT()
