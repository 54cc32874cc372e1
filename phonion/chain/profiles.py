"""Profiles of the whole chain (``phonion demo``, ``phonion.chain.chain.run_chain``): tiny, quick, full.

A profile is a nested mapping with one section per stage; every value has its unit in its name.

=========  =====================================================================================
profile    what it is for
=========  =====================================================================================
``tiny``   the default test suite: the fewest steps that still exercise every stage
           (a few minutes on one core); no number means anything
``quick``  the README's first command on a laptop: ~15 min on 2 CPU cores. Reference MD
           0.4 ps per temperature, a committee of 3 MACE models, at least one active-learning
           round and the gate, MLIP MD 2 ps per run: the chain works end to end, the transport
           numbers are *not* converged (the report says which)
``full``   a GPU: 2×1×1 supercell, a configs/train.yaml-sized MACE in float32 on CUDA,
           ~10 ps of reference MD per temperature, 200 ps MLIP runs at 6 temperatures × 2 seeds
=========  =====================================================================================

Sections
--------
``reference``  ``phonion.mlip.reference.ReferenceConfig`` fields (surrogate-reference MD, one run per T)
               plus ``workers``: temperatures run in that many processes (1 torch thread each)
``train``      a ``configs/train.yaml``-style nested mapping (``phonion.mlip.train``) for every committee
               member; ``data.files`` and ``output`` are set by the chain
``learn``      ``phonion.workflows.learn`` settings (``configs/learn.yaml``): committee size, fine-tuning,
               exploration, harvest, the gate (``validate``) and the number of rounds
``mlip_md``    ``phonion.md.driver.MDConfig`` fields shared by every MLIP run, plus ``temperatures_K``,
               ``seeds``, ``fix`` (the fixed-anion classes, run at ``fix_temperature_K``, default
               the highest temperature, with the first seed), ``workers``, ``engine`` (``auto``, the
               default: ASE workers or the batched engine, whichever is faster on this device by a
               measurement before the runs, ``phonion.md.engine_choice``; or ``ase`` / ``batched``),
               ``compile`` (``auto``, the default: mace's ``compile_mode`` for float32 MD on a CPU when a
               worker runs ≥ 20,000 steps, measured to repay the compile; ``yes`` / ``no``) and
               ``allow_failed_gate`` (run even when the gate failed; MLIP numbers then untrusted)
``compare``    ``phonion.compare.run.CompareConfig`` fields the chain does not set itself (``tau_max_ps``,
               ``parity_max_frames``, ``rdf_max_frames``, ``mobile``, ``anion``, ...)
``threads``    torch / OpenMP threads of the stages that run in this process (training, a
               1-worker MD)

How the quick profile spends its 15 minutes (measured on the 2-core development machine from a fresh
clone, nothing else running: 14 min 34 s, 14 min 50 s after the engine choice was added, 14 min 26 s
with the coordination checks; ``scripts/results/demo_quick.json``): CHGNet reference MD
without its stress pass (``reference.stress: false``: 0.28 instead of 0.43 s a step per core) at 4
temperatures × (100 equilibration = 5 thermostat times + 300 production) steps in 2 processes: 214 s,
151 frames per temperature — 50 % more than the 0.4-ps runs before, because the RDF comparison at every
temperature is limited by the reference's noise (the Se–Se shell position scattered by ±0.05–0.17 Å
between blocks of a 0.4-ps run). Training sees every 3rd frame (the same ~50 frames per temperature as
before, so an epoch costs the same). A committee member of 16 scalar channels reaches ~95–100 meV/Å
held-out force error in 28 float32 epochs (batch 1, lr 0.02: ~5 s an epoch on one core; batch 4 at lr
0.01 needs ~3× the epochs; float32 trains 1.4× faster than float64 with the same error); round 0 (three
members in three processes) takes ~255 s. An active-learning round (exploration 5 × 350 committee steps,
~40 CHGNet labels — the most uncertain frames, the frames before a collision in the previous gate's runs,
and close-contact frames of every species pair —, 10 fine-tuning epochs, the gate's two 900-step runs)
takes ~250 s and is what makes the potential survive 1.1 × the top temperature (without the
close-contact frames, Li–Li pairs met at 1.35–1.5 Å in the gate's runs; the reference never brings them
closer than 2.15 Å). Committee MD runs in float32 (``learn.md_dtype``, ``mlip_md.dtype``: 1.33× faster
than float64 with the same NVE energy conservation, ``scripts/results/md_dtype.json``), so the 6 MLIP
runs × 950 steps take ~125 s in 2 processes. A second round, when the first does not pass the gate,
adds ~250 s.

Overrides use dotted keys: ``{"mlip_md.steps": 4000, "train.trainer.max_epochs": 20}``. Every key and
value type is checked against the config object its section becomes (:func:`check_settings`): an
unknown key is refused with the nearest valid one suggested, a value of the wrong type is refused.
Why these numbers (timings measured on the 2-core development machine) is in the README and
the chain's report; the settings themselves live here only.
"""

