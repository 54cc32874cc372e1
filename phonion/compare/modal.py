"""Phonons, MDMA, pFC and force/energy parity for ``phonion compare``, the same code on each side.

* Phonons are the Γ modes of the MD cell (DESIGN.md "Modes"): force constants from phonopy finite
  displacements (``phonion.mdma.phonons.compute_force_constants``) on the side's structure with the phonopy
  supercell equal to the MD cell, forces from the side's calculator SPEC, or a phonon file the user gives
  (``phonion.mdma.phonon_io.load_phonons``: phonopy yaml, FORCE_CONSTANTS, FORCE_SETS, a ``phonion phonons`` dir).
  Force constants live in ``OUT/phonons/<side>/`` (``phonopy_disp.yaml`` + exact ``force_constants.hdf5``,
  readable by ``phonion mdma --phonons``); computed ones carry their key (calculator, structure, supercell,
  displacement) in ``compare_phonons.json``: a rerun loads them, and when both sides have the same key they
  share one computation (so identical inputs give identical numbers).
  Phonon DOS: the Γ frequencies of the MD cell, each mode weighted by Σ_{i∈group} |e_{i,n}|² and
  Gaussian-broadened (``phonion.md.vdos.harmonic_vdos``, σ = 0.2 THz). Numbers: the lowest frequency above the
  3 acoustic modes (the 3 smallest |f|), the mobile-ion-weighted mean of the positive frequencies
  Σ w_n f_n / Σ w_n, and the count of imaginary modes (f < −0.05 THz, acoustic ones excluded).
* MDMA: :func:`phonion.workflows.mdma.run_mdma` (exact Gordiz) per non-fixed run. O_e-mode mean frequency:
  f̄_Oe = Σ_{n∈O_e} c_n f_n / Σ_{n∈O_e} c_n over the O_e-dominated modes (those whose O_e atoms carry the
  largest Σ_i |e_{i,n}|² of the three O classes, on the ideal sites), with c_n = Σ_n' (D_nn' + D_n'n)/2
  the symmetrised per-mode contribution to D_σ (c_n may be negative, so f̄_Oe is a weighted mean, not a
  mode frequency). An MDMA number counts as converged when the running integral is flat (over the last
  quarter of τmax it stays within 10 % of its final value) and its block error is small (D_σ: < 50 %;
  shares: σ < 0.15; O_e-mode mean frequency: σ < 1 THz).
* pFC: :func:`phonion.workflows.pfc.run_pfc` on each side's force constants (directions: the first shell of
  other mobile-ion sites).
* Parity: the MLIP model (``--model``) on the reference frames with forces (``phonion.mlip.evaluate``).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phonion.compare.warn import ours
from phonion.compare.analyses import combine, number, tkey
from phonion.mdma.supercell import MD_SITE_TOLERANCE_A, ideal_sites, supercell_matrix  # noqa: F401

__all__ = ["supercell_matrix", "ideal_sites", "side_phonons", "phonon_dos_numbers", "mdma_numbers", "MDMASettings",
           "pfc_numbers", "parity_numbers", "model_spec", "SITE_TOLERANCE_A"]

#: largest distance (Å) of an MD atom (first frame) from its site when mapping onto the phonon cell
SITE_TOLERANCE_A = MD_SITE_TOLERANCE_A
KEY_FILE = "compare_phonons.json"
DOS_SIGMA_THZ = 0.2
FLAT_TOLERANCE = 0.1


def _key(spec: str, unit, smat, displacement_A: float) -> dict:
    h = hashlib.sha256()
    h.update(" ".join(unit.get_chemical_symbols()).encode())
    h.update(np.round(np.asarray(unit.positions, float), 8).tobytes())
    h.update(np.round(np.asarray(unit.cell.array, float), 8).tobytes())
    return {"format": "phonion-compare-phonons-1", "calculator": spec, "structure_sha256": h.hexdigest(),
            "n_atoms": len(unit), "supercell_matrix": np.asarray(smat).tolist(), "displacement_A": displacement_A}


def _save_light(phonon, out: Path) -> None:
    """The cell, supercell matrix (``phonopy_disp.yaml``) and exact full force constants
    (``force_constants.hdf5``): what ``load_phonons`` needs, read in a fraction of a second (a phonopy yaml
    holding the force constants takes seconds to parse, and every analysis loads them again)."""
    from phonopy.file_IO import write_force_constants_to_hdf5

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    phonon.save(out / "phonopy_disp.yaml",
                settings={"force_sets": False, "displacements": False, "force_constants": False})
    write_force_constants_to_hdf5(np.asarray(phonon.force_constants), filename=str(out / "force_constants.hdf5"))


def side_phonons(side: str, spec, phonon_file, unit, md_atoms, out_dir, computed: dict, *,
                 displacement_A: float = 0.01, device=None, progress: bool = False):
    """Where this side's phonons are (a directory for ``load_phonons``) and how they were obtained.

    A given phonon file is loaded once and rewritten into ``out_dir`` in the fast form of
    :func:`_save_light`; computed ones are cached there with their key. Returns (path or None, info dict).
    ``computed`` maps a cache key to a directory already written in this comparison (shared by the sides).
    """
    from phonion.mdma.phonon_io import load_phonons

    out = Path(out_dir)
    if phonon_file is not None:
        p = Path(phonon_file).expanduser()
        if not p.exists():
            raise ValueError(f"{side} phonons {p}: no such file or directory")
        _save_light(load_phonons(p), out)
        return out, {"source": f"given: {p}", "cache": str(out)}
    if spec is None:
        return None, {"source": None}
    from phonion.mdma.phonons import compute_force_constants
    from phonion.core.calculators import resolve_calculator

    smat = supercell_matrix(unit, md_atoms)
    key = _key(spec, unit, smat, displacement_A)
    text = json.dumps(key, sort_keys=True)
    info = {"source": f"computed with {spec} (phonopy, supercell {smat.tolist()}, {displacement_A} Å)",
            "calculator": spec, "cache": str(out)}
    kf = out / KEY_FILE
    if kf.is_file() and json.dumps(json.loads(kf.read_text()), sort_keys=True) == text:
        info["cached"] = "loaded from a previous run"
    elif text in computed:
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(computed[text], out)
        info["cached"] = f"same calculator and structure as {computed[text]}: shared"
    else:
        calc = resolve_calculator(spec, device=device)
        phonon = compute_force_constants(unit, calc, supercell_matrix=smat, displacement_A=displacement_A,
                                         progress=progress)
        _save_light(phonon, out)
        kf.write_text(json.dumps(key, indent=1) + "\n")
    computed[text] = out
    return out, info


def _ideal_classes(modes, mobile, anion):
    from ase import Atoms

    from phonion.mdma.sites import classify_oxygens

    ideal = Atoms(modes.symbols, positions=modes.positions, cell=modes.cell, pbc=True)
    return classify_oxygens(ideal, mobile=mobile, anion=anion)


def phonon_dos_numbers(source, md_atoms, side: str, mobile: str, anion: str, caught: list, phonon=None):
    """Γ-mode phonon DOS of the MD cell (total, mobile ion, O classes) and its numbers (module docstring)."""
    from phonion.md.vdos import harmonic_vdos
    from phonion.mdma.modes import modes_for_supercell
    from phonion.mdma.phonon_io import load_phonons

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        modes = modes_for_supercell(load_phonons(source) if phonon is None else phonon, md_atoms, SITE_TOLERANCE_A)
    caught.extend(ours(w, f"{side} phonons: "))
    f = np.asarray(modes.frequencies_THz, float)
    weights = modes.atom_weights()
    sym = np.array(modes.symbols)
    groups = {"total": np.arange(len(sym)), mobile: np.flatnonzero(sym == mobile)}
    try:
        classes = _ideal_classes(modes, mobile, anion)
        groups.update({c: np.asarray(getattr(classes, c), int) for c in ("O_e", "O_c", "O_n")})
    except ValueError as exc:
        caught.append(f"{side} phonons: no O classes ({exc})")
    optical = np.ones(f.size, bool)
    optical[np.argsort(np.abs(f), kind="stable")[:3]] = False
    grid = np.linspace(0.0, 1.1 * max(f.max(), 1.0) + 4 * DOS_SIGMA_THZ, 800)
    dos = {}
    for name, idx in groups.items():
        if idx.size:
            try:
                dos[name] = harmonic_vdos(f[optical], weights[idx][:, optical].sum(axis=0), grid, idx.size,
                                          DOS_SIGMA_THZ)
            except ValueError:
                pass
    src = str(source)
    w_m = weights[groups[mobile]].sum(axis=0)
    pos = optical & (f > 0)
    mean_m = float(w_m[pos] @ f[pos] / w_m[pos].sum()) if w_m[pos].sum() > 0 else None
    n_imag = int((f[optical] < -0.05).sum())
    note = f"Γ modes of the {len(sym)}-atom MD cell"
    numbers = {
        "phonon_lowest_optical_frequency_THz": number(f[optical].min(), "THz", side, src,
                                                      note=note + "; lowest above the 3 acoustic modes"),
        "phonon_max_frequency_THz": number(f.max(), "THz", side, src, note=note),
        f"phonon_mean_{mobile}_frequency_THz": number(
            mean_m, "THz", side, src, note=note + f"; Σ w f / Σ w over f > 0, w = {mobile} share of each mode"),
        "phonon_n_imaginary_modes": number(n_imag, "modes", side, src,
                                           note=note + "; f < -0.05 THz, acoustic modes excluded"),
    }
    return numbers, {"frequency_THz": grid, "dos": dos}


def _flat(running) -> bool:
    r = np.asarray(running, float)
    final = r[-1]
    tail = r[int(0.75 * (r.size - 1)):]
    return bool(abs(final) > 0 and np.abs(tail - final).max() <= FLAT_TOLERANCE * abs(final))


#: largest block error (σ) for an MDMA number to count as converged: relative for D_σ, absolute otherwise
NOISE_LIMITS = {"D_sigma": ("relative", 0.5), "O_e_mode_mean_frequency": ("absolute", 1.0)}
SHARE_NOISE_LIMIT = 0.15


def _too_noisy(name: str, value, err) -> str:
    """Why an MDMA number is too noisy to count as converged ("" when it is not)."""
    if err is None:
        return "no block error (too few frames for the blocks)"
    kind, limit = NOISE_LIMITS.get(name, ("absolute", SHARE_NOISE_LIMIT))
    size = err / abs(value) if kind == "relative" and value else err
    if size > limit and kind == "relative":
        return f"too noisy: block error {100 * size:.0f} % of the value (limit {100 * limit:g} %)"
    if size > limit:
        return f"too noisy: block error ±{err:.2g} (limit {limit:g})"
    return ""


def _outside_modes(value, recs) -> str:
    """Why a contribution-weighted O_e-mode mean frequency is no frequency of those modes ("" when it is one)."""
    ranges = [r["s"].get("oe_frequency_range_THz") for r in recs]
    if value is None or not ranges or any(x is None for x in ranges):
        return ""
    lo, hi = min(x[0] for x in ranges), max(x[1] for x in ranges)
    if lo <= value <= hi:
        return ""
    return (f"outside the O_e modes' own frequencies ({lo:.3g}–{hi:.3g} THz): their contributions have both signs "
            "and cancel, so the weighted mean is no frequency of those modes")


@dataclass(frozen=True)
class MDMASettings:
    """How :func:`mdma_numbers` runs MDMA on one side: ``mobile`` and ``anion`` species, the ``velocities`` policy
    ("positions": central differences of the positions, else the files' when complete), ``headline_K`` (the
    temperature of the headline numbers), the correlation window ``tau_max_ps`` (None: half a block) and the MD
    ``timestep_fs`` (None: the files')."""

    mobile: str
    anion: str
    velocities: str
    headline_K: float
    tau_max_ps: float | None = None
    timestep_fs: float | None = None


def _mdma_records(runs, source, out_dir, side: str, settings: MDMASettings, caught: list, unit, phonon) -> list:
    """Run MDMA on every run (files into ``out_dir``); per run its summary, tables and whether the running
    integral is flat. Warnings and failures go into ``caught``."""
    from phonion.mdma.mdma_report import mdma_tables
    from phonion.workflows.mdma import MDMAConfig, run_mdma

    records = []
    for run in runs:
        out = Path(out_dir) / run.name.replace("/", "__")
        temp = None if run.temperature_source.startswith("kinetic") else run.fit_temperature_K  # measured
        cfg = MDMAConfig(files=tuple(str(f) for f in run.files), phonons=str(source), species=settings.mobile,
                         anion=settings.anion, tau_max_ps=settings.tau_max_ps, timestep_fs=settings.timestep_fs,
                         velocities="positions" if settings.velocities == "positions" else "auto",
                         temperature_K=temp, site_tolerance_A=SITE_TOLERANCE_A, plots=False)
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                result = run_mdma(cfg, site_unit=unit, phonon=phonon)
                result.save(out, plots=False)
            caught.extend(ours(w, f"{side} {run.name} MDMA: "))
        except ValueError as exc:
            caught.append(f"{side} {run.name}: no MDMA: {exc}")
            continue
        s = result.to_dict()
        tables = mdma_tables(result.result)
        records.append({"run": run, "s": s, "tables": tables, "flat": _flat(tables["running"]["total_cm2_s"])})
    return records


def mdma_numbers(runs, source, out_dir, side: str, settings: MDMASettings, *, caught: list, unit=None,
                 phonon=None):
    """MDMA of every non-fixed run; headline numbers at ``settings.headline_K`` (seeds averaged), per-T shares.

    ``source``: where the phonons are (recorded in each result); ``phonon``: the same phonons already
    loaded (read once per side). Each run's MDMA files are written into ``out_dir`` for the user; the
    numbers come from the results in memory.
    """
    headline_K = settings.headline_K
    records = _mdma_records(runs, source, out_dir, side, settings, caught, unit, phonon)
    numbers: dict = {}
    by_t: dict[float, list] = {}
    for rec in records:
        by_t.setdefault(rec["run"].temperature_K, []).append(rec)
    fields = {"D_sigma": ("mdma_total_cm2_s", "mdma_total_cm2_s_err", "cm²/s"),
              "harmonic_share": ("harmonic_fraction", "harmonic_fraction_err", ""),
              "anharmonic_share": ("anharmonic_fraction", "anharmonic_fraction_err", ""),
              "O_e_mode_mean_frequency": ("oe_mean_frequency_THz", "oe_mean_frequency_THz_err", "THz")}
    for t, recs in sorted(by_t.items()):
        src = [f for r in recs for f in r["run"].files]
        bad = [r["run"].name for r in recs if not r["flat"]]
        conv_note = (f"; running integral not flat over the last quarter of τmax ({', '.join(bad)}): "
                     "τmax or the run is too short" if bad else "")
        tau = recs[0]["s"]["tau_max_ps"]
        base = (f"{len(recs)} run(s) at {t:g} K, τmax {tau:.3g} ps, velocities: {recs[0]['s']['velocities_source']}"
                f", ± from {recs[0]['s']['n_blocks']} blocks")
        vals = {}
        for name, (k, ke, unit) in fields.items():
            v = [r["s"].get(k) for r in recs]
            if any(x is None for x in v):
                continue
            vals[name] = (*combine(v, [r["s"].get(ke) for r in recs]), unit)
        for c in ("O_e", "O_c", "O_n"):
            v = [(r["s"].get("class_fractions") or {}).get(c) for r in recs]
            if all(x is not None for x in v):
                vals[f"{c}_share"] = (*combine(v, [(r["s"].get("class_fractions_err") or {}).get(c) for r in recs]), "")
        residual = max(r["s"]["sum_rule_relative_error"] for r in recs)
        suffix = {"D_sigma": "_cm2_s", "O_e_mode_mean_frequency": "_THz"}
        for name, (v, e, unit) in vals.items():
            end = suffix.get(name, "")
            key_t = f"mdma_{name}_{tkey(t)}{end}"
            noisy = "; ".join(x for x in (_too_noisy(name, v, e), _outside_modes(v, recs)
                                          if name == "O_e_mode_mean_frequency" else "") if x)
            numbers[key_t] = number(v, unit, side, src, uncertainty=e, converged=not bad and not noisy,
                                    note=base + conv_note + (f"; {noisy}" if noisy else ""))
            if t == headline_K:
                numbers[f"mdma_{name}{end}"] = dict(numbers[key_t])
        if t == headline_K:
            numbers["mdma_sum_rule_residual"] = number(
                residual, "", side, src, converged=residual < 1e-6,
                note="|Σ D_nn' − D_σ(Green–Kubo)| / D_σ of the same velocities (round-off when exact)")
            numbers["mdma_temperature_K"] = number(t, "K", side, src, note=recs[0]["run"].temperature_source)
    head = [r for r in records if r["run"].temperature_K == headline_K]
    plot = {"cumulative": head[0]["tables"]["cumulative"] if head else None,
            "running": head[0]["tables"]["running"] if head else None, "temperature_K": headline_K}
    return numbers, plot


def pfc_numbers(source, out_dir, side: str, mobile: str, anion: str, phonon=None):
    """Bond- and migration-projected force constants and ΔpFC from this side's force constants."""
    from phonion.workflows.pfc import PFCConfig, run_pfc

    result = run_pfc(PFCConfig(phonons=str(source), mobile=mobile, anion=anion), phonon=phonon)
    result.save(out_dir)
    r = result.to_dict()
    note = ("mean over all {m}–{c} bonds and migration directions ({d}); ± is the standard error of that "
            "spread (force constants carry no statistical noise)")
    out = {}
    for c, tag in (("O_e", "Oe"), ("O_c", "Oc")):
        n = note.format(m=mobile, c=c, d=r["directions_source"])
        out[f"pfc_{mobile}_{c}_mpfc_eV_A2"] = number(r[f"mpfc_{tag}_eV_A2"], "eV/Å²", side, str(source),
                                                     uncertainty=r.get(f"mpfc_{tag}_eV_A2_err"), note=n)
        out[f"pfc_{mobile}_{c}_bond_eV_A2"] = number(r[f"bond_pfc_{tag}_eV_A2"], "eV/Å²", side, str(source),
                                                     uncertainty=r.get(f"bond_pfc_{tag}_eV_A2_err"),
                                                     note="b̂ᵀΦb̂; " + n)
    out["delta_pfc_eV_A2"] = number(r["delta_pfc_eV_A2"], "eV/Å²", side, str(source),
                                    uncertainty=r.get("delta_pfc_eV_A2_err"),
                                    note="mpFC(O_e) − mpFC(O_c)")
    return out


def model_spec(model) -> str:
    """A calculator SPEC from ``--model``: an existing file is a MACE model, anything else a SPEC."""
    p = Path(str(model)).expanduser()
    return f"mace:{p}" if p.is_file() else str(model)


def parity_numbers(spec: str, runs, figure_prefix, *, max_frames: int = 200, timestep_fs=None, device=None,
                   caught: list):
    """The model's energy/force/stress errors on the reference frames with forces (side "mlip")."""
    from phonion.core.calculators import resolve_calculator
    from phonion.mlip.evaluate import error_metrics, frames_from_files, plot_parity, predict

    runs = [r for r in runs if r.has_forces]
    if not runs:
        caught.append("parity: no reference frame has forces; no force/energy parity")
        return {}, []
    total = sum(r.n_frames for r in runs)
    every = max(1, int(math.ceil(total / max_frames)))
    frames = []
    for r in runs:
        try:
            frames += frames_from_files(list(r.files), timestep_fs=timestep_fs, every=every, skip_incomplete=True)
        except ValueError as exc:
            caught.append(f"parity: {exc}")
    if not frames:
        return {}, []
    pred = predict(resolve_calculator(spec, device=device), frames)
    m = error_metrics(pred)
    src = [f"model {spec}"] + [f for r in runs for f in r.files]
    note = f"{m['n_frames']} reference frames (every {every}); model {spec}"
    out = {"parity_energy_mae_meV_atom": number(m["energy_mae_meV_atom"], "meV/atom", "mlip", src, note=note),
           "parity_energy_rmse_meV_atom": number(m["energy_rmse_meV_atom"], "meV/atom", "mlip", src, note=note),
           "parity_force_rmse_meV_A": number(m["force_rmse_meV_A"], "meV/Å", "mlip", src, note=note),
           "parity_force_mae_meV_A": number(m["force_mae_meV_A"], "meV/Å", "mlip", src, note=note)}
    if m["stress_rmse_GPa"] is not None:
        out["parity_stress_rmse_GPa"] = number(m["stress_rmse_GPa"], "GPa", "mlip", src, note=note)
    for el, v in m["per_element_force_rmse_meV_A"].items():
        out[f"parity_force_rmse_{el}_meV_A"] = number(v, "meV/Å", "mlip", src, note=note)
    Path(figure_prefix).parent.mkdir(parents=True, exist_ok=True)
    figs = plot_parity(pred, figure_prefix, title="MLIP vs reference")
    return out, figs
