"""phonion.core's single homes: autocorrelation, minimum image, JSON sanitising, thread capping, units."""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.geometry import find_mic

from phonion.core import units
from phonion.core.geometry import minimum_image
from phonion.core.jsonutil import clean, default
from phonion.core.signal import autocorrelation
from phonion.core.threads import limit_threads, threads


# ---- autocorrelation ---------------------------------------------------------------------------------
def _direct(x, n_lags):
    f = x.shape[0]
    return np.array([np.einsum("t...,t...->...", x[:f - k], x[k:]) for k in range(n_lags)])


@pytest.mark.parametrize("f", [1, 2, 17, 64, 101])
def test_autocorrelation_equals_the_direct_sum(f):
    rng = np.random.default_rng(f)
    x = rng.normal(size=(f, 4, 3))
    np.testing.assert_allclose(autocorrelation(x), _direct(x, f), rtol=0, atol=1e-10)
    n = max(1, f // 2)
    np.testing.assert_allclose(autocorrelation(x[:, 0, 0], n), _direct(x[:, 0, 0], n), rtol=0, atol=1e-10)


def test_autocorrelation_of_a_constant_is_the_overlap_count():
    f = 50
    np.testing.assert_allclose(autocorrelation(np.ones(f)), f - np.arange(f), rtol=0, atol=1e-10)
    expect = np.repeat(9.0 * (f - np.arange(7))[:, None], 2, axis=1)
    np.testing.assert_allclose(autocorrelation(np.full((f, 2), 3.0), 7), expect, rtol=0, atol=1e-10)


def test_autocorrelation_rejects_too_many_lags():
    with pytest.raises(ValueError, match="n_lags"):
        autocorrelation(np.ones(5), 6)


# ---- minimum image -----------------------------------------------------------------------------------
SKEWED = np.array([[6.0, 0.0, 0.0], [2.5, 5.0, 0.0], [1.0, -1.5, 7.0]])
#: far from Minkowski-reduced (shortest lattice vector 2.04 Å, cell vectors ≥ 5 Å): find_mic alone errs here
FLAT = np.array([[5.0, 0.0, 0.0], [4.2, 3.0, 0.0], [3.9, 2.7, 2.0]])


def _brute_force(v, cell, reach):
    images = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3))) @ cell
    cands = v[:, None, :] + images[None]
    return np.linalg.norm(cands, axis=2).min(axis=1)


