"""The series table: our numbers per M next to the paper's, rank correlations, and the writers.

``rank_correlation`` is a pure function of two ``{M: value}`` dicts; ``build_report`` turns the
per-compound results of ``phonion.chain.series.run_series`` into the series.json content;
``write_report`` writes series.json, series.md and series.csv (each atomically);
``format_table`` is the Markdown table printed by the CLI.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from phonion.core import paper

__all__ = ["COLUMNS", "rank_correlation", "build_report", "format_table", "write_report"]

#: (key, header, format) of the table's "ours" columns; keys of the chain's numbers.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("E_a_meV", "E_a (meV)", ".0f"),
    ("D_300K_cm2_s", "D(300 K) (cm²/s)", ".2e"),
    ("sigma_300K_mS_cm", "σ(300 K) (mS/cm)", ".3g"),
    ("mdma_anharmonic_share", "anharmonic share", ".2f"),
    ("sigma_A", "σ_A (Knoop)", ".2f"),
    ("mdma_O_e_mode_mean_frequency_THz", "O_e-mode mean f (THz)", ".2f"),
)
_PAPER_KEYS = ("E_a_meV", "D_300K_cm2_s", "sigma_300K_mS_cm")


def rank_correlation(ours: dict, theirs: dict) -> dict:
    """Spearman ρ (with p-value) and Kendall τ (with p-value) over the keys both dicts have.

    Parameters
    ----------
    ours, theirs : dict
        ``{compound: value}``; None or non-finite values are left out.

    Returns
    -------
    dict
        ``n``, ``compounds``, ``spearman_rho``, ``spearman_p``, ``kendall_tau``, ``kendall_p``
        (None when fewer than 3 compounds or a constant column), and ``note``.
    """
    from scipy.stats import kendalltau, spearmanr

    common = [k for k in ours if k in theirs and _finite(ours[k]) and _finite(theirs[k])]
    out = {"n": len(common), "compounds": common, "spearman_rho": None, "spearman_p": None,
           "kendall_tau": None, "kendall_p": None, "note": ""}
    if len(common) < 3:
        out["note"] = "needs at least 3 compounds with both values"
        return out
    x = [float(ours[k]) for k in common]
    y = [float(theirs[k]) for k in common]
    if len(set(x)) < 2 or len(set(y)) < 2:
        out["note"] = "a constant column has no ranking"
        return out
    rho = spearmanr(x, y)
    tau = kendalltau(x, y)
    out.update(spearman_rho=float(rho.statistic), spearman_p=float(rho.pvalue),
               kendall_tau=float(tau.statistic), kendall_p=float(tau.pvalue))
    if len(common) < 5:
        out["note"] = f"only {len(common)} compounds: p-values are weak"
    return out


def build_report(cfg, results: list[dict]) -> dict:
    """series.json content from the config and the per-compound results (in order)."""
    from phonion.chain.series import config_dict

    calc = cfg.calculator
    rows = []
    for r in results:
        row = {"element": r["element"], "label": r["label"], "status": r["status"], "error": r.get("error"),
               "stage": r.get("stage"), "timings_s": r.get("timings_s", {}), "resumed": r.get("resumed", False),
               "relax": _relax_brief(r.get("relax")), "o_classes": r.get("o_classes"), "ours": {},
               "surrogate_reference": {}, "paper": {}}
        for key, _, _ in COLUMNS:
            for side, src in (("ours", "numbers"), ("surrogate_reference", "reference_numbers")):
                entry = dict((r.get(src) or {}).get(key) or {"value": None, "uncertainty": None,
                                                              "unit": None, "converged": False})
                entry["source"] = (f"MLIP MD trained on {calc} surrogate reference (profile {cfg.profile})"
                                   if side == "ours" else f"{calc} surrogate-reference MD, not DFT")
                row[side][key] = entry
        for key in _PAPER_KEYS:
            row["paper"][key] = {"value": paper.paper_value(key, r["element"]), "uncertainty": None,
                                 "source": f"{paper.CITATION} ({paper.METHOD})"}
        row["paper"]["mdma_anharmonic_share"] = {
            "value": None, "range": list(paper.ANHARMONIC_SHARE_RANGE), "text": paper.anharmonic_share_text(),
            "source": f"{paper.CITATION}: range over the six compounds only"}
        share = row["ours"]["mdma_anharmonic_share"]["value"]
        row["anharmonic_share_in_paper_range"] = (None if not _finite(share) else
                                                  paper.ANHARMONIC_SHARE_RANGE[0] <= share
                                                  <= paper.ANHARMONIC_SHARE_RANGE[1])
        rows.append(row)
    ok = [row for row in rows if row["status"] == "ok"]
    correlations = {key: rank_correlation({r["element"]: r["ours"][key]["value"] for r in ok},
                                          {r["element"]: r["paper"][key]["value"] for r in ok})
                    for key in _PAPER_KEYS}
    trends = {}
    # σ_A is a second, independent measure of the same anharmonicity: the paper's sign for the MDMA share applies
    for key, sign in {**paper.TRENDS, "sigma_A": paper.TRENDS["mdma_anharmonic_share"]}.items():
        corr = rank_correlation({r["element"]: r["ours"]["E_a_meV"]["value"] for r in ok},
                                {r["element"]: r["ours"][key]["value"] for r in ok})
        corr["paper_sign"] = sign
        corr["agrees_with_paper"] = (None if corr["spearman_rho"] is None
                                     else bool(corr["spearman_rho"] * sign > 0))
        trends[f"E_a_vs_{key}"] = corr
    return {"config": config_dict(cfg), "paper": {"citation": paper.CITATION, "method": paper.METHOD},
            "compounds": rows, "rank_correlation_vs_paper": correlations, "trends_within_series": trends,
            "convergence": _convergence_text(cfg, rows)}


def format_table(report: dict) -> str:
    """Markdown table: per compound, ours ± σ (with † when not converged) next to the paper's."""
    head = ["compound"]
    for key, title, _ in COLUMNS:
        head += [f"{title} ours", "paper"] if key in _PAPER_KEYS or key == "mdma_anharmonic_share" else [
            f"{title} ours"]
    head.append("status")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["compounds"]:
        cells = [row["label"]]
        for key, _, fmt in COLUMNS:
            cells.append(_cell(row["ours"][key], fmt))
            if key in _PAPER_KEYS:
                value = row["paper"][key]["value"]
                cells.append("—" if value is None else format(value, fmt if key != "sigma_300K_mS_cm" else "g"))
            elif key == "mdma_anharmonic_share":
                cells.append(row["paper"][key]["text"])
        cells.append("ok" if row["status"] == "ok" else f"failed ({row['stage']}): {row['error']}")
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, report: dict) -> None:
    """Write series.json, series.md and series.csv into ``out`` (each via a temporary file)."""
    out = Path(out)
    _atomic(out / "series.json", json.dumps(report, indent=2, default=str))
    _atomic(out / "series.md", _markdown(report))
    _atomic(out / "series.csv", _csv(report))


