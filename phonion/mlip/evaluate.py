"""Errors of a trained potential against reference frames, through mace's ``MACECalculator``.

``phonion evaluate --model M TRAJ... --json`` reads each trajectory (one file = one run) with
``phonion.md.io.read_trajectory``, predicts every frame that has energy and forces with
``resolve_calculator("mace:" + M)`` and reports:

==============================  ======================================================================
key                             meaning
==============================  ======================================================================
``energy_mae_meV_atom``         mean over frames of |E_pred − E_ref| / N_atoms, meV/atom
``energy_rmse_meV_atom``        root mean square of the same, meV/atom
``force_rmse_meV_A``            RMS over all Cartesian force components, meV/Å (mace's ``rmse_f``)
``force_mae_meV_A``             mean |ΔF| over all components, meV/Å
``stress_rmse_GPa``             RMS over the 9 components of the stress tensor, GPa (None without stress)
``per_element_force_rmse_meV_A``  the force RMSE over the atoms of each element
``n_frames``, ``n_atoms``       frames evaluated, atoms summed over them
``per_temperature``             the same per temperature label (metadata / file name), K
==============================  ======================================================================

``error_metrics`` is a pure function of the prediction arrays; ``plot_parity`` draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EV_A3_TO_GPA = 160.21766208


def predict(calculator, atoms_list) -> dict:
    """Reference and predicted energies, forces and stress of frames carrying REF_* labels.

    Returns
    -------
    dict with ``energy_ref``/``energy_pred`` (F,) eV, ``n_atoms`` (F,), ``forces_ref``/``forces_pred``
    (ΣN, 3) eV/Å, ``symbols`` (ΣN,), ``stress_ref``/``stress_pred`` (F, 3, 3) eV/Å³ (NaN where the
    frame has none), ``temperature_K`` (F,) (NaN where unknown).
    """
    from ase.stress import voigt_6_to_full_3x3_stress

    from phonion.mlip.data import KEYS

    check_model_elements(calculator, atoms_list)
    out = {k: [] for k in ("energy_ref", "energy_pred", "n_atoms", "forces_ref", "forces_pred", "symbols",
                           "stress_ref", "stress_pred", "temperature_K")}
    for atoms in atoms_list:
        work = atoms.copy()
        work.calc = calculator
        out["energy_pred"].append(work.get_potential_energy())
        out["forces_pred"].append(work.get_forces())
        out["energy_ref"].append(float(atoms.info[KEYS["energy"]]))
        out["forces_ref"].append(np.asarray(atoms.arrays[KEYS["forces"]], dtype=float))
        out["n_atoms"].append(len(atoms))
        out["symbols"].extend(atoms.get_chemical_symbols())
        ref = atoms.info.get(KEYS["stress"])
        if ref is not None:
            out["stress_ref"].append(voigt_6_to_full_3x3_stress(np.asarray(ref, dtype=float)))
            out["stress_pred"].append(voigt_6_to_full_3x3_stress(work.get_stress()))
        else:
            out["stress_ref"].append(np.full((3, 3), np.nan))
            out["stress_pred"].append(np.full((3, 3), np.nan))
        out["temperature_K"].append(float(atoms.info.get("temperature_K", np.nan)))
    arrays = {k: np.asarray(v, dtype=float) for k, v in out.items() if k not in ("forces_ref", "forces_pred", "symbols")}
    arrays["forces_ref"] = np.concatenate(out["forces_ref"]) if out["forces_ref"] else np.zeros((0, 3))
    arrays["forces_pred"] = np.concatenate(out["forces_pred"]) if out["forces_pred"] else np.zeros((0, 3))
    arrays["symbols"] = np.asarray(out["symbols"], dtype=str)
    return arrays


def error_metrics(pred: dict) -> dict:
    """Error metrics (see the module docstring) from ``predict``'s arrays; pure function."""
    n = pred["n_atoms"]
    if len(n) == 0:
        raise ValueError("no frames to evaluate")
    de = (pred["energy_pred"] - pred["energy_ref"]) / n
    df = pred["forces_pred"] - pred["forces_ref"]
    ds = pred["stress_pred"] - pred["stress_ref"]
    has_s = ~np.isnan(ds).any(axis=(1, 2))
    metrics = {
        "energy_mae_meV_atom": 1e3 * float(np.mean(np.abs(de))),
        "energy_rmse_meV_atom": 1e3 * float(np.sqrt(np.mean(de ** 2))),
        "force_rmse_meV_A": 1e3 * float(np.sqrt(np.mean(df ** 2))),
        "force_mae_meV_A": 1e3 * float(np.mean(np.abs(df))),
        "stress_rmse_GPa": (EV_A3_TO_GPA * float(np.sqrt(np.mean(ds[has_s] ** 2))) if has_s.any() else None),
        "per_element_force_rmse_meV_A": {
            el: 1e3 * float(np.sqrt(np.mean(df[pred["symbols"] == el] ** 2)))
            for el in sorted(set(pred["symbols"].tolist()))},
        "n_frames": int(len(n)),
        "n_atoms": int(n.sum()),
    }
    return metrics


def _select(pred: dict, frames: np.ndarray) -> dict:
    atom_frame = np.repeat(np.arange(len(pred["n_atoms"])), pred["n_atoms"].astype(int))
    atoms = np.isin(atom_frame, np.flatnonzero(frames))
    out = {k: v[frames] for k, v in pred.items() if k not in ("forces_ref", "forces_pred", "symbols")}
    out.update({k: pred[k][atoms] for k in ("forces_ref", "forces_pred", "symbols")})
    return out


