"""Small model systems for the MDMA physics tests (imported by test_mdma_physics.py / test_mdma_cli.py).

"LiX3": the L1_2 structure (Li on the cube corners, X on the face centres, a = 3.6 Å; X = O by default: a
light framework, so Li vibrations mix with many modes, as in an oxide) with every atom of the unit cell
rattled by ~0.08 Å (seeded; no symmetry left), as a 2×2×2 supercell of 32 atoms (8 Li), held together by
central springs between first (~2.55 Å) and second (~3.6 Å) neighbours, each spring at rest in the rattled
structure (so it is the equilibrium):

    E = Σ_pairs ½ k x² + ⅓ α x³ + ¼ β x⁴,   x = |r_j − r_i| − r0   (pair list and r0 fixed from the reference)

α = β = 0 gives the harmonic network whose force constants phonopy extracts; α, β ≠ 0 make it anharmonic
(FPU-α-β springs; α < 0 softens stretched bonds as a Morse potential does) with the *same* force
constants. ``free_li=True`` removes every spring to Li: Li become free particles inside a harmonic X
framework.

"LiGa(SeO3)2 springs": the bundled structure with central Li–O springs only, for pFC with known answers.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

A = 3.6
K_NN, K_2NN = 1.5, 0.5  # eV/Å²


def l12_unit_cell(framework: str = "O", rattle_A: float = 0.08, seed: int = 7) -> Atoms:
    atoms = Atoms(["Li"] + 3 * [framework], scaled_positions=[[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]],
                  cell=[A, A, A], pbc=True)
    atoms.positions += np.random.default_rng(seed).normal(scale=rattle_A / np.sqrt(3), size=(4, 3))
    return atoms


def l12_supercell(unit: Atoms | None = None) -> Atoms:
    """phonopy's 2×2×2 supercell of the unit cell, as ASE atoms in phonopy's atom order."""
    from phonopy import Phonopy

    from phonion.mdma.phonons import to_ase_atoms, to_phonopy_atoms

    unit = l12_unit_cell() if unit is None else unit
    return to_ase_atoms(Phonopy(to_phonopy_atoms(unit), np.diag([2, 2, 2]), primitive_matrix="P").supercell)


class PairSpringCalculator(Calculator):
    """Central FPU springs on the pair list of ``reference`` (first neighbours closer than 3.05 Å: k = K_NN,
    second neighbours closer than 4.05 Å: k = K_2NN; rest lengths = the reference distances). Pair images are
    fixed from the reference, so unwrapped MD positions work; atoms must keep the reference's order."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, reference: Atoms, alpha: float = 0.0, beta: float = 0.0, free_li: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.beta = float(alpha), float(beta)
        i, j, S = neighbor_list("ijS", reference, 4.05)
        keep = i < j
        i, j, S = i[keep], j[keep], S[keep]
        shift = S @ reference.cell.array
        r0 = np.linalg.norm(reference.positions[j] + shift - reference.positions[i], axis=1)
        k = np.where(r0 < 3.05, K_NN, K_2NN)
        if free_li:
            li = np.array(reference.get_chemical_symbols()) == "Li"
            k = np.where(li[i] | li[j], 0.0, k)
        self.pairs = (i, j, shift, k, r0, len(reference))

    def check_state(self, atoms, tol=1e-15):
        if self.atoms is None or len(atoms) != len(self.atoms) \
                or not np.array_equal(atoms.positions, self.atoms.positions):
            return ["positions"]
        return []

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        i, j, shift, k, r0, n = self.pairs
        pos = self.atoms.positions
        d = pos[j] + shift - pos[i]
        r = np.linalg.norm(d, axis=1)
        x = r - r0
        on = k > 0
        dEdr = k * x + (self.alpha * x ** 2 + self.beta * x ** 3) * on
        fij = (dEdr / r)[:, None] * d          # force on i (towards j when stretched)
        f = np.stack([np.bincount(i, fij[:, a], n) - np.bincount(j, fij[:, a], n) for a in range(3)], axis=1)
        e = float(np.sum(0.5 * k * x ** 2 + (self.alpha * x ** 3 / 3 + 0.25 * self.beta * x ** 4) * on))
        self.results = {"energy": e, "free_energy": e, "forces": f}


def l12_phonons(framework: str = "O", free_li: bool = False):
    """phonopy force constants of the LiX3 spring network (2×2×2 supercell, 32 atoms) by finite displacements."""
    from phonion.mdma.phonons import compute_force_constants

    unit = l12_unit_cell(framework)
    calc = PairSpringCalculator(l12_supercell(unit), free_li=free_li)
    return compute_force_constants(unit, calc, (2, 2, 2), progress=False)


# ---- LiGa(SeO3)2 with central Li–O springs: pFC with known answers ------------------------------------
K_OE, K_OC = 1.5, 0.7  # eV/Å², Li–O_e and Li–O_c springs


def ligaseo_spring_phonons():
    """phonopy object (1×1×1) for the bundled LiGa(SeO3)2 whose force constants are central Li–O springs
    Φ_LiO = −k b̂b̂ᵀ (k = K_OE for O_e, K_OC for O_c neighbours), with the on-site blocks that keep the acoustic
    sum rule; returns (phonon, atoms, site classes)."""
    from phonopy import Phonopy

    from phonion.mdma.phonons import to_phonopy_atoms
    from phonion.mdma.sites import classify_oxygens
    from phonion.core.structures import load_structure

    atoms = load_structure("LiGa_SeO3_2")
    classes = classify_oxygens(atoms)
    n = len(atoms)
    fc = np.zeros((n, n, 3, 3))
    k = {"O_e": K_OE, "O_c": K_OC}
    for li, cl in classes.per_mobile.items():
        for c in ("O_e", "O_c"):
            for o in cl[c]:
                b = atoms.get_distance(li, o, mic=True, vector=True)
                bb = k[c] * np.outer(b, b) / (b @ b)
                fc[li, o] -= bb
                fc[o, li] -= bb
                fc[li, li] += bb
                fc[o, o] += bb
    phonon = Phonopy(to_phonopy_atoms(atoms), np.eye(3, dtype=int), primitive_matrix="P")
    phonon.force_constants = fc
    return phonon, atoms, classes
