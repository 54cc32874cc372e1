"""Bad input to ``phonion demo`` / ``phonion series`` is refused at once, and reruns after a settings change
reuse what did not change (``phonion.chain``). The chain's stages are stubbed: no MD, no training."""

import json
import time
from pathlib import Path

import pytest

from phonion.cli.main import build_parser, main


def _first_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[0]


@pytest.mark.parametrize("setting, message", [
    ("mlip_md.stepz=5", "phonion demo: error: profile setting: unknown key 'mlip_md.stepz' "
                        "(did you mean 'mlip_md.steps'?)"),
    ("mlip_md.steps=abc", "phonion demo: error: mlip_md.steps must be an integer, got 'abc'"),
    ("train.trainer.max_epoch=3", "phonion demo: error: profile setting: unknown key 'train.trainer.max_epoch' "
                                  "(did you mean 'train.trainer.max_epochs'?)"),
    ("train.model.num_channels=abc", "phonion demo: error: train.model.num_channels must be an integer, got 'abc'"),
    ("reference.temperatures_K=hot", "phonion demo: error: reference.temperatures_K must be a list of numbers, "
                                     "got 'hot'"),
    ("reference.ensemble=nvt-foo", "phonion demo: error: reference settings of profile 'tiny': MD settings: "
                                   "ensemble must be one of"),
    ("mlip_md.equilibration_steps=7", "phonion demo: error: mlip_md settings of profile 'tiny': MD settings: "
                                      "equilibration_steps (7) must be a multiple of sample_every (5)"),
    ("mlip_md.fix=[O_x]", "phonion demo: error: mlip_md settings of profile 'tiny': sweep settings: fix must be"),
    ("mlip_md.allow_failed_gate=1", "phonion demo: error: mlip_md.allow_failed_gate must be true or false, got 1"),
    ("learn.finetune.max_epochs=abc", "phonion demo: error: train / learn settings of profile 'tiny': learn config: "
                                      "finetune.max_epochs must be an integer, got 'abc'"),
    ("learn.committee.sizee=3", "phonion demo: error: train / learn settings of profile 'tiny': learn config: "
                                "unknown key committee.sizee (did you mean 'size'?)"),
    ("compare.tau_max_ps=x", "phonion demo: error: compare.tau_max_ps must be a number, got 'x'"),
    ("compare.tau_max=1", "phonion demo: error: profile setting: unknown key 'compare.tau_max' "
                          "(did you mean 'compare.tau_max_ps'?)"),
    ("trian.seed=1", "phonion demo: error: profile setting: unknown key 'trian' (did you mean 'train'?)"),
    ("threads=0", "phonion demo: error: threads must be an integer ≥ 1, got 0"),
    ("mlip_md.steps=[1", "phonion demo: error: override 'mlip_md.steps=[1': the value is not valid YAML"),
])
def test_demo_bad_setting_refused_at_once(tmp_path, capsys, setting, message):
    out = tmp_path / "demo-out"
    t0 = time.perf_counter()
    rc = main(["demo", "-o", str(out), "--profile", "tiny", "--set", setting])
    assert time.perf_counter() - t0 < 10
    assert rc == 2
    assert _first_line(capsys).startswith(message)
    assert not out.exists() or not any(out.iterdir())


def test_demo_config_file_checked_like_set(tmp_path, capsys):
    cfg = tmp_path / "settings.yaml"
    cfg.write_text("mlip_md:\n  steps: 40\ntrain:\n  trainer:\n    max_epoch: 3\n")
    out = tmp_path / "demo-out"
    assert main(["demo", "-o", str(out), "--profile", "tiny", "--config", str(cfg)]) == 2
    assert _first_line(capsys) == ("phonion demo: error: profile setting: unknown key 'train.trainer.max_epoch' "
                                   "(did you mean 'train.trainer.max_epochs'?)")
    assert not out.exists()


