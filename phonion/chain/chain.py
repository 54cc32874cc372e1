"""The whole chain on one structure: reference MD → MACE training → MLIP MD sweep → comparison.

``run_chain(ChainConfig(structure="LiGa_SeO3_2", output="DIR", profile="quick"))`` runs, in order
(``phonion.chain.stages`` has one function per stage):

1. ``sites``      O_e / O_c / O_n classes → ``DIR/sites.json``
2. ``reference``  surrogate-reference MD with the reference calculator (CHGNet by default) at
                  the profile's temperatures → ``DIR/reference/<T>K/traj.h5`` (``phonion.mlip.reference``)
3. ``learn``      a committee of MACE models on those frames, active-learning rounds against the
                  reference calculator and the fit-for-MD gate (``phonion.workflows.learn``,
                  ``phonion.workflows.validate``) → ``DIR/learn/committee/``, ``rounds.json``, ``validation.json``;
                  long MLIP MD only runs after the gate passed (or with
                  ``mlip_md.allow_failed_gate``, and then every MLIP number is marked untrustworthy)
4. ``mlip_md``    MD with that model at the same temperatures, plus runs with O_e or O_c held
                  fixed at the highest temperature → ``DIR/mlip_md/T{T}_seed{s}_fix{f}/``
5. ``compare``    the same analyses on both sides (diffusion, Arrhenius, Haven, VDOS, phonons,
                  MDMA, pFC, parity) → ``DIR/compare/numbers.json``, ``report.html``

Profiles (``tiny``, ``quick``, ``full``) are in :mod:`phonion.chain.profiles`. Every stage resumes:
rerunning the same call after a kill skips finished stages (their outputs are checked) and
continues unfinished ones (MD from its checkpoint, training from ``last.ckpt``). A rerun into a
directory made with other settings is refused (``DIR/chain.json`` records them).

``DIR/summary.json`` (also returned) holds the settings, each stage's status and wall time, the
paths, the comparison numbers (``compare``) and the headline numbers of both sides with their
``converged`` flags (``headline``, ``not_converged``). It is only rewritten when its content changes,
so a rerun of a finished chain touches no file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phonion.chain.profiles import PROFILES, resolve_profile

STAGES = ("sites", "reference", "learn", "mlip_md", "compare")
#: headline numbers copied from compare/numbers.json (exact keys; patterns end in "_*")
HEADLINE_KEYS = ("E_a_meV", "D_300K_cm2_s", "sigma_300K_mS_cm", "haven_ratio_*", "mdma_anharmonic_share",
                 "mdma_O_e_mode_mean_frequency_THz", "delta_pfc_eV_A2", "parity_force_rmse_meV_A",
                 "D_fixed_O_e_*", "D_fixed_O_c_*")
BUNDLED_LABELS = {"LiGa_SeO3_2": "LiGa(SeO3)2"}


@dataclass(frozen=True)
class ChainConfig:
    """One run of the whole chain.

    Attributes
    ----------
    structure : bundled name (``"LiGa_SeO3_2"``), a structure file, or an ``ase.Atoms``
        (written to ``DIR/structure.extxyz``)
    output : the chain directory DIR
    profile : ``tiny`` (tests) | ``quick`` (CPU, ≤ 15 min on 2 cores) | ``full`` (GPU)
    calculator : reference calculator SPEC (``chgnet``: surrogate reference; see phonion.core.calculators)
    device : ``cpu`` | ``cuda`` | ``cuda:N``; None: CUDA when available for the full profile, else CPU
    seed : added to every seed of the profile (reference MD, training, MLIP MD)
    label : name of the compound in reports (default from the structure)
    overrides : dotted-key profile overrides, e.g. ``{"mlip_md.steps": 4000}``
    """

    structure: Any = "LiGa_SeO3_2"
    output: str = "phonion-chain"
    profile: str = "quick"
    calculator: str = "chgnet"
    device: str | None = None
    seed: int = 0
    label: str | None = None
    overrides: dict = field(default_factory=dict)


def _log(progress: bool, text: str) -> None:
    if progress:
        print(f"phonion chain: {text}", file=sys.stderr, flush=True)


def _structure(cfg: ChainConfig, out: Path) -> tuple[str, str, str]:
    """(SPEC for MD, structure file, label) of the chain's structure."""
    from phonion.core.structures import BUNDLED_STRUCTURES, bundled_structure_path, load_structure

    s = cfg.structure
    if not isinstance(s, (str, os.PathLike)):  # ase.Atoms
        import ase.io

        path = out / "structure.extxyz"
        if not path.is_file():
            ase.io.write(path, s, format="extxyz")
        return str(path), str(path), cfg.label or s.get_chemical_formula(mode="metal")
    text = os.fspath(s)
    key = text[:-4] if text.endswith(".cif") else text
    if not Path(text).is_file() and key in BUNDLED_STRUCTURES:
        return key, str(bundled_structure_path(key)), cfg.label or BUNDLED_LABELS.get(key, key)
    path = str(Path(text).resolve())
    atoms = load_structure(path)  # one clear error for a bad file, before any stage runs
    return path, path, cfg.label or atoms.get_chemical_formula(mode="metal")


