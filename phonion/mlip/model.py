"""The MACE model: built from scratch, or loaded from a foundation model for naive fine-tuning.

Both paths go through mace's own model factory (``mace.tools.model_script_utils.configure_model``,
the function ``mace_run_train`` calls), so a phonion model and a ``mace_run_train`` model with
the same settings are the same network, initialised the same way for the same seed.

From scratch
------------
``type: ScaleShiftMACE`` scales the interaction energy by the RMS force of the training data and
shifts it by the mean interaction energy per atom (``scaling: rms_forces_scaling``, mace's default
statistics, computed over the training split after subtracting the E0s); ``type: MACE`` is mace's
default (scale only, zero shift). ``hidden_irreps`` follow from ``num_channels`` and ``max_L``
as in mace (``num_channels × spherical harmonics up to max_L``).

Naive fine-tuning (``foundation: path/to/model.model``)
-------------------------------------------------------
The foundation's architecture, cutoff (r_max), scale and shift are kept; its weights are copied
with ``mace.tools.finetuning_utils.load_foundations_elements`` restricted to the elements of the
data (each must be known to the foundation: otherwise an error naming the files). The E0s follow
``foundation_e0s``:

* ``estimated`` (default): mace's ``estimate_e0s_from_foundation`` — the foundation's E0s plus a
  least-squares correction per element that makes its predicted energies match the new training
  energies on average. Use it when the new data come from another reference (code, functional,
  pseudopotentials) whose energy zero differs.
* ``foundation``: the foundation's own E0s (same reference as the foundation's training data).
* ``data``: the E0s of the data section (user-given or fitted).

Multihead and freeze fine-tuning (``finetune.mode``) are set up in :mod:`phonion.mlip.finetune`;
``build_model(..., heads=("pt_head", "Default"))`` builds mace's multihead model (the foundation's
readout copied into every head) with the foundation's E0s on the replay head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_TYPES = ("MACE", "ScaleShiftMACE")
FOUNDATION_E0S = ("estimated", "foundation", "data")


@dataclass(frozen=True)
class ModelConfig:
    """The ``model:`` section of configs/train.yaml (names as in ``mace_run_train``)."""

    type: str = "ScaleShiftMACE"
    r_max: float = 5.0
    num_channels: int = 64
    max_L: int = 1
    max_ell: int = 3
    correlation: int = 3
    num_interactions: int = 2
    num_radial_basis: int = 8
    num_cutoff_basis: int = 5
    radial_MLP: tuple[int, ...] = (64, 64, 64)
    MLP_irreps: str = "16x0e"
    interaction: str = "RealAgnosticResidualInteractionBlock"
    interaction_first: str = "RealAgnosticResidualInteractionBlock"
    gate: str = "silu"
    scaling: str = "rms_forces_scaling"
    pair_repulsion: bool = False
    distance_transform: str = "None"
    foundation: str | None = None
    foundation_head: str | None = None
    foundation_e0s: str = "estimated"
    foundation_dtype: str = "strict"  # strict: a foundation stored in another dtype is an error | convert (mace's way)

    def __post_init__(self):
        object.__setattr__(self, "radial_MLP", tuple(int(x) for x in self.radial_MLP))
        if self.type not in MODEL_TYPES:
            raise ValueError(f"model.type must be one of {MODEL_TYPES}, got {self.type!r}")
        if self.foundation_e0s not in FOUNDATION_E0S:
            raise ValueError(f"model.foundation_e0s must be one of {FOUNDATION_E0S}, got {self.foundation_e0s!r}")
        if self.foundation_dtype not in ("strict", "convert"):
            raise ValueError(f"model.foundation_dtype must be strict or convert, got {self.foundation_dtype!r}")
        if self.r_max <= 0 or self.num_channels < 1 or self.max_L < 0 or self.correlation < 1:
            raise ValueError("model: r_max > 0, num_channels ≥ 1, max_L ≥ 0, correlation ≥ 1 required")


def load_foundation(cfg: ModelConfig, dtype: str | None = None):
    """The foundation model (a file or a mace name, see :mod:`phonion.mlip.foundation`), or None when
    training from scratch; with ``dtype`` its precision must match (a ValueError otherwise)."""
    if cfg.foundation is None:
        return None
    import mace  # noqa: F401  (before e3nn / torch.load of e3nn objects)
    import torch

    from phonion.mlip.foundation import check_foundation_dtype, resolve_foundation

    path = Path(resolve_foundation(str(cfg.foundation)))
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - pickle / zip errors
        raise ValueError(f"model.foundation: {path}: cannot be loaded as a MACE model: {exc}") from exc
    if not all(hasattr(model, a) for a in ("atomic_numbers", "r_max", "interactions")):
        raise ValueError(f"model.foundation: {path}: not a MACE model ({type(model).__name__})")
    if dtype is not None and cfg.foundation_dtype == "strict":
        check_foundation_dtype(model, dtype, str(path))
    elif dtype is not None:  # convert: cast, as mace_run_train does
        model = model.double() if dtype == "float64" else model.float()
    if len(getattr(model, "heads", ["Default"])) > 1:
        from mace.tools.scripts_utils import remove_pt_head

        try:
            model = remove_pt_head(model, cfg.foundation_head)
        except ValueError as exc:
            raise ValueError(f"model.foundation_head: {path}: {exc} (heads: {model.heads})") from None
    model.phonion_source = str(path)
    return model


def model_r_max(cfg: ModelConfig, foundation=None) -> float:
    """The cutoff the graphs must be built with: the foundation's when fine-tuning."""
    return float(foundation.r_max) if foundation is not None else float(cfg.r_max)


