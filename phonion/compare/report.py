"""The figures and the one self-contained ``report.html`` of ``phonion compare``.

The report needs no network and no scripts: inline CSS, every figure embedded as a base64 PNG
(``<img src="data:image/png;base64,...">``). It is meant for a reader who did not run the comparison:
it opens with the MLIP gate verdict ("MLIP fit for MD: PASSED / FAILED" with the checks of ``phonion
validate``, or "not validated") and, in a red box, the runs left out as invalid; then a header (what was
compared: labels, files, set-point and measured temperatures, run lengths), a summary table (quantity,
reference ± σ, MLIP ± σ, difference, converged?), why numbers are not converged (with the limits of
:data:`phonion.compare.analyses.LIMITS`), one section per analysis (``<section data-section="...">``) with
its figures and what they show, and the warnings.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

__all__ = ["make_figures", "write_report", "SECTIONS", "HEADLINE_KEYS"]

#: section id → (title, what the figures show)
SECTIONS = {
    "parity": ("Force and energy parity",
               "The MLIP model evaluated on the reference frames that carry forces: points on the diagonal mean "
               "the model reproduces the reference; the force RMSE is the usual headline."),
    "rdf": ("Radial distribution functions",
            "Partial g(r) per element pair from the headline run of each side (same temperature). Matching peak "
            "positions and heights mean the MLIP keeps the reference's local structure."),
    "vdos": ("Vibrational density of states",
             "VDOS from the mass-weighted velocity autocorrelation per species and O class (each ∫ = 3 n). Shifts "
             "of the Li or O_e bands show where the MLIP softens or stiffens the lattice."),
    "diffusion": ("Diffusion: MSD and Arrhenius",
                  "Li tracer MSD per run, and the weighted Arrhenius fit of D* extrapolated to 300 K. Runs whose MSD "
                  "stays below a few Å² have not diffused enough for a converged D."),
    "phonons": ("Phonon DOS (Γ modes of the MD cell)",
                "Harmonic modes of the MD cell from each side's force constants, weighted by the atoms of each "
                "group and broadened by 0.2 THz. Imaginary modes (negative f) are counted in the table."),
    "mdma": ("Mass-diffusivity modal analysis",
             "Left: cumulative share of D_σ carried by modes up to a frequency (total, harmonic part, O_e-dominated "
             "modes). Right: the running integral; a plateau means τmax is long enough."),
    "pfc": ("Projected force constants",
            "Migration-projected (mpFC) and bond-projected force constants of Li–O_e and Li–O_c and ΔpFC; the "
            "bars carry the spread over bonds and directions."),
    "fixed": ("Runs with O_e or O_c held fixed",
              "Tracer D* with one O class frozen next to the unconstrained run at the same temperature: the class "
              "whose freezing slows Li most couples most to its motion."),
}

HEADLINE_KEYS = ("parity_force_rmse_meV_A", "parity_energy_mae_meV_atom", "E_a_meV", "D_300K_cm2_s",
                 "sigma_300K_mS_cm", "mdma_D_sigma_cm2_s", "mdma_anharmonic_share", "mdma_O_e_share",
                 "mdma_O_c_share", "mdma_O_n_share", "mdma_O_e_mode_mean_frequency_THz", "mdma_sum_rule_residual",
                 "pfc_Li_O_e_mpfc_eV_A2", "pfc_Li_O_c_mpfc_eV_A2", "delta_pfc_eV_A2",
                 "phonon_lowest_optical_frequency_THz", "phonon_n_imaginary_modes",
                 "sigma_A", "sigma_A_Li", "sigma_A_O_e", "sigma_A_O_c", "linewidth_O_e_mean_THz",
                 "linewidth_O_c_mean_THz")  # σ_A, linewidths: phonion.compare.anharmonicity

CSS = """body{font-family:sans-serif;max-width:1150px;margin:1.5em auto;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}td,th{border:1px solid #bbb;padding:.2em .5em;
text-align:left}th{background:#eee}.no{color:#b00;font-weight:bold}.yes{color:#070}img{max-width:100%;
border:1px solid #ddd;margin:.4em 0}.note{color:#555;font-size:.85em}.surrogate{background:#fff3cd;
padding:.4em .7em;border-left:4px solid #e0a800}section{margin-top:1.6em}.gate{padding:.5em .8em;margin:.6em 0}
.pass{background:#e6f4ea;border-left:6px solid #070}.fail{background:#fde8e8;border-left:6px solid #b00}
.unvalidated{background:#fff3cd;border-left:6px solid #e0a800}.invalid{background:#fde8e8;border:2px solid #b00;
padding:.4em .8em;margin:.6em 0}"""


def make_figures(plots: dict, result: dict, fig_dir, mobile: str) -> dict:
    """Draw every figure for which at least one side has data; returns {section: [paths]}."""
    from phonion.compare import plots as cp

    fig_dir = Path(fig_dir)
    labels = {s: result[s]["label"] for s in ("reference", "mlip")}
    get = lambda sec: {s: plots[s].get(sec) for s in plots}  # noqa: E731
    figs: dict = {}
    rdf = get("rdf")
    if any(rdf.values()):
        figs["rdf"] = [cp.plot_rdf(rdf, labels, fig_dir / "rdf.png")]
    vd = get("vdos")
    if any(v is not None for v in vd.values()):
        names = [g for g in (mobile, "O_e", "O_c", "O_n", "total")
                 if any(v is not None and g in v.spectra for v in vd.values())]
        names += [g for v in vd.values() if v is not None for g in v.spectra if g not in names]
        figs["vdos"] = [cp.plot_vdos(vd, list(dict.fromkeys(names)), labels, fig_dir / "vdos.png")]
    diff = get("diffusion")
    msd = {s: (d or {}).get("msd") for s, d in diff.items()}
    if any(msd.values()):
        figs["diffusion"] = [cp.plot_msd(msd, labels, mobile, fig_dir / "msd.png")]
        arr = {s: (d or {}).get("arrhenius") for s, d in diff.items()}
        if any(a is not None for a in arr.values()):
            figs["diffusion"].append(cp.plot_arrhenius(arr, labels, fig_dir / "arrhenius.png"))
    ph = get("phonons")
    if any(ph.values()):
        figs["phonons"] = [cp.plot_phonon_dos(ph, labels, fig_dir / "phonon_dos.png")]
    md = get("mdma")
    if any(m and m.get("cumulative") is not None for m in md.values()):
        figs["mdma"] = [cp.plot_mdma(md, labels, fig_dir / "mdma.png")]
    nums = {s: result[s]["numbers"] for s in ("reference", "mlip")}
    if any(f"pfc_{mobile}_O_e_mpfc_eV_A2" in n for n in nums.values()):
        figs["pfc"] = [cp.plot_pfc(nums, labels, mobile, fig_dir / "pfc.png")]
    fixed = {s: (d or {}).get("fixed") for s, d in diff.items()}
    if any(fixed.values()):
        figs["fixed"] = [cp.plot_fixed(fixed, labels, fig_dir / "fixed.png")]
    return figs


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(num) -> str:
    if num is None or num.get("value") is None:
        return "—"
    v, u = num["value"], num.get("uncertainty")
    unit = f" {num['unit']}" if num.get("unit") else ""
    return f"{v:.4g}" + (f" ± {u:.2g}" if u is not None else "") + unit


def _img(path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(Path(path).stem)}">'


def _g(x, fmt="g", unit="") -> str:
    return "—" if x is None else f"{format(x, fmt)}{unit}"


def _temperature_cell(r: dict) -> str:
    meas, setp = r.get("temperature_K_measured"), r.get("temperature_K_setpoint")
    return (f"{_g(meas, '.4g', ' K')}<br><span class=note>{_e(r.get('temperature_measured_source', ''))}</span>"
            f"</td><td>{_g(setp, unit=' K')}<br><span class=note>{_e(r['temperature_source'])}</span>")


def _runs_table(side: dict) -> str:
    rows = "".join(
        f"<tr><td>{_e(r['name'])}</td><td>{_temperature_cell(r)}</td><td>{_e(r['fix'])}</td><td>{r['n_frames']}</td>"
        f"<td>{_g(r['duration_ps'], '.3g', ' ps')}</td><td>{_g(r['frame_interval_fs'], unit=' fs')}</td>"
        f"<td>{'yes' if r['has_velocities'] else 'no'}</td><td>{'yes' if r['has_forces'] else 'no'}</td>"
        f"<td class=note>{_e(', '.join(r['files']))}</td></tr>"
        for r in sorted(side["runs"], key=lambda r: (r.get("temperature_K") is None, r.get("temperature_K") or 0,
                                                      r["name"])))  # by temperature, not as text
    return ("<table><tr><th>run</th><th>T measured (Arrhenius, Nernst–Einstein)</th><th>T set-point</th>"
            "<th>fixed</th><th>frames</th><th>length</th><th>frame interval</th><th>velocities</th>"
            f"<th>forces</th><th>files</th></tr>{rows}</table>")


def _row(key, ref, mlip, diff) -> str:
    conv = [n["converged"] for n in (ref, mlip) if n is not None and n.get("value") is not None]
    ok = bool(conv) and all(conv)
    return (f"<tr><td>{_e(key)}</td><td>{_e(_fmt(ref))}</td><td>{_e(_fmt(mlip))}</td><td>{_e(_fmt(diff))}</td>"
            f"<td class={'yes' if ok else 'no'}>{'yes' if ok else 'no'}</td></tr>")


def _num(x) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else ("—" if x is None else str(x))


def _gate(result: dict) -> str:
    """The MLIP verdict of ``phonion validate``: checks table and committee uncertainty, or "not validated"."""
    v = result.get("mlip_validation")
    if v is None:
        return ("<div class='gate unvalidated'><h2>MLIP fit for MD: not validated</h2><p>No <code>--validation"
                "</code> given: numbers from the MLIP are not trustworthy until <code>phonion validate</code> "
                "passes.</p></div>")
    ok = bool(v.get("passed"))
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(_num(c.get('value')))}</td><td>{_e(_num(c.get('limit')))}</td>"
        f"<td class={'yes' if c.get('passed') else 'no'}>{'pass' if c.get('passed') else 'fail'}</td></tr>"
        for k, c in (v.get("checks") or {}).items() if isinstance(c, dict))
    p99 = v.get("uncertainty_p99_meV_A")
    unc = ("no committee: no uncertainty estimate" if p99 is None
           else f"committee force spread, 99th percentile: {_num(p99)} meV/Å")
    by_t = v.get("force_rmse_by_temperature_meV_A") or {}
    temps = ", ".join(f"{t} K: {_num(x)}" for t, x in by_t.items() if x is not None)
    rmse = v.get("force_rmse_meV_A")
    extra = "" if ok else "<p><b>Every MLIP number below is marked not converged (not trustworthy).</b></p>"
    return (f"<div class='gate {'pass' if ok else 'fail'}'><h2>MLIP fit for MD: {'PASSED' if ok else 'FAILED'}</h2>"
            f"{extra}<table><tr><th>check</th><th>value</th><th>limit</th><th>result</th></tr>{rows}</table>"
            f"<p>Uncertainty: {_e(unc)}. Held-out force RMSE: {_e(_num(rmse))} meV/Å"
            f"{_e(f' (by temperature: {temps} meV/Å)' if temps else '')}.</p></div>")


def _invalid_box(result: dict) -> str:
    bad = result.get("invalid_runs") or []
    if not bad:
        return ""
    rows = "".join(f"<tr><td>{_e(r['side'])}</td><td>{_e(r['run'])}</td><td>{_e(r['status'])}</td>"
                   f"<td>{_e(r.get('reason') or '—')}</td><td>{_e(_g(r.get('step')))}</td></tr>" for r in bad)
    return (f"<div class=invalid><b>{len(bad)} invalid run(s), left out of every fit and analysis on both sides"
            "</b><table><tr><th>side</th><th>run</th><th>status</th><th>reason</th><th>step</th></tr>"
            f"{rows}</table></div>")


def _structure_box(result: dict) -> str:
    """At the top when the MLIP runs' structure is not the reference's (RDF peaks or coordination numbers,
    red), or an MLIP run's framework changed where the reference is too short to judge it (amber)."""
    r, c = result.get("rdf_first_peak_shifts") or {}, result.get("coordination") or {}
    from phonion.compare.rdf_shifts import coordination_findings

    found = coordination_findings(c) if c.get("by_temperature") is not None else []
    failed = [text for kind, text in found if kind in ("difference", "fails")]
    unjudged = [text for kind, text in found if kind == "not judged"]
    if r.get("passed") is False:
        failed.insert(0, f"RDF first peak outside ± {r['limit_A']:g} Å: largest |shift| "
                         + ("lost peak" if r.get("max_abs_shift_A") is None else f"{r['max_abs_shift_A']:.3f} Å")
                         + (f" ({r['worst']['pair']}, {r['worst']['temperature']})" if r.get("worst") else ""))
    out = ""
    if failed or c.get("passed") is False:
        out += ("<div class=invalid><b>The MLIP runs' structure is not the reference's everywhere.</b> Numbers from "
                "the runs named here rest on a structure the reference does not have (details: RDF and coordination "
                "sections below).<ul>" + "".join(f"<li>{_e(x)}</li>" for x in failed) + "</ul></div>")
    if unjudged:
        out += ("<div class=surrogate><b>An MLIP run's framework changed during the run, and no reference run as "
                "long says whether the reference does the same.</b> Numbers from it rest on a structure no reference "
                "run has shown (marked not converged).<ul>" + "".join(f"<li>{_e(x)}</li>" for x in unjudged)
                + "</ul></div>")
    return out


def _why_not(result: dict) -> str:
    from phonion.compare.checks import limit_lines

    same: dict = {}  # (side, reason) -> keys: a failed gate gives every MLIP number the same long reason
    for s in ("reference", "mlip"):
        for k, n in result[s]["numbers"].items():
            if not n["converged"]:
                same.setdefault((s, n["note"]), []).append(k)
    n_keys = len({k for keys in same.values() for k in keys})
    limits = "".join(f"<li>{_e(x)}</li>" for x in limit_lines())
    listed = (f"<details><summary>{n_keys} quantities did not pass their checks (too short to be converged, too "
              "few frames in a fit window, a running integral without a plateau, too noisy, physically impossible, "
              "no value, or an MLIP that failed validation) — each with its reason</summary><ul>"
              + "".join(f"<li><b>{_e(', '.join(keys))}</b> ({_e(side)}): {_e(note)}</li>"
                        for (side, note), keys in same.items())
              + "</ul></details>" if same else "<p>Every number passed its convergence checks (none is too short to be "
              "converged).</p>")
    return (f"<h2>Why not converged</h2>{listed}<p>Limits every number must also meet (otherwise it is never "
            f"converged):</p><ul>{limits}</ul>")


def _rdf_shifts(result: dict) -> str:
    """MLIP − reference first-peak positions at every temperature both sides ran (``rdf_first_peak_shifts``)."""
    r = result.get("rdf_first_peak_shifts") or {}
    by_t = r.get("by_temperature") or {}
    if not by_t:
        return ""
    pairs = sorted({p for t in by_t.values() for p in t["shifts"]})
    head = "".join(f"<th>{_e(p)}</th>" for p in pairs)

    def cell(t, p):
        sh = t["shifts"].get(p)
        if sh is None:
            return f"<td class=note title='{_e(t['not_compared'].get(p, ''))}'>not compared</td>"
        v, u = sh["shift_A"], sh["err_A"]
        if v is None:
            return "<td class=no>no MLIP peak</td>"
        ok = abs(v) <= r["limit_A"]
        plain = (t.get("setpoint_shifts_A") or {}).get(p)
        tip = "" if plain is None else f" title='at the set-point: {plain:+.3f} Å'"
        return (f"<td class={'yes' if ok else 'no'}{tip}>{v:+.3f}" + (f" ± {u:.3f}" if u is not None else "")
                + "</td>")

    def label(k, t):
        ref_t = t.get("reference_measured_K")
        return _e(k) + ("" if ref_t is None else f" <span class=note>(reference {ref_t:.0f} K)</span>")

    rows = "".join(f"<tr><td>{label(k, t)}</td>{''.join(cell(t, p) for p in pairs)}</tr>" for k, t in by_t.items())
    how = [f"{k}: {t['compared_at']}" for k, t in by_t.items() if t.get("compared_at")]
    skipped = sorted({f"{p}: {why}" for t in by_t.values() for p, why in t["not_compared"].items()})
    verdict = ("—" if r.get("max_abs_shift_A") is None
               else f"largest |shift| {r['max_abs_shift_A']:.3f} Å ({r['worst']['pair']}, {r['worst']['temperature']})")
    return (f"<h2>RDF first peaks at every temperature (MLIP − reference, Å; limit ± {r['limit_A']:g})</h2>"
            f"<p>{_e(verdict)}: {_verdict_word(r.get('passed'))} the limit. Position: centroid of "
            "the first shell above half its maximum (the shell closes at its first minimum below half "
            "the maximum; RDF to 8 Å where the cell allows); ± from 4 blocks of frames. A pair is compared where the reference has a "
            "coordination shell whose position it resolves to 0.05 Å. Compared at the same temperature: the "
            "MLIP's positions at the reference run's measured mean temperature, linear between the MLIP runs whose "
            "measured temperatures bracket it (hover a cell for the plain set-point comparison).</p>"
            + ("<details><summary>how each temperature was compared</summary><ul>"
               + "".join(f"<li>{_e(h)}</li>" for h in how) + "</ul></details>" if how else "")
            + f"<table><tr><th>set-point</th>{head}</tr>{rows}</table>"
            + (f"<details><summary>not compared ({len(skipped)})</summary><ul>"
               + "".join(f"<li>{_e(x)}</li>" for x in skipped) + "</ul></details>" if skipped else ""))


def _verdict_word(passed) -> str:
    return {True: "within", False: "<b>outside</b>"}.get(passed, "nothing compared against")


def _coordination(result: dict) -> str:
    """Coordination numbers of the reference's bonded shells, both sides, at every temperature (``coordination``)."""
    c = result.get("coordination") or {}
    by_t, shells = c.get("by_temperature") or {}, c.get("shells") or {}
    if not by_t or not shells:
        return ""

    def cell(v, p):
        d, r, m = v["difference"][p], v["reference"][p], v["mlip_at_reference_T"][p]
        ok = abs(d["value"]) <= c["limit"]
        err = "" if d["err"] is None else f" ± {d['err']:.2f}"
        return f"<td class={'yes' if ok else 'no'}>{r['cn']:.2f} / {m['cn']:.2f} ({d['value']:+.2f}{err})</td>"

    head = "".join(f"<th>{_e(sh['centre'])} by {_e(sh['neighbour'])} (&lt; {sh['cutoff_A']:.2f} Å)</th>"
                   for sh in shells.values())
    rows = "".join(f"<tr><td>{_e(t)}</td>{''.join(cell(v, p) for p in shells)}</tr>" for t, v in by_t.items())
    drift = "".join(f"<li>{_e(d['side'])} {_e(d['run'])}: {_e(d['pair'])} {d['drift']:+.2f}"
                    + ("" if d["drift_err"] is None else f" ± {d['drift_err']:.2f}")
                    + ("" if d.get("verdict") in (None, "reference") else f" ({_e(d['verdict'])})") + "</li>"
                    for d in c.get("drifting_runs") or [])
    verdict = _verdict_word(c.get("passed"))
    return (f"<h2>Coordination numbers (reference / MLIP, neighbours per centre atom; limit ± {c['limit']:g})</h2>"
            f"<p>{verdict} the limit. A first peak can stay in place while a framework comes apart: these count the "
            "neighbours of the bonded shells the reference keeps (cutoff at the reference RDF's first minimum; "
            f"{_e(c.get('shells_from', ''))}), the MLIP at the reference run's measured temperature as for the RDF "
            "peaks and over the same stretch from the start as the reference run covers; ± from 4 blocks.</p>"
            f"<table><tr><th>set-point</th>{head}</tr>{rows}</table>"
            + (f"<p><b>Runs whose structure changed</b> (last − first quarter beyond ± {c['limit']:g}):</p><ul>{drift}</ul>"
               if drift else "<p>No run's coordination changed beyond the limit from its first to its last quarter.</p>"))


def _summary(result: dict, keys) -> str:
    r, m, d = (result["reference"]["numbers"], result["mlip"]["numbers"], result["differences"])
    head = ("<table><tr><th>quantity</th><th>reference ± σ</th><th>MLIP ± σ</th><th>difference (MLIP − ref)</th>"
            "<th>converged / OK?</th></tr>")
    return head + "".join(_row(k, r.get(k), m.get(k), d.get(k)) for k in keys) + "</table>"


def write_report(result: dict, figures: dict, path) -> Path:
    """Write the self-contained HTML report; returns its path."""
    ref, mlip = result["reference"], result["mlip"]
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>phonion compare</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>phonion compare: {_e(ref['label'])} vs {_e(mlip['label'])}</h1>", _gate(result),
             _invalid_box(result), _structure_box(result),
             f"<p class=note>phonion {_e(result['phonion_version'])}; output of <code>phonion compare</code>. "
             f"Velocities: {_e(result['velocities']['note'])}. Headline temperature: "
             f"{_e(', '.join(f'{s} {t:g} K' for s, t in result['headline_temperature_K'].items() if t is not None))}."
             "</p>"]
    if any("surrogate reference" in s["label"] for s in (ref, mlip)):
        parts.append("<p class=surrogate><b>Surrogate reference.</b> Numbers of a side labelled \"surrogate "
                     "reference\" come from a reference calculator standing in for DFT (no DFT data were at hand). "
                     "They are <b>not DFT</b>.</p>")
    for name in ("reference", "mlip"):
        s = result[name]
        parts.append(f"<h2>{name}: {_e(s['label'])}</h2><p class=note>{_e(s['dir'])}; calculator for phonons: "
                     f"{_e(s.get('calculator'))}; structure: {_e(s.get('structure', '—'))}</p>{_runs_table(s)}")
    present = [k for k in HEADLINE_KEYS if k in ref["numbers"] or k in mlip["numbers"]]
    parts.append("<h2>Summary</h2>" + _summary(result, present))
    parts.append(_rdf_shifts(result))
    parts.append(_coordination(result))
    rest = sorted(set(ref["numbers"]) | set(mlip["numbers"]) - set(present))
    parts.append(f"<details><summary>all {len(rest) + len(present)} numbers</summary>{_summary(result, rest)}"
                 "</details>")
    parts.append(_why_not(result))
    for sec, (title, text) in SECTIONS.items():
        if sec not in figures:
            continue
        imgs = "".join(_img(p) for p in figures[sec])
        parts.append(f'<section data-section="{sec}"><h2>{_e(title)}</h2><p>{_e(text)}</p>{imgs}</section>')
    missing = [SECTIONS[s][0] for s in SECTIONS if s not in figures]
    if missing:
        parts.append(f"<p class=note>Not shown (no data on either side): {_e(', '.join(missing))}.</p>")
    parts.append("<h2>Warnings</h2>" + ("<ul>" + "".join(f"<li>{_e(w)}</li>" for w in result["warnings"]) + "</ul>"
                                        if result["warnings"] else "<p>None.</p>"))
    parts.append("</body></html>\n")
    path = Path(path)
    path.write_text("".join(parts), encoding="utf-8")
    return path
