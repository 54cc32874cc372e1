"""The ``loss:`` and ``optim:`` sections of configs/train.yaml, and the range checks of the numbers of a
training config (``check_numbers``, re-exported by :mod:`phonion.mlip.train`).

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


# (section, key): (lowest allowed, lowest is allowed?, integer?, None allowed?)
_LIMITS = {
    ("trainer", "max_epochs"): (1, True, True, False), ("trainer", "batch_size"): (1, True, True, False),
    ("trainer", "val_batch_size"): (1, True, True, False), ("trainer", "num_nodes"): (1, True, True, False),
    ("trainer", "patience"): (0, True, True, False), ("trainer", "num_workers"): (0, True, True, False),
    ("trainer", "check_val_every_n_epoch"): (1, True, True, False),
    ("trainer", "log_every_n_steps"): (1, True, True, False), ("trainer", "num_threads"): (1, True, True, True),
    ("trainer", "gradient_clip_val"): (0, True, False, True),
    ("optim", "lr"): (0, False, False, False), ("optim", "weight_decay"): (0, True, False, False),
    ("optim", "beta"): (0, True, False, False), ("optim", "lr_factor"): (0, False, False, False),
    ("optim", "scheduler_patience"): (0, True, True, False), ("optim", "min_lr"): (0, True, False, False),
    ("optim", "cosine_t_max_epochs"): (1, True, True, True),
    ("loss", "energy_weight"): (0, True, False, False), ("loss", "forces_weight"): (0, True, False, False),
    ("loss", "stress_weight"): (0, True, False, False), ("loss", "huber_delta"): (0, False, False, False),
}


def check_numbers(cfg) -> None:
    """The trainer / optim / loss numbers in range (``trainer.max_epochs=-1`` would train forever): a
    ValueError naming the key, before any data is read."""
    import math

    for (section, key), (low, inclusive, integer, optional) in _LIMITS.items():
        value = getattr(getattr(cfg, section), key)
        name = f"{section}.{key}"
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and value != int(value)):
            raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
        ok = math.isfinite(value) and (value >= low if inclusive else value > low)
        if not ok:
            raise ValueError(f"{name} must be {'≥' if inclusive else '>'} {low}, got {value!r}")
    if not cfg.optim.beta < 1 or not cfg.optim.lr_factor < 1:
        raise ValueError(f"optim.beta and optim.lr_factor must be < 1, got {cfg.optim.beta}, {cfg.optim.lr_factor}")
    if cfg.optim.min_lr >= cfg.optim.lr:
        raise ValueError(f"optim.min_lr must be < optim.lr, got {cfg.optim.min_lr} ≥ {cfg.optim.lr}")
    if cfg.loss.energy_weight + cfg.loss.forces_weight + cfg.loss.stress_weight <= 0:
        raise ValueError("loss: energy_weight, forces_weight and stress_weight are all 0; nothing to train on")
