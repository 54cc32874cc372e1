"""Settings of ``phonion learn`` (``configs/learn.yaml``): defaults, merging, validation, member configs."""

from __future__ import annotations

import copy
import difflib
import glob
from pathlib import Path

DEFAULTS: dict = {
    "output": "learn",
    "reference_calculator": "chgnet",
    "device": "cpu",
    #: MACE dtype of the committee's MD (exploration, the gate's runs); None: the calculator's default
    #: (float64 on CPU, float32 on CUDA). float32 on CPU: 1.4× faster, NVE drift measured in
    #: scripts/results/md_dtype.json
    "md_dtype": None,
    "data": {"files": []},
    "committee": {"size": 3, "workers": 2},
    "train": {"seed": 123, "dtype": "float64",
              "data": {"fractions": [0.8, 0.1, 0.1], "gap_frames": 3, "every": 1},
              "model": {"r_max": 4.5, "num_channels": 16, "max_L": 0, "max_ell": 2, "correlation": 2,
                        "num_interactions": 2, "num_radial_basis": 6, "radial_MLP": [16, 16],
                        "pair_repulsion": True},
              "trainer": {"max_epochs": 40, "batch_size": 4, "val_batch_size": 16, "patience": 0,
                          "progress_bar": False, "accelerator": "cpu"},
              "wandb": {"mode": "disabled"}},
    "finetune": {"max_epochs": 15, "lr": 0.005},
    "explore": {"temperatures_K": None, "hot_factor": 1.15, "steps": 500, "equilibration_steps": 50,
                "sample_every": 5, "timestep_fs": None, "thermostat_time_fs": 50.0,
                "pair_floor_fraction": 0.7, "workers": 2, "structure": None, "supercell": [1, 1, 1]},
    "harvest": {"max_frames": 24, "uncertainty_threshold_eV_A": 0.15, "distance_ratio": 0.9,
                "min_separation_frames": 2, "max_force_eV_A": 30.0, "weight": 4.0,
                "contact_fractions": [0.75, 0.85]},
    "validate": {"steps": 1000, "equilibration_steps": 200, "hot_factor": 1.1},
    "rounds": {"max_rounds": 3, "min_rounds": 0, "gate_every_round": False},
}

ROUNDS_NAME = "rounds.json"


# ---- configuration -----------------------------------------------------------------------------------
def _merge(base: dict, new: dict, where: str, free: tuple = ("train", "validate")) -> dict:
    """``new`` over ``base``; keys unknown to ``base`` are refused (nearest known key suggested),
    except below the sections in ``free`` (checked later by their own config classes)."""
    out = copy.deepcopy(base)
    for key, value in (new or {}).items():
        if key not in base and where.split(".")[0] not in free:
            near = difflib.get_close_matches(str(key), list(base), n=1)  # message kept: scripts match it
            raise ValueError(f"learn config: unknown key {where + '.' if where else ''}{key}"
                             + (f" (did you mean {near[0]!r}?)" if near else f"; known: {sorted(base)}"))
        name = f"{where}.{key}" if where else key
        if isinstance(base.get(key), dict) and value is None:  # an empty section in YAML
            value = {}
        if isinstance(base.get(key), dict) and not isinstance(value, dict):
            raise ValueError(f"learn config: {name} is a section (keys {sorted(base[key])}), got {value!r}")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, name, free)
        else:
            _check_type(base.get(key), value, name)
            out[key] = value
    return out


def _check_type(default, value, name: str) -> None:
    """A value of the default's kind (an integer where the default is one, a number for a float, a list for
    a list, ...); a default of None accepts anything. One ValueError naming the dotted key."""
    if default is None or isinstance(default, dict):
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    kinds = ((bool, isinstance(value, bool), "true or false"),
             (int, number and float(value).is_integer(), "an integer"),
             (float, number, "a number"), (str, isinstance(value, str), "a string"),
             (list, isinstance(value, (list, tuple)), "a list"))
    for kind, ok, text in kinds:
        if isinstance(default, kind):
            if not ok:
                raise ValueError(f"learn config: {name} must be {text}, got {value!r}")
            return


def load_learn_config(path=None, overrides=(), **given) -> dict:
    """configs/learn.yaml (or the defaults) + ``key.sub=value`` overrides + the command's options.

    Validated before any work: unknown keys, bad numbers, an empty data list, a SPEC that does not
    parse and the train section (through ``phonion.mlip.train.config_from_dict``) give one ValueError.
    """
    from phonion.core.config import apply_overrides, read_yaml

    data = apply_overrides(read_yaml(path) if path is not None else {}, overrides)
    if given.get("data") is not None:
        data.setdefault("data", {})["files"] = list(given.pop("data"))
    data.update({k: v for k, v in given.items() if v is not None})
    cfg = _merge(DEFAULTS, data, "")
    _validate_config(cfg)
    return cfg