def test_minimum_image_on_a_skewed_cell_is_find_mic_and_the_shortest():
    rng = np.random.default_rng(3)
    pos = rng.random((40, 3)) @ SKEWED * 1.7  # some atoms outside the cell
    v = (pos[:, None] - pos[None]).reshape(-1, 3)
    got, length = minimum_image(v, SKEWED, return_lengths=True)
    np.testing.assert_allclose(got, find_mic(v, SKEWED)[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(length, np.linalg.norm(got, axis=1), rtol=0, atol=1e-12)
    # a periodic image of the input: integer fractional difference
    n = np.linalg.solve(SKEWED.T, (got - v).T).T
    np.testing.assert_allclose(n, np.rint(n), atol=1e-9)
    # the shortest over every image −1 … 1 of the returned vector
    assert (np.linalg.norm(got, axis=1) <= _brute_force(got, SKEWED, 1) + 1e-12).all()


def test_minimum_image_is_the_shortest_even_where_find_mic_is_not():
    rng = np.random.default_rng(0)
    v = rng.normal(scale=3.0, size=(400, 3))
    got = minimum_image(v, FLAT)
    best = _brute_force(v, FLAT, 5)
    assert np.abs(np.linalg.norm(got, axis=1) - best).max() < 1e-12
    ase_len = np.array([find_mic(x, FLAT)[1] for x in v])  # one by one: ase takes its shortcut more often
    assert (ase_len - best).max() > 1e-3  # and that shortcut is fooled by this cell (the reason for the fix)


def test_minimum_image_shapes_and_partial_pbc():
    v = np.full((2, 5, 3), 4.0)
    assert minimum_image(v, SKEWED).shape == (2, 5, 3)
    assert minimum_image(v, SKEWED, return_lengths=True)[1].shape == (2, 5)
    assert minimum_image(np.zeros((0, 3)), SKEWED).shape == (0, 3)
    one = minimum_image(np.array([0.0, 0.0, 6.9]), SKEWED, pbc=[True, True, False])
    assert one[2] == pytest.approx(6.9)  # the non-periodic direction is left alone
    np.testing.assert_allclose(minimum_image([7.0, 1.0, 1.0], np.zeros((3, 3))), [7.0, 1.0, 1.0])


# ---- JSON --------------------------------------------------------------------------------------------
def test_clean_makes_strict_json_and_can_keep_nan():
    value = {1: np.float64(1.5), "a": [np.int64(2), np.nan, (np.bool_(True), np.array([[1.0, np.inf]]))]}
    assert clean(value) == {"1": 1.5, "a": [2, None, [True, [[1.0, None]]]]}
    json.dumps(clean(value), allow_nan=False)
    kept = clean(value, keep_nan=True)
    assert math.isnan(kept["a"][1]) and kept["a"][2][1] == [[1.0, math.inf]]
    assert type(kept["1"]) is float and type(kept["a"][0]) is int


def test_default_hook_and_its_fallback():
    data = {"a": np.arange(3), "b": np.float32(0.5), "p": Path("x/y")}
    assert json.loads(json.dumps(data, default=default)) == {"a": [0, 1, 2], "b": 0.5, "p": "x/y"}
    with pytest.raises(TypeError, match="object"):
        json.dumps({"o": object()}, default=default)
    text = json.dumps({"o": 3j, "p": Path("q")}, default=functools.partial(default, fallback=str))
    assert json.loads(text) == {"o": "3j", "p": "q"}


# ---- threads -----------------------------------------------------------------------------------------
def test_limit_threads_sets_the_environment(monkeypatch):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        limit_threads(1)
        assert all(os.environ[v] == "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"))
        if torch is not None:
            assert torch.get_num_threads() == 1
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def test_threads_block_restores_torch_and_the_environment(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
    assert torch.get_num_threads() == before
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "3"
    with threads(1, env=False):
        assert torch.get_num_threads() == 1 and "OMP_NUM_THREADS" not in os.environ
    with threads(None):
        torch.set_num_threads(1)  # changed inside an uncapped block: restored all the same
    assert torch.get_num_threads() == before


# ---- units -------------------------------------------------------------------------------------------
def test_units_match_their_definitions():
    assert units.K_B_EV_K == pytest.approx(8.617333262e-5, rel=1e-10)
    assert units.AMU_A2_PER_FS2_TO_EV == pytest.approx(103.6427, rel=1e-6)
    assert units.THZ_TO_CM1 == pytest.approx(33.35641, rel=1e-6)
    assert units.A2_FS_TO_CM2_S == 0.1


def test_worker_processes_print_warnings_on_one_line_in_the_cli_format():
    """A warning raised in a phonion worker process (pool initialiser ``worker_init``) is one line,
    naming category and origin for third-party code (e.g. CHGNet's multi-line UserWarnings)."""
    import os
    import subprocess
    import sys

    code = ("import os, warnings\nfrom phonion.core.threads import worker_init\nworker_init(1, os.getppid())\n"
            "warnings.warn_explicit('first line\\nsecond line', UserWarning, '/site-packages/lib/x.py', 7)\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "default"}).stderr
    assert err == "phonion: warning: UserWarning from /site-packages/lib/x.py:7: first line second line\n"
    # torch 2.13's deprecation of torch.jit.load (mace/e3nn call it at every model load) is hidden; others are not
    noise = code.replace("warnings.warn_explicit('first line\\nsecond line', UserWarning, '/site-packages/lib/x.py', 7)",
                         "warnings.warn_explicit('`torch.jit.load` is deprecated. Please switch to `torch.export`.', "
                         "DeprecationWarning, '/site-packages/torch/jit/_serialization.py', 176)\n"
                         "warnings.warn_explicit('old', DeprecationWarning, '/site-packages/lib/y.py', 3)")
    err = subprocess.run([sys.executable, "-c", noise], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "default"}).stderr
    assert err == "phonion: warning: DeprecationWarning from /site-packages/lib/y.py:3: old\n"
    banner = "import os\nfrom phonion.core.threads import worker_init\nworker_init(1, os.getppid())\nprint('CHGNet v0')\n"
    r = subprocess.run([sys.executable, "-c", banner], capture_output=True, text=True, check=True)
    assert (r.stdout, r.stderr) == ("", "CHGNet v0\n")  # a worker's banner never reaches the parent's stdout