from __future__ import annotations

import copy

from phonion.core.config import parse_override  # noqa: F401  (re-exported: the one override syntax)

#: the small MACE of the tiny / quick profiles (like configs/train_tiny.yaml)
_SMALL_MODEL = {"r_max": 4.5, "num_channels": 8, "max_L": 0, "max_ell": 1, "correlation": 2,
                "num_interactions": 2, "num_radial_basis": 6, "radial_MLP": [16, 16],
                "pair_repulsion": True}
#: the quick profile's committee members: 16 scalar channels, ℓ ≤ 2 messages (measured: the best
#: held-out force error per CPU second among the sizes tried; see scripts/results/demo_quick.json)
_QUICK_MODEL = {**_SMALL_MODEL, "num_channels": 16, "max_ell": 2}
#: the configs/train.yaml-sized MACE of the full profile
#: MLIP-MD sanity settings shared by the profiles: committee spread every 10 steps, flagged above 0.5 eV/Å
_MD_GUARDS = {"uncertainty_every": 10, "uncertainty_threshold_eV_A": 0.5, "uncertainty_action": "flag",
              "allow_failed_gate": False}
_FULL_MODEL = {"r_max": 5.0, "num_channels": 64, "max_L": 1, "max_ell": 3, "correlation": 3,
               "num_interactions": 2, "num_radial_basis": 8, "radial_MLP": [64, 64, 64],
               "pair_repulsion": True}

