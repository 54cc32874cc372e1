"""``phonion compare`` command line (placeholder until mdma.compare lands)."""

from __future__ import annotations


def add_compare_parser(sub, formatter) -> None:
    p = sub.add_parser("compare", formatter_class=formatter,
                       help="reference (DFT or surrogate) vs MLIP: the same analyses side by side")
    p.add_argument("--reference", required=True, metavar="DIR")
    p.add_argument("--mlip", required=True, metavar="DIR")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.set_defaults(func=lambda a: (_ for _ in ()).throw(RuntimeError("compare is not built yet")))
