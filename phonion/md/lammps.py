"""The same MD protocol for LAMMPS with a MACE model, and LAMMPS dumps back into a Trajectory.

``write_lammps_inputs(cfg, model, out)`` writes ``out/data.lmp`` (the supercell, ASE's
``lammps-data`` writer, masses, types in ``specorder``) and one directory per temperature ×
seed × fix variant holding ``in.lammps``:

- ``pair_style mace no_domain_decomposition`` + ``pair_coeff * * MODEL-lammps.pt El1 El2 ...``
  (the libtorch model written by ``python -m mace.cli.create_lammps_model MODEL``; needs LAMMPS
  built with ML-MACE). Alternative, commented in the script: the ML-IAP interface
  ``pair_style mliap unified MODEL-mliap_lammps.pt 0`` (Kokkos / GPU; convert with
  ``--format=mliap``).
- ensemble: ``nvt-nhc`` -> ``fix nvt`` (Nosé–Hoover chain), ``nvt-bussi`` -> ``fix nve`` +
  ``fix temp/csvr``, ``nvt-langevin`` -> ``fix nve`` + ``fix langevin``, ``nve`` -> ``fix nve``;
  damping times in ps (metal units: ps, Å, eV).
- fixed O_e / O_c: ``group fixed id ...`` (1-based ids of the ``phonion.mdma.sites`` class on the
  supercell), ``fix setforce 0 0 0``, zero velocities, thermostat and temperature on the mobile
  group with ``extra/dof 0``: 3(N − k) degrees of freedom, as ``phonion md``.
- ``velocity mobile create T SEED mom yes rot no``: LAMMPS seeds must be > 0, so the seed
  written is ``seed + 1``; LAMMPS' generator differs from numpy's, so runs are statistically,
  not bit-for-bit, equivalent to ``phonion md`` runs.
- equilibration (no output), ``reset_timestep 0``, then production with ``dump h5md`` every
  ``sample_every`` steps (needs the H5MD package) or, commented, ``dump custom`` with
  ``id type element xu yu zu vx vy vz fx fy fz`` for any build.

LAMMPS rotates a general cell into its lower-triangular form: positions in its dumps are in
that rotated frame (distances and displacements are unchanged).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from ase import units as ase_units
from ase.data import atomic_numbers

from phonion.md.io import TruncatedFileWarning
from phonion.md.trajectory import Trajectory, TrajectoryError, masses_for

#: LAMMPS units -> (velocity factor to Å/fs, force factor to eV/Å, time factor to fs)
LAMMPS_UNITS = {"metal": (1e-3, 1.0, 1e3),
                "real": (1.0, ase_units.kcal / ase_units.mol, 1.0)}

_THERMOSTATS = {
    "nvt-nhc": "fix             md {group} nvt temp ${{T}} ${{T}} {tdamp_ps:g}",
    "nvt-bussi": ("fix             md {group} nve\n"
                  "fix             csvr {group} temp/csvr ${{T}} ${{T}} {tdamp_ps:g} {seed2}"),
    "nvt-langevin": ("fix             md {group} nve\n"
                     "fix             lgv {group} langevin ${{T}} ${{T}} {damp_ps:g} {seed2} zero yes"),
    "nve": "fix             md {group} nve",
}
_TEMP_FIX = {"nvt-nhc": "md", "nvt-bussi": "csvr", "nvt-langevin": "lgv", "nve": None}


def _species_order(symbols) -> list[str]:
    return sorted(set(symbols), key=lambda s: atomic_numbers[s])


def write_lammps_inputs(cfg, model_path, out_dir) -> dict:
    """Write the LAMMPS data file and one input script per run of a sweep (or one MDConfig).

    Parameters
    ----------
    cfg : phonion.md.sweep.SweepConfig or phonion.md.md_config.MDConfig
    model_path : the MACE model (``.model``) or its converted ``-lammps.pt`` file
    out_dir : directory to write into (created)

    Returns
    -------
    dict: ``data`` (Path of data.lmp), ``inputs`` (list of Paths of in.lammps), ``specorder``
    """
    import ase.io

    from phonion.md.integrators import build_atoms
    from phonion.md.md_config import MDConfig
    from phonion.md.sweep import SweepConfig

    if isinstance(cfg, MDConfig):
        cfg = SweepConfig((cfg.temperature_K,), (cfg.seed,), (cfg.fix,), cfg.output, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = str(model_path)
    base = model[: -len("-lammps.pt")] if model.endswith("-lammps.pt") else model
    atoms, _, _ = build_atoms(dataclasses.replace(cfg.run, fix="none"))
    specorder = _species_order(atoms.get_chemical_symbols())
    ase.io.write(out / "data.lmp", atoms, format="lammps-data", specorder=specorder, masses=True,
                 units="metal", atom_style="atomic")
    fixed_by_variant = {f: build_atoms(dataclasses.replace(cfg.run, fix=f))[1] for f in cfg.fix}
    inputs = []
    for run in cfg.runs():
        run_dir = out / Path(run.output).name
        run_dir.mkdir(exist_ok=True)
        script = _input_script(run, base, specorder, fixed_by_variant[run.fix], len(atoms))
        (run_dir / "in.lammps").write_text(script)
        inputs.append(run_dir / "in.lammps")
    return {"data": out / "data.lmp", "inputs": inputs, "specorder": specorder}


def _input_script(run, model_base: str, specorder: list[str], fixed: np.ndarray, n_atoms: int) -> str:
    els = " ".join(specorder)
    group = "mobile" if fixed.size else "all"
    k = run.sample_every
    lines = [
        f"# phonion lammps-export: {Path(run.output).name} ({run.ensemble}, {run.temperature_K:g} K, "
        f"seed {run.seed}, fix {run.fix})",
        f"# {n_atoms} atoms; run from this directory: lmp -in in.lammps",
        "units           metal",
        "atom_style      atomic",
        "atom_modify     map yes",
        "newton          on",
        "boundary        p p p",
        "read_data       ../data.lmp",
        "",
        "# MACE, libtorch interface (python -m mace.cli.create_lammps_model MODEL)",
        "pair_style      mace no_domain_decomposition",
        f"pair_coeff      * * {model_base}-lammps.pt {els}",
        "# ML-IAP alternative (Kokkos/GPU; create_lammps_model MODEL --format=mliap):",
        f"# pair_style    mliap unified {model_base}-mliap_lammps.pt 0",
        f"# pair_coeff    * * {els}",
        "",
        f"variable        T equal {run.temperature_K:g}",
        f"variable        seed equal {run.seed + 1}",
        f"timestep        {run.timestep_fs / 1000:g}   # ps = {run.timestep_fs:g} fs",
    ]
    if fixed.size:
        ids = " ".join(str(i + 1) for i in fixed)
        lines += [
            "",
            f"# {run.fix} atoms held fixed ({fixed.size}; classes from phonion.mdma.sites on this supercell)",
            f"group           fixed id {ids}",
            "group           mobile subtract all fixed",
            "compute         Tmobile mobile temp",
            "compute_modify  Tmobile extra/dof 0   # 3(N-k) dof: fixed atoms break momentum conservation",
            "velocity        mobile create ${T} ${seed} temp Tmobile mom yes rot no dist gaussian",
            "velocity        fixed set 0.0 0.0 0.0",
            "fix             freeze fixed setforce 0.0 0.0 0.0",
        ]
    else:
        lines += ["", "velocity        all create ${T} ${seed} mom yes rot no dist gaussian"]
    lines += [_THERMOSTATS[run.ensemble].format(group=group, tdamp_ps=run.thermostat_time_fs / 1000,
                                                damp_ps=1.0 / run.friction_per_fs / 1000,
                                                seed2=run.seed + 2)]
    if fixed.size:
        tfix = _TEMP_FIX[run.ensemble]
        lines += ([f"fix_modify      {tfix} temp Tmobile"] if tfix else []) + ["thermo_modify   temp Tmobile"]
    lines += [
        f"thermo          {k}",
        "thermo_style    custom step time temp pe ke etotal press",
        "",
        "# equilibration (not written)",
        f"run             {run.equilibration_steps}",
        "reset_timestep  0",
        "",
        f"# production: a frame every {k} steps",
        f"dump            traj all h5md {k} traj.h5 position image velocity force species",
        "# without the H5MD package (read with phonion.md.lammps.read_lammps_dump):",
        f"# dump          traj all custom {k} traj.dump id type element xu yu zu vx vy vz fx fy fz",
        f"# dump_modify   traj sort id element {els}",
        f"run             {run.steps}",
        "",
    ]
    return "\n".join(lines)


def convert_model_for_lammps(model_path, dtype: str = "float64", fmt: str = "libtorch",
                             head: str | None = None, timeout_s: float = 1800.0) -> Path:
    """Convert a MACE model with mace's own ``python -m mace.cli.create_lammps_model``.

    Parameters
    ----------
    model_path : the ``.model`` file
    dtype : "float64" | "float32"
    fmt : "libtorch" (``pair_style mace``) | "mliap" (``pair_style mliap unified``; needs cuequivariance)
    head : model head for multi-head models (otherwise mace would ask on stdin)

    Returns
    -------
    Path of ``MODEL-lammps.pt`` (libtorch) or ``MODEL-mliap_lammps.pt`` (mliap)
    """
    model = Path(model_path)
    if not model.is_file():
        raise ValueError(f"{model}: no such MACE model file")
    cmd = [sys.executable, "-m", "mace.cli.create_lammps_model", str(model), "--dtype", dtype,
           "--format", fmt] + (["--head", head] if head else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout_s)
    out = Path(f"{model}-mliap_lammps.pt" if fmt == "mliap" else f"{model}-lammps.pt")
    if proc.returncode != 0 or not out.is_file():
        raise ValueError(f"{model}: mace.cli.create_lammps_model failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-800:]}")
    return out


def _box(lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(cell rows (3, 3), origin (3,)) from the 3 lines after ``ITEM: BOX BOUNDS``."""
    vals = np.array([[float(x) for x in ln.split()] for ln in lines])
    lo_b, hi_b = vals[:, 0], vals[:, 1]
    xy, xz, yz = (vals[:, 2] if vals.shape[1] > 2 else np.zeros(3))
    lo = lo_b - np.array([min(0.0, xy, xz, xy + xz), min(0.0, yz), 0.0])
    hi = hi_b - np.array([max(0.0, xy, xz, xy + xz), max(0.0, yz), 0.0])
    cell = np.array([[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]])
    return cell, lo