PROFILES: dict[str, dict] = {
    "tiny": {
        "description": "tests: every stage with the fewest steps (minutes on one core); numbers meaningless",
        "threads": 1,
        "reference": {"temperatures_K": [1000.0, 1150.0, 1300.0], "steps": 24, "equilibration_steps": 8,
                      "timestep_fs": 2.0, "sample_every": 2, "ensemble": "nvt-bussi",
                      "thermostat_time_fs": 20.0, "supercell": [1, 1, 1], "workers": 1},
        "train": {"seed": 123, "dtype": "float64",
                  "data": {"fractions": [0.7, 0.15, 0.15], "gap_frames": 1},
                  "model": _SMALL_MODEL,
                  "trainer": {"max_epochs": 2, "batch_size": 4, "val_batch_size": 8, "patience": 0,
                              "progress_bar": False, "accelerator": "cpu"},
                  "wandb": {"mode": "disabled"}},
        "learn": {"md_dtype": "float32", "committee": {"size": 3, "workers": 1}, "finetune": {"max_epochs": 1, "lr": 0.005},
                  "explore": {"steps": 20, "equilibration_steps": 10, "sample_every": 5, "workers": 1},
                  "harvest": {"max_frames": 4},
                  "validate": {"steps": 20, "equilibration_steps": 10, "sample_every": 5, "workers": 1,
                               "held_out_fraction": 0.15},
                  "rounds": {"max_rounds": 1, "min_rounds": 1}},
        "mlip_md": {"temperatures_K": [1000.0, 1150.0, 1300.0], "seeds": [0], "fix": ["O_e", "O_c"],
                    "fix_temperature_K": None, "steps": 150, "equilibration_steps": 20, "timestep_fs": 2.0,
                    "sample_every": 5, "ensemble": "nvt-bussi", "thermostat_time_fs": 50.0,
                    "supercell": [1, 1, 1], "workers": 1, "dtype": "float32", **_MD_GUARDS,
                    "allow_failed_gate": True},
        "compare": {},
    },
    "quick": {
        "description": "CPU, ~15 min on 2 cores: the whole chain; transport numbers not converged",
        "threads": 1,
        "reference": {"temperatures_K": [900.0, 1000.0, 1150.0, 1300.0], "steps": 300,
                      "equilibration_steps": 100, "timestep_fs": 2.0, "sample_every": 2,
                      "ensemble": "nvt-bussi", "thermostat_time_fs": 40.0, "supercell": [1, 1, 1],
                      "workers": 2, "stress": False},
        "train": {"seed": 123, "dtype": "float32",
                  "data": {"fractions": [0.8, 0.1, 0.1], "gap_frames": 3, "every": 3},
                  "model": _QUICK_MODEL,
                  "optim": {"lr": 0.02},
                  "trainer": {"max_epochs": 28, "batch_size": 1, "val_batch_size": 16, "patience": 0,
                              "progress_bar": False, "accelerator": "cpu"},
                  "wandb": {"mode": "disabled"}},
        "learn": {"md_dtype": "float32", "committee": {"size": 3, "workers": 3}, "finetune": {"max_epochs": 10, "lr": 0.005},
                  "explore": {"steps": 300, "equilibration_steps": 50, "sample_every": 5, "workers": 3},
                  "harvest": {"max_frames": 32},
                  "validate": {"steps": 800, "equilibration_steps": 100, "sample_every": 5, "workers": 2},
                  "rounds": {"max_rounds": 2, "min_rounds": 1}},
        "mlip_md": {"temperatures_K": [900.0, 1000.0, 1150.0, 1300.0], "seeds": [0], "fix": ["O_e", "O_c"],
                    "fix_temperature_K": None, "steps": 800, "equilibration_steps": 150,
                    "timestep_fs": 2.0, "sample_every": 5, "ensemble": "nvt-bussi",
                    "thermostat_time_fs": 50.0, "supercell": [1, 1, 1], "workers": 2, "dtype": "float32", **_MD_GUARDS},
        "compare": {},
    },
    "full": {
        "description": "GPU: 2×1×1 cell, production-sized MACE (float32, CUDA), 200 ps runs",
        "threads": 4,
        "reference": {"temperatures_K": [700.0, 800.0, 900.0, 1000.0, 1100.0], "steps": 5000,
                      "equilibration_steps": 500, "timestep_fs": 2.0, "sample_every": 2,
                      "ensemble": "nvt-bussi", "thermostat_time_fs": 100.0, "supercell": [2, 1, 1],
                      "workers": 1},
        "train": {"seed": 123, "dtype": "float32",
                  "data": {"fractions": [0.8, 0.1, 0.1], "gap_frames": 5, "every": 2, "n_blocks": 2},
                  "model": _FULL_MODEL,
                  "trainer": {"max_epochs": 150, "batch_size": 4, "val_batch_size": 8, "patience": 30,
                              "progress_bar": True, "accelerator": "auto"},
                  "export": {"dtype": "float32"},
                  "wandb": {"mode": "offline"}},
        "learn": {"committee": {"size": 4, "workers": 1}, "finetune": {"max_epochs": 40, "lr": 0.005},
                  "explore": {"steps": 5000, "equilibration_steps": 500, "sample_every": 10, "workers": 1,
                              "supercell": [2, 1, 1]},
                  "harvest": {"max_frames": 100},
                  "validate": {"steps": 10000, "equilibration_steps": 1000, "sample_every": 10, "workers": 1,
                               "supercell": [2, 1, 1]},
                  "rounds": {"max_rounds": 5, "min_rounds": 1}},
        "mlip_md": {"temperatures_K": [600.0, 700.0, 800.0, 900.0, 1000.0, 1100.0], "seeds": [0, 1],
                    "fix": ["O_e", "O_c"], "fix_temperature_K": None, "steps": 100000,
                    "equilibration_steps": 5000, "timestep_fs": 2.0, "sample_every": 5,
                    "ensemble": "nvt-bussi", "thermostat_time_fs": 100.0, "supercell": [2, 1, 1],
                    "checkpoint_every": 10000, "workers": 4, **_MD_GUARDS},
        "compare": {},
    },
}


