"""DynaPhoPy's peak frequencies and linewidths at q = Γ of a unit cell, for comparison with ``phonion
anharmonicity`` (scripts/anharmonicity_checks.py calls this). Runs ONLY in a side virtual environment that has
DynaPhoPy (``python -m venv /tmp/dpvenv && /tmp/dpvenv/bin/pip install dynaphopy``); DynaPhoPy is not a phonion
dependency and nothing here imports phonion.

usage: /tmp/dpvenv/bin/python scripts/dynaphopy_side.py IN.npz OUT.json

IN.npz: unit_cell (3, 3) Å, scaled_positions (n, 3), symbols (n,), fc (N, N, 3, 3) eV/Å² of the phonopy supercell
``fc_supercell`` (3,), md_supercell (3,), velocities (F, N, 3) Å/ps in DynaPhoPy's supercell atom order, time (F,) ps,
f_max_THz. OUT.json: harmonic frequencies, fitted peak positions and widths (FWHM, THz) per band, DynaPhoPy's
global fit error, with DynaPhoPy's own Lorentzian fit (fitting function 0) on its numpy-FFT power spectrum.
"""

import json
import sys

import numpy as np


def main(inp: str, out: str) -> None:
    from dynaphopy import Quasiparticle
    from dynaphopy.analysis.fitting import phonon_fitting_analysis
    from dynaphopy.atoms import Structure
    from dynaphopy.dynamics import Dynamics
    from dynaphopy.interface.phonopy_link import ForceConstants

    d = np.load(inp)
    n = len(d["symbols"])
    structure = Structure(cell=d["unit_cell"], scaled_positions=d["scaled_positions"],
                          atomic_elements=[str(s) for s in d["symbols"]], primitive_matrix=np.identity(3))
    structure.set_force_constants(ForceConstants(d["fc"], supercell=np.diag(d["fc_supercell"])))
    dyn = Dynamics(structure=structure, velocity=np.array(d["velocities"], dtype=complex), time=d["time"],
                   supercell=np.dot(np.diag(d["md_supercell"]), d["unit_cell"]))
    calc = Quasiparticle(dyn)
    calc.parameters.silent = True
    calc.select_power_spectra_algorithm(2)          # FFT (numpy)
    calc.select_fitting_function(0)                 # Lorentzian
    df = 1.0 / (d["time"][-1] - d["time"][0])
    calc.set_frequency_limits([0.0, float(d["f_max_THz"])])
    calc.set_spectra_resolution(float(df) / 2)
    calc.set_reduced_q_vector(np.zeros(3))
    harmonic = [float(x) for x in calc.get_frequencies()]
    data = phonon_fitting_analysis(calc.get_power_spectrum_phonon(), calc.parameters.frequency_range,
                                   harmonic_frequencies=calc.get_frequencies(), show_plots=False,
                                   fitting_function_type=0, use_degeneracy=True)
    res = {"n_atoms_unit_cell": n, "harmonic_THz": harmonic,
           "peak_THz": [float(x) for x in data["positions"]], "width_THz": [float(x) for x in data["widths"]],
           "global_fit_error": [float(x) for x in data["error"]],
           "spectrum_resolution_THz": float(df) / 2, "dynaphopy_version": __import__("dynaphopy").__version__}
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