def read_lammps_dump(path, specorder=None, timestep_fs: float | None = None,
                     units: str = "metal") -> Trajectory:
    """Read a LAMMPS ``dump custom`` text file or a ``dump h5md`` file into a Trajectory.

    Parameters
    ----------
    path : dump file; ``.h5`` / ``.h5md`` / ``.hdf5`` are read as H5MD
    specorder : element of each LAMMPS type, type 1 first (needed unless the dump has an
        ``element`` column)
    timestep_fs : the LAMMPS timestep in fs (a text dump does not record it)
    units : LAMMPS ``units`` of the run, "metal" (Å/ps, eV/Å) or "real" (Å/fs, kcal/mol/Å)

    Returns
    -------
    Trajectory sorted by atom id, positions unwrapped (Å, from ``xu`` columns, else ``x`` +
    image flags ``ix iy iz``, else frame to frame by the minimum image), relative to the box
    origin; velocities Å/fs, forces eV/Å when dumped.
    """
    if units not in LAMMPS_UNITS:
        raise ValueError(f"units must be one of {sorted(LAMMPS_UNITS)}, got {units!r}")
    path = Path(path)
    if path.suffix.lower() in (".h5", ".h5md", ".hdf5"):
        return _read_h5md_dump(path, specorder, timestep_fs, units)
    return _read_text_dump(path, specorder, timestep_fs, units)