def _mace_args(cfg: ModelConfig, loss_name: str, dtype: str):
    """mace_run_train's argument namespace with this config's values (mace's defaults elsewhere)."""
    from mace.tools import build_default_arg_parser, check_args

    args = build_default_arg_parser().parse_args(["--name", "phonion", "--train_file", "unused.xyz"])
    args.model, args.r_max, args.num_channels, args.max_L = cfg.type, float(cfg.r_max), cfg.num_channels, cfg.max_L
    args.max_ell, args.correlation, args.num_interactions = cfg.max_ell, cfg.correlation, cfg.num_interactions
    args.num_radial_basis, args.num_cutoff_basis = cfg.num_radial_basis, cfg.num_cutoff_basis
    args.radial_MLP, args.MLP_irreps = str(list(cfg.radial_MLP)), cfg.MLP_irreps
    args.interaction, args.interaction_first, args.gate = cfg.interaction, cfg.interaction_first, cfg.gate
    args.scaling, args.pair_repulsion = cfg.scaling, cfg.pair_repulsion
    args.distance_transform, args.loss, args.default_dtype = cfg.distance_transform, loss_name, dtype
    args.work_dir = args.log_dir = args.model_dir = args.checkpoints_dir = args.results_dir = "."
    args.compute_energy, args.compute_forces = True, True
    args.compute_dipole = args.compute_polarizability = False
    args, _ = check_args(args)
    return args


