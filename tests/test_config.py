"""One config mechanism: YAML + ``key=value`` overrides + frozen dataclasses (phonion.core.config), and the
``--config`` / ``--set`` every subcommand takes (phonion.cli.options). Every shipped configs/*.yaml loads."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from phonion.core import config as C

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Demo:
    steps: int = 10
    timestep_fs: float = 1.0
    supercell: tuple[int, ...] = (1, 1, 1)
    name: str = "x"

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {self.steps}")


def test_overrides_parse_as_yaml_and_nest():
    assert C.parse_override("a.b=4000") == ("a.b", 4000)
    assert C.parse_override("x=[1, 2]") == ("x", [1, 2])
    assert C.apply_overrides({"a": {"c": 1}}, ["a.b=2.5", "d=none"]) == {"a": {"c": 1, "b": 2.5}, "d": "none"}
    with pytest.raises(ValueError, match="expected key=value"):
        C.parse_override("steps")
    with pytest.raises(ValueError, match="not a section"):
        C.apply_overrides({"a": 3}, ["a.b=1"])


def test_dataclass_from_yaml_coerces_suggests_and_validates(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("steps: 20.0\ntimestep_fs: 2\nsupercell: [2, 2, 1]\n")
    cfg = C.load(_Demo, f, ["name=run"])
    assert cfg == _Demo(steps=20, timestep_fs=2.0, supercell=(2, 2, 1), name="run")
    assert isinstance(cfg.timestep_fs, float) and isinstance(cfg.steps, int)
    with pytest.raises(ValueError, match=r"unknown key 'tmestep_fs' \(did you mean 'timestep_fs'\?\)"):
        C.load(_Demo, None, ["tmestep_fs=3"])
    with pytest.raises(ValueError, match="steps must be ≥ 1"):
        C.load(_Demo, None, ["steps=0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ValueError, match=f"{bad}: not valid YAML"):
        C.read_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        C.read_yaml(bad)
    with pytest.raises(ValueError, match="no such config file"):
        C.read_yaml(tmp_path / "missing.yaml")


def _parse(*argv):
    from phonion.cli.main import build_parser
    from phonion.cli.options import parse_with_config

    return parse_with_config(build_parser(), list(map(str, argv)))


def test_every_analysis_command_takes_config_and_set(tmp_path):
    f = tmp_path / "mdma.yaml"
    f.write_text("files: [a.h5, b.h5]\nphonons: ph\ntau-max-ps: 0.5\nn_blocks: 3\nconvention: notebook\n")
    a = _parse("mdma", "--config", f, "-o", tmp_path / "out")
    assert a.files == ["a.h5", "b.h5"] and a.phonons == "ph" and a.tau_max_ps == 0.5 and a.n_blocks == 3
    assert a.convention == "notebook"
    b = _parse("mdma", "--config", f, "--set", "n_blocks=5", "--tau-max-ps", "2", "c.h5", "-o", tmp_path)
    assert b.n_blocks == 5 and b.tau_max_ps == 2.0 and b.files == ["c.h5"]  # command line > --set > file
    c = _parse("mdma", "x.h5", "--phonons", "ph", "-o", tmp_path)  # the defaults are back afterwards
    assert c.n_blocks == 4 and c.tau_max_ps is None and c.convention == "gordiz"
    with pytest.raises(ValueError, match=r"unknown key 'tau_max' \(did you mean 'tau_max_ps'\?\)"):
        _parse("mdma", "--set", "tau_max=1", "x.h5", "--phonons", "ph", "-o", tmp_path)
    with pytest.raises(ValueError, match="convention must be one of gordiz, notebook"):
        _parse("mdma", "--set", "convention=exact", "x.h5", "--phonons", "ph", "-o", tmp_path)
    with pytest.raises(ValueError, match="supercell takes 3 values"):
        _parse("phonons", "--set", "supercell=[2,2]", "s.cif", "--calculator", "emt", "-o", tmp_path)
    from phonion.cli.main import build_parser

    sub = next(x for x in build_parser()._actions if isinstance(x, argparse._SubParsersAction))
    lacking = [name for name, p in sub.choices.items()
               if "--config" not in p._option_string_actions or "--set" not in p._option_string_actions]
    assert not lacking, f"commands without --config / --set: {lacking}"


def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    from phonion.cli.main import main

    f = tmp_path / "d.yaml"
    f.write_text("specis: Na\n")
    assert main(["diffusion", "--config", str(f), "x.h5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"phonion: error: {f} (diffusion settings): unknown key 'specis' (did you mean 'species'?)"]


@pytest.mark.parametrize("stage", ["mdma", "pfc", "diffusion", "phonons", "compare"])
def test_shipped_stage_configs_load(stage):
    a = _parse(stage, "--config", ROOT / "configs" / f"{stage}.yaml", "-o", "out")
    assert a.command == stage


def test_shipped_structured_configs_load():
    from phonion.md.sweep import SweepConfig
    from phonion.mlip.train import load_config
    from phonion.workflows.learn_config import load_learn_config

    from phonion.cli.md import sweep_config_from_args

    sweep = sweep_config_from_args(_parse("md", "--config", ROOT / "configs" / "md.yaml", "--set", "steps=40"))
    assert isinstance(sweep, SweepConfig) and sweep.run.steps == 40 and sweep.run.timestep_fs > 0
    assert load_config(ROOT / "configs" / "train.yaml").trainer.max_epochs >= 1
    assert load_config(ROOT / "configs" / "train_tiny.yaml").trainer.max_epochs >= 1
    cfg = load_learn_config(ROOT / "configs" / "learn.yaml", ["rounds.max_rounds=1"], data=["x.h5"])
    assert cfg["rounds"]["max_rounds"] == 1


def test_commands_with_their_own_set_keep_it():
    """demo / series take profile keys with --set (section.key=value): the generic layer leaves them alone."""
    a = _parse("demo", "-o", "x", "--set", "mlip_md.steps=40", "--set", "train.trainer.max_epochs=3")
    assert a.overrides == ["mlip_md.steps=40", "train.trainer.max_epochs=3"]
    from phonion.cli.main import build_parser

    sub = next(x for x in build_parser()._actions if isinstance(x, argparse._SubParsersAction))
    for name in ("demo", "series"):
        assert sub.choices[name].get_default("_generic_config") is not True, name


def test_full_profile_fine_tunes_a_cached_foundation_and_only_then(monkeypatch, tmp_path):
    """``full`` trains from scratch unless mace's cache holds the foundation (never a download);
    then multihead fine-tuning with replay; an explicit foundation is left alone."""
    import phonion.mlip.foundation as fd
    from phonion.chain.profiles import FULL_FOUNDATION, resolve_profile

    monkeypatch.setattr(fd, "cached_foundation", lambda spec: None)
    assert "foundation" not in resolve_profile("full")["train"]["model"]
    model = tmp_path / "m.model"
    model.write_bytes(b"x")
    monkeypatch.setattr(fd, "cached_foundation", lambda spec: str(model) if spec == FULL_FOUNDATION else None)
    s = resolve_profile("full")
    assert s["train"]["model"]["foundation"] == FULL_FOUNDATION and s["train"]["finetune"]["mode"] == "multihead"
    assert "foundation" not in resolve_profile("quick")["train"]["model"]  # CPU profiles: never
    mine = resolve_profile("full", {"train.model.foundation": str(model)})
    assert mine["train"]["model"]["foundation"] == str(model) and "finetune" not in mine["train"]