#: keys of the reference / mlip_md / compare sections the chain sets itself (not settable)
_CHAIN_SET = {"reference": {"structure", "calculator", "seed", "output"},
              "mlip_md": {"structure", "calculator", "output", "temperature_K", "seed", "fix", "pair_floors_A"},
              "compare": {"reference", "mlip", "output", "model", "reference_calculator", "mlip_calculator",
                          "structure", "device", "validation"}}
#: settings of the chain itself in those sections: name → field type (as in a dataclass annotation)
_CHAIN_EXTRAS = {"reference": {"workers": "int"},
                 "mlip_md": {"temperatures_K": "tuple[float, ...]", "seeds": "tuple[int, ...]",
                             "fix": "tuple[str, ...]", "fix_temperature_K": "float | None", "workers": "int",
                             "allow_failed_gate": "bool", "dtype": "str | None", "engine": "str",
                             "compile": "str"}}


def section_fields(section: str) -> dict:
    """{key: type text} of every key the ``reference`` / ``mlip_md`` / ``compare`` section accepts: the
    fields of the config object it becomes (ReferenceConfig, MDConfig, CompareConfig) plus the chain's own."""
    import dataclasses

    if section == "reference":
        from phonion.mlip.reference import ReferenceConfig as cls
    elif section == "mlip_md":
        from phonion.md.md_config import MDConfig as cls
    else:
        from phonion.compare.run import CompareConfig as cls
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls) if f.name not in _CHAIN_SET[section]}
    return {**fields, **_CHAIN_EXTRAS.get(section, {})}


def _train_fields() -> dict:
    """{section: {key: type text}} of the ``train`` section (``phonion.mlip.train``'s config classes)."""
    import dataclasses

    from phonion.mlip.train import SECTIONS, TrainConfig

    out = {name: {f.name: str(f.type) for f in dataclasses.fields(cls)} for name, cls in SECTIONS.items()}
    out[""] = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig) if f.name not in SECTIONS}
    return out


_KINDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _type_problem(kind: str, value) -> str | None:
    """What is wrong with ``value`` for a field of type text ``kind`` (None: nothing)."""
    options = [k.strip() for k in kind.split("|")]
    if value is None:
        return None if "None" in options else "must be given (got nothing)"
    base = options[0]
    if base.startswith("tuple"):
        item = "int" if "int" in base else "float" if "float" in base else "str"
        ok = isinstance(value, (list, tuple)) and all(_type_problem(item, v) is None for v in value)
        return None if ok else f"must be a list of {_KINDS[item][3 if item == 'int' else 2:]}s, got {value!r}"
    if base.startswith("dict"):
        return None if isinstance(value, (dict, str)) else f"must be a mapping, got {value!r}"
    checks = {"int": lambda v: isinstance(v, int) or (isinstance(v, float) and v.is_integer()),
              "float": lambda v: isinstance(v, (int, float)), "str": lambda v: isinstance(v, str),
              "bool": lambda v: isinstance(v, bool)}
    if base not in checks:
        return None
    if (isinstance(value, bool) and base != "bool") or not checks[base](value):
        return f"must be {_KINDS[base]}, got {value!r}"
    return None


def _check_section(values: dict, fields: dict, where: str) -> None:
    from phonion.core.config import unknown_key_message

    for key, value in values.items():
        if key not in fields:
            raise ValueError("profile setting: " + unknown_key_message(
                f"{where}.{key}", [f"{where}.{k}" for k in fields]))
        problem = _type_problem(fields[key], value)
        if problem:
            raise ValueError(f"{where}.{key} {problem}")