@pytest.mark.parametrize("setting, message", [
    ("mlip_md.stepz=5", "phonion series: error: profile setting: unknown key 'mlip_md.stepz' "
                        "(did you mean 'mlip_md.steps'?)"),
    ("mlip_md.steps=abc", "phonion series: error: mlip_md.steps must be an integer, got 'abc'"),
    ("train.trainer.max_epoch=3", "phonion series: error: profile setting: unknown key 'train.trainer.max_epoch'"),
])
def test_series_bad_chain_setting_refused_before_any_compound(tmp_path, capsys, setting, message):
    out = tmp_path / "series-out"
    t0 = time.perf_counter()
    rc = main(["series", "--with", "Al", "--profile", "tiny", "-o", str(out), "--set", setting])
    assert time.perf_counter() - t0 < 10
    assert rc == 2
    assert _first_line(capsys).startswith(message)
    assert not out.exists()


def test_every_demo_and_series_option_has_help_with_its_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command" or hasattr(a, "choices") and a.choices
               and "demo" in a.choices).choices
    for name in ("demo", "series"):
        for action in sub[name]._actions:
            assert action.help, f"phonion {name} {action.option_strings}: no help text"
        text = sub[name].format_help()
        assert "(default: tiny)" in text or "(default: quick)" in text, name