def _device(cfg: ChainConfig) -> str | None:
    if cfg.device:
        return cfg.device
    if cfg.profile != "full":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_settings(out: Path, record: dict) -> None:
    """Write DIR/chain.json, or check that the chain found there has the same settings."""
    path = out / "chain.json"
    record = json.loads(json.dumps(record, default=str))  # tuples → lists, as read back
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path}: unreadable ({exc}); remove it or choose another output") from None
        diff = sorted(k for k in set(old) | set(record) if k != "device" and old.get(k) != record.get(k))
        if diff:
            raise ValueError(f"{path}: the chain in {out} was made with other settings ({', '.join(diff)}); "
                             "rerun with the same options to continue it, or choose another output directory")
        return
    path.write_text(json.dumps(record, indent=2))


def _write_if_changed(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=str)
    if path.is_file() and path.read_text() == text:
        return
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _matches(key: str) -> bool:
    return any(key == k or (k.endswith("*") and key.startswith(k[:-1])) for k in HEADLINE_KEYS)


def headline(numbers: dict) -> tuple[dict, list[str]]:
    """Headline numbers of both sides from compare's ``numbers.json``, and which are not converged.

    Returns
    -------
    headline : {side: {"label": str, "numbers": {key: entry}}} for side in reference / mlip, each
        entry as in numbers.json (value, uncertainty, unit, side, source, converged, note) plus
        ``label``, the side's label (``surrogate reference (chgnet)`` for a surrogate reference)
    not_converged : ``"side: key"`` for every headline number whose ``converged`` is not true
    """
    out, unconverged = {}, []
    for side in ("reference", "mlip"):
        block = numbers.get(side) or {}
        picked = {k: {**v, "label": block.get("label")} for k, v in (block.get("numbers") or {}).items()
                  if _matches(k)}
        out[side] = {"label": block.get("label"), "numbers": picked}
        unconverged += [f"{side}: {k}" for k, v in picked.items() if not v.get("converged")]
    return out, unconverged


def _stage_info(name: str, result, ctx) -> dict:
    """The part of a stage's result worth keeping in summary.json."""
    from phonion.chain.stages import reference_warnings

    if result is None:
        return {}
    if name == "sites":
        return {"classes": result}
    if name == "reference":
        return {"runs": [{k: r.get(k) for k in ("temperature_K", "status", "n_frames", "mean_temperature_K",
                                                "std_temperature_K", "wall_s")} for r in result["runs"]],
                "warnings": reference_warnings(result)}
    if name == "learn":
        val = result.get("validation") or {}
        return {"rounds": [{k: r.get(k) for k in ("round", "n_added", "force_rmse_meV_A", "uncertainty_p99_meV_A",
                                                 "gate_passed", "failed_checks", "wall_s")}
                           for r in result.get("rounds", [])],
                "gate": {k: val.get(k) for k in ("passed", "failed_checks", "force_rmse_meV_A",
                                                 "min_pair_distance_ratio", "rdf_first_peak_max_shift_A",
                                                 "mean_temperature_ratio", "uncertainty_p99_meV_A")}}
    if name == "compare":
        return {"timings_s": result.get("timings_s"), "n_warnings": len(result.get("warnings") or [])}
    if name == "mlip_md":
        failed = [r["run"] for r in result if not str(r["status"]).endswith("complete")]
        return {"runs": [{k: r.get(k) for k in ("run", "status", "frames", "mean_T_K", "wall_s")} for r in result],
                "failed_runs": failed}
    return {}


