"""``phonion compare``: a thin command line over :func:`phonion.compare.run.run_compare`."""

from __future__ import annotations

from phonion.cli.common import emit_json

import sys

__all__ = ["add_compare_parser"]

EPILOG = """\
examples:
  phonion compare --reference reference/ --mlip sweep/ -o compare-out
  phonion compare --reference aimd/ --mlip sweep/ --model train/model.model --reference-phonons dft-phonons/ \\
      --timestep-fs 2 -o compare-out --json
  phonion compare --reference ref/ --mlip ref/ --reference-calculator chgnet --mlip-calculator chgnet -o same

Each trajectory file under a directory is one run (phonion md / reference write DIR/<run>/traj.h5; AIMD:
vasprun.xml, OUTCAR, XDATCAR[.gz], *.extxyz, *.traj). Temperatures come from the run metadata, a <T>K or
T<T>_ pattern in the path, or the mean kinetic temperature. Runs with O_e / O_c held fixed (metadata fix)
are kept apart. When any run lacks velocities, both sides' velocities are derived from positions.
Runs whose run.json is not "complete" (invalid, failed, interrupted, running) are left out of every analysis
and listed first; Arrhenius and Nernst–Einstein use each run's measured mean temperature.
outputs in OUT: numbers.json (every number: value, uncertainty, unit, side, source, converged, note;
differences mlip − reference; invalid_runs; mlip_validation; warnings), report.html (self-contained,
figures embedded), figures/*.png, phonons/<side>/ (cached force constants), mdma/<side>/<run>/, pfc/<side>/.
A `compare` example that gates on the MLIP:  phonion compare ... --validation validate-out/validation.json"""


def add_compare_parser(sub, formatter) -> None:
    """Add the ``compare`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "compare", formatter_class=formatter,
        help="reference (DFT or surrogate) vs MLIP: the same analyses side by side",
        description="The same analyses on the reference and the MLIP trajectories: force/energy parity of the "
                    "MLIP model on the reference frames, RDF, VDOS, MSD and Arrhenius (E_a, D(300 K), σ(300 K), "
                    "Haven ratio), phonon DOS of the MD cell, MDMA shares and the O_e-mode mean frequency, pFC and "
                    "ΔpFC, fixed-O_e vs fixed-O_c diffusivities. Writes numbers.json and a self-contained "
                    "report.html.",
        epilog=EPILOG)
    p.add_argument("--reference", required=True, metavar="DIR",
                   help="reference runs: DFT files or (surrogate) reference H5MD, searched recursively")
    p.add_argument("--mlip", required=True, metavar="DIR", help="MLIP runs (phonion md / sweep output)")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--model", default=None, metavar="M",
                   help="MLIP model for force/energy parity (MACE .model file or SPEC; none: the mace:PATH in "
                        "the MLIP runs' metadata)")
    p.add_argument("--reference-calculator", default=None, metavar="SPEC",
                   help="calculator for the reference phonons / MDMA / pFC (none: the reference runs' own, "
                        "when they are surrogate reference)")
    p.add_argument("--mlip-calculator", default=None, metavar="SPEC",
                   help="calculator for the MLIP phonons / MDMA / pFC (none: the MLIP runs' own)")
    p.add_argument("--reference-phonons", default=None, metavar="P",
                   help="reference phonons instead: phonopy yaml, FORCE_CONSTANTS, FORCE_SETS or a "
                        "`phonion phonons` directory (DFT force constants)")
    p.add_argument("--mlip-phonons", default=None, metavar="P", help="MLIP phonons instead of computing them")
    p.add_argument("--structure", default=None, metavar="F",
                   help="structure for sites and phonons (file or bundled name; none: the structure in the "
                        "run metadata, else the first frame of the first reference run)")
    p.add_argument("--mobile", default="Li", help="mobile ion")
    p.add_argument("--anion", default="O", help="anion classified into O_e / O_c / O_n")
    p.add_argument("--timestep-fs", type=float, default=None, metavar="X",
                   help="MD timestep for files that do not record it (XDATCAR without POTIM)")
    p.add_argument("--tau-max-ps", type=float, default=None, help="MDMA correlation window (none: half a block)")
    p.add_argument("--device", default=None, help="cpu | cuda for the calculators (none: automatic)")
    p.add_argument("--parity-max-frames", type=int, default=200, help="most reference frames for the parity")
    p.add_argument("--validation", default=None, metavar="PATH",
                   help="the JSON written by `phonion validate` (or its directory): the report opens with its "
                        "verdict; when it failed, every MLIP number is marked not converged (not trustworthy). "
                        "None: the MLIP is reported as not validated")
    p.add_argument("--json", action="store_true", help="print numbers.json instead of the summary")
    p.add_argument("--quiet", action="store_true", help="no stage messages on stderr")
    p.set_defaults(func=_cmd_compare)


def _line(key: str, result: dict) -> str | None:
    cells = []
    for side in ("reference", "mlip"):
        n = result[side]["numbers"].get(key)
        if n is None or n["value"] is None:
            cells.append(f"{'—':>22}")
            continue
        u = n["uncertainty"]
        mark = "" if n["converged"] else " (not converged)"
        cells.append(f"{n['value']:.4g}" + (f" ± {u:.2g}" if u is not None else "") + mark)
    if all(c.strip() == "—" for c in cells):
        return None
    return f"{key:>34}: {cells[0]:<36} {cells[1]}"


def _verdict(result: dict) -> None:
    """The MLIP gate verdict and the invalid runs, first."""
    from phonion.compare.checks import failed_checks

    v = result.get("mlip_validation")
    if v is None:
        print("MLIP fit for MD: not validated (numbers from the MLIP are not trustworthy until `phonion validate` "
              "passes)")
    else:
        print(f"MLIP fit for MD: {'PASSED' if v['passed'] else 'FAILED'}"
              + ("" if v["passed"] else f" ({', '.join(failed_checks(v))}): every MLIP number is not trustworthy"))
    for r in result.get("invalid_runs") or []:
        print(f"invalid run left out: {r['side']} {r['run']} ({r['status']}: {r['reason']})", file=sys.stderr)


def _cmd_compare(args) -> int:
    from phonion.compare.run import CompareConfig, run_compare
    from phonion.compare.report import HEADLINE_KEYS

    if args.timestep_fs is not None and not args.timestep_fs > 0:
        raise ValueError(f"--timestep-fs must be > 0, got {args.timestep_fs:g}")
    cfg = CompareConfig(reference=args.reference, mlip=args.mlip, output=args.output, model=args.model,
                        reference_calculator=args.reference_calculator, mlip_calculator=args.mlip_calculator,
                        reference_phonons=args.reference_phonons, mlip_phonons=args.mlip_phonons,
                        structure=args.structure, mobile=args.mobile, anion=args.anion,
                        timestep_fs=args.timestep_fs, tau_max_ps=args.tau_max_ps, device=args.device,
                        parity_max_frames=args.parity_max_frames, validation=args.validation)
    result = run_compare(cfg, progress=not args.quiet)
    if args.json:
        emit_json(result, indent=1, ensure_ascii=False)
        return 0
    _verdict(result)
    print(f"{'reference':>34}: {result['reference']['label']}")
    print(f"{'mlip':>34}: {result['mlip']['label']}")
    for key in HEADLINE_KEYS:
        line = _line(key, result)
        if line:
            print(line)
    short = sum(not n["converged"] for s in ("reference", "mlip") for n in result[s]["numbers"].values())
    if short:
        print(f"{short} numbers are too short to be converged (listed in report.html)", file=sys.stderr)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {args.output}/numbers.json, {args.output}/report.html")
    return 0