# ---- reruns after a settings change (stages stubbed) ------------------------------------------------
@pytest.fixture()
def stub_stages(monkeypatch):
    """Stage functions that write a marker with the setting they ran with, and return None when done."""
    from phonion.chain import stages

    calls = []

    def marker(ctx, name, path, value):
        target = ctx.out / path
        if target.exists():
            return None
        calls.append(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
        return value

    def reference(ctx):
        if ctx.settings["reference"]["steps"] == 13:
            raise RuntimeError("reference MD failed")
        return marker(ctx, "reference", "reference/reference.json",
                      {"runs": [], "steps": ctx.settings["reference"]["steps"]})

    def compare(ctx):
        if marker(ctx, "compare", "compare/numbers.json", {"reference": {}, "mlip": {}}) is None:
            return None
        (ctx.out / "compare" / "report.html").write_text("<html></html>")
        return {}

    monkeypatch.setattr(stages, "stage_sites", lambda ctx: marker(ctx, "sites", "sites.json", {"O_e": 1}))
    monkeypatch.setattr(stages, "stage_reference", reference)
    monkeypatch.setattr(stages, "stage_learn", lambda ctx: marker(
        ctx, "learn", "learn/committee.json", {"rounds": [], "epochs": ctx.settings["train"]["trainer"]["max_epochs"]}))
    monkeypatch.setattr(stages, "stage_mlip_md", lambda ctx, previous: marker(
        ctx, "mlip_md", "mlip_md/summary.json", {"steps": ctx.settings["mlip_md"]["steps"]}) and [])
    monkeypatch.setattr(stages, "stage_compare", compare)
    return calls


def _chain(out: Path, **overrides):
    from phonion.chain.chain import ChainConfig, run_chain

    return run_chain(ChainConfig(output=str(out), profile="tiny", overrides=overrides), progress=False)


def test_rerun_with_changed_setting_reuses_unchanged_stages(tmp_path, stub_stages, capsys):
    out = tmp_path / "chain"
    _chain(out)
    assert stub_stages == ["sites", "reference", "learn", "mlip_md", "compare"]
    assert (out / "README.md").is_file()
    index = (out / "README.md").read_text()
    for item in ("sites.json", "reference/<T>K/", "learn/rounds.json", "learn/validation.json", "mlip_md/<run>/",
                 "compare/report.html", "summary.json", "run.log"):
        assert item in index, item
    stub_stages.clear()
    _chain(out, **{"mlip_md.steps": 40})  # only the MLIP MD and what follows are redone
    assert stub_stages == ["mlip_md", "compare"]
    assert json.loads((out / "mlip_md" / "summary.json").read_text()) == {"steps": 40}
    assert json.loads((out / "mlip_md.old-1" / "summary.json").read_text()) == {"steps": 150}  # kept
    assert (out / "compare.old-1" / "numbers.json").is_file()
    stub_stages.clear()
    _chain(out, **{"mlip_md.steps": 40})  # the same again: nothing redone
    assert stub_stages == []
    _chain(out, **{"train.trainer.max_epochs": 3, "mlip_md.steps": 40, "mlip_md.workers": 2})
    assert stub_stages == ["learn", "mlip_md", "compare"]  # workers do not count
    assert (out / "learn.old-1").is_dir() and (out / "mlip_md.old-2").is_dir()


def test_failed_run_with_other_settings_never_blocks_a_rerun(tmp_path, stub_stages, capsys):
    out = tmp_path / "chain"
    with pytest.raises(RuntimeError, match="reference MD failed"):
        _chain(out, **{"reference.steps": 13})
    stub_stages.clear()
    _chain(out)  # the user fixed the setting: no refusal, the unfinished reference is redone
    assert stub_stages == ["reference", "learn", "mlip_md", "compare"]
    # the CLI too: a typo first (refused, nothing recorded), then the corrected command reuses everything
    assert main(["demo", "-o", str(out), "--profile", "tiny", "--set", "mlip_md.stepz=5"]) == 2
    stub_stages.clear()
    assert main(["demo", "-o", str(out), "--profile", "tiny", "--seed", "0"]) == 0
    assert stub_stages == []


def test_old_chain_json_without_stage_records_is_reused(tmp_path, stub_stages):
    from phonion.chain.profiles import resolve_profile

    out = tmp_path / "chain"
    _chain(out)
    record = json.loads((out / "chain.json").read_text())
    old = {k: record[k] for k in ("profile", "overrides", "structure", "calculator", "seed", "device")}
    (out / "chain.json").write_text(json.dumps({**old, "settings": resolve_profile("tiny")}))
    stub_stages.clear()
    _chain(out)
    assert stub_stages == []


def test_md_stage_progress_line_counts_runs_and_gives_an_eta(tmp_path):
    from phonion.chain.stages import StageProgress
    from phonion.md.md_config import MDConfig

    cfgs = [MDConfig(steps=100, sample_every=10, checkpoint_every=10, output=str(tmp_path / f"{t}K"))
            for t in (900, 1000)]
    for c in cfgs:
        Path(c.output).mkdir()
    (tmp_path / "900K" / "run.json").write_text(json.dumps({"status": "complete"}))
    (tmp_path / "1000K" / "run.log").write_text("x INFO checkpoint: step 50, 5 frames, T = 1000.0 K, wall 3.0 s\n")
    line = StageProgress("reference", cfgs, "temperatures").line(0.0, 60.0)
    assert line == "reference: 1/2 temperatures done, 75 % of the steps, ETA 20 s"
    assert StageProgress("reference", cfgs, "temperatures").line(0.5, 600.0).endswith("ETA 10 min")
    assert StageProgress("reference", cfgs, "temperatures").line(0.75, 60.0).endswith("ETA unknown yet")


def test_learn_rerun_ignores_workers_and_device_but_not_results_settings(tmp_path):
    from phonion.workflows.learn import _check_same

    cfg = {"committee": {"size": 3, "workers": 2}, "device": "cpu", "rounds": {"max_rounds": 1}}
    _check_same(tmp_path, cfg)
    _check_same(tmp_path, {**cfg, "committee": {"size": 3, "workers": 1}, "device": "cuda"})
    with pytest.raises(ValueError, match="other settings.*committee.size"):
        _check_same(tmp_path, {**cfg, "committee": {"size": 4, "workers": 2}})


def test_series_reruns_a_finished_compound_when_its_chain_settings_change(tmp_path, monkeypatch):
    import phonion.chain.substitution as substitution
    from phonion.chain.series import SeriesConfig, run_series

    def no_relax(atoms, spec, output_dir=None, **kw):
        sg = {"symbol": "P1", "number": 1}
        return atoms.copy(), {"converged": True, "steps": 0, "volume_change": 0.0, "reused": False,
                              "space_group_before": sg, "space_group_after": sg}

    monkeypatch.setattr(substitution, "relax", no_relax)
    calls = []

    def chain(cfg, progress=False):
        calls.append(dict(cfg.overrides))
        return {"compare": {"mlip": {"numbers": {}}, "reference": {"numbers": {}}}}

    cfg = SeriesConfig(with_=(), output=str(tmp_path), profile="tiny")
    run_series(cfg, chain=chain, progress=False)
    run_series(cfg, chain=chain, progress=False)  # unchanged: skipped
    assert calls == [{}]
    changed = SeriesConfig(with_=(), output=str(tmp_path), profile="tiny", chain_overrides={"mlip_md.steps": 40})
    report = run_series(changed, chain=chain, progress=False)
    assert calls == [{}, {"mlip_md.steps": 40}] and report["compounds"][0]["resumed"] is False
