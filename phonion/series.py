"""``phonion series`` (placeholder until it lands)."""

from __future__ import annotations


def add_series_parser(sub, formatter) -> None:
    p = sub.add_parser("series", formatter_class=formatter,
                       help="LiM(SeO3)2 series: substitute, relax, run the chain per M, table vs the paper")
    p.add_argument("--structure", default="LiGa_SeO3_2")
    p.set_defaults(func=lambda a: (_ for _ in ()).throw(RuntimeError("series is not built yet")))
