"""Fine-tuning a foundation model (issue 15): names and mace's cache, bad input before training,
multihead / freeze runs end to end with tiny models made here (no downloads ever)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_data import emt_frames, write  # noqa: E402 (tests/mlip is on sys.path)

pytestmark = pytest.mark.filterwarnings("ignore")

TINY = ["model.r_max=4.0", "model.num_channels=8", "model.max_L=0", "model.max_ell=1", "model.correlation=2",
        "model.radial_MLP=[8]", "model.num_radial_basis=6", "trainer.batch_size=4", "trainer.progress_bar=false",
        "trainer.patience=0", "trainer.num_threads=1", "wandb.mode=disabled", "export.parity_plots=false",
        "data.fractions=[0.5,0.25,0.25]", "data.gap_frames=0", "trainer.max_epochs=2", "seed=3",
        "finetune.replay.n_configs=10"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    return {"cual": write(d / "cual_600K.extxyz", emt_frames(600, 12, 0)), "dir": d}


def _foundation(path: Path, data_file: str, dtype: str = "float64") -> Path:
    """An untrained tiny MACE on the elements of ``data_file``, saved in ``dtype``."""
    import mace  # noqa: F401
    import torch
    from mace.tools import set_default_dtype, torch_geometric

    from phonion.mlip.data import DataConfig, build_dataset, to_atomic_data
    from phonion.mlip.model import ModelConfig, build_model

    old = torch.get_default_dtype()
    set_default_dtype("float64")
    try:
        torch.manual_seed(0)
        ds = build_dataset(DataConfig(files=[data_file], gap_frames=0, fractions=(0.5, 0.5, 0.0)))
        loader = torch_geometric.dataloader.DataLoader(to_atomic_data(ds.train, ds.zs, 4.0), batch_size=3)
        model, _ = build_model(ModelConfig(r_max=4.0, num_channels=8, max_L=0, max_ell=1, correlation=2,
                                           radial_MLP=(8,), num_radial_basis=6), ds, loader)
    finally:
        torch.set_default_dtype(old)
    torch.save(model.double() if dtype == "float64" else model.float(), path)
    return path


@pytest.fixture(scope="module")
def foundation(files):
    return _foundation(files["dir"] / "found.model", files["cual"])


def _cfg(files, extra):
    from phonion.mlip.train import load_config

    return load_config(None, TINY + [f"data.files={json.dumps([files['cual']])}", *extra])


# ---- names and mace's cache -------------------------------------------------------------------
def test_unknown_name_is_one_clear_error():
    from phonion.mlip.foundation import resolve_foundation

    with pytest.raises(ValueError, match=r"'mace-mp-9000' is neither a file nor a foundation model mace-torch "
                                         r"knows \(.*medium-mpa-0"):
        resolve_foundation("mace-mp-9000")
    with pytest.raises(ValueError, match="nothere.model: no such file"):
        resolve_foundation("/tmp/nothere.model")


def test_name_offline_and_not_cached_names_model_file_and_folder(tmp_path, monkeypatch):
    from mace.calculators import foundations_models as fm

    from phonion.mlip.foundation import cached_foundation, resolve_foundation

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(url, filename, timeout=0):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(fm, "_urlretrieve_with_timeout", offline)  # never a real download in tests
    assert cached_foundation("small-omat-0") is None
    with pytest.raises(ValueError) as err:
        resolve_foundation("small-omat-0")
    msg = str(err.value)
    assert "'small-omat-0' is not cached" in msg and "the file maceomat0smallmodel in" in msg
    assert "mace-omat-0-small.model" in msg  # where mace would download it from
    assert str(tmp_path / "cache" / "mace") in msg and "Temporary failure" in msg
    assert not list((tmp_path / "cache" / "mace").glob("*"))  # nothing half-written


def test_cached_name_resolves_through_maces_cache(tmp_path, monkeypatch, files, foundation):
    """A file put where mace's loader keeps 'medium-omat-0' is what the name loads (mace's naming)."""
    import shutil

    from mace.calculators import foundations_models as fm

    from phonion.mlip.foundation import cached_foundation, expected_file, resolve_foundation
    from phonion.mlip.model import ModelConfig, load_foundation

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(fm, "_urlretrieve_with_timeout", lambda *a, **k: pytest.fail("download attempted"))
    target = expected_file("medium-omat-0")
    assert target.parent == tmp_path / "mace" and target.name == "maceomat0mediummodel"
    target.parent.mkdir(parents=True)
    shutil.copy(foundation, target)
    assert resolve_foundation("medium-omat-0") == str(target) == cached_foundation("medium-omat-0")
    # mace's own downloader finds the same file without downloading (same cache path)
    assert fm.download_mace_mp_checkpoint("medium-omat-0") == str(target)
    model = load_foundation(ModelConfig(foundation="medium-omat-0"), "float64")
    assert sorted(model.atomic_numbers.tolist()) == [13, 29] and model.phonion_source == str(target)


# ---- bad input: each one error before training ------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("finetune.replay.weight=0", "finetune.replay.weight must be > 0"),
    ("finetune.replay.weight=-1", "finetune.replay.weight must be > 0"),
    ("finetune.mode=lora", "finetune.mode must be one of naive, multihead, freeze, got 'lora'"),
    ("finetune.replay.wieght=1", "unknown key 'wieght' \\(did you mean 'weight'\\?\\)"),
])
def test_bad_finetune_config(files, override, message):
    with pytest.raises(ValueError, match=message):
        _cfg(files, [override])


def test_multihead_needs_a_foundation(files):
    with pytest.raises(ValueError, match="finetune.mode=multihead fine-tunes a foundation model: set model.foundation"):
        _cfg(files, ["finetune.mode=multihead"])


def test_foundation_lacking_an_element_fails_before_training(files, tmp_path):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from phonion.mlip.train import run

    frames = []
    for k in range(8):
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
        a.symbols[::4] = "Ni"
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces())
        frames.append(a)
    cuni = write(tmp_path / "cuni_600K.extxyz", frames)
    found = _foundation(tmp_path / "cual.model", files["cual"])
    cfg = _cfg({"cual": cuni}, [f"model.foundation={found}", "finetune.mode=multihead", f"output={tmp_path / 'o'}"])
    with pytest.raises(ValueError, match=r"the foundation model .*cual.model has no Ni \(in .*cuni_600K.extxyz\); "
                                         r"it knows Al, Cu"):
        run(cfg)
    assert not (tmp_path / "o" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("stored, run_dtype", [("float32", "float64"), ("float64", "float32")])
def test_foundation_dtype_must_match(files, tmp_path, stored, run_dtype):
    from phonion.mlip.train import run

    found = _foundation(tmp_path / f"f_{stored}.model", files["cual"], dtype=stored)
    cfg = _cfg(files, [f"model.foundation={found}", f"dtype={run_dtype}", f"output={tmp_path / 'o'}"])
    with pytest.raises(ValueError, match=f"f_{stored}.model is stored in {stored} but the run trains in "
                                         f"{run_dtype}; set dtype={stored}"):
        run(cfg)
    assert not (tmp_path / "o").exists()  # checked before anything is written
    from phonion.mlip.foundation import model_dtype
    from phonion.mlip.model import load_foundation

    convert = _cfg(files, [f"model.foundation={found}", f"dtype={run_dtype}", "model.foundation_dtype=convert"])
    assert model_dtype(load_foundation(convert.model, run_dtype)) == run_dtype  # mace's way: cast


def test_replay_files_with_an_element_the_foundation_lacks(files, foundation, tmp_path):
    from phonion.mlip.data import build_dataset
    from phonion.mlip.finetune import prepare

    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    a = bulk("Ag", "fcc", a=4.1, cubic=True)
    a.calc = EMT()
    a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces())
    rep = write(tmp_path / "replay_ag.extxyz", [a, a])
    cfg = _cfg(files, [f"model.foundation={foundation}", f"finetune.replay.files=[{rep}]"])
    with pytest.raises(ValueError, match=r"has no Ag \(in .*replay_ag.extxyz\)"):
        prepare(cfg, build_dataset(cfg.data))


# ---- runs ---------------------------------------------------------------------------------------
def test_pseudo_labels_are_the_foundations_predictions(files, foundation):
    """Replay frames made here: strained/rattled copies, labelled by the foundation (mace's
    generate_pseudolabels_for_configs); the foundation reproduces its labels (before ≈ 0)."""
    import torch
    from mace.calculators import MACECalculator

    from phonion.mlip.data import build_dataset
    from phonion.mlip.finetune import prepare

    cfg = _cfg(files, [f"model.foundation={foundation}", "finetune.mode=multihead"])
    ds = build_dataset(cfg.data)
    setup = prepare(cfg, ds)
    assert setup.heads == ("pt_head", "Default") and len(setup.replay_train) == 9 and len(setup.replay_test) == 1
    assert all(a.info["config_weight"] == 1.0 for a in setup.replay_train)
    calc = MACECalculator(models=[torch.load(foundation, weights_only=False)], device="cpu", default_dtype="float64")
    for a in setup.replay_train[:3]:
        b = a.copy()
        b.calc = calc
        assert b.get_potential_energy() == pytest.approx(a.info["REF_energy"], abs=1e-8)
        np.testing.assert_allclose(b.get_forces(), a.arrays["REF_forces"], atol=1e-8)
        src = min(ds.train, key=lambda t: np.abs(t.positions - a.positions).max())
        assert 0 < np.abs(src.positions - a.positions).max() < 0.5  # perturbed, not copied


def test_multihead_run_exports_one_head_for_md(files, foundation, tmp_path):
    import torch
    from mace.calculators import MACECalculator

    from phonion.core.calculators import resolve_calculator
    from phonion.mlip.train import run

    m = run(_cfg(files, [f"model.foundation={foundation}", "finetune.mode=multihead", f"output={tmp_path / 'mh'}"]))
    assert m["model"]["heads"] == ["pt_head", "Default"] and m["model"]["finetune_mode"] == "multihead"
    exported = torch.load(m["model_file"], weights_only=False)
    assert list(exported.heads) == ["Default"]
    rep = m["replay"]
    assert rep["n_train"] == 9 and rep["n_test"] == 1 and rep["before"]["force_rmse_meV_A"] < 1e-3
    assert np.isfinite(rep["after"]["force_rmse_meV_A"]) and rep["after"]["force_rmse_meV_A"] > 0
    frame = emt_frames(600, 1, 9)[0]
    e = []
    for calc in (MACECalculator(model_paths=m["model_file"], device="cpu", default_dtype="float64"),
                 resolve_calculator(f"mace:{m['model_file']}", device="cpu", dtype="float64")):
        frame.calc = calc
        e.append(frame.get_potential_energy())
    assert e[0] == pytest.approx(e[1], abs=1e-9)


def test_freeze_keeps_the_frozen_layers(files, foundation, tmp_path):
    """mace's --freeze 5: embedding and interactions keep the foundation's weights; readouts train."""
    import torch

    from phonion.mlip.train import run

    m = run(_cfg(files, [f"model.foundation={foundation}", "finetune.mode=freeze", f"output={tmp_path / 'fr'}"]))
    found, tuned = torch.load(foundation, weights_only=False), torch.load(m["model_file"], weights_only=False)
    for a, b in zip(found.interactions.parameters(), tuned.interactions.parameters()):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(found.readouts.parameters(), tuned.readouts.parameters()))
    assert m["replay"]["heads"] == ["Default"] and m["model"]["finetune_mode"] == "freeze"


def test_replay_md_runs_at_the_data_temperature_and_leaves_the_foundation_trainable(files, foundation):
    """md_steps of foundation MD (mace's MACECalculator switches gradients off: phonion restores them)."""
    from phonion.mlip.data import build_dataset
    from phonion.mlip.finetune import prepare
    from phonion.mlip.model import load_foundation

    cfg = _cfg(files, [f"model.foundation={foundation}", "finetune.replay.n_configs=3", "finetune.replay.md_steps=3",
                       "finetune.replay.holdout_fraction=0"])
    found = load_foundation(cfg.model, "float64")
    setup = prepare(cfg, build_dataset(cfg.data), found)
    assert [a.info["temperature_K"] for a in setup.replay_train] == [600.0] * 3
    assert all(p.requires_grad for p in found.parameters())
    assert setup.replay_test == [] and setup.heads == ("Default",)
