"""σ_A and mode linewidths for ``phonion compare``: the same :func:`phonion.workflows.anharmonicity.run_anharmonicity`
on each side's headline run, with that side's phonons, as numbers of ``numbers.json``.

Keys (each side): ``sigma_A``, ``sigma_A_<mobile>``, ``sigma_A_O_e``, ``sigma_A_O_c``, ``sigma_A_O_n`` (dimensionless;
null without forces; uncertainty: the block-averaging standard error ``sigma_A_err`` etc.), ``linewidth_O_e_mean_THz`` / ``linewidth_O_c_mean_THz`` (mean FWHM of the fitted O_e- / O_c-
dominated Γ modes, ± the propagated fit errors; not converged when fewer than :data:`MIN_FITTED` modes of the class
are resolved by the run), ``linewidth_resolution_THz``. The run's full result goes to ``OUT/anharmonicity/<side>/``.
"""

from __future__ import annotations

__all__ = ["side_numbers", "anharmonicity_numbers", "MIN_FITTED", "KEYS"]

#: a class's mean linewidth counts as converged only with at least this many fitted modes of the class
MIN_FITTED = 3
#: what a σ_A above 1 means, said beside the number (Knoop et al. 2020: the harmonic model is then worse
#: than no model at all for these forces)
_ABOVE_ONE = ("; σ_A > 1: this calculator's harmonic model does not describe its own MD forces (strongly "
              "anharmonic at this temperature, or atoms far from their sites): not a perturbative measure here")

KEYS = ("sigma_A", "sigma_A_O_e", "sigma_A_O_c", "linewidth_O_e_mean_THz", "linewidth_O_c_mean_THz")


def anharmonicity_numbers(run, source, out_dir, side: str, *, mobile: str, anion: str, velocities: str,
                          timestep_fs=None, unit=None, phonon=None, caught: list) -> dict:
    """Numbers of one side's headline ``run`` (a :class:`phonion.compare.runs.Run`) with the phonons in ``source``
    (``phonon``: the same, loaded). ``velocities``: the comparison's policy (``file`` or ``positions``)."""
    from phonion.compare.analyses import number
    from phonion.workflows.anharmonicity import AnharmonicityConfig, run_anharmonicity

    try:
        cfg = AnharmonicityConfig(files=tuple(run.files), phonons=str(source), species=mobile, anion=anion,
                                  timestep_fs=timestep_fs, velocities="positions" if velocities == "positions" else "auto",
                                  mdma=False, plots=False)
        res = run_anharmonicity(cfg, site_unit=unit, phonon=phonon)
        res.save(out_dir, plots=False)
    except ValueError as exc:
        caught.append(f"{side}: no σ_A / linewidths: {exc}")
        return {}
    s = res.to_dict()
    src = list(run.files)
    base = (f"{run.name} at {run.temperature_K:g} K; {s['n_frames_with_forces']} frames with forces; hopping "
            f"{s['mobile_species']}: {s['hopping']['handling']} ({s['hopping']['n_atom_frames_reanchored']} atom-frames)")
    nf = "" if s["sigma_A"] is not None else "; the trajectory has no forces"
    out = {"sigma_A": number(s["sigma_A"], "", side, src, uncertainty=s.get("sigma_A_err"),
                             note="σ_A (Knoop 2020), all atoms, ± block-averaging SE; " + base + nf
                             + (_ABOVE_ONE if (s["sigma_A"] or 0) > 1 else ""))}
    sp_err, cl_err = s.get("sigma_A_by_species_err") or {}, s.get("sigma_A_by_class_err") or {}
    for key, val, err in [(f"sigma_A_{mobile}", (s["sigma_A_by_species"] or {}).get(mobile), sp_err.get(mobile)),
                          *[(f"sigma_A_{c}", (s["sigma_A_by_class"] or {}).get(c), cl_err.get(c))
                            for c in ("O_e", "O_c", "O_n")]]:
        out[key] = number(val, "", side, src, uncertainty=err, note=f"σ_A over the {key[8:]} atoms; " + base + nf
                          + (_ABOVE_ONE if (val or 0) > 1 else ""))
    res_thz = s["frequency_resolution_THz"]
    for c in ("O_e", "O_c"):
        ls = s["linewidth_summary"][c]
        ok = ls["n_fitted"] >= MIN_FITTED
        out[f"linewidth_{c}_mean_THz"] = number(
            ls["mean_linewidth_THz"], "THz", side, src, uncertainty=ls["mean_linewidth_err_THz"], converged=ok,
            note=f"mean FWHM of {ls['n_fitted']} fitted of {ls['n_modes']} {c}-dominated Γ modes; resolution "
                 f"{res_thz:.3g} THz" + ("" if ok else f"; fewer than {MIN_FITTED} modes resolved: the run is too "
                                                        "short for linewidths"))
    out["linewidth_resolution_THz"] = number(res_thz, "THz", side, src, note="1 / run length of the headline run")
    return out


def side_numbers(run, source, out, side: str, cfg, velocities: str, *, unit=None, phonon=None, caught: list) -> dict:
    """:func:`anharmonicity_numbers` with the settings of a :class:`phonion.compare.run.CompareConfig` ``cfg``;
    the result goes to ``out/anharmonicity/<side>/``."""
    return anharmonicity_numbers(run, source, out / "anharmonicity" / side, side, mobile=cfg.mobile, anion=cfg.anion,
                                 velocities=velocities, timestep_fs=cfg.timestep_fs, unit=unit, phonon=phonon,
                                 caught=caught)