def _markdown(report: dict) -> str:
    cfg = report["config"]
    parts = [f"# LiM(SeO3)2 series: {cfg['substitute']} -> {', '.join(cfg['with_'])} "
             f"(profile {cfg['profile']})", "",
             "Ours: MLIP MD (the long runs) of each relaxed compound, value ± standard error; "
             "† = not converged by the chain's own criteria. Paper: "
             f"{report['paper']['citation']} ({report['paper']['method']}).", "",
             format_table(report), "", "## Rank correlation with the paper", "",
             "| quantity | n | Spearman ρ | p (asymptotic) | Kendall τ | p | note |", "|---|---|---|---|---|---|---|"]
    for key, c in report["rank_correlation_vs_paper"].items():
        parts.append(f"| {key} | {c['n']} | {_f(c['spearman_rho'])} | {_f(c['spearman_p'])} | "
                     f"{_f(c['kendall_tau'])} | {_f(c['kendall_p'])} | {c['note']} |")
    parts += ["", "## Trends the paper states, in our numbers", "",
              "| trend | n | Spearman ρ | paper's sign | agrees | note |", "|---|---|---|---|---|---|"]
    for key, c in report["trends_within_series"].items():
        parts.append(f"| {key} | {c['n']} | {_f(c['spearman_rho'])} | {c['paper_sign']:+d} | "
                     f"{'—' if c['agrees_with_paper'] is None else c['agrees_with_paper']} | {c['note']} |")
    parts += ["", "## Relaxations (reference calculator, space group kept)", "",
              "| compound | steps | converged | max force (eV/Å) | max stress (GPa) | ΔV vs parent | a, c (Å) "
              "| space group |", "|---|---|---|---|---|---|---|---|"]
    for row in report["compounds"]:
        rx = row.get("relax") or {}
        lat = rx.get("lattice_after") or {}
        sg = (rx.get("space_group_before") or {}).get("symbol"), (rx.get("space_group_after") or {}).get("symbol")
        dv = rx.get("volume_change_vs_parent")
        parts.append(f"| {row['label']} | {rx.get('steps', '—')} | {rx.get('converged', '—')} | "
                     f"{_f(rx.get('max_residual_force_eV_A'))} | {_f(rx.get('max_residual_stress_GPa'))} | "
                     f"{'—' if dv is None else f'{100 * dv:+.2f} %'} | "
                     f"{_f(lat.get('a_A'), '.3f')}, {_f(lat.get('c_A'), '.3f')} | {sg[0]} → {sg[1]} |")
    parts += ["", "## How converged these numbers are", "", report["convergence"], ""]
    failed = [r for r in report["compounds"] if r["status"] != "ok"]
    if failed:
        parts += ["## Failed compounds", ""] + [f"- {r['label']}: at {r['stage']}: {r['error']}"
                                                for r in failed] + [""]
    return "\n".join(parts)


