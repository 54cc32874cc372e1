"""No side effects at import: importing phonion leaves WANDB_MODE, the matplotlib backend and
``warnings.formatwarning`` alone; the CLI restores ``formatwarning``; plots use their own Agg canvas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

IMPORT_ALL = r"""
import json, os, pkgutil, importlib, warnings
import matplotlib

before = {"wandb": os.environ.get("WANDB_MODE"), "backend": matplotlib.get_backend()}
import mace  # noqa: F401  (before e3nn: with recent torch, importing e3nn first fails)
before["formatwarning"] = warnings.formatwarning
import phonion

names = ["phonion"] + [m.name for m in pkgutil.walk_packages(phonion.__path__, "phonion.")
                       if not m.name.endswith("__main__")]
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:  # reported, not hidden
        failed[name] = repr(exc)
print(json.dumps({"n": len(names), "failed": failed, "wandb_before": before["wandb"],
                  "wandb_after": os.environ.get("WANDB_MODE"), "backend_before": before["backend"],
                  "backend_after": matplotlib.get_backend(),
                  "formatwarning_same": warnings.formatwarning is before["formatwarning"]}))
"""


def test_importing_every_module_has_no_side_effects():
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    env.update(MPLBACKEND="svg", OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["n"] > 20
    assert out["failed"] == {}
    assert out["wandb_before"] is None and out["wandb_after"] is None
    assert out["backend_before"] == "svg" and out["backend_after"] == "svg"
    assert out["formatwarning_same"]


def test_cli_restores_formatwarning(monkeypatch, capsys):
    import importlib

    cli = importlib.import_module("phonion.cli.main")  # the module (phonion.cli re-exports main, the function)

    original = warnings.formatwarning
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert warnings.formatwarning is original
    capsys.readouterr()

    ours = os.path.join(os.path.dirname(os.path.abspath(cli.__file__)), "transport.py")

    def noisy(args):
        warnings.warn_explicit("phonion's own note", UserWarning, ours, 3)
        warnings.warn_explicit("deprecated thing", DeprecationWarning, "/site-packages/other/mod.py", 7)
        warnings.warn_explicit("third-party note", UserWarning, "/site-packages/other/mod.py", 9)
        print("stdout payload")
        return 0

    def show(message, category, filename, lineno, file=None, line=None):  # pytest records warnings: print them
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(warnings, "showwarning", show)
    monkeypatch.setattr(cli, "_cmd_sites", noisy)
    assert cli.main(["sites"]) == 0
    assert warnings.formatwarning is original
    out, err = capsys.readouterr()
    assert out == "stdout payload\n"
    assert "phonion: warning: phonion's own note\n" in err
    assert "phonion: warning: DeprecationWarning from /site-packages/other/mod.py:7: deprecated thing\n" in err
    assert "phonion: warning: UserWarning from /site-packages/other/mod.py:9: third-party note\n" in err

    def failing(args):
        raise KeyError("unexpected")

    monkeypatch.setattr(cli, "_cmd_sites", failing)
    with pytest.raises(KeyError):
        cli.main(["sites"])
    assert warnings.formatwarning is original


def test_plot_keeps_backend_and_writes_png(tmp_path):
    import matplotlib

    from phonion.mlip.evaluate import plot_parity

    backend = matplotlib.get_backend()
    rng = np.random.default_rng(0)
    f = rng.normal(size=(12, 3))
    pred = {"energy_ref": rng.normal(size=4), "n_atoms": np.full(4, 3.0), "forces_ref": f,
            "forces_pred": f + 0.01, "symbols": np.array(["Li", "O", "O"] * 4),
            "stress_ref": np.zeros((4, 3, 3)), "stress_pred": np.full((4, 3, 3), np.nan),
            "temperature_K": np.full(4, 300.0)}
    pred["energy_pred"] = pred["energy_ref"] + 0.003
    paths = plot_parity(pred, tmp_path / "parity", title="test")
    assert matplotlib.get_backend() == backend
    assert [p.name for p in paths] == ["parity_energy.png", "parity_forces.png"]
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
