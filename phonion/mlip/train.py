"""``phonion train``: train or fine-tune a MACE potential on trajectory frames with Lightning.

``TrainConfig`` (frozen) is read from ``configs/train.yaml``; ``key.sub=value`` arguments override
it (``phonion train --config configs/train.yaml model.num_channels=32 trainer.max_epochs=5``).
``run(cfg)`` composes ``build_dataset`` → ``build_model`` → ``build_loss`` → ``MACEModule`` and a
Lightning ``Trainer``, then exports. Output directory (``output``):

``model.model``      the bare mace model with EMA weights of the best epoch (lowest ``val_loss``, as
                     mace exports), ``torch.save``-d in ``export.dtype``: ``MACECalculator(model_paths=...)``
                     and ``phonion ... --calculator mace:DIR/model.model`` load it
``metrics.json``     val/test errors of that model (``phonion.mlip.evaluate``, MACECalculator), timings, data, model;
                     when fine-tuning, ``replay``: errors of the foundation and of the model on held-out replay
                     frames (the forgetting measure, :mod:`phonion.mlip.finetune`)
``parity_*.png``     energy and force parity plots on the test split (validation if no test)
``splits/``          validation and test frames per run as extxyz (``phonion evaluate`` reproduces metrics)
``checkpoints/``     ``last.ckpt`` (every epoch) and ``best-*.ckpt`` (weights, optimiser, scheduler, EMA)
``logs/``            CSV metrics per session and the offline wandb run (``wandb.mode``: offline by
                     default; ``online`` syncs; ``disabled``)
``config.yaml``      the resolved configuration

Resume: with ``trainer.resume: true`` (default) a run finds ``checkpoints/last.ckpt`` (or, if that file
is unreadable, the newest readable ``*.ckpt``) and continues from it: epoch counter, optimiser,
LR schedule, EMA, early-stopping state. After ``kill -9`` rerun the same command. Shuffling is
seeded per epoch (seed + epoch), so a resumed run draws the same batches as an uninterrupted one.
Distributed: ``trainer.strategy/devices/num_nodes/accelerator`` go to the Trainer unchanged (DDP
shards the data with Lightning's DistributedSampler).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phonion.core.config import apply_overrides, check_keys, read_yaml  # noqa: F401  (apply_overrides re-exported)
from phonion.mlip.data import DataConfig
from phonion.mlip.finetune import FinetuneConfig, check_mode
from phonion.mlip.optim_config import LossConfig, OptimConfig, check_numbers  # noqa: F401  (re-exported)
from phonion.mlip.model import ModelConfig
from phonion.mlip.train_export import correct_energy_zero, export_lammps, export_model  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class TrainerConfig:
    """The ``trainer:`` section: Lightning Trainer settings and data loading."""

    max_epochs: int = 200
    batch_size: int = 8
    val_batch_size: int = 16
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    gradient_clip_val: float | None = 10.0
    patience: int = 50
    monitor: str = "val_loss"
    num_workers: int = 0
    drop_last: bool = True
    resume: bool = True
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    progress_bar: bool = True
    num_threads: int | None = None


@dataclass(frozen=True)
class WandbConfig:
    """The ``wandb:`` section. ``mode``: offline (default, never asks for a key) | online | disabled."""

    mode: str = "offline"
    project: str = "phonion"
    name: str | None = None
    entity: str | None = None


@dataclass(frozen=True)
class ExportConfig:
    """The ``export:`` section."""

    dtype: str = "float64"
    which: str = "best"
    refit_e0s: bool = True  # refit the per-element energy zero on the training frames (correct_energy_zero)
    lammps: bool = False
    parity_plots: bool = True
    device: str = "cpu"


@dataclass(frozen=True)
class TrainConfig:
    """One training run (see configs/train.yaml)."""

    output: str = "train-run"
    seed: int = 123
    dtype: str = "float64"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self):
        if self.dtype not in ("float64", "float32") or self.export.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype and export.dtype must be float64 or float32, got {self.dtype}, {self.export.dtype}")
        if self.wandb.mode not in ("offline", "online", "disabled"):
            raise ValueError(f"wandb.mode must be offline, online or disabled, got {self.wandb.mode!r}")
        if self.export.which not in ("best", "last"):
            raise ValueError(f"export.which must be best or last, got {self.export.which!r}")
        check_numbers(self)
        check_mode(self)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig,
            "trainer": TrainerConfig, "wandb": WandbConfig, "export": ExportConfig, "finetune": FinetuneConfig}


def _section(cls, data: dict, where: str):
    """``cls(**data)`` with unknown keys named, and numbers YAML left as text (``5e-07``) converted."""
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    check_keys(data, types, where)
    out = {}
    for key, value in data.items():
        kind = types[key].split(" | ")[0]
        if isinstance(value, str) and kind in ("float", "int"):
            try:
                value = float(value) if kind == "float" else int(value)
            except ValueError:
                raise ValueError(f"{where}.{key}: expected a number, got {value!r}") from None
        out[key] = value
    return cls(**out)


def config_from_dict(data: dict) -> TrainConfig:
    """TrainConfig from a nested mapping; unknown sections or keys are errors naming them."""
    data = dict(data)
    sections = {name: _section(cls, data.pop(name, None) or {}, name) for name, cls in SECTIONS.items()}
    return _section(TrainConfig, {**data, **sections}, "train config")


def load_config(path=None, overrides=()) -> TrainConfig:
    """Read configs/train.yaml-style YAML (or defaults without a path) and apply overrides."""
    data = read_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(data, overrides))


# ---- pieces of a run ----------------------------------------------------------------------------
class EpochShuffle:
    """Random order seeded by (seed, epoch): a resumed run draws the same batches (Lightning calls set_epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        import torch

        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def resume_checkpoint(directory: Path) -> str | None:
    """``last.ckpt`` if readable, else the newest readable ``*.ckpt``; None when there is none."""
    import torch

    directory = Path(directory)
    candidates = [directory / "last.ckpt"] + sorted(
        (p for p in directory.glob("*.ckpt") if p.name != "last.ckpt"), key=lambda p: -p.stat().st_mtime)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - a checkpoint torn by a kill: try the next one
            continue
        return str(path)
    return None


def build_trainer(cfg: TrainConfig, out: Path):
    """The Lightning Trainer with checkpointing, early stopping, CSV + wandb loggers, progress bar."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger

    t = cfg.trainer
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best-{epoch:04d}", monitor=t.monitor,
                           mode="min", save_top_k=1, save_last=True)
    callbacks = [ckpt, LearningRateMonitor(logging_interval="epoch")]
    if t.patience > 0:
        callbacks.append(EarlyStopping(monitor=t.monitor, mode="min", patience=t.patience))
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    loggers = [CSVLogger(save_dir=out / "logs", name="csv")]
    if cfg.wandb.mode != "disabled":
        loggers.append(_wandb_logger(cfg, out))
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, gradient_clip_val=t.gradient_clip_val, gradient_clip_algorithm="norm",
        callbacks=callbacks, logger=loggers, default_root_dir=out, inference_mode=False,
        num_sanity_val_steps=0, check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps, enable_progress_bar=t.progress_bar, enable_model_summary=False)
    return trainer, ckpt


def _wandb_logger(cfg: TrainConfig, out: Path):
    """WandbLogger, offline unless wandb.mode=online; the run id is kept so a resumed run continues it.

    This is the one place that sets ``WANDB_MODE`` (at run time, never at import): offline, so wandb never asks
    for a key, unless the user set ``WANDB_MODE`` themselves or chose ``wandb.mode: online``.
    """
    from lightning.pytorch.loggers import WandbLogger

    if cfg.wandb.mode == "offline":
        os.environ.setdefault("WANDB_MODE", "offline")
    id_file = out / "logs" / "wandb_run_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    if run_id is None:
        import uuid

        run_id = uuid.uuid4().hex[:8]
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id)
    return WandbLogger(project=cfg.wandb.project, name=cfg.wandb.name, entity=cfg.wandb.entity,
                       save_dir=str(out / "logs"), offline=cfg.wandb.mode == "offline", id=run_id,
                       resume="allow", config=cfg.to_dict())


def _loaders(cfg: TrainConfig, graphs: dict, distributed: bool):
    from mace.tools import torch_geometric

    t = cfg.trainer
    if len(graphs["train"]) < t.batch_size and t.drop_last:
        raise ValueError(f"{len(graphs['train'])} training frames < trainer.batch_size {t.batch_size}: "
                         "lower the batch size or give more frames")
    sampler = None if distributed else EpochShuffle(len(graphs["train"]), cfg.seed)
    train = torch_geometric.dataloader.DataLoader(graphs["train"], batch_size=t.batch_size, sampler=sampler,
                                                  shuffle=distributed, drop_last=t.drop_last,
                                                  num_workers=t.num_workers)
    val = torch_geometric.dataloader.DataLoader(graphs["val"], batch_size=t.val_batch_size, shuffle=False,
                                                num_workers=t.num_workers)
    stats = torch_geometric.dataloader.DataLoader(graphs["train"], batch_size=t.val_batch_size, shuffle=False)
    return train, val, stats


# ---- the run ------------------------------------------------------------------------------------
def run(cfg: TrainConfig) -> dict:
    """Train (or resume, or fine-tune) and export; returns what metrics.json holds.

    ``trainer.num_threads`` sets torch's CPU threads for the run (restored afterwards); 1 is much
    faster than the default on a CPU shared with other jobs (OpenMP threads wait on each other).
    """
    import torch

    from phonion.core.threads import threads

    dtype = torch.get_default_dtype()
    with threads(cfg.trainer.num_threads, env=False):
        try:
            return _run(cfg)
        finally:
            torch.set_default_dtype(dtype)


def _check_resumable(out: Path, cfg: TrainConfig, ckpt: str | None) -> None:
    """A checkpoint may only be continued with the same data, model, loss and dtype."""
    import yaml

    old_path = out / "config.yaml"
    if ckpt is None or not old_path.is_file():
        return
    old, new = yaml.safe_load(old_path.read_text()) or {}, cfg.to_dict()
    # keys a run made by an older phonion did not have are not differences (their defaults keep the meaning)
    diff = [f"{sec}.{k}" for sec in ("data", "model", "loss", "finetune") for k in new[sec]
            if k in (old.get(sec) or {}) and old[sec][k] != new[sec][k]] + [
        k for k in ("dtype",) if old.get(k) != new[k]]
    if diff:
        raise ValueError(f"{ckpt}: the run in {out} has other settings ({', '.join(diff)}); choose another "
                         "output directory or set trainer.resume=false to start afresh there")


def _run(cfg: TrainConfig) -> dict:
    import mace  # noqa: F401  (before e3nn)
    import lightning.pytorch as pl
    import torch
    import yaml
    from mace.tools import set_default_dtype

    from phonion.mlip.data import build_dataset, to_atomic_data
    from phonion.mlip.evaluate import evaluate_model, plot_parity, write_splits
    from phonion.mlip.lightning_module import MACEModule, build_loss
    from phonion.mlip import finetune
    from phonion.mlip.model import build_model, load_foundation, model_r_max

    t0 = time.perf_counter()
    foundation = load_foundation(cfg.model, cfg.dtype)  # a name, a file, its dtype: before anything is written
    out = Path(cfg.output)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    resume = resume_checkpoint(out / "checkpoints") if cfg.trainer.resume else None
    _check_resumable(out, cfg, resume)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    set_default_dtype(cfg.dtype)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dataset = build_dataset(cfg.data)
    ft = finetune.prepare(cfg, dataset, foundation)  # elements, replay frames: all checks before training
    r_max, zs = model_r_max(cfg.model, ft.foundation), ft.zs(dataset)
    graphs = {s: to_atomic_data(dataset.split(s), zs, r_max, heads=list(ft.heads)) for s in ("train", "val")}
    graphs["train"] += finetune.replay_graphs(ft, zs, r_max)
    trainer, ckpt_cb = build_trainer(cfg, out)
    train_loader, val_loader, stats_loader = _loaders(cfg, graphs, trainer.world_size > 1)
    loss_fn, compute_stress, name = build_loss(cfg.loss, dataset.has_stress)
    model, model_info = build_model(cfg.model, dataset, stats_loader, foundation=ft.foundation, loss_name=name,
                                    dtype=cfg.dtype, heads=ft.heads, extra_zs=zs)
    model_info["finetune_mode"] = None if ft.foundation is None else cfg.finetune.mode
    module = MACEModule(model, loss_fn, cfg.optim, compute_stress=compute_stress,
                        max_epochs=cfg.trainer.max_epochs, freeze=ft.freeze)
    t_fit = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume)
    fit_s = time.perf_counter() - t_fit
    if not trainer.is_global_zero:
        return {}
    best = ckpt_cb.best_model_path or None
    source = best if cfg.export.which == "best" and best else resume_checkpoint(out / "checkpoints")
    model_path = export_model(module, source, out / "model.model", cfg.export.dtype)
    energy_zero = correct_energy_zero(model_path, dataset.train, cfg.export.dtype) if cfg.export.refit_e0s else {}
    splits = write_splits(dataset, out / "splits")
    metrics = {"model_file": str(model_path), "exported_from": source, "energy_zero_refit": energy_zero}
    for split in ("val", "test"):
        if dataset.split(split):
            metrics[split], pred = evaluate_model(model_path, dataset.split(split), device=cfg.export.device,
                                                  dtype=cfg.export.dtype)
            if cfg.export.parity_plots and (split == "test" or not dataset.test):
                metrics["parity_plots"] = [str(p) for p in plot_parity(pred, out / "parity", title=split)]
    metrics["training"] = {
        "epochs_completed": int(trainer.current_epoch), "global_steps": int(trainer.global_step),
        "resumed_from": resume, "best_checkpoint": best,
        "best_val_loss": None if ckpt_cb.best_model_score is None else float(ckpt_cb.best_model_score),
        "fit_wall_s": fit_s, "total_wall_s": time.perf_counter() - t0,
        "device": str(module.device), "torch_threads": torch.get_num_threads(), "dtype": cfg.dtype,
        "loss": name, "world_size": int(trainer.world_size), "strategy": type(trainer.strategy).__name__}
    if cfg.export.lammps:
        metrics["training"].update(export_lammps(model_path))
    metrics["replay"] = finetune.replay_metrics(ft, model_path, cfg.export.dtype, cfg.finetune.replay.weight)
    metrics["model"], metrics["data"] = model_info, dataset.summary()
    metrics["data"]["split_files"] = [str(p) for p in splits]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    if cfg.wandb.mode != "disabled":
        import wandb

        wandb.finish()
    return metrics
