"""phonion.cli — the ``phonion`` command: thin argparse front ends over :mod:`phonion.workflows`."""

from phonion.cli.main import build_parser, main  # noqa: F401
