"""Are two ``compare/numbers.json`` files the same numbers? (the layout issue's before/after check)

    python scripts/compare_numbers.py A/compare/numbers.json B/compare/numbers.json [--json]

Two demo outputs made in different directories (or from checkouts in different places) differ in the
paths they record and in wall-clock timings; both are normalised away (each file's own demo directory and
the bundled-data directory become placeholders, the ``timings_s`` block is dropped). Everything else —
every number, uncertainty, flag and note — must be equal. Exit code 0 when identical, 1 otherwise.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path


def normalised(path: Path) -> dict:
    text = path.read_text()
    demo = str(path.resolve().parent.parent)  # .../OUT/compare/numbers.json -> .../OUT
    text = text.replace(demo, "<demo>")
    text = re.sub(r'[^"\s]*/phonion/data/', "<data>/", text)
    data = json.loads(text)
    data.pop("timings_s", None)
    return data


def main(argv=None) -> int:
    args = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--")]
    if len(args) != 2 or not all(Path(p).is_file() for p in args):
        print(f"compare_numbers: error: give two existing numbers.json files, got {args}", file=sys.stderr)
        return 2
    a, b = (normalised(Path(p)) for p in args[:2])
    ta = json.dumps(a, indent=1, sort_keys=True).splitlines()
    tb = json.dumps(b, indent=1, sort_keys=True).splitlines()
    diff = list(difflib.unified_diff(ta, tb, args[0], args[1], lineterm="", n=1))
    if "--json" in (argv or sys.argv):
        print(json.dumps({"identical": a == b, "n_keys": len(a), "diff": diff}, indent=1))
    else:
        print("identical" if a == b else "\n".join(diff))
    return 0 if a == b else 1


if __name__ == "__main__":
    sys.exit(main())
