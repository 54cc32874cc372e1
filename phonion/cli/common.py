"""Options shared by several ``phonion`` subcommands (defined once, read from the layers below)."""

from __future__ import annotations

from phonion.md.io import FORMATS

__all__ = ["add_time_options"]


def add_time_options(p) -> None:
    """``--timestep-fs``, ``--file-stride`` and ``--format`` (choices: the reader registry's FORMATS)."""
    p.add_argument("--timestep-fs", type=float, default=None,
                   help="MD timestep in fs, for files that do not record it (XDATCAR); frame interval = "
                        "timestep × file stride")
    p.add_argument("--file-stride", type=int, default=None, metavar="K",
                   help="integrator steps between the file's saved frames, when the file does not say")
    p.add_argument("--format", dest="fmt", default=None, choices=list(FORMATS),
                   help="trajectory format (none: from the file name)")