def metrics_with_temperatures(pred: dict) -> dict:
    """``error_metrics`` over all frames plus ``per_temperature`` (label "unknown" without one)."""
    metrics = error_metrics(pred)
    temps = pred["temperature_K"]
    labels = np.array(["unknown" if np.isnan(t) else f"{t:g}" for t in temps])
    metrics["per_temperature"] = {lab: error_metrics(_select(pred, labels == lab))
                                  for lab in sorted(set(labels.tolist()), key=_temp_key)}
    return metrics


def _temp_key(label: str):
    return (1, 0.0) if label == "unknown" else (0, float(label))


def check_model_elements(calculator, atoms_list, what: str | None = None) -> None:
    """A ValueError naming the files, the elements the model lacks and those it knows, before any prediction
    (mace would fail with ``np.int64(29) is not in list``). Calculators without a ``z_table`` pass."""
    from phonion.mlip.data_mace import check_elements

    table = getattr(calculator, "z_table", None)
    zs = getattr(table, "zs", None)
    if zs is None:
        return
    sources: dict = {}
    for atoms in atoms_list:
        sources.setdefault(atoms.info.get("source_file", "frames"), set()).update(atoms.numbers.tolist())
    check_elements(set().union(*sources.values()) if sources else set(), zs, what=what or "the model",
                   sources=sources)


def frames_from_files(files, *, fmt=None, timestep_fs=None, every: int = 1,
                      skip_incomplete: bool = False) -> list:
    """Frames with energy and forces of each file (each its own run), labels under REF_* keys."""
    from phonion.md.io import read_trajectory

    from phonion.mlip.data import KEYS, run_temperature

    frames = []
    for path in files:
        traj = read_trajectory(path, fmt=fmt, timestep_fs=timestep_fs, every=every)
        usable = traj.frames_with("forces") & traj.frames_with("energies")
        if not usable.all() and not skip_incomplete:
            raise ValueError(f"{path}: {int((~usable).sum())} of {traj.n_frames} frames lack energy or "
                             "forces; pass --skip-incomplete to evaluate the others")
        if not usable.any():
            raise ValueError(f"{path}: no frame has both energy and forces")
        temp = run_temperature(traj, [str(path)])
        has_stress = traj.frames_with("stress")
        for i in np.flatnonzero(usable):
            atoms = traj.to_atoms(int(i))
            atoms.info[KEYS["energy"]] = float(traj.energies[i])
            atoms.arrays[KEYS["forces"]] = np.array(traj.forces[i])
            if has_stress[i]:
                s = traj.stress[i]
                atoms.info[KEYS["stress"]] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
            atoms.info["temperature_K"] = np.nan if temp is None else temp
            atoms.info["source_file"] = str(path)
            frames.append(atoms)
    return frames


def evaluate_model(model_path, atoms_list, *, device: str = "cpu", dtype: str = "float64"):
    """(metrics, prediction arrays) of the model file on frames, via ``resolve_calculator``."""
    from phonion.core.calculators import resolve_calculator

    calc = resolve_calculator("mace:" + str(model_path), device=device, dtype=dtype)
    check_model_elements(calc, atoms_list, what=f"model {model_path}")
    pred = predict(calc, atoms_list)
    return metrics_with_temperatures(pred), pred


def plot_parity(pred: dict, prefix, title: str = "") -> list[Path]:
    """Energy (per atom) and force-component parity plots: ``<prefix>_energy.png``, ``_forces.png``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    prefix = Path(prefix)
    paths = []
    m = error_metrics(pred)
    panels = [("energy", pred["energy_ref"] / pred["n_atoms"], pred["energy_pred"] / pred["n_atoms"],
               "energy (eV/atom)", f"MAE {m['energy_mae_meV_atom']:.2f} meV/atom"),
              ("forces", pred["forces_ref"].ravel(), pred["forces_pred"].ravel(),
               "force component (eV/Å)", f"RMSE {m['force_rmse_meV_A']:.1f} meV/Å")]
    for name, ref, prd, label, note in panels:
        fig = Figure(figsize=(4, 4), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ax.scatter(ref, prd, s=3, alpha=0.5)
        lo, hi = float(min(ref.min(), prd.min())), float(max(ref.max(), prd.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"MACE {label}")
        ax.set_title(f"{title} {note}".strip(), fontsize=9)
        fig.tight_layout()
        path = prefix.parent / f"{prefix.name}_{name}.png"
        fig.savefig(path)
        paths.append(path)
    return paths


def write_splits(dataset, directory) -> list[Path]:
    """Write each run's val and test frames as extxyz (``<split>_<run>[_<T>K].extxyz``).

    Frames carry a SinglePointCalculator (read back by ``read_trajectory``) and the REF_* keys
    (read by ``mace_run_train``).
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from phonion.mlip.data import KEYS

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for split in ("val", "test"):
        for k, run in enumerate(dataset.runs):
            frames = [a for a in dataset.split(split) if a.info["run"] == k]
            if not frames:
                continue
            temp = "" if run.temperature_K is None else f"_{run.temperature_K:g}K"
            path = directory / f"{split}_run{k}{temp}.extxyz"
            out = []
            for a in frames:
                b = a.copy()
                b.calc = SinglePointCalculator(b, energy=a.info[KEYS["energy"]], forces=a.arrays[KEYS["forces"]],
                                               **({"stress": a.info[KEYS["stress"]]} if KEYS["stress"] in a.info else {}))
                b.info.pop("source", None)
                out.append(b)
            ase.io.write(path, out, format="extxyz")
            written.append(path)
    return written
