"""Units and constants, in one place: exact SI (2019) values and the CODATA 2018 atomic mass unit, written
out so that phonion's numbers do not move when scipy updates its CODATA table.

phonion's units at module boundaries: Å, fs (or ps), eV, K, amu, THz (cycles, not rad), cm²/s, mS/cm.
ASE's own unit system (``ase.units``, CODATA 2014 by default) is used only where ASE's state is read or
written (momenta, ``Atoms.get_temperature``); every conversion phonion does itself uses these.
"""

from __future__ import annotations

#: Boltzmann constant, J/K (exact)
K_B_J_K = 1.380649e-23
#: elementary charge, C (exact)
E_CHARGE_C = 1.602176634e-19
#: atomic mass unit, kg (CODATA 2018)
AMU_KG = 1.66053906660e-27
#: speed of light, m/s (exact)
C_M_S = 299792458.0
#: Boltzmann constant, eV/K
K_B_EV_K = K_B_J_K / E_CHARGE_C
#: kinetic energy of 1 amu moving at 1 Å/fs, in eV (amu·Å²/fs² → eV), ≈ 103.6427
AMU_A2_PER_FS2_TO_EV = AMU_KG * 1e-20 / 1e-30 / E_CHARGE_C
#: diffusion coefficient: Å²/fs → cm²/s (1e-16 cm² / 1e-15 s)
A2_FS_TO_CM2_S = 0.1
#: THz (cycles) → cm⁻¹
THZ_TO_CM1 = 1e12 / (C_M_S * 100.0)

__all__ = ["AMU_KG", "C_M_S", "K_B_EV_K", "K_B_J_K", "E_CHARGE_C", "AMU_A2_PER_FS2_TO_EV", "A2_FS_TO_CM2_S", "THZ_TO_CM1"]
