"""The figures and the one self-contained ``report.html`` of ``phonion compare``.

The report needs no network and no scripts: inline CSS, every figure embedded as a base64 PNG
(``<img src="data:image/png;base64,...">``). It is meant for a reader who did not run the comparison:
a header (what was compared: labels, files, temperatures, run lengths), a summary table (quantity,
reference ± σ, MLIP ± σ, difference, converged?), the list of numbers too short to be converged, one
section per analysis (``<section data-section="...">``) with its figures and what they show, and the
warnings.
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
                 "phonon_lowest_optical_frequency_THz", "phonon_n_imaginary_modes")

CSS = """body{font-family:sans-serif;max-width:1150px;margin:1.5em auto;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}td,th{border:1px solid #bbb;padding:.2em .5em;
text-align:left}th{background:#eee}.no{color:#b00;font-weight:bold}.yes{color:#070}img{max-width:100%;
border:1px solid #ddd;margin:.4em 0}.note{color:#555;font-size:.85em}.surrogate{background:#fff3cd;
padding:.4em .7em;border-left:4px solid #e0a800}section{margin-top:1.6em}"""


def make_figures(plots: dict, result: dict, fig_dir, mobile: str) -> dict:
    """Draw every figure for which at least one side has data; returns {section: [paths]}."""
    from mdma import compare_plots as cp

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


def _runs_table(side: dict) -> str:
    rows = "".join(
        f"<tr><td>{_e(r['name'])}</td><td>{_g(r['temperature_K'], unit=' K')}<br><span class=note>"
        f"{_e(r['temperature_source'])}</span></td><td>{_e(r['fix'])}</td><td>{r['n_frames']}</td>"
        f"<td>{_g(r['duration_ps'], '.3g', ' ps')}</td><td>{_g(r['frame_interval_fs'], unit=' fs')}</td>"
        f"<td>{'yes' if r['has_velocities'] else 'no'}</td><td>{'yes' if r['has_forces'] else 'no'}</td>"
        f"<td class=note>{_e(', '.join(r['files']))}</td></tr>" for r in side["runs"])
    return ("<table><tr><th>run</th><th>T</th><th>fixed</th><th>frames</th><th>length</th><th>frame interval</th>"
            f"<th>velocities</th><th>forces</th><th>files</th></tr>{rows}</table>")


def _row(key, ref, mlip, diff) -> str:
    conv = [n["converged"] for n in (ref, mlip) if n is not None and n.get("value") is not None]
    ok = bool(conv) and all(conv)
    return (f"<tr><td>{_e(key)}</td><td>{_e(_fmt(ref))}</td><td>{_e(_fmt(mlip))}</td><td>{_e(_fmt(diff))}</td>"
            f"<td class={'yes' if ok else 'no'}>{'yes' if ok else 'no'}</td></tr>")


def _summary(result: dict, keys) -> str:
    r, m, d = (result["reference"]["numbers"], result["mlip"]["numbers"], result["differences"])
    head = ("<table><tr><th>quantity</th><th>reference ± σ</th><th>MLIP ± σ</th><th>difference (MLIP − ref)</th>"
            "<th>converged?</th></tr>")
    return head + "".join(_row(k, r.get(k), m.get(k), d.get(k)) for k in keys) + "</table>"


def write_report(result: dict, figures: dict, path) -> Path:
    """Write the self-contained HTML report; returns its path."""
    ref, mlip = result["reference"], result["mlip"]
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>phonion compare</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>phonion compare: {_e(ref['label'])} vs {_e(mlip['label'])}</h1>",
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
    rest = sorted(set(ref["numbers"]) | set(mlip["numbers"]) - set(present))
    parts.append(f"<details><summary>all {len(rest) + len(present)} numbers</summary>{_summary(result, rest)}"
                 "</details>")
    short: dict = {}
    for s in ("reference", "mlip"):
        for k, n in result[s]["numbers"].items():
            if not n["converged"]:
                short.setdefault(k, ([], n["note"]))[0].append(s)
    parts.append("<h2>Too short to be converged</h2>" + (
        f"<p>{len(short)} quantities did not pass their convergence checks (too short a run, too few frames in "
        "a fit window, a running integral without a plateau, or no value):</p><ul>"
        + "".join(f"<li><b>{_e(k)}</b> ({_e(', '.join(s))}): {_e(note)}</li>" for k, (s, note) in short.items())
        + "</ul>" if short else "<p>Every number passed its convergence checks.</p>"))
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
