"""``--engine auto``: the MD engine of a sweep chosen by rule where no measurement applies, by timing
both engines' force calls otherwise, kept for a resumed sweep, and written to sweep.json / run.json."""

import json

import pytest

from phonion.md.engine_choice import choose_engine
from phonion.md.sweep import SweepConfig, run_sweep
from test_batched import tiny_mace


@pytest.fixture(scope="module")
def mace_model_file(tmp_path_factory) -> str:
    import torch

    path = tmp_path_factory.mktemp("model") / "tiny.model"
    torch.save(tiny_mace(0), path)
    return str(path)


def _cfg(tmp_path, calculator, temps=(300.0, 600.0), **run):
    return SweepConfig.from_dict({"output": str(tmp_path / "sweep"), "calculator": calculator,
                                  "structure": "LiGa_SeO3_2", "temperatures_K": list(temps), "steps": 4,
                                  "sample_every": 2, "timestep_fs": 1.0, "max_force_eV_A": 1e4, **run})


def test_rules_without_a_measurement(tmp_path, mace_model_file):
    assert choose_engine(_cfg(tmp_path, "emt"))["engine"] == "ase"
    one = choose_engine(_cfg(tmp_path, f"mace:{mace_model_file}", temps=(300.0,)))
    assert one == {"engine": "ase", "how": "rule", "why": "one run: nothing to batch"}
    nhc = choose_engine(_cfg(tmp_path, f"mace:{mace_model_file}", ensemble="nvt-nhc"))
    assert nhc["engine"] == "ase" and "nvt-nhc" in nhc["why"]
    assert choose_engine(_cfg(tmp_path, f"mace:{mace_model_file}"), executor="dask")["engine"] == "ase"
    comp = choose_engine(_cfg(tmp_path, f"mace:{mace_model_file}?compile_mode=default"))
    assert comp["engine"] == "ase" and "compile_mode" in comp["why"]


def test_measured_choice_is_the_faster_engine_and_lands_in_sweep_and_run_json(tmp_path, mace_model_file):
    cfg = _cfg(tmp_path, f"mace:{mace_model_file}")
    choice = choose_engine(cfg, workers=1, calls=3)
    assert choice["how"] == "measured" and choice["batch_size"] == 2
    faster = "batched" if choice["batched_atom_steps_per_s"] > 1.05 * choice["ase_atom_steps_per_s"] else "ase"
    assert choice["engine"] == faster
    assert choice["ase_atom_steps_per_s"] == pytest.approx(
        choice["workers_at_once"] * 80 / choice["ase_s_per_call"])
    rows = run_sweep(cfg, engine="auto", progress=False)
    assert [r["status"] for r in rows] == ["complete", "complete"]
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert sweep["engine_choice"]["how"] == "measured" and sweep["engine"] == sweep["engine_choice"]["engine"]
    run = json.loads((tmp_path / "sweep" / "T300_seed0_fixnone" / "run.json").read_text())
    assert run["engine"] == sweep["engine"]
    again = choose_engine(cfg)  # the same directory again (resume): the engine its runs started on
    assert again["how"] == "kept" and again["engine"] == sweep["engine"]


def test_a_directory_of_an_older_ase_sweep_stays_on_ase(tmp_path, mace_model_file):
    cfg = _cfg(tmp_path, f"mace:{mace_model_file}")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"calculator": "x", "threads": {}}))
    choice = choose_engine(cfg)
    assert (choice["engine"], choice["how"]) == ("ase", "kept") and "sweep.json" in choice["why"]