def run_chain(cfg: ChainConfig, progress: bool = True) -> dict:
    """Run (or continue) the whole chain; returns the summary also written to ``DIR/summary.json``.

    Stage start / end lines with wall times go to stderr when ``progress`` (plus the stages'
    own progress bars). Raises ValueError for bad settings (unknown profile or override key,
    unreadable structure, a DIR made with other settings) and RuntimeError when a stage cannot run.
    """
    from phonion.chain.stages import (StageContext, stage_compare, stage_mlip_md, stage_reference,
                                      stage_sites, stage_learn)

    settings = resolve_profile(cfg.profile, cfg.overrides)
    out = Path(cfg.output).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    structure, structure_file, label = _structure(cfg, out)
    device = _device(cfg)
    _check_settings(out, {"profile": cfg.profile, "overrides": {k: cfg.overrides[k] for k in sorted(cfg.overrides)},
                          "structure": structure, "calculator": cfg.calculator, "seed": cfg.seed,
                          "device": device, "settings": settings})
    ctx = StageContext(out=out, settings=settings, structure=structure, structure_file=structure_file,
                       calculator=cfg.calculator, device=device,
                       seed=cfg.seed, progress=progress)
    path = out / "summary.json"
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        old = {}
    summary = {"label": label, "structure": structure_file, "profile": cfg.profile,
               "profile_description": settings["description"], "calculator": cfg.calculator,
               "reference_kind": "surrogate reference", "device": device, "seed": cfg.seed,
               "settings": settings, "stages": {}, "paths": _paths(out)}
    runners = {"sites": stage_sites, "reference": stage_reference, "learn": stage_learn,
               "mlip_md": lambda c: stage_mlip_md(c, (old.get("stages") or {}).get("mlip_md")),
               "compare": stage_compare}
    for i, name in enumerate(STAGES, 1):
        previous = (old.get("stages") or {}).get(name) or {}
        tag = f"[{i}/{len(STAGES)}] {name}"
        _log(progress, f"{tag}: start")
        t0 = time.perf_counter()
        try:
            result = runners[name](ctx)
        except BaseException:
            summary["stages"][name] = {"status": "failed or interrupted", "wall_s": time.perf_counter() - t0}
            _write_if_changed(path, summary)
            raise
        wall = time.perf_counter() - t0
        if result is None and previous.get("status", "").startswith("done"):
            summary["stages"][name] = previous
            _log(progress, f"{tag}: already done (skipped, {wall:.1f} s)")
        else:
            info = _stage_info(name, result, ctx)
            status = "done with failed runs" if info.get("failed_runs") else "done"
            summary["stages"][name] = {"status": status, "wall_s": round(wall, 1), **info}
            _log(progress, f"{tag}: {status} in {wall:.1f} s")
            for w in info.get("warnings", []):
                _log(progress, f"warning: {w}")
            _write_if_changed(path, summary)  # only after work: a skipping rerun rewrites nothing
    numbers = json.loads((out / "compare" / "numbers.json").read_text())
    summary["compare"] = numbers
    summary["headline"], summary["not_converged"] = headline(numbers)
    summary["total_wall_s"] = round(sum(s.get("wall_s", 0.0) for s in summary["stages"].values()), 1)
    _write_if_changed(path, summary)
    _log(progress, f"total {summary['total_wall_s']:.0f} s of stage wall time; report: {summary['paths']['report']}")
    return summary


def _paths(out: Path) -> dict:
    return {"output": str(out), "sites": str(out / "sites.json"), "reference": str(out / "reference"),
            "committee": str(out / "learn" / "committee.json"), "rounds": str(out / "learn" / "rounds.json"),
            "validation": str(out / "learn" / "validation.json"),
            "mlip_md": str(out / "mlip_md"), "numbers": str(out / "compare" / "numbers.json"),
            "report": str(out / "compare" / "report.html"), "summary": str(out / "summary.json")}


__all__ = ["ChainConfig", "HEADLINE_KEYS", "PROFILES", "STAGES", "headline", "run_chain"]
