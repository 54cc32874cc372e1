"""Layout numbers for the code under phonion/: largest files, long functions, long parameter lists.

    python scripts/layout_report.py [--json]

Counts what the layout issue asks to keep small: files ≲ 400 lines, functions ≲ 80 lines, no function with
more than ~10 parameters. (Backwards imports and cycles: `lint-imports` and tests/test_layers.py.)
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "phonion"


def report() -> dict:
    files, funcs, params = [], [], []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(ROOT.parent))
        files.append((rel, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                a = node.args
                k = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) - (1 if a.args and a.args[0].arg in ("self", "cls") else 0)
                funcs.append((f"{rel}:{node.name}", n))
                params.append((f"{rel}:{node.name}", k))
    return {"files_over_400_lines": sorted([f for f in files if f[1] > 400], key=lambda x: -x[1]),
            "largest_files": sorted(files, key=lambda x: -x[1])[:5],
            "functions_over_80_lines": sorted([f for f in funcs if f[1] > 80], key=lambda x: -x[1]),
            "functions_over_10_parameters": sorted([f for f in params if f[1] > 10], key=lambda x: -x[1]),
            "n_files": len(files), "n_functions": len(funcs)}


if __name__ == "__main__":
    r = report()
    if "--json" in sys.argv:
        print(json.dumps(r, indent=1))
    else:
        for key, value in r.items():
            print(f"{key}: {value}")
