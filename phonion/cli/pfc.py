"""``phonion pfc``: projected force constants of mobile ion–O_e / O_c bonds, a thin layer over
:mod:`phonion.mdma.pfc`. Flow: load the phonons → O classes on phonopy's supercell → migration directions
(structure or hops in a trajectory) → bond- and migration-projected force constants.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from phonion.cli.mdma import _clean, _source, _time_options

__all__ = ["add_pfc_parser", "run_pfc_command"]

PFC_EPILOG = """\
examples:
  phonion pfc --phonons phonons-out --json
  phonion pfc --phonons phonons-out --trajectory run.h5 --json     # directions from observed Li hops

Φ_AB is the 3 × 3 force-constant block (eV/Å²) of a mobile ion A and an O_e / O_c neighbour B in phonopy's
supercell; b̂ the A→B unit vector; m̂ a migration direction of A. bond pFC = b̂ᵀΦb̂, mpFC = (Φb̂)·m̂, averaged
over all mobile ions, neighbours and directions; ΔpFC = mpFC(O_e) − mpFC(O_c). A central spring of stiffness
k gives Φ_AB = −k b̂b̂ᵀ, so stiffer bonds are more negative.
JSON keys: mpfc_Oe_eV_A2, mpfc_Oc_eV_A2, delta_pfc_eV_A2, bond_pfc_Oe_eV_A2, bond_pfc_Oc_eV_A2 (means), their
*_err (standard errors), spreads (mean, std, min, max, n, sem of each), directions_source, ..."""


# ---------------------------------------------------------------------------------------- parsers

def add_pfc_parser(sub, formatter) -> None:
    """Add the ``pfc`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "pfc", formatter_class=formatter,
        help="projected force constants of mobile ion–O_e / O_c bonds (bond and migration projected)",
        description="Bond-projected (b̂ᵀΦb̂, Φb̂) and migration-projected ((Φb̂)·m̂) force constants for every "
                    "mobile ion and its O_e / O_c neighbours, averaged with spread, and ΔpFC. Migration "
                    "directions: the nearest shell of other mobile-ion sites (default), or the hops seen in "
                    "--trajectory.",
        epilog=PFC_EPILOG)
    p.add_argument("--phonons", required=True, metavar="DIR", help="phonopy data (as for mdma)")
    p.add_argument("--trajectory", nargs="+", default=None, metavar="TRAJ",
                   help="take migration directions from the mobile-ion hops in this run")
    p.add_argument("--mobile", default="Li", help="mobile species")
    p.add_argument("--anion", default="O", help="anion species")
    p.add_argument("--framework", nargs="+", default=None, metavar="EL",
                   help="framework cations for the O classes (none: found automatically)")
    p.add_argument("--k-nearest", type=int, default=None, metavar="K",
                   help="structure directions: the K nearest sites instead of the whole first shell")
    p.add_argument("--hop-threshold-A", type=float, default=1.0, help="hop: site change larger than this, Å")
    p.add_argument("--hop-window", type=int, default=50, help="hop: frames averaged into a site")
    p.add_argument("--site-tolerance-A", type=float, default=0.5,
                   help="largest distance of a first-frame atom from its phonopy site, Å")
    _time_options(p)
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="also write pfc.json (with every ion–anion record) into DIR")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_cmd_pfc)


# ---------------------------------------------------------------------------------------- pfc
def _hop_directions(files, phonon, sc_atoms, mobile, *, fmt, timestep_fs, file_stride, threshold_A, window,
                    site_tolerance_A):
    """m̂ per mobile ion of phonopy's supercell from hops seen in a trajectory, matched by primitive site."""
    from phonion.md.io import read_trajectory
    from phonion.md.trajectory import TrajectoryError
    from phonion.mdma.modes import map_to_primitive
    from phonion.mdma.pfc import _unit, detect_hops

    src = _source(files)
    traj = read_trajectory([Path(f) for f in files], fmt=fmt, timestep_fs=timestep_fs, stride=file_stride)
    prim = phonon.primitive
    A, fprim, psym = np.array(prim.cell), np.array(prim.scaled_positions), list(prim.symbols)
    try:
        kappa_md, _, _ = map_to_primitive(A, fprim, psym, traj.to_atoms(0), site_tolerance_A)
    except ValueError as exc:
        raise ValueError(f"{src}: the trajectory (first frame) does not match the phonons: {exc}") from exc
    kappa_sc, _, _ = map_to_primitive(A, fprim, psym, sc_atoms, 1e-3)
    ions = traj.indices_of(mobile)
    if ions.size == 0:
        raise TrajectoryError(f"{src}: no {mobile!r} atoms")
    try:
        hops = detect_hops(traj.positions, ions, threshold_A=threshold_A, window=window)
    except ValueError as exc:
        raise TrajectoryError(f"{src}: {exc}") from exc
    if not hops:
        raise TrajectoryError(f"{src}: no {mobile} hops found ({traj.n_frames} frames, threshold "
                              f"{threshold_A} Å, window {window} frames); omit --trajectory to take the "
                              f"directions from the structure, or use a longer / hotter run")
    by_site: dict[int, list] = {}
    for h in hops:
        by_site.setdefault(int(kappa_md[h.ion]), []).append(h.vector_A)
    directions = {int(i): _unit(np.array(by_site[int(kappa_sc[i])]))
                  for i in np.flatnonzero(np.array(sc_atoms.get_chemical_symbols()) == mobile)
                  if int(kappa_sc[i]) in by_site}
    info = {"n_hops": len(hops), "n_hopping_ions": len({h.ion for h in hops}),
            "n_sites_with_hops": len(by_site), "trajectory": [str(f) for f in files]}
    return directions, info


def run_pfc_command(phonons, *, trajectory=None, mobile="Li", anion="O", framework=None, k_nearest=None,
                    hop_threshold_A=1.0, hop_window=50, site_tolerance_A=0.5, timestep_fs=None, file_stride=None,
                    fmt=None, output=None) -> dict:
    """The ``pfc`` command as a function; returns the JSON dict (and writes ``pfc.json`` into ``output``)."""
    from phonion.mdma.pfc import migration_directions_from_sites, projected_force_constants
    from phonion.mdma.phonon_io import load_phonons
    from phonion.mdma.phonons import to_ase_atoms
    from phonion.mdma.sites import classify_oxygens

    phonon = load_phonons(phonons)
    sc = to_ase_atoms(phonon.supercell)
    fc = np.asarray(phonon.force_constants)
    try:
        classes = classify_oxygens(sc, mobile=mobile, anion=anion, framework=framework)
    except ValueError as exc:
        raise ValueError(f"{phonons}: cannot classify the {anion} sites around {mobile}: {exc}") from exc
    if not any(cl.get("O_e") or cl.get("O_c") for cl in classes.per_mobile.values()):
        raise ValueError(f"{phonons}: no O_e or O_c neighbours around {mobile} (framework cations found: "
                         f"{list(classes.framework) or 'none'}); pFC needs {mobile}–{anion} polyhedra sharing "
                         f"edges or corners with framework polyhedra")
    pos, cell = sc.get_positions(), np.array(sc.cell.array)
    if trajectory:
        directions, dir_info = _hop_directions(trajectory, phonon, sc, mobile, fmt=fmt, timestep_fs=timestep_fs,
                                               file_stride=file_stride, threshold_A=hop_threshold_A,
                                               window=hop_window, site_tolerance_A=site_tolerance_A)
        how = "hops in the trajectory (by primitive site)"
    else:
        mob = sorted(classes.per_mobile)
        directions = migration_directions_from_sites(pos, cell, mob, k=k_nearest)
        how = ("structure: the whole first shell of other mobile-ion sites" if k_nearest is None
               else f"structure: the {k_nearest} nearest other mobile-ion sites")
        dir_info = {}
    res = projected_force_constants(fc, pos, cell, classes, directions)
    keys = ("mpfc_Oe_eV_A2", "mpfc_Oc_eV_A2", "bond_pfc_Oe_eV_A2", "bond_pfc_Oc_eV_A2",
            "bond_vector_norm_Oe_eV_A2", "bond_vector_norm_Oc_eV_A2")
    out = {k: res[k]["mean"] for k in keys}
    out.update({f"{k}_err": res[k]["sem"] for k in keys})
    out["delta_pfc_eV_A2"] = res["delta_pfc_eV_A2"]["value"]
    out["delta_pfc_eV_A2_err"] = res["delta_pfc_eV_A2"]["err"]
    out["spreads"] = {k: res[k] for k in keys}
    out.update({"directions_source": how, **dir_info,
                "n_mobile": len(classes.per_mobile), "n_mobile_with_directions": len(directions),
                "n_directions": int(sum(len(np.atleast_2d(d)) for d in directions.values())),
                "phonons": str(phonons), "supercell_atoms": len(sc), "mobile": mobile, "anion": anion,
                "framework": list(classes.framework),
                "sign_convention": "Φ_AB = ∂²E/∂u_A∂u_B, b̂ from mobile ion to anion; a central spring k gives -k"})
    out = _clean(out)
    if output is not None:
        d = Path(output)
        d.mkdir(parents=True, exist_ok=True)
        full = dict(out, records=_clean(res["records"]))
        (d / "pfc.json").write_text(json.dumps(full, indent=1) + "\n")
        out["files"] = {"pfc_json": str(d / "pfc.json")}
    return out


def _cmd_pfc(args) -> int:
    result = run_pfc_command(args.phonons, trajectory=args.trajectory, mobile=args.mobile, anion=args.anion,
                             framework=args.framework, k_nearest=args.k_nearest,
                             hop_threshold_A=args.hop_threshold_A, hop_window=args.hop_window,
                             site_tolerance_A=args.site_tolerance_A, timestep_fs=args.timestep_fs,
                             file_stride=args.file_stride, fmt=args.fmt, output=args.output)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for key in ("mpfc_Oe_eV_A2", "mpfc_Oc_eV_A2", "delta_pfc_eV_A2", "bond_pfc_Oe_eV_A2",
                    "bond_pfc_Oc_eV_A2"):
            print(f"{key:>20}: {result[key]} ± {result.get(key + '_err')}")
        print(f"{'directions':>20}: {result['directions_source']}")
    return 0
