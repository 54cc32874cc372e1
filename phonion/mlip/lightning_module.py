"""Step logic for training a mace model with Lightning: loss, EMA, optimiser, LR schedule, metrics.

The network, the loss and the optimiser's parameter groups are mace's own
(``mace.modules.*Loss``, ``mace.tools.scripts_utils.get_params_options`` / ``get_optimizer``),
so one step here is one step of ``mace_run_train`` (``mace.tools.train.take_step``):
forward with ``training=True`` → loss → backward → gradient clipping (the Trainer's
``gradient_clip_val``, norm) → optimiser step → EMA update.

EMA: ``torch_ema.ExponentialMovingAverage`` over the model parameters (decay ``ema_decay``, with
torch_ema's warm-up min(decay, (1+n)/(10+n)) as in mace). Validation runs on the EMA weights
(swapped in at the start of each validation epoch, swapped out at its end); checkpoints hold the
raw weights plus the EMA state (key ``ema``), so resuming continues exactly; the exported model
carries the EMA weights (``ema_weights``).

Metrics logged each validation epoch (EMA weights): ``val_loss`` (mace's loss),
``val_energy_mae_meV_atom``, ``val_energy_rmse_meV_atom``, ``val_force_mae_meV_A``,
``val_force_rmse_meV_A`` (over Cartesian components), and ``val_stress_rmse_GPa`` when stress is
trained.

dtype: mace sets the torch default dtype (``torch.set_default_dtype``) before data and model are
built; ``phonion.mlip.train.run`` does the same, and the Trainer keeps its default precision plugin,
which does not cast. Forces are gradients, so the Trainer must run validation with
``inference_mode=False``; the validation step re-enables autograd.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import warnings as _warnings

_formatwarning = _warnings.formatwarning
import lightning.pytorch as pl  # noqa: E402  (replaces warnings.formatwarning at import: restored below)
import torch  # noqa: E402

_warnings.formatwarning = _formatwarning  # importing phonion changes no global state (layout issue)

from phonion.mlip.optim_config import LossConfig, OptimConfig  # noqa: E402  (re-exported)

EV_A3_TO_GPA = 160.21766208
#: loss name → (mace loss factory, model must output stress)
LOSSES = {
    "weighted": (lambda c, m: m.WeightedEnergyForcesLoss(energy_weight=c.energy_weight,
                                                         forces_weight=c.forces_weight), False),
    "stress": (lambda c, m: m.WeightedEnergyForcesStressLoss(
        energy_weight=c.energy_weight, forces_weight=c.forces_weight, stress_weight=c.stress_weight), True),
    "huber": (lambda c, m: m.WeightedHuberEnergyForcesStressLoss(
        energy_weight=c.energy_weight, forces_weight=c.forces_weight, stress_weight=c.stress_weight,
        huber_delta=c.huber_delta), True),
    "universal": (lambda c, m: m.UniversalLoss(
        energy_weight=c.energy_weight, forces_weight=c.forces_weight, stress_weight=c.stress_weight,
        huber_delta=c.huber_delta), True),
}


def loss_name(cfg: LossConfig, has_stress: bool) -> str:
    """The mace loss to use: ``auto`` → ``stress`` with stress data and weight > 0, else ``weighted``."""
    if cfg.kind == "auto":
        return "stress" if has_stress and cfg.stress_weight > 0 else "weighted"
    if cfg.kind not in LOSSES:
        raise ValueError(f"loss.kind must be auto or one of {sorted(LOSSES)}, got {cfg.kind!r}")
    return cfg.kind


def build_loss(cfg: LossConfig, has_stress: bool):
    """(mace loss module, whether the model must compute stress, loss name)."""
    from mace import modules

    name = loss_name(cfg, has_stress)
    factory, needs_stress = LOSSES[name]
    return factory(cfg, modules), needs_stress, name


def _scheduler(optimizer, cfg: OptimConfig, max_epochs: int):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.lr_factor, patience=cfg.scheduler_patience, min_lr=cfg.min_lr)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=cfg.cosine_t_max_epochs or max_epochs, eta_min=cfg.min_lr)
    return None


class MACEModule(pl.LightningModule):
    """Training/validation steps of a mace model (see the module docstring)."""

    def __init__(self, model, loss_fn, optim: OptimConfig, *, compute_stress: bool, max_epochs: int,
                 freeze: int | None = None):
        super().__init__()
        self.model, self.loss_fn, self.optim, self.freeze = model, loss_fn, optim, freeze
        self.compute_stress, self.max_epochs = compute_stress, max_epochs
        self.ema = None
        if optim.ema:
            from torch_ema import ExponentialMovingAverage

            self.ema = ExponentialMovingAverage(self.model.parameters(), decay=optim.ema_decay)
        self._sums = None

    def forward(self, batch, training: bool = False):
        return self.model(batch.to_dict(), training=training, compute_force=True,
                          compute_virials=False, compute_stress=self.compute_stress)

    # ---- training -----------------------------------------------------------------------------
    def on_fit_start(self):
        if self.ema is not None:
            self.ema.to(self.device)

    def training_step(self, batch, batch_idx):
        loss = self.loss_fn(pred=self(batch, training=True), ref=batch)
        self.log("train_loss", loss, batch_size=batch.num_graphs, on_step=False, on_epoch=True,
                 prog_bar=True, sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update()

    # ---- validation (EMA weights) ----------------------------------------------------------------
    def on_validation_epoch_start(self):
        if self.ema is not None:
            self.ema.store()
            self.ema.copy_to()
        self._sums = None

    def validation_step(self, batch, batch_idx):
        if torch.is_inference_mode_enabled():
            raise RuntimeError("forces are gradients: build the Trainer with inference_mode=False")
        with torch.enable_grad():
            out = self(batch, training=False)
        loss = self.loss_fn(pred=out, ref=batch).detach()
        n_atoms = (batch.ptr[1:] - batch.ptr[:-1]).to(out["energy"].dtype)
        de = (out["energy"].detach() - batch.energy) / n_atoms
        df = out["forces"].detach() - batch.forces
        graphs = torch.tensor(float(batch.num_graphs), dtype=de.dtype, device=de.device)
        parts = [loss * graphs, de.abs().sum(), (de ** 2).sum(), df.abs().sum(), (df ** 2).sum(),
                 graphs, torch.tensor(float(df.numel()), dtype=de.dtype, device=de.device)]
        if self.compute_stress:
            w = batch.stress_weight.view(-1, 1, 1)
            ds = (out["stress"].detach() - batch.stress) * (w > 0)
            parts += [(ds ** 2).sum(), 9.0 * (w > 0).sum().to(de.dtype)]
        sums = torch.stack(parts)
        self._sums = sums if self._sums is None else self._sums + sums

    def on_validation_epoch_end(self):
        if self._sums is None:  # no validation batch ran
            if self.ema is not None:
                self.ema.restore()
            return
        sums = self.all_gather(self._sums)
        sums = sums.sum(0) if sums.ndim == 2 else sums
        s = sums.double().cpu().tolist()
        metrics = {"val_loss": s[0] / s[5], "val_energy_mae_meV_atom": 1e3 * s[1] / s[5],
                   "val_energy_rmse_meV_atom": 1e3 * (s[2] / s[5]) ** 0.5,
                   "val_force_mae_meV_A": 1e3 * s[3] / s[6], "val_force_rmse_meV_A": 1e3 * (s[4] / s[6]) ** 0.5}
        if self.compute_stress and s[8] > 0:
            metrics["val_stress_rmse_GPa"] = EV_A3_TO_GPA * (s[7] / s[8]) ** 0.5
        self.log_dict(metrics, prog_bar=False, sync_dist=False)
        self.log("val_force_rmse", metrics["val_force_rmse_meV_A"], prog_bar=True, logger=False)
        if self.ema is not None:
            self.ema.restore()

    # ---- optimiser, checkpoints, export ---------------------------------------------------------
    def configure_optimizers(self):
        from mace.tools.scripts_utils import get_optimizer, get_params_options

        c = self.optim
        ns = SimpleNamespace(lr=c.lr, weight_decay=c.weight_decay, amsgrad=c.amsgrad, beta=c.beta,
                             optimizer=c.optimizer, freeze=self.freeze,  # mace's --freeze (finetune.mode=freeze)
                             lr_params_factors=json.dumps({"embedding_lr_factor": 1.0, "interactions_lr_factor": 1.0,
                                                           "products_lr_factor": 1.0, "readouts_lr_factor": 1.0}))
        optimizer = get_optimizer(ns, get_params_options(ns, self.model))
        scheduler = _scheduler(optimizer, c, self.max_epochs)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint):
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint):
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    def ema_weights(self):
        """A deep copy of the bare mace model carrying the EMA weights (the raw ones without EMA)."""
        model = copy.deepcopy(self.model)
        if self.ema is not None:
            self.ema.copy_to(model.parameters())
        return model