def _read_text_dump(path, specorder, timestep_fs, units) -> Trajectory:
    src = str(path)
    if not path.is_file():
        raise TrajectoryError(f"{src}: no such file")
    lines = path.read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("ITEM: TIMESTEP"):
            i += 1
            continue
        try:
            step = int(lines[i + 1].split()[0])
            n = int(lines[i + 3].split()[0])
            cell, origin = _box(lines[i + 5:i + 8])
            cols = lines[i + 8].split()[2:]
            body = lines[i + 9:i + 9 + n]
            if not lines[i + 8].startswith("ITEM: ATOMS") or len(body) < n:
                raise IndexError
            table = np.array([ln.split() for ln in body], dtype=object)
            if table.shape != (n, len(cols)):
                raise IndexError
        except (IndexError, ValueError):
            warnings.warn(TruncatedFileWarning(f"{src}: frame {len(frames)} is incomplete; keeping "
                                               f"the {len(frames)} complete frames before it"), stacklevel=3)
            break
        frames.append((step, cell, origin, cols, table))
        i += 9 + n
    if not frames:
        raise TrajectoryError(f"{src}: no complete frame in this LAMMPS dump")
    return _assemble(frames, specorder, timestep_fs, units, src)


def _assemble(frames, specorder, timestep_fs, units, src) -> Trajectory:
    from phonion.md.velocities import unwrap_fractional

    cols = frames[0][3]
    if any(f[3] != cols for f in frames):
        raise TrajectoryError(f"{src}: the dumped columns change between frames")
    col = {c: k for k, c in enumerate(cols)}

    def num(table, names):
        return np.array(table[:, [col[c] for c in names]], dtype=float)

    order = [np.argsort(num(t, ["id"])[:, 0]) for *_, t in frames]
    tables = [t[o] for (*_, t), o in zip(frames, order)]
    if "element" in col:
        symbols = tuple(str(s) for s in tables[0][:, col["element"]])
    else:
        types = num(tables[0], ["type"])[:, 0].astype(int)
        if not specorder or types.max() > len(specorder):
            raise TrajectoryError(f"{src}: types up to {types.max()} need specorder with as many "
                                  f"elements (given {specorder})")
        symbols = tuple(specorder[t - 1] for t in types)
    cells = np.array([f[1] for f in frames])
    origins = np.array([f[2] for f in frames])
    v_f, f_f, t_f = LAMMPS_UNITS[units]
    if {"xu", "yu", "zu"} <= col.keys():
        pos = np.array([num(t, ["xu", "yu", "zu"]) for t in tables]) - origins[:, None]
    elif {"x", "y", "z"} <= col.keys():
        pos = np.array([num(t, ["x", "y", "z"]) for t in tables]) - origins[:, None]
        if {"ix", "iy", "iz"} <= col.keys():
            pos += np.einsum("fni,fij->fnj", np.array([num(t, ["ix", "iy", "iz"]) for t in tables]), cells)
        else:
            frac = unwrap_fractional(np.einsum("fnj,fjk->fnk", pos, np.linalg.inv(cells)), src)
            pos = np.einsum("fnk,fkj->fnj", frac, cells)
    else:
        raise TrajectoryError(f"{src}: no position columns (xu yu zu or x y z) in {cols}")
    vel = (np.array([num(t, ["vx", "vy", "vz"]) for t in tables]) * v_f
           if {"vx", "vy", "vz"} <= col.keys() else None)
    frc = (np.array([num(t, ["fx", "fy", "fz"]) for t in tables]) * f_f
           if {"fx", "fy", "fz"} <= col.keys() else None)
    steps = np.array([f[0] for f in frames])
    d = np.unique(np.diff(steps))
    if d.size > 1 or (d.size and d[0] <= 0):
        raise TrajectoryError(f"{src}: dump steps are not evenly spaced ({d.tolist()[:5]})")
    stride = int(d[0]) if d.size else 1
    meta = {"source_files": [src], "format": "lammps-dump", "lammps_units": units,
            "lammps_steps": [int(steps[0]), int(steps[-1])],
            "timestep_fs_source": "user" if timestep_fs else None, "stride_source": "file",
            "velocities_source": "file" if vel is not None else None,
            "frame": "LAMMPS (lower-triangular cell), positions relative to the box origin"}
    return Trajectory(symbols=symbols, positions=pos, cells=cells, timestep_fs=timestep_fs,
                      stride=stride, times_fs=None if timestep_fs is None else steps * timestep_fs,
                      velocities=vel, forces=frc, masses=masses_for(symbols, src), metadata=meta)


