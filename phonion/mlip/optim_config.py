"""The ``loss:`` and ``optim:`` sections of configs/train.yaml.

Kept apart from :mod:`phonion.mlip.lightning_module` so that reading a config (and ``phonion --help``)
does not import Lightning and torch.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULERS = ("plateau", "cosine", "none")


@dataclass(frozen=True)
class LossConfig:
    """The ``loss:`` section: mace loss by name (``auto``: ``stress`` when the data have stress)."""

    kind: str = "auto"
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    stress_weight: float = 1.0
    huber_delta: float = 0.01


@dataclass(frozen=True)
class OptimConfig:
    """The ``optim:`` section (mace_run_train names: lr, weight_decay, amsgrad, beta, lr_factor, ...)."""

    optimizer: str = "adam"
    lr: float = 0.01
    weight_decay: float = 5e-7
    amsgrad: bool = True
    beta: float = 0.9
    scheduler: str = "plateau"
    lr_factor: float = 0.8
    scheduler_patience: int = 50
    cosine_t_max_epochs: int | None = None
    min_lr: float = 0.0
    ema: bool = True
    ema_decay: float = 0.99

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"optim.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in (0, 1), got {self.ema_decay}")