def check_settings(settings: dict) -> None:
    """Unknown keys (nearest valid key suggested) and wrong value types in resolved ``settings``, as one
    ValueError naming the dotted key, e.g. ``mlip_md.steps must be an integer, got 'abc'``. Fast: no
    structure, model or calculator is loaded (``phonion.chain.chain.check_chain`` builds the real configs)."""
    threads = settings.get("threads")
    if _type_problem("int | None", threads) or (threads is not None and threads < 1):
        raise ValueError(f"threads must be an integer ≥ 1, got {settings.get('threads')!r}")
    for section in ("reference", "mlip_md", "compare"):
        if not isinstance(settings.get(section), dict):
            raise ValueError(f"{section} must be a section (key: value settings), got {settings.get(section)!r}")
        _check_section(settings[section], section_fields(section), section)
    for section in ("train", "learn"):
        if not isinstance(settings.get(section), dict):
            raise ValueError(f"{section} must be a section (key: value settings), got {settings.get(section)!r}")
    fields = _train_fields()
    train = settings["train"]
    _check_section({k: v for k, v in train.items() if k not in fields}, fields[""], "train")
    for name in fields:
        if name and name in train:
            if not isinstance(train[name], dict):
                raise ValueError(f"train.{name} must be a section (key: value settings), got {train[name]!r}")
            _check_section(train[name], fields[name], f"train.{name}")
    if settings["mlip_md"].get("dtype") not in (None, "float32", "float64"):
        raise ValueError(f"mlip_md.dtype must be float32, float64 or null (the calculator's default), "
                         f"got {settings['mlip_md']['dtype']!r}")
    if settings["mlip_md"].get("engine", "auto") not in ("auto", "ase", "batched"):
        raise ValueError(f"mlip_md.engine must be auto, ase or batched, got {settings['mlip_md']['engine']!r}")
    if settings["mlip_md"].get("compile", "auto") not in ("auto", "yes", "no"):
        raise ValueError(f"mlip_md.compile must be auto, yes or no, got {settings['mlip_md']['compile']!r}")
    for name in ("workers",):
        for section in ("reference", "mlip_md"):
            if int(settings[section].get(name, 1)) < 1:
                raise ValueError(f"{section}.{name} must be ≥ 1, got {settings[section][name]!r}")


def resolve_profile(name: str, overrides: dict | None = None) -> dict:
    """The settings of profile ``name`` with dotted-key ``overrides`` applied (a new mapping).

    Parameters
    ----------
    name : ``tiny`` | ``quick`` | ``full``
    overrides : ``{"section.key": value}`` or deeper (``"train.trainer.max_epochs"``). Every key and
        value type is checked (:func:`check_settings`; ``learn`` keys by ``phonion.workflows.learn``).

    Raises
    ------
    ValueError : unknown profile, override key (nearest valid key suggested) or a value of the wrong type
    """
    from phonion.core.config import unknown_key_message

    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    settings = copy.deepcopy(PROFILES[name])
    for key, value in (overrides or {}).items():
        parts = str(key).split(".")
        if parts[0] not in settings or parts[0] == "description":
            raise ValueError("profile setting: " + unknown_key_message(
                parts[0], [k for k in settings if k != "description"]) + f" in {key!r}")
        node = settings
        for depth, part in enumerate(parts[:-1]):
            if node.get(part) is None and parts[0] in ("train", "learn", "compare"):
                node[part] = {}
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {key!r}: {'.'.join(parts[:depth + 1])} is not a section")
            node = node[part]
        node[parts[-1]] = value
    if name == "full" and not (settings["train"].get("model") or {}).get("foundation"):
        _foundation_when_cached(settings)
    check_settings(settings)
    return settings


#: the foundation the full profile fine-tunes when mace has it cached (checked, never downloaded)
FULL_FOUNDATION = "medium-mpa-0"


def _foundation_when_cached(settings: dict) -> None:
    """The full profile fine-tunes ``FULL_FOUNDATION`` with mace's multihead replay when the model file
    is already in mace's cache (``phonion.mlip.foundation.cached_foundation``); otherwise it trains from
    scratch as before. ``--set train.model.foundation=FILE_OR_NAME`` chooses another one."""
    from phonion.mlip.foundation import cached_foundation

    if cached_foundation(FULL_FOUNDATION) is None:
        return
    train = settings["train"]
    train["model"] = {**train.get("model", {}), "foundation": FULL_FOUNDATION, "foundation_dtype": "convert"}
    train["finetune"] = {"mode": "multihead", "replay": {"n_configs": 256, "md_steps": 20}}
    train.setdefault("optim", {})["lr"] = 1e-3


__all__ = ["PROFILES", "check_settings", "parse_override", "resolve_profile", "section_fields"]