def _read_h5md_dump(path, specorder, timestep_fs, units) -> Trajectory:
    """LAMMPS ``dump h5md``: types as integer species, no unit attributes (LAMMPS units)."""
    import h5py

    from phonion.md.io.h5md import H5MDReader

    reader = H5MDReader(path)
    traj = reader.read()
    g = f"particles/{reader.particles_group}"
    with h5py.File(path, "r") as f:
        def has_unit(name):
            return name in f and "unit" in f[name].attrs

        sp = f[f"{g}/species"]
        sp = sp["value"] if isinstance(sp, h5py.Group) else sp
        types = np.asarray(sp[0] if sp.ndim == 2 else sp[()]).reshape(-1)
        vel_unit, time_unit = has_unit(f"{g}/velocity/value"), has_unit(f"{g}/position/time")
    changes = {}
    if types.dtype.kind in "iu":
        if not specorder or types.max() > len(specorder) or types.min() < 1:
            raise TrajectoryError(f"{path}: LAMMPS types {sorted(set(types.tolist()))} need specorder "
                                  f"(given {specorder})")
        symbols = tuple(specorder[t - 1] for t in types)
        changes.update(symbols=symbols, masses=masses_for(symbols, str(path)))
    v_f, f_f, t_f = LAMMPS_UNITS[units]
    if traj.velocities is not None and not vel_unit:
        changes["velocities"] = traj.velocities * v_f
    if traj.forces is not None and f_f != 1.0:
        changes["forces"] = traj.forces * f_f
    if traj.times_fs is not None and not time_unit:
        changes["times_fs"] = traj.times_fs * t_f
    dt = timestep_fs or (traj.timestep_fs * t_f if traj.timestep_fs and not time_unit else traj.timestep_fs)
    meta = {**traj.metadata, "format": "lammps-h5md", "lammps_units": units}
    return traj.replace(timestep_fs=dt, metadata=meta, **changes)
