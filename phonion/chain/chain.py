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
continues unfinished ones (MD from its checkpoint, training from ``last.ckpt``). ``DIR/chain.json``
records the settings each stage's outputs depend on (its own and its upstream stages'); a rerun with
other settings reuses every stage whose settings did not change and redoes the first changed stage
and all after it, moving their old outputs aside to ``DIR/<stage>.old-N`` (never deleted). Every
setting is checked (:func:`check_chain`) before any file is written. ``DIR/README.md`` says what is where.

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
        tmp = out / ".structure.extxyz.tmp"
        ase.io.write(tmp, s, format="extxyz")
        if path.is_file() and path.read_bytes() == tmp.read_bytes():
            tmp.unlink()
        else:
            if path.is_file():
                _aside(path)  # another structure: the stages see the new one (chain.json: redone)
            tmp.replace(path)
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


#: what each stage writes (moved aside to ``<name>.old-N`` when the stage must be redone)
STAGE_OUTPUTS = {"sites": ("sites.json",), "reference": ("reference",), "learn": ("learn",),
                 "mlip_md": ("mlip_md",), "compare": ("compare",)}
#: keys that do not change a stage's results (left out of the settings compared on a rerun)
_NEUTRAL = ("workers", "device", "threads", "progress_bar", "num_threads", "description")


def _neutral_free(data):
    if isinstance(data, dict):
        return {k: _neutral_free(v) for k, v in data.items() if k not in _NEUTRAL}
    return data


def stage_settings(record: dict) -> dict:
    """{stage: the settings its outputs depend on: its own and those of every stage before it}."""
    s = _neutral_free(record["settings"])
    own = {"sites": {"structure": record["structure"], "structure_sha256": record.get("structure_sha256")},
           "reference": {"calculator": record["calculator"], "seed": record["seed"], "reference": s["reference"]},
           "learn": {"train": s["train"], "learn": s["learn"]}, "mlip_md": {"mlip_md": s["mlip_md"]},
           "compare": {"compare": s.get("compare", {})}}
    out, upstream = {}, {}
    for name in STAGES:
        upstream = {**upstream, **own[name]}
        out[name] = json.loads(json.dumps(upstream, default=str))
    return out


def _differences(a, b, where: str = "") -> list[str]:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [where or "settings"]
    return [d for k in sorted(set(a) | set(b), key=str)
            for d in _differences(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))]


def _aside(path: Path) -> Path:
    n = 1
    while path.with_name(f"{path.name}.old-{n}").exists():
        n += 1
    target = path.with_name(f"{path.name}.old-{n}")
    path.rename(target)
    return target


def _reconcile(out: Path, record: dict, progress: bool) -> list[str]:
    """Compare each stage's settings with those its outputs in DIR were made with (``DIR/chain.json``);
    the first changed stage and every stage after it are redone: their outputs are moved aside to
    ``<name>.old-N`` (kept, never deleted). Finished stages with unchanged settings are reused; a
    failed or interrupted earlier run with other settings never blocks a rerun. Returns the redone stages."""
    path = out / "chain.json"
    new = stage_settings(record)
    old_stages = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            old_stages = old.get("stages") or ({} if "settings" not in old else stage_settings(
                {**old, "structure_sha256": old.get("structure_sha256", record.get("structure_sha256"))}))
        except (ValueError, KeyError, TypeError):
            old_stages = {}  # unreadable: the outputs are reused as they are (as without chain.json)
    redo = []
    for name in STAGES:
        if redo or (name in old_stages and old_stages[name] != new[name]):
            if not redo:
                diff = ", ".join(_differences(old_stages[name], new[name])) or "settings"
                _log(progress, f"settings of stage {name} changed since its outputs were made ({diff}): "
                               f"redoing {name} and the stages after it")
            redo.append(name)
            for item in STAGE_OUTPUTS[name]:
                if (out / item).exists():
                    _log(progress, f"kept the old {item} as {_aside(out / item).name}")
    _write_if_changed(path, {**record, "stages": new})
    return redo


def _sha256(path) -> str:
    import hashlib; return hashlib.sha256(Path(path).read_bytes()).hexdigest()  # noqa: E702


def check_chain(cfg: ChainConfig, settings: dict | None = None) -> dict:
    """The resolved settings of ``cfg``, each stage's real config built from them (ReferenceConfig and
    the MDConfig of every temperature, the learn / train configs, the MLIP sweeps, CompareConfig):
    one ValueError naming the section and the problem, in seconds and without writing any file."""
    import tempfile

    from phonion.chain.stages import (StageContext, compare_config, learn_config, reference_config,
                                      sweep_configs)

    settings = settings if settings is not None else resolve_profile(cfg.profile, cfg.overrides)
    with tempfile.TemporaryDirectory(prefix="phonion-check-") as tmp:
        structure, structure_file, _ = _structure(cfg, Path(tmp))
        out = Path(cfg.output).expanduser().resolve()
        ctx = StageContext(out=out, settings=settings, structure=structure, structure_file=structure_file,
                           calculator=cfg.calculator, device=cfg.device, seed=cfg.seed, progress=False)
        steps = (("reference", lambda: [reference_config(ctx).md_config(k)
                                        for k in range(len(settings["reference"]["temperatures_K"]))]),
                 ("train / learn", lambda: learn_config(ctx)),
                 ("mlip_md", lambda: [sw.runs() for sw in sweep_configs(ctx)]),
                 ("compare", lambda: compare_config(ctx)))
        for section, build in steps:
            try:
                build()
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"{section} settings of profile {cfg.profile!r}: {exc}") from None
    return settings


