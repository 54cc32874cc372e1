"""``finetune:``: how a foundation model (``model.foundation``) is fine-tuned, and its replay data.

Modes (``finetune.mode``)
-------------------------
``naive``      all weights train on the user's data (phonion's behaviour before this section existed).
``multihead``  mace's multihead fine-tuning (``mace_run_train --multiheads_finetuning``): the model gets
               two heads, ``pt_head`` (mace's name for the replay head; E0s of the foundation) and
               ``Default`` (the user's data), each starting from the foundation's readout
               (``mace.tools.model_script_utils.configure_model`` with both heads). The replay frames are
               trained on ``pt_head`` with mace's per-configuration weight ``finetune.replay.weight``
               (``Configuration.weight`` — the role of ``--weight_pt_head``), so the shared layers keep
               what the foundation knew. The export keeps only ``Default`` (mace's ``remove_pt_head``).
``freeze``     mace's ``--freeze`` (``finetune.freeze_level``, 5 by default: embedding and interaction
               blocks frozen, the product basis and readouts — the last layers — train).

Replay data (``finetune.replay``)
---------------------------------
``files``: labelled frames of the foundation's own domain (any format phonion reads: extxyz, H5MD, ...;
mace's ``--pt_train_file``). Without files, replay frames are made here with no download: training
structures of the user's data, strained (±``strain``, symmetric) and rattled (``rattle_A``), optionally
run ``md_steps`` Langevin steps with the foundation at the data's temperatures, then labelled by the
foundation itself with mace's ``generate_pseudolabels_for_configs`` (mace's ``--pseudolabel_replay``).
mace has no generator of such configurations — its replay comes from a download of Materials Project
frames (``assemble_replay_data``), which is not possible offline, so this small part is written here.

Every fine-tuning run (any mode) holds out ``holdout_fraction`` of the replay frames and writes the
``replay`` block of metrics.json: the errors of the foundation and of the exported model on them
(the forgetting measure; for pseudo-labels the "before" errors are ~0 by construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

MODES = ("naive", "multihead", "freeze")


@dataclass(frozen=True)
class ReplayConfig:
    """The ``finetune.replay:`` section."""

    files: tuple[str, ...] = ()
    format: str | None = None
    n_configs: int = 64
    weight: float = 1.0
    rattle_A: float = 0.05
    strain: float = 0.02
    md_steps: int = 0
    md_timestep_fs: float = 1.0
    temperatures_K: tuple[float, ...] = ()
    holdout_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        files = (self.files,) if isinstance(self.files, str) else tuple(str(f) for f in self.files or ())
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "temperatures_K", tuple(float(t) for t in self.temperatures_K or ()))
        if not (isinstance(self.weight, (int, float)) and np.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"finetune.replay.weight must be > 0, got {self.weight!r}; it weighs the replay "
                             "frames against the new data (mace's --weight_pt_head); use mode=naive for none")
        if int(self.n_configs) != self.n_configs or self.n_configs < 0 or self.md_steps < 0:
            raise ValueError(f"finetune.replay.n_configs and md_steps must be integers ≥ 0, got "
                             f"{self.n_configs!r}, {self.md_steps!r}")
        if self.rattle_A < 0 or not 0 <= self.strain < 0.5 or not 0 <= self.holdout_fraction < 1:
            raise ValueError("finetune.replay: rattle_A ≥ 0, 0 ≤ strain < 0.5 and 0 ≤ holdout_fraction < 1, "
                             f"got {self.rattle_A}, {self.strain}, {self.holdout_fraction}")


@dataclass(frozen=True)
class FinetuneConfig:
    """The ``finetune:`` section (used only with ``model.foundation``)."""

    mode: str = "naive"
    freeze_level: int = 5
    replay: ReplayConfig = field(default_factory=ReplayConfig)

    def __post_init__(self):
        from phonion.core.config import check_keys, coerce

        if isinstance(self.replay, dict):
            check_keys(self.replay, [f.name for f in fields(ReplayConfig)], "finetune.replay")
            object.__setattr__(self, "replay", ReplayConfig(**coerce(ReplayConfig, self.replay)))
        if self.mode not in MODES:
            raise ValueError(f"finetune.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if int(self.freeze_level) != self.freeze_level or not 1 <= self.freeze_level <= 7:
            raise ValueError(f"finetune.freeze_level must be an integer 1..7 (mace's --freeze), got "
                             f"{self.freeze_level!r}")


@dataclass
class Setup:
    """What ``prepare`` found: the foundation, the heads, replay frames for training and for metrics."""

    foundation: object = None
    heads: tuple[str, ...] = ("Default",)
    replay_train: list = field(default_factory=list)
    replay_test: list = field(default_factory=list)
    replay_source: str | None = None
    freeze: int | None = None

    def zs(self, dataset) -> tuple[int, ...]:
        """The model's elements: the data's plus those of the replay frames."""
        zs = {int(z) for z in dataset.zs}
        for a in self.replay_train + self.replay_test:
            zs.update(int(z) for z in a.numbers)
        return tuple(sorted(zs))


def check_mode(cfg) -> None:
    """``finetune.mode`` other than naive needs a foundation (TrainConfig calls this)."""
    if cfg.finetune.mode != "naive" and cfg.model.foundation is None:
        raise ValueError(f"finetune.mode={cfg.finetune.mode} fine-tunes a foundation model: set "
                         "model.foundation (a .model file or a mace name such as medium-mpa-0)")


def prepare(cfg, dataset, foundation=None) -> Setup:
    """Check the foundation (``load_foundation``'s, loaded here when not given: name or file, dtype)
    against the data and make the replay frames; every check fails here, before any training."""
    from phonion.mlip.data import check_elements
    from phonion.mlip.model import load_foundation

    foundation = foundation if foundation is not None else load_foundation(cfg.model, cfg.dtype)
    if foundation is None:
        return Setup()
    found_zs = foundation.atomic_numbers.tolist()
    check_elements(dataset.zs, found_zs, dataset, what=f"the foundation model {cfg.model.foundation}")
    ft, rc = cfg.finetune, cfg.finetune.replay
    if rc.files:
        from phonion.mlip.evaluate import frames_from_files

        frames = frames_from_files(list(rc.files), fmt=rc.format)
        srcs = {f: sorted({int(z) for a in frames if a.info["source_file"] == f for z in a.numbers}) for f in rc.files}
        check_elements(sorted({z for zs in srcs.values() for z in zs}), found_zs,
                       what=f"the foundation model {cfg.model.foundation}", sources=srcs)
        source = "files: " + ", ".join(rc.files)
    elif rc.n_configs > 0:
        frames = pseudo_replay(foundation, dataset, rc, cfg.dtype, seed=cfg.seed + rc.seed)
        source = (f"pseudo-labels of the foundation on {rc.n_configs} strained (±{rc.strain}) and rattled "
                  f"({rc.rattle_A} Å) training structures" + (f", {rc.md_steps} MD steps" if rc.md_steps else ""))
    else:
        frames, source = [], None
    if ft.mode == "multihead" and not frames:
        raise ValueError("finetune.mode=multihead needs replay frames: give finetune.replay.files or "
                         "finetune.replay.n_configs > 0")
    n_test = int(round(rc.holdout_fraction * len(frames)))
    test_idx = set(np.linspace(0, len(frames) - 1, n_test).round().astype(int).tolist()) if n_test else set()
    train = [a for i, a in enumerate(frames) if i not in test_idx]
    for a in train:
        a.info["config_weight"] = float(rc.weight)  # mace's per-configuration loss weight
    return Setup(foundation=foundation, heads=("pt_head", "Default") if ft.mode == "multihead" else ("Default",),
                 replay_train=train, replay_test=[frames[i] for i in sorted(test_idx)], replay_source=source,
                 freeze=int(ft.freeze_level) if ft.mode == "freeze" else None)


def replay_graphs(setup: Setup, zs, r_max: float) -> list:
    """mace graphs of the replay training frames on the replay head (multihead only)."""
    from phonion.mlip.data import to_atomic_data

    if "pt_head" not in setup.heads:
        return []
    return to_atomic_data(setup.replay_train, zs, r_max, heads=list(setup.heads), head_name="pt_head")


def _perturbed(dataset, rc: ReplayConfig, rng) -> list:
    """Strained and rattled copies of training structures, labels removed."""
    from ase import Atoms

    base = dataset.train
    picks = rng.choice(len(base), size=int(rc.n_configs), replace=rc.n_configs > len(base))
    out = []
    for i in picks:
        src = base[int(i)]
        a = Atoms(numbers=src.numbers, positions=src.positions, cell=src.cell, pbc=src.pbc)
        eps = rng.uniform(-rc.strain, rc.strain, (3, 3))
        if a.pbc.all():
            a.set_cell(np.asarray(a.cell) @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        a.positions += rng.normal(0.0, rc.rattle_A, a.positions.shape)
        a.info["temperature_K"] = float(src.info.get("temperature_K", np.nan))
        out.append(a)
    return out


def _run_md(frames, foundation, rc: ReplayConfig, dtype: str, temps, rng) -> None:
    """A few Langevin steps of each frame with the foundation (ASE MD, mace's calculator), in place."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from mace.calculators import MACECalculator

    grads = [p.requires_grad for p in foundation.parameters()]
    calc = MACECalculator(models=[foundation], device="cpu", default_dtype=dtype)
    for k, a in enumerate(frames):
        temp = temps[k % len(temps)]
        a.calc = calc
        MaxwellBoltzmannDistribution(a, temperature_K=temp, rng=rng)
        Langevin(a, rc.md_timestep_fs * units.fs, temperature_K=temp, friction=0.02,
                 rng=rng).run(int(rc.md_steps))
        a.info["temperature_K"] = temp
        a.calc = None
    for p, g in zip(foundation.parameters(), grads):  # MACECalculator switched gradients off
        p.requires_grad_(g)


def pseudo_replay(foundation, dataset, rc: ReplayConfig, dtype: str, seed: int) -> list:
    """Replay frames labelled by the foundation (mace's ``generate_pseudolabels_for_configs``)."""
    import torch
    from ase.stress import full_3x3_to_voigt_6_stress
    from mace.data import config_from_atoms
    from mace.tools import AtomicNumberTable
    from mace.tools.multihead_tools import generate_pseudolabels_for_configs

    from phonion.mlip.data import KEYS, keyspec

    rng = np.random.default_rng(seed)
    frames = _perturbed(dataset, rc, rng)
    if rc.md_steps:
        temps = list(rc.temperatures_K) or sorted({r.temperature_K for r in dataset.runs if r.temperature_K}) or [300.0]
        _run_md(frames, foundation, rc, dtype, temps, rng)
    configs = [config_from_atoms(a, keyspec()) for a in frames]
    table = AtomicNumberTable(sorted(int(z) for z in foundation.atomic_numbers))
    old = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # graphs in the model's dtype, also outside train.run
    try:
        labelled = generate_pseudolabels_for_configs(foundation, configs, table, float(foundation.r_max),
                                                     torch.device("cpu"), batch_size=8,
                                                     force_stress=dataset.has_stress)
    finally:
        torch.set_default_dtype(old)
    for a, c in zip(frames, labelled):
        if c.properties.get("energy") is None or c.properties.get("forces") is None:
            raise ValueError(f"model.foundation: {foundation.phonion_source}: could not label replay frames "
                             "(mace's generate_pseudolabels_for_configs failed; see the log above)")
        a.info[KEYS["energy"]] = float(c.properties["energy"])
        a.arrays[KEYS["forces"]] = np.asarray(c.properties["forces"], dtype=float)
        if dataset.has_stress and c.properties.get("stress") is not None:
            a.info[KEYS["stress"]] = full_3x3_to_voigt_6_stress(np.asarray(c.properties["stress"]).reshape(3, 3))
    return frames


def replay_metrics(setup: Setup, model_path, dtype: str, weight: float) -> dict | None:
    """metrics.json's ``replay`` block: errors of the foundation (before) and of the exported model
    (after) on the held-out replay frames; ``force_rmse_ratio`` = after / before (forgetting)."""
    if setup.foundation is None or not setup.replay_test:
        return None
    from mace.calculators import MACECalculator

    from phonion.mlip.evaluate import error_metrics, evaluate_model, predict

    before = error_metrics(predict(MACECalculator(models=[setup.foundation], device="cpu", default_dtype=dtype),
                                   setup.replay_test))
    after, _ = evaluate_model(model_path, setup.replay_test, dtype=dtype)
    after = after.get("all", after)
    fb, fa = before["force_rmse_meV_A"], after["force_rmse_meV_A"]
    return {"source": setup.replay_source, "n_train": len(setup.replay_train), "n_test": len(setup.replay_test),
            "weight": weight, "heads": list(setup.heads), "before": before, "after": after,
            "force_rmse_ratio": fa / fb if fb > 0 else None,
            "note": "before: the foundation; after: the exported model (Default head) on held-out replay frames"
                    + ("; pseudo-labels, so before is ~0 by construction" if "pseudo" in str(setup.replay_source)
                       else "")}