def build_model(cfg: ModelConfig, dataset, stats_loader, *, foundation=None, loss_name: str = "weighted",
                dtype: str = "float64", heads=("Default",), extra_zs=()):
    """Build the mace model for ``dataset``.

    Parameters
    ----------
    cfg : ModelConfig
    dataset : phonion.mlip.data.Dataset (elements, E0s, training frames)
    stats_loader : mace DataLoader over the training graphs (statistics: mean, scale, neighbours)
    foundation : model from ``load_foundation`` for fine-tuning, or None
    loss_name : mace loss name (``stress``/``huber``/``universal`` make the model output stress)
    dtype : "float64" | "float32" (the torch default dtype must already be set to it)
    heads : mace head names; ``("pt_head", "Default")`` for multihead fine-tuning (mace's order)
    extra_zs : elements of replay data beyond the data's (foundation E0s on every head)

    Returns
    -------
    model : mace ScaleShiftMACE
    info : dict, JSON-ready: parameters, irreps, r_max, E0s (eV), scale/shift, avg neighbours
    """
    import torch
    from ase.data import chemical_symbols
    from mace import modules
    from mace.tools import AtomicNumberTable
    from mace.tools.model_script_utils import configure_model
    from mace.tools.scripts_utils import dict_to_array

    from phonion.mlip.data import check_elements

    if foundation is not None:
        check_elements(dataset.zs, foundation.atomic_numbers.tolist(), dataset,
                       what=f"the foundation model {cfg.foundation}")
    args = _mace_args(cfg, loss_name, dtype)
    heads = list(heads)
    z_table = AtomicNumberTable(sorted({int(z) for z in dataset.zs} | {int(z) for z in extra_zs}))
    e0s = _e0s(cfg, dataset, foundation, AtomicNumberTable(list(dataset.zs)))
    e0_heads = {"Default": e0s}
    if foundation is not None:
        found = _foundation_e0s(foundation)
        e0s.update({z: found[z] for z in z_table.zs if z not in e0s})
        e0_heads.update({h: {z: found[z] for z in z_table.zs} for h in heads if h != "Default"})
    atomic_energies = dict_to_array(e0_heads, heads)
    if foundation is None:
        args.avg_num_neighbors = modules.compute_avg_num_neighbors(stats_loader)
    else:
        args.r_max = float(foundation.r_max)
    model, output_args = configure_model(args, stats_loader, atomic_energies, foundation, heads, z_table)
    # mace's load_foundations_elements copies every foundation buffer of matching shape, the E0s
    # included when data and foundation have as many elements: put the chosen E0s back
    with torch.no_grad():
        buf = model.atomic_energies_fn.atomic_energies
        buf.copy_(torch.as_tensor(atomic_energies, dtype=buf.dtype).reshape(buf.shape))
    model = model.to(torch.get_default_dtype())
    info = {
        "type": type(model).__name__, "config_type": cfg.type,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "hidden_irreps": str(model.products[0].linear.irreps_out), "r_max_A": float(model.r_max),
        "num_interactions": int(model.num_interactions), "avg_num_neighbors": float(
            model.interactions[0].avg_num_neighbors),
        "e0s_eV": {chemical_symbols[z]: float(e) for z, e in e0s.items()},
        "e0s_source": (dataset.e0s_source if foundation is None or cfg.foundation_e0s == "data"
                       else f"{cfg.foundation_e0s} (from foundation)"),
        "scale": np.atleast_1d(model.scale_shift.scale.detach().cpu().numpy()).tolist(),
        "shift": np.atleast_1d(model.scale_shift.shift.detach().cpu().numpy()).tolist(),
        "foundation": None if foundation is None else str(cfg.foundation),
        "foundation_file": getattr(foundation, "phonion_source", None), "heads": list(model.heads),
        "outputs": {k: bool(v) for k, v in output_args.items()},
    }
    return model, info


def _e0s(cfg: ModelConfig, dataset, foundation, z_table) -> dict:
    """E0s (atomic number → eV) for the model, following ``cfg.foundation_e0s`` when fine-tuning."""
    if foundation is None or cfg.foundation_e0s == "data":
        return {int(z): float(e) for z, e in dataset.e0s.items()}
    found = _foundation_e0s(foundation)
    if cfg.foundation_e0s == "foundation":
        return {int(z): found[int(z)] for z in z_table.zs}
    from mace.data import config_from_atoms, estimate_e0s_from_foundation

    from phonion.mlip.data import keyspec

    configs = [config_from_atoms(a, keyspec()) for a in dataset.train]
    est = estimate_e0s_from_foundation(foundation, found, configs, z_table, device="cpu")
    return {int(z): float(est[z]) for z in z_table.zs}



def _foundation_e0s(foundation) -> dict:
    """Atomic number → E0 (eV) of the foundation (its first head, as mace_run_train takes it)."""
    from mace.tools import AtomicNumberTable

    table_f = AtomicNumberTable([int(z) for z in foundation.atomic_numbers])
    energies = foundation.atomic_energies_fn.atomic_energies.detach().cpu().numpy()
    energies = energies.reshape(-1, len(table_f))[0]
    return {int(z): float(energies[table_f.z_to_index(z)]) for z in table_f.zs}