def test_a_bad_compile_mode_or_dtype_is_refused_before_anything_is_written(tmp_path, mace_model_file, capsys):
    from phonion.cli.main import main

    for opt, word in (("compile_mode=fast", "compile_mode must be one of"), ("dtype=float16", "dtype must be")):
        out = tmp_path / opt.split("=")[0]
        assert main(["md", "--calculator", f"mace:{mace_model_file}?{opt}", "--temperatures-K", "300", "600",
                     "--steps", "20", "-o", str(out)]) == 2
        assert word in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_compiled_model_gives_eager_forces_and_compiles_once_per_process(tmp_path):
    """mace's compile_mode through the SPEC: forces equal the eager float32 model's to float32 round-off
    (compiled models compute in float32; dtype=float64 with compile_mode is refused), and a second
    resolve in the same process returns the same compiled calculator (compiled once)."""
    import numpy as np

    from phonion.core.calculators import resolve_calculator
    from phonion.core.structures import load_structure

    import mace.modules  # mace before e3nn
    import torch
    from e3nn import o3

    block = mace.modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = mace.modules.ScaleShiftMACE(  # the class mace trains (mace rebuilds it to compile)
        r_max=4.0, num_bessel=4, num_polynomial_cutoff=3, max_ell=1, interaction_cls=block,
        interaction_cls_first=block, num_interactions=1, num_elements=4, hidden_irreps=o3.Irreps("8x0e + 8x1o"),
        MLP_irreps=o3.Irreps("8x0e"), gate=torch.nn.functional.silu, atomic_energies=np.array([-2.0, -5.0, -3.0, -4.0]),
        avg_num_neighbors=20.0, atomic_numbers=[3, 8, 31, 34], correlation=2, radial_type="bessel",
        pair_repulsion=True, atomic_inter_scale=1.0, atomic_inter_shift=0.0).double()
    mace_model_file = tmp_path / "m.model"
    torch.save(model, mace_model_file)
    atoms = load_structure("LiGa_SeO3_2")
    atoms.rattle(0.05, seed=1)
    eager = resolve_calculator(f"mace:{mace_model_file}?dtype=float32", device="cpu")
    with pytest.raises(ValueError, match="compile_mode runs the model in float32"):
        resolve_calculator(f"mace:{mace_model_file}?dtype=float64&compile_mode=default", device="cpu")
    spec = f"mace:{mace_model_file}?compile_mode=default"
    compiled = resolve_calculator(spec, device="cpu")
    assert resolve_calculator(spec, device="cpu") is compiled
    a1, a2 = atoms.copy(), atoms.copy()
    a1.calc, a2.calc = eager, compiled
    f0, f1 = a1.get_forces(), a2.get_forces()
    assert f1.dtype == f0.dtype == np.float32 and np.abs(f0).max() > 1e-4
    assert np.abs(f1 - f0).max() < 1e-5
    # the kept graph (phonion.core.mace_graph) under torch.compile: the edge count changes at every
    # call (a dynamic shape) and at rebuilds; the forces stay the eager ones
    rng = np.random.default_rng(0)
    for _ in range(12):
        a1.positions = a2.positions = a1.positions + rng.normal(0, 0.03, a1.positions.shape)
        assert np.abs(a2.get_forces() - a1.get_forces()).max() < 1e-5
    assert compiled.graph.n_builds >= 2
    from torch._dynamo.utils import counters

    assert counters["stats"]["unique_graphs"] == 1   # one compilation, shapes dynamic from the first call


def test_batched_engine_refuses_a_compiled_model(tmp_path, mace_model_file):
    cfg = _cfg(tmp_path, f"mace:{mace_model_file}?dtype=float32&compile_mode=default")
    with pytest.raises(ValueError, match="batched runs eager models"):
        run_sweep(cfg, engine="batched", progress=False)
    assert not (tmp_path / "sweep").exists()


def test_the_chain_compiles_long_float32_cpu_md_only():
    """mlip_md.compile auto: compiled when a worker's steps repay the compile (measured on 2 cores), eager for
    the quick demo's short runs, float64, an unmeasured device, or compile no; yes forces it."""
    from phonion.chain.profiles import resolve_profile
    from phonion.md.engine_choice import COMPILE_MIN_STEPS, mlip_md_spec

    quick = resolve_profile("quick")["mlip_md"]
    spec, why = mlip_md_spec("mace:m.model?device=cpu", "float32", "auto", quick, "cpu")
    assert spec == "mace:m.model?device=cpu&dtype=float32" and "fewer than" in why
    long = {**quick, "steps": COMPILE_MIN_STEPS, "workers": 2}
    spec, why = mlip_md_spec("mace:m.model", "float32", "auto", long, "cpu")
    assert spec == "mace:m.model?dtype=float32&compile_mode=default" and why.startswith("compiled")
    assert "compile_mode" not in mlip_md_spec("mace:m.model", "float64", "auto", long, "cpu")[0]
    assert "compile_mode" not in mlip_md_spec("mace:m.model", "float32", "auto", long, "cuda")[0]
    assert "compile_mode" not in mlip_md_spec("mace:m.model", "float32", "no", long, "cpu")[0]
    assert "compile_mode" in mlip_md_spec("mace:m.model", "float32", "yes", quick, "cpu")[0]
    # steps per worker: (steps + equilibration) × runs / workers that run at once
    runs = len(quick["temperatures_K"]) * len(quick["seeds"]) + len(quick["fix"])
    per_worker = (quick["steps"] + quick["equilibration_steps"]) * runs // min(quick["workers"], runs)
    assert f"{per_worker} steps per worker" in mlip_md_spec("mace:m", "float32", "auto", quick, "cpu")[1]


def test_a_typo_in_mlip_md_compile_is_one_clear_error():
    from phonion.chain.profiles import resolve_profile

    with pytest.raises(ValueError, match="mlip_md.compile must be auto, yes or no, got 'maybe'"):
        resolve_profile("quick", {"mlip_md.compile": "maybe"})
