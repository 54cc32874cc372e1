"""Exporting a trained MACE model (:mod:`phonion.mlip.train` re-exports these): the bare model with EMA weights,
the refit of its per-element energy zero, and mace's LAMMPS converter."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def export_model(module, ckpt_path: str | None, path: Path, dtype: str) -> Path:
    """torch.save the bare mace model with the EMA weights of ``ckpt_path`` (or of ``module`` as is);
    a multihead model is reduced to its ``Default`` head (mace's ``remove_pt_head``)."""
    import torch

    if ckpt_path:
        state = torch.load(ckpt_path, map_location=module.device, weights_only=False)
        module.load_state_dict(state["state_dict"])
        module.on_load_checkpoint(state)
    model = module.ema_weights().to("cpu")
    if len(getattr(model, "heads", ["Default"])) > 1:  # multihead fine-tuning: keep the user's head for MD
        from mace.tools.scripts_utils import remove_pt_head

        model = remove_pt_head(model, "Default")
    model = model.double() if dtype == "float64" else model.float()
    torch.save(model, path)
    return path


def correct_energy_zero(model_path: Path, frames, dtype: str, max_frames: int = 64) -> dict:
    """Refit the per-element energy zero (E0s) of an exported model on training frames, in place.

    With mace's weighted loss (forces ×100, energy ×1) a short training leaves the energy with a
    near-constant offset per atom (seen: −6 meV/atom after 30 epochs, ~40 after 12): forces do not
    see a constant, and the energy term is too weak to remove it in a few epochs. The offset is one
    linear parameter per element, so it is fitted exactly: least squares of (E_ref − E_pred) on the
    element counts over (up to ``max_frames``) training frames, added to the model's atomic
    energies. Forces and stress are unchanged. Returns the correction per element (eV) and the
    mean per-atom residual before and after (meV/atom).
    """
    import torch
    from ase.data import chemical_symbols

    from phonion.core.calculators import resolve_calculator
    from phonion.mlip.evaluate import predict

    if not frames:
        return {}
    step = max(1, len(frames) // max_frames)
    frames = frames[::step]
    model = torch.load(model_path, map_location="cpu", weights_only=False)
    zs = [int(z) for z in model.atomic_numbers]
    counts = np.array([[int((a.numbers == z).sum()) for z in zs] for a in frames], dtype=float)
    pred = predict(resolve_calculator(f"mace:{model_path}", device="cpu", dtype=dtype), frames)
    resid = pred["energy_ref"] - pred["energy_pred"]
    delta, *_ = np.linalg.lstsq(counts, resid, rcond=None)
    with torch.no_grad():
        buf = model.atomic_energies_fn.atomic_energies
        buf += torch.as_tensor(delta, dtype=buf.dtype).reshape(buf.shape[-1:])
    torch.save(model, model_path)
    n = counts.sum(axis=1)
    return {"e0_correction_eV": {chemical_symbols[z]: float(d) for z, d in zip(zs, delta)},
            "mean_residual_before_meV_atom": 1e3 * float(np.mean(resid / n)),
            "mean_residual_after_meV_atom": 1e3 * float(np.mean((resid - counts @ delta) / n)),
            "n_frames": len(frames)}


def export_lammps(model_path: Path) -> dict:
    """mace's own converter (``mace_create_lammps_model``, libtorch format); returns what happened."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mace.cli.create_lammps_model", str(model_path),
                           "--dtype", "float64", "--head", "Default"],
                          capture_output=True, text=True, timeout=900)
    target = Path(str(model_path) + "-lammps.pt")
    if proc.returncode == 0 and target.is_file():
        return {"lammps_model": str(target)}
    return {"lammps_error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]}
