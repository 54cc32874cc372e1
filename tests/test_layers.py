"""The house rules of the code layout: one installed name, layers that point one way, no import cycles.

The layer contract lives in ``.importlinter`` (checked by ``lint-imports`` in .ci/run); these tests run it,
show it catches a backwards import planted in a temporary copy of the package, and check what neither
import-linter nor pip checks: module-level import cycles and the installed top-level names.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "phonion"

pytestmark = pytest.mark.skipif(shutil.which("lint-imports") is None and
                                importlib.util.find_spec("importlinter") is None,
                                reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package found under ``root`` (a temporary copy, or the checkout)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(root / ".importlinter"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True)


def test_layer_contract_holds():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_layer_contract_catches_a_backwards_import(tmp_path):
    """A low layer (phonion.md.diffusion, analysis) importing a high one (phonion.compare) breaks the contract."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    shutil.copytree(PACKAGE, copy / "phonion", ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    target = copy / "phonion" / "md" / "diffusion.py"
    target.write_text(target.read_text() + "\n\ndef _backwards():\n    from phonion.compare import run  # noqa\n")
    r = _lint(copy)
    assert r.returncode != 0
    assert "phonion.md.diffusion -> phonion.compare.run" in r.stdout, r.stdout


def _top_level_imports(path: Path, module: str) -> set[str]:
    """phonion modules imported at module level (not inside functions) by one file."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] == "phonion"}


def test_no_module_level_import_cycles():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        modules[name] = path
    graph = {m: {t for t in _top_level_imports(p, m) if t in modules and t != m} for m, p in modules.items()}
    # `from pkg import name` where name is an attribute, not a submodule, counts as importing pkg (its __init__)
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "module-level import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_only_phonion_is_installed_at_top_level():
    """The old top-level names md, mdma, mlip are not importable from outside the checkout."""
    dist = importlib.metadata.distribution("phonion")
    top = (dist.read_text("top_level.txt") or "").split()
    assert top == ["phonion"], top
    code = ("import importlib.util as u, sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
            "print([n for n in ('md', 'mdma', 'mlip') if u.find_spec(n)]); import phonion.md, phonion.mdma, "
            "phonion.mlip")
    r = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