def learn_config_from_dict(data: dict) -> dict:
    """The full, validated learn settings from a (partial) nested mapping (the chain's profile)."""
    cfg = _merge(DEFAULTS, data, "")
    _validate_config(cfg)
    return cfg


def _validate_config(cfg: dict) -> None:
    from phonion.core.calculators import parse_spec
    from phonion.mlip.train import config_from_dict

    def need(ok, msg):
        if not ok:
            raise ValueError(f"learn config: {msg}")

    need(cfg["data"]["files"], "data.files is empty: give the reference trajectories (--data)")
    parse_spec(cfg["reference_calculator"])
    need(cfg["md_dtype"] in (None, "float32", "float64"),
         f"md_dtype must be float32, float64 or null (the calculator's default), got {cfg['md_dtype']!r}")
    need(int(cfg["committee"]["size"]) >= 2, "committee.size must be ≥ 2 (3 or more recommended)")
    need(int(cfg["rounds"]["max_rounds"]) >= 0, "rounds.max_rounds must be ≥ 0")
    need(int(cfg["harvest"]["max_frames"]) >= 1, "harvest.max_frames must be ≥ 1")
    need(float(cfg["harvest"]["uncertainty_threshold_eV_A"]) > 0, "harvest.uncertainty_threshold_eV_A must be > 0")
    need(float(cfg["explore"]["hot_factor"]) >= 1.0, "explore.hot_factor must be ≥ 1")
    need(int(cfg["explore"]["steps"]) >= int(cfg["explore"]["sample_every"]), "explore.steps < sample_every")
    need(int(cfg["finetune"]["max_epochs"]) >= 1, "finetune.max_epochs must be ≥ 1")
    config_from_dict({**member_train_dict(cfg, 0, "/nonexistent", []), "output": "x"})
    import dataclasses

    from phonion.workflows.validate import ValidateConfig

    known = {f.name for f in dataclasses.fields(ValidateConfig)} - {"model", "reference", "output"}
    for key in cfg["validate"]:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            raise ValueError(f"learn config: unknown key validate.{key}"
                             + (f" (did you mean {near[0]!r}?)" if near else f"; known: {sorted(known)}"))
    try:  # the values too (e.g. equilibration_steps a multiple of sample_every), before any training
        ValidateConfig(model="mace:check", reference=[], **cfg["validate"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"learn config: validate section: {exc}") from None


def data_files(cfg: dict) -> list[str]:
    """The reference trajectories of ``data.files`` (globs expanded; a glob without match is an error)."""
    out = []
    for entry in cfg["data"]["files"]:
        matches = sorted(glob.glob(entry)) if glob.has_magic(entry) else [entry]
        if not matches or not all(Path(m).is_file() for m in matches):
            raise ValueError(f"data.files: {entry!r} matches no file")
        out.extend(matches)
    return out


def member_train_dict(cfg: dict, k: int, output: str, labelled: list[str], foundation: str | None = None) -> dict:
    """The ``phonion.mlip.train`` config of committee member ``k`` (fine-tuning ``foundation`` when given)."""
    d = copy.deepcopy(cfg["train"])
    d["output"] = output
    d["seed"] = int(d.get("seed", 123)) + 1000 * k
    d.setdefault("data", {})["files"] = list(cfg["data"]["files"])
    d["data"]["train_only_files"] = list(labelled)
    d["data"]["train_only_weight"] = float(cfg["harvest"]["weight"])
    trainer = d.setdefault("trainer", {})
    trainer["num_threads"] = 1
    trainer["resume"] = True
    trainer.setdefault("progress_bar", False)
    if foundation is not None:
        # a member continues from its own previous weights: plain (naive) fine-tuning, the previous
        # model's dtype converted (members train in float32 and are exported in float64), and no replay
        # frames (the "foundation" is last round's member on the same data: nothing to forget)
        d.setdefault("model", {}).update(foundation=str(foundation), foundation_e0s="foundation",
                                         foundation_dtype="convert")
        ft = d.setdefault("finetune", {})
        ft.setdefault("mode", "naive")
        ft.setdefault("replay", {}).setdefault("n_configs", 0)
        trainer["max_epochs"] = int(cfg["finetune"]["max_epochs"])
        d.setdefault("optim", {})["lr"] = float(cfg["finetune"]["lr"])
    d.setdefault("export", {})["parity_plots"] = k == 0
    return d
