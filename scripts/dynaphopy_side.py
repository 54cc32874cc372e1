"""DynaPhoPy's peak frequencies and linewidths at q = Γ of a unit cell, for comparison with ``phonion
anharmonicity`` (scripts/anharmonicity_checks.py and scripts/dynaphopy_compare.py call this). Runs ONLY in a side
virtual environment that has DynaPhoPy (``python -m venv /tmp/dpvenv && /tmp/dpvenv/bin/pip install dynaphopy``);
DynaPhoPy is not a phonion dependency and nothing here imports phonion.

usage: /tmp/dpvenv/bin/python scripts/dynaphopy_side.py IN.npz OUT.json [SPECTRA_OUT.npz]
       /tmp/dpvenv/bin/python scripts/dynaphopy_side.py --fit-spectra SPECTRA.npz OUT.json
       /tmp/dpvenv/bin/python scripts/dynaphopy_side.py --fit-qdot QDOT.npz OUT.json

IN.npz: unit_cell (3, 3) Å, scaled_positions (n, 3), symbols (n,), fc (N, N, 3, 3) eV/Å² of the phonopy supercell
``fc_supercell`` (3,), md_supercell (3,), velocities (F, N, 3) Å/ps in DynaPhoPy's supercell atom order, time (F,) ps,
f_max_THz. OUT.json: harmonic frequencies, fitted peak positions and widths (FWHM, THz) per band with their standard
errors (DynaPhoPy's curve_fit covariance: width error = 2 × that of its half-width parameter), DynaPhoPy's global
fit error, with DynaPhoPy's own Lorentzian fit (fitting function 0, degenerate bands' spectra averaged first) on its
numpy-FFT power spectrum. SPECTRA_OUT.npz: DynaPhoPy's frequency grid and per-band power spectrum.

``--fit-spectra``: DynaPhoPy's Lorentzian fit (the same class, same initial guess) applied to given spectra
(SPECTRA.npz: frequencies (J,), power (J, B)); OUT.json: peak, width and their errors per column.
``--fit-qdot``: DynaPhoPy's numpy-FFT spectrum (its ``_numpy_power``, resolution half a bin as above, 0 to
``f_max_THz``) and Lorentzian fit of each column of a mode-velocity series (QDOT.npz: qdot (F, M), dt_ps, f_max_THz).
"""

import json
import sys
import warnings

import numpy as np


def _fit(freqs, power):
    from dynaphopy.analysis.fitting.fitting_functions import Lorentzian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = Lorentzian(freqs, power, guess_height=power.max(), guess_position=freqs[np.argmax(power)]).get_fitting()
    if not r["all_good"]:
        return {"peak_THz": None, "width_THz": None, "peak_err_THz": None, "width_err_THz": None}
    se = r["standard_errors"]
    return {"peak_THz": float(r["peak_position"]), "width_THz": float(r["width"]), "peak_err_THz": float(se[0]),
            "width_err_THz": float(2 * se[1])}


def fit_spectra(inp: str, out: str) -> None:
    d = np.load(inp)
    res = [_fit(d["frequencies"], d["power"][:, j]) for j in range(d["power"].shape[1])]
    with open(out, "w") as fh:
        json.dump({"fits": res, "dynaphopy_version": __import__("dynaphopy").__version__}, fh, indent=1)


def fit_qdot(inp: str, out: str) -> None:
    from dynaphopy.power_spectrum import _numpy_power

    d = np.load(inp)
    q, dt = d["qdot"], float(d["dt_ps"])
    df = 1.0 / ((len(q) - 1) * dt)
    freqs = np.arange(0.0, float(d["f_max_THz"]), df / 2)
    res = [_fit(freqs, _numpy_power(freqs, q[:, j].astype(complex), dt)) for j in range(q.shape[1])]
    with open(out, "w") as fh:
        json.dump({"fits": res, "dynaphopy_version": __import__("dynaphopy").__version__}, fh, indent=1)


def main(inp: str, out: str, spectra_out: str | None = None) -> None:
    import contextlib
    import io

    from dynaphopy import Quasiparticle
    from dynaphopy.analysis.fitting import degenerate_sets
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
    with contextlib.redirect_stdout(io.StringIO()):
        harmonic = np.array([float(x) for x in calc.get_frequencies()])
        ps = calc.get_power_spectrum_phonon()
    freqs = np.array(calc.parameters.frequency_range)
    # DynaPhoPy's phonon_fitting_analysis (use_degeneracy=True): average the degenerate bands' spectra, fit once
    fits = []
    for i in range(len(harmonic)):
        group = next(g for g in degenerate_sets(harmonic) if i in g)
        fits.append(_fit(freqs, ps[:, group].mean(axis=1)))
    res = {"n_atoms_unit_cell": n, "harmonic_THz": harmonic.tolist(),
           "peak_THz": [f["peak_THz"] for f in fits], "width_THz": [f["width_THz"] for f in fits],
           "peak_err_THz": [f["peak_err_THz"] for f in fits], "width_err_THz": [f["width_err_THz"] for f in fits],
           "spectrum_resolution_THz": float(df) / 2, "dynaphopy_version": __import__("dynaphopy").__version__}
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)
    if spectra_out:
        np.savez(spectra_out, frequencies=freqs, power=ps.real if np.iscomplexobj(ps) else ps, harmonic=harmonic)


if __name__ == "__main__":
    if sys.argv[1] == "--fit-spectra":
        fit_spectra(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "--fit-qdot":
        fit_qdot(sys.argv[2], sys.argv[3])
    else:
        main(*sys.argv[1:4])