def _csv(report: dict) -> str:
    buf = io.StringIO()
    fields = ["element", "label", "status", "error"]
    for key, _, _ in COLUMNS:
        fields += [f"{key}", f"{key}_uncertainty", f"{key}_converged"]
    fields += [f"paper_{key}" for key in _PAPER_KEYS] + ["paper_anharmonic_share_range"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in report["compounds"]:
        line = {"element": row["element"], "label": row["label"], "status": row["status"],
                "error": row["error"] or ""}
        for key, _, _ in COLUMNS:
            e = row["ours"][key]
            line.update({key: e["value"], f"{key}_uncertainty": e["uncertainty"],
                         f"{key}_converged": e["converged"]})
        line.update({f"paper_{key}": row["paper"][key]["value"] for key in _PAPER_KEYS})
        line["paper_anharmonic_share_range"] = row["paper"]["mdma_anharmonic_share"]["text"]
        writer.writerow(line)
    return buf.getvalue()


def _convergence_text(cfg, rows: list[dict]) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    flags = [r["ours"][key]["converged"] for r in ok for key, _, _ in COLUMNS
             if r["ours"][key]["value"] is not None]
    relaxed = sum(1 for r in ok if (r.get("relax") or {}).get("converged"))
    text = (f"{sum(flags)} of {len(flags)} numbers of {len(ok)} finished compound(s) are flagged converged "
            f"by the chain (profile '{cfg.profile}'); {relaxed} of {len(ok)} relaxations reached "
            f"their force threshold. ")
    if cfg.profile != "full":
        text += ("This profile's MD is too short for converged diffusion: treat E_a, D and σ as "
                 "smoke-test numbers, not results; the rank correlations then test the plumbing, "
                 "not the physics. ")
    text += (f"The reference the MLIP is trained on is the {cfg.calculator} surrogate reference, not "
             "DFT; the paper's numbers are DFT (PBE+U) AIMD, so agreement cannot be expected to be "
             "better than the surrogate's own error against DFT.")
    return text


def _relax_brief(summary) -> dict | None:
    if not summary:
        return None
    keys = ("converged", "steps", "volume_change", "volume_change_vs_parent", "max_residual_force_eV_A", "max_residual_stress_GPa",
            "space_group_before", "space_group_after", "lattice_after", "reused")
    return {k: summary.get(k) for k in keys}


def _cell(entry: dict, fmt: str) -> str:
    value, err = entry.get("value"), entry.get("uncertainty")
    if not _finite(value):
        return "—"
    text = format(value, fmt) + (f" ± {format(err, fmt)}" if _finite(err) else "")
    return text + ("" if entry.get("converged") else " †")


def _f(x, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