_INDEX = (("sites.json", "O_e / O_c / O_n oxygen classes of the structure (stage sites)"),
          ("reference/<T>K/", "surrogate-reference MD per temperature: traj.h5, run.json, run.log"),
          ("learn/rounds.json", "active-learning rounds (labelled frames, errors, gate per round)"),
          ("learn/validation.json", "the fit-for-MD gate on the final committee"),
          ("learn/committee/", "the committee's MACE models (member_<k>.model)"),
          ("mlip_md/<run>/", "MLIP MD runs T<T>_seed<s>_fix<f>: traj.h5, run.json, run.log"),
          ("compare/report.html", "the reference-vs-MLIP report (open this)"),
          ("summary.json", "settings, stage status and wall times, headline numbers"),
          ("chain.json", "the settings each stage's outputs were made with (reruns reuse unchanged stages)"),
          ("*.old-N", "outputs of stages redone after a settings change (kept, never deleted)"))


def write_index(out: Path, summary: dict | None = None) -> None:
    """``OUT/README.md``: one line per output (and each stage's status once known); written when changed."""
    stages = (summary or {}).get("stages") or {}
    lines = ["# phonion chain outputs", "", f"Directory: {out}", "", "| path | what | status |", "|---|---|---|"]
    for item, what in _INDEX:
        stage = item.split("/")[0].split(".")[0]
        pattern = item.replace("<T>", "*").replace("<run>", "*").replace("-N", "-*").rstrip("/")
        status = (stages.get(stage) or {}).get("status") or ("present" if any(out.glob(pattern)) else "not yet")
        lines.append(f"| `{item}` | {what} | {status} |")
    lines += ["", "Logs: every MD run writes `run.log` next to its `run.json` "
                  "(`reference/<T>K/run.log`, `mlip_md/<run>/run.log`); training logs are under `learn/`."]
    text = "\n".join(lines) + "\n"
    path = out / "README.md"
    if not (path.is_file() and path.read_text() == text):
        path.write_text(text)


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
    own progress bars). Raises ValueError for bad settings (unknown profile, override key or value
    type, unreadable structure: :func:`check_chain`) and RuntimeError when a stage cannot run.
    """
    from phonion.chain.stages import (StageContext, stage_compare, stage_mlip_md, stage_reference,
                                      stage_sites, stage_learn)

    settings = resolve_profile(cfg.profile, cfg.overrides)
    check_chain(cfg, settings)  # every stage's config built (and refused) before any file is written
    out = Path(cfg.output).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    structure, structure_file, label = _structure(cfg, out)
    device = _device(cfg)
    overrides = {k: cfg.overrides[k] for k in sorted(cfg.overrides)}
    redone = _reconcile(out, {"profile": cfg.profile, "overrides": overrides, "structure": structure,
                              "structure_sha256": _sha256(structure_file), "calculator": cfg.calculator,
                              "seed": cfg.seed, "device": device, "settings": settings}, progress)
    _log(progress, f"outputs in {out} (index: {out / 'README.md'}); every MD run logs to its own "
                   f"run.log: {out}/reference/<T>K/run.log, {out}/mlip_md/T<T>_seed<s>_fix<f>/run.log")
    ctx = StageContext(out=out, settings=settings, structure=structure, structure_file=structure_file,
                       calculator=cfg.calculator, device=device, seed=cfg.seed, progress=progress)
    path = out / "summary.json"
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        old = {}
    old["stages"] = {k: v for k, v in (old.get("stages") or {}).items() if k not in redone}
    write_index(out, old)
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
    write_index(out, summary)
    _log(progress, f"total {summary['total_wall_s']:.0f} s of stage wall time; report: {summary['paths']['report']}")
    return summary


def _paths(out: Path) -> dict:
    return {"output": str(out), "sites": str(out / "sites.json"), "reference": str(out / "reference"),
            "committee": str(out / "learn" / "committee.json"), "rounds": str(out / "learn" / "rounds.json"),
            "validation": str(out / "learn" / "validation.json"),
            "mlip_md": str(out / "mlip_md"), "numbers": str(out / "compare" / "numbers.json"),
            "report": str(out / "compare" / "report.html"), "summary": str(out / "summary.json")}


__all__ = ["ChainConfig", "HEADLINE_KEYS", "PROFILES", "STAGES", "STAGE_OUTPUTS", "check_chain", "headline",
           "run_chain", "stage_settings", "write_index"]
