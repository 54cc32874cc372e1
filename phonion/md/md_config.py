"""``MDConfig``: the settings of one MD run (one frozen dataclass, loadable from YAML).

``phonion.md.driver`` re-exports it; see ``configs/md.yaml`` for a commented example.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from phonion.core.config import check_keys, read_yaml  # noqa: F401  (read_yaml re-exported)
from phonion.core.config import coerce as _coerce
from phonion.md.guards import normalise_pair_floors, parse_pair_floors

ENSEMBLES = ("nvt-nhc", "nvt-bussi", "nvt-langevin", "nve")
FIX_CHOICES = ("none", "O_e", "O_c")
UNCERTAINTY_ACTIONS = ("flag", "stop")
#: settings that may change when a run is resumed or extended (everything else must match)
RESUMABLE_FIELDS = ("steps", "checkpoint_every", "min_distance_A", "max_force_eV_A",
                    "max_temperature_factor", "distance_check_every", "pair_floors_A",
                    "temperature_window_steps", "temperature_tolerance", "uncertainty_every",
                    "uncertainty_threshold_eV_A", "uncertainty_action", "output")


@dataclass(frozen=True)
class MDConfig:
    """Settings of one MD run. Units are in the names.

    Attributes
    ----------
    structure : str
        Structure file (any ASE-readable format) or a bundled name (``"LiGa_SeO3_2"``).
    calculator : str
        Calculator SPEC (``chgnet``, ``emt``, ``mace:<model>``, ``module:function``); labels
        the run even when a calculator object is passed to ``run_md``.
    temperature_K : float
        Target temperature (thermostats) and initial Maxwell–Boltzmann temperature, K.
    steps : int
        Production steps (frames are written only during production); at least ``sample_every``
        (:meth:`check_frames`, called before a run starts).
    timestep_fs : float
        Integrator timestep, fs.
    equilibration_steps : int
        Steps run before production, not written (a multiple of ``sample_every``).
    ensemble : str
        ``nvt-nhc`` (Nosé–Hoover chain), ``nvt-bussi`` (stochastic velocity rescaling),
        ``nvt-langevin`` or ``nve`` (velocity Verlet).
    sample_every : int
        Production steps between written frames.
    seed : int
        Seed of the numpy Generator (initial velocities, Bussi / Langevin noise).
    fix : str
        ``none``, ``O_e`` or ``O_c``: oxygen class held fixed (``phonion.mdma.sites`` on the supercell).
    supercell : tuple of 3 int
        Repetitions of the structure along its cell vectors.
    thermostat_time_fs : float
        Nosé–Hoover ``tdamp`` and Bussi ``taut``, fs.
    friction_per_fs : float
        Langevin friction, 1/fs.
    nhc_chain_length : int
        Thermostats in the Nosé–Hoover chain.
    checkpoint_every : int
        Steps between checkpoints (a multiple of ``sample_every``).
    min_distance_A, max_force_eV_A, max_temperature_factor : float
        Guards: closest allowed approach of two atoms (Å), largest allowed force norm (eV/Å),
        largest allowed kinetic temperature as a multiple of ``temperature_K``.
    distance_check_every : int
        Steps between minimum-distance and pair-floor checks (the other guards run every step).
    pair_floors_A : dict
        Per-species-pair closest allowed approach, ``{"Li-Li": 2.2, "O-Se": 1.2}`` (Å; keys in
        either order, stored sorted; e.g. from ``phonion.md.guards.learn_pair_floors``). Empty: only
        ``min_distance_A``, which stays the absolute floor for every pair.
    temperature_window_steps : int
        Steps in the running mean of the kinetic temperature (0: no check), fed from the end
        of equilibration, but not before 5 thermostat relaxation times from the start
        (``phonion.md.driver_guards.settle_steps``). Once the window is full, a mean off
        ``temperature_K`` by more than ``temperature_tolerance`` × ``temperature_K`` stops the
        run as invalid (thermostatted ensembles only: an NVE run has no set-point to hold).
    temperature_tolerance : float
        Allowed relative deviation of that running mean (0.15 = ±15 %).
    uncertainty_every : int
        Steps between reads of a committee calculator's force variance (``forces_var``).
    uncertainty_threshold_eV_A : float or None
        Largest allowed per-atom force standard deviation over the committee, eV/Å (None:
        only recorded).
    uncertainty_action : str
        Above the threshold: ``flag`` (recorded in run.json, the run goes on) or ``stop``
        (the run stops as invalid).
    surrogate_reference : bool
        Label the trajectory "surrogate reference" (a calculator standing in for DFT).
    output : str
        Run directory: ``traj.h5``, ``run.json``, ``checkpoint.npz``, ``run.log``.
    """

    structure: str = "LiGa_SeO3_2"
    calculator: str = "chgnet"
    temperature_K: float = 600.0
    steps: int = 1000
    timestep_fs: float = 2.0
    equilibration_steps: int = 0
    ensemble: str = "nvt-bussi"
    sample_every: int = 10
    seed: int = 0
    fix: str = "none"
    supercell: tuple[int, int, int] = (1, 1, 1)
    thermostat_time_fs: float = 100.0
    friction_per_fs: float = 0.01
    nhc_chain_length: int = 3
    checkpoint_every: int = 1000
    min_distance_A: float = 0.5
    max_force_eV_A: float = 50.0
    max_temperature_factor: float = 3.0
    distance_check_every: int = 10
    pair_floors_A: dict[str, float] = field(default_factory=dict)
    temperature_window_steps: int = 500
    temperature_tolerance: float = 0.15
    uncertainty_every: int = 10
    uncertainty_threshold_eV_A: float | None = None
    uncertainty_action: str = "flag"
    surrogate_reference: bool = False
    output: str = "md-run"

    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ValueError(f"MD settings: {msg}")

        need(self.ensemble in ENSEMBLES, f"ensemble must be one of {', '.join(ENSEMBLES)}, "
                                         f"got {self.ensemble!r}")
        need(self.fix in FIX_CHOICES, f"fix must be one of {', '.join(FIX_CHOICES)}, got {self.fix!r}")
        need(self.temperature_K > 0, f"temperature_K must be > 0, got {self.temperature_K}")
        need(self.timestep_fs > 0, f"timestep_fs must be > 0, got {self.timestep_fs}")
        for name in ("steps", "sample_every", "checkpoint_every", "nhc_chain_length",
                     "distance_check_every", "uncertainty_every"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 1, f"{name} must be an integer ≥ 1, got {value!r}")
        need(isinstance(self.equilibration_steps, int) and self.equilibration_steps >= 0,
             f"equilibration_steps must be an integer ≥ 0, got {self.equilibration_steps!r}")
        need(isinstance(self.seed, int), f"seed must be an integer, got {self.seed!r}")
        need(self.equilibration_steps % self.sample_every == 0,
             f"equilibration_steps ({self.equilibration_steps}) must be a multiple of "
             f"sample_every ({self.sample_every}) so that frames fall on a regular grid "
             "(--equilibration-steps, --sample-every)")
        need(self.checkpoint_every % self.sample_every == 0,
             f"checkpoint_every ({self.checkpoint_every}) must be a multiple of sample_every "
             f"({self.sample_every}) (--checkpoint-every, --sample-every)")
        need(isinstance(self.supercell, tuple) and len(self.supercell) == 3
             and all(isinstance(n, int) and n >= 1 for n in self.supercell),
             f"supercell must be three integers ≥ 1, got {self.supercell!r}")
        for name in ("thermostat_time_fs", "friction_per_fs", "min_distance_A", "max_force_eV_A",
                     "max_temperature_factor"):
            need(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        need(isinstance(self.temperature_window_steps, int) and self.temperature_window_steps >= 0,
             f"temperature_window_steps must be an integer ≥ 0, got {self.temperature_window_steps!r}")
        need(self.temperature_tolerance > 0,
             f"temperature_tolerance must be > 0, got {self.temperature_tolerance}")
        need(self.uncertainty_threshold_eV_A is None or self.uncertainty_threshold_eV_A > 0,
             f"uncertainty_threshold_eV_A must be > 0 or None, got {self.uncertainty_threshold_eV_A}")
        if self.uncertainty_threshold_eV_A is not None:
            object.__setattr__(self, "uncertainty_threshold_eV_A", float(self.uncertainty_threshold_eV_A))
        need(self.uncertainty_action in UNCERTAINTY_ACTIONS,
             f"uncertainty_action must be one of {', '.join(UNCERTAINTY_ACTIONS)}, "
             f"got {self.uncertainty_action!r}")
        try:
            object.__setattr__(self, "pair_floors_A", normalise_pair_floors(self.pair_floors_A))
        except ValueError as exc:
            raise ValueError(f"MD settings: {exc}") from None
        need(bool(self.output), "output directory must be given")

    def check_frames(self) -> None:
        """Refuse (ValueError naming the options) a run that would store fewer than 2 frames.

        Called by ``run_md``, the sweep and ``phonion reference`` before any step; not at
        construction, so that a config can be built and then given its real ``steps``.
        """
        if self.steps < self.sample_every:
            raise ValueError(f"MD settings: steps ({self.steps}) must be at least sample_every "
                             f"({self.sample_every}): the run would store {self.n_frames} frame, too "
                             "few for any analysis; raise steps (--steps) or lower sample_every "
                             "(--sample-every)")

    def __hash__(self) -> int:
        # explicit: the generated hash would fail on the pair_floors_A dict
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def total_steps(self) -> int:
        """Equilibration plus production steps."""
        return self.equilibration_steps + self.steps

    @property
    def n_frames(self) -> int:
        """Frames a complete run writes: production steps 0, K, 2K, … ≤ ``steps``."""
        return self.steps // self.sample_every + 1

    def to_dict(self) -> dict:
        """JSON/YAML-ready dictionary (supercell as a list)."""
        d = dataclasses.asdict(self)
        d["supercell"] = list(self.supercell)
        d["pair_floors_A"] = dict(self.pair_floors_A)
        return d

    def settings_key(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_FIELDS}

    @classmethod
    def from_dict(cls, data: dict) -> MDConfig:
        """Build from a plain mapping (YAML); unknown keys are an error naming them."""
        check_keys(data, [f.name for f in dataclasses.fields(cls)], "MD settings")
        return cls(**coerce(cls, data))

    @classmethod
    def from_yaml(cls, path, **overrides) -> MDConfig:
        """Read a YAML mapping of MDConfig fields; ``overrides`` win over the file."""
        return cls.from_dict({**read_yaml(path), **overrides})


def coerce(cls, data: dict) -> dict:
    """Convert YAML / command-line values to the field types of ``cls`` (:func:`phonion.core.config.coerce`;
    a pair-floor string such as ``"Li-Li=1.5,O-O=2"`` becomes a mapping)."""
    return _coerce(cls, data, {"dict": parse_pair_floors})
